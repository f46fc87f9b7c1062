"""Many compiled graphs at once: graphs that share no nodes, or only leaves (the same
parameters under a training and a validation loss, two mini-batch sizes), replay side by
side without recording again, bit-identical to building each anew, in any interleaving
and in two threads at once."""

from __future__ import annotations

import random
import threading

import numpy as np

import cmicrograd
import programs as P
from cmicrograd.datasets import make_moons
from cmicrograd.losses import hinge_loss, l2_regularization


def _model(engine, seed=1, hidden=(8, 8)):
    random.seed(seed)
    return engine.nn.MLP(2, [*hidden, 1])


def _loss(engine, model, X, y):
    V = engine.Value
    scores = [model([V(a), V(b)]) for a, b in X.tolist()]
    return hinge_loss(scores, y.tolist()) + l2_regularization(model.parameters(), 1e-4)


def _eager(engine, model, X, y):
    """(loss bits, grad bits) of building the graph anew, from zero grads."""
    model.zero_grad()
    loss = _loss(engine, model, X, y)
    loss.backward()
    return P.bits(loss.data), [P.bits(p.grad) for p in model.parameters()]


def _replayed(graph, model):
    model.zero_grad()
    value = graph.forward()
    graph.backward()
    return P.bits(value), [P.bits(p.grad) for p in model.parameters()]


def test_graphs_sharing_no_nodes_never_record_again(engine):
    X, y = make_moons(20, 0.1, seed=1)
    m1, m2 = _model(engine, 1), _model(engine, 2)
    g1, g2 = cmicrograd.compile(_loss(engine, m1, X, y)), cmicrograd.compile(_loss(engine, m2, X, y))
    for _ in range(5):
        assert _replayed(g1, m1) == _eager(engine, m1, X, y)
        assert _replayed(g2, m2) == _eager(engine, m2, X, y)
        for p in m1.parameters() + m2.parameters():
            p.data -= 0.05 * p.grad
    assert (g1.recordings, g2.recordings) == (1, 1)


def test_training_and_validation_losses_share_parameters(engine):
    """The same parameters under two graphs: alternating them never records again, and
    each replay equals its graph built anew, while training changes the parameters."""
    Xt, yt = make_moons(30, 0.1, seed=3)
    Xv, yv = make_moons(12, 0.2, seed=4)
    model = _model(engine, 5)
    train = cmicrograd.compile(_loss(engine, model, Xt, yt))
    val = cmicrograd.compile(_loss(engine, model, Xv, yv))
    for step in range(6):
        assert _replayed(train, model) == _eager(engine, model, Xt, yt)
        for p in model.parameters():
            p.data -= 0.1 * p.grad
        want = _eager(engine, model, Xv, yv)[0]
        assert P.bits(val.forward()) == want       # validation: forward only
        if step % 2:
            assert _replayed(val, model) == _eager(engine, model, Xv, yv)
    assert (train.recordings, val.recordings) == (1, 1)


def test_two_minibatch_sizes_share_parameters(engine):
    X, y = make_moons(40, 0.1, seed=6)
    model = _model(engine, 7)
    V = engine.Value
    graphs = {}
    for size in (8, 5):
        inputs = [[V(0.0), V(0.0)] for _ in range(size)]
        labels = [V(0.0) for _ in range(size)]
        loss = _loss_from_leaves(model, inputs, labels)
        graphs[size] = (cmicrograd.compile(loss), inputs, labels)
    rng = np.random.default_rng(0)
    for step in range(8):
        size = (8, 5)[step % 2]
        g, inputs, labels = graphs[size]
        rows = rng.permutation(len(X))[:size]
        cmicrograd.assign(inputs, X[rows])
        cmicrograd.assign(labels, y[rows])
        got = _replayed(g, model)
        assert got == _eager(engine, model, X[rows], y[rows])
        for p in model.parameters():
            p.data -= 0.05 * p.grad
    assert all(g.recordings == 1 for g, _, _ in graphs.values())


def _loss_from_leaves(model, inputs, labels):
    scores = [model(row) for row in inputs]
    return hinge_loss(scores, labels) + l2_regularization(model.parameters(), 1e-4)


def test_a_graph_built_on_another_stays_exact(engine):
    """B is built on A's output (they share every node of A): each revealing the other
    makes it record again, and both stay exact in any interleaving."""
    V = engine.Value
    a, b = V(0.5), V(-1.25)
    A = (a * b + a).tanh() * 3.0
    B = (A * A + b).relu() + A
    gA, gB = cmicrograd.compile(A), cmicrograd.compile(B)
    for order in ("ABBA", "BAAB", "AB", "BA"):
        for name in order:
            g, root = (gA, A) if name == "A" else (gB, B)
            a.grad = b.grad = 0.0
            value = g.forward()
            g.backward()
            got = (P.bits(value), P.bits(a.grad), P.bits(b.grad))
            a2, b2 = V(a.data), V(b.data)
            A2 = (a2 * b2 + a2).tanh() * 3.0
            root2 = A2 if name == "A" else (A2 * A2 + b2).relu() + A2
            root2.backward()
            assert got == (P.bits(root2.data), P.bits(a2.grad), P.bits(b2.grad)), (order, name)
        a.data += 0.25


def test_two_threads_replay_graphs_that_share_parameters(engine):
    """A training thread and a validation thread over the same parameters: the replays
    run at once, and each result equals its graph built anew on the same data."""
    Xt, yt = make_moons(24, 0.1, seed=8)
    Xv, yv = make_moons(16, 0.2, seed=9)
    model = _model(engine, 10)
    train = cmicrograd.compile(_loss(engine, model, Xt, yt))
    val = cmicrograd.compile(_loss(engine, model, Xv, yv))
    want_val = _eager(engine, model, Xv, yv)[0]
    want_train = _eager(engine, model, Xt, yt)
    errors = []

    def validate():
        try:
            for _ in range(200):
                if P.bits(val.forward()) != want_val:
                    errors.append("validation loss differs")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    thread = threading.Thread(target=validate)
    thread.start()
    for _ in range(200):
        model.zero_grad()
        value = train.forward()
        train.backward()
        if (P.bits(value), [P.bits(p.grad) for p in model.parameters()]) != want_train:
            errors.append("training step differs")
    thread.join()
    assert errors == []
    assert (train.recordings, val.recordings) == (1, 1)


def test_two_threads_backward_into_shared_parameters_lose_nothing(engine):
    """Two graphs over the same parameters, forward and backward in two threads at once,
    no zeroing in between: every contribution lands in the parameters' grads (the sum
    equals running them one after the other, to rounding: the order in which the two
    threads' additions land is not fixed)."""
    X1, y1 = make_moons(16, 0.1, seed=11)
    X2, y2 = make_moons(10, 0.1, seed=12)
    model = _model(engine, 13, hidden=(16, 16))
    g1 = cmicrograd.compile(_loss(engine, model, X1, y1))
    g2 = cmicrograd.compile(_loss(engine, model, X2, y2))
    g1.forward()
    g2.forward()
    model.zero_grad()
    rounds = 400

    def run(g):
        for _ in range(rounds):
            g.forward()
            g.backward()

    threads = [threading.Thread(target=run, args=(g,)) for g in (g1, g2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [p.grad for p in model.parameters()]
    model.zero_grad()
    g1.forward()
    g1.backward()
    one = [p.grad for p in model.parameters()]
    model.zero_grad()
    g2.forward()
    g2.backward()
    two = [p.grad for p in model.parameters()]
    for p_got, p1, p2 in zip(got, one, two):
        want = rounds * (p1 + p2)
        assert abs(p_got - want) <= 1e-9 * max(1.0, abs(want))


# ---- the whole training step in the replay: compile(loss, optimizer=opt) ---------------
import pytest  # noqa: E402

from cmicrograd.function import Function  # noqa: E402
from cmicrograd.optim import SGD, Adam, AdamW  # noqa: E402

OPTIMIZERS = [(SGD, dict(lr=0.1)), (SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
              (Adam, dict(lr=0.02)), (AdamW, dict(lr=0.02, weight_decay=0.05))]


@pytest.mark.parametrize("cls, kw", OPTIMIZERS, ids=lambda x: getattr(x, "__name__", ""))
def test_a_compiled_training_step_equals_the_eager_loop(engine, cls, kw):
    X, y = make_moons(24, 0.1, seed=14)

    def run(compiled: bool):
        model = _model(engine, 15)
        opt = cls(model.parameters(), **kw)
        if compiled:
            step = cmicrograd.compile(_loss(engine, model, X, y), optimizer=opt)
        losses = []
        for _ in range(12):
            if compiled:
                losses.append(P.bits(step()))
            else:
                loss = _loss(engine, model, X, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(P.bits(loss.data))
        return losses, [P.bits(p.data) for p in model.parameters()]

    assert run(True) == run(False)


def test_calling_a_graph_needs_its_optimizer(engine):
    V = engine.Value
    a = V(2.0)
    g = cmicrograd.compile(a * a)
    with pytest.raises(TypeError, match="no optimizer"):
        g()
    with pytest.raises(TypeError, match="must be a cmicrograd.optim optimizer"):
        cmicrograd.compile(a * a, optimizer=object())
    other = next(ns for name, ns in __import__("conftest").ENGINES.items() if ns.Value is not V)
    if other.Value is not None:
        with pytest.raises(TypeError, match="other engine"):
            cmicrograd.compile(a * a, optimizer=SGD([other.Value(1.0)]))
    opt = SGD([a], lr=0.25)
    step = cmicrograd.compile(a * a, optimizer=opt)
    assert step.optimizer is opt
    assert step() == 4.0 and a.data == 2.0 - 0.25 * 4.0


# ---- edge cases the memcheck review found (tools/memcheck/scenarios.py has each) --------
def test_a_node_two_freed_graphs_recorded_compiles_again(engine):
    """A node recorded by two graphs, hidden by a third: when they are gone, compiling
    over it again works (it used to spin: the node kept marks no graph stood behind)."""
    V = engine.Value
    a, b = V(1.0), V(2.0)
    x = a * b
    y = x + 1.0
    g1, g2 = cmicrograd.compile(y), cmicrograd.compile(y)
    del g1, g2, x
    g3 = cmicrograd.compile(y)
    g3.forward()
    g3.backward()
    del g3
    g4 = cmicrograd.compile(y)
    assert g4.forward() == 3.0
    g4.backward()
    assert (a.grad, b.grad) == (4.0, 2.0)


class _Touch(Function):
    """A Function whose forward does something to the Values in `targets`."""
    targets: list = []
    action = staticmethod(lambda v: None)

    @staticmethod
    def forward(ctx, x):
        for t in _Touch.targets:
            _Touch.action(t)
        return 2.0 * x

    @staticmethod
    def backward(ctx, g):
        return 2.0 * g


@pytest.mark.parametrize("action", ["expand", "reinit", "compile"])
def test_a_function_cannot_restructure_the_graph_replaying_it(engine, action):
    """A Function called by a replay that expands a fused sum of that graph, re-inits
    one of its nodes, or compiles a graph through its hidden nodes gets a RuntimeError
    from the compiled engine (the graph cannot let go of them mid-replay); the pure
    engine has nothing to let go of."""
    V = engine.Value
    w = [V(0.5 + i) for i in range(4)]
    xs = [V(1.0 + i) for i in range(4)]
    s = engine.engine.weighted_sum(w, xs, V(0.25))
    t = (s * 2.0).tanh()
    out = _Touch.apply(t) * w[0]
    graph = cmicrograd.compile(out)
    _Touch.targets = [s if action == "expand" else t]
    _Touch.action = staticmethod({"expand": lambda v: v._prev, "reinit": lambda v: v.__init__(0.0),
                                  "compile": lambda v: cmicrograd.compile(v * 3.0).forward()}[action])
    try:
        if engine.name == "cython":
            with pytest.raises(RuntimeError, match="replaying right now"):
                graph.forward()
        else:
            graph.forward()
    finally:
        _Touch.targets = []
    assert engine.engine._pending_frees() == (0, False) if engine.name == "cython" else True


def test_a_record_is_read_only_from_python(both):
    compiled, _ = both
    v = compiled.Value(1.0, (compiled.Value(2.0),), "f")
    for field, value in (("children", (object(),)), ("op", 3), ("label", 5), ("backward", 1)):
        with pytest.raises(AttributeError):
            setattr(vars(v), field, value)
    v.label = "ok"
    assert vars(v).label == "ok"


def test_optimizer_kernels_take_only_double_buffers(both):
    from array import array

    compiled, _ = both
    params = [compiled.Value(1.0) for _ in range(8)]
    with pytest.raises(TypeError, match="array\\('d'\\)"):
        compiled.engine.sgd_kernel(params, array("f", [0.0] * 8), 0.1, 0.9, 0.0, 0.0, False, True)
    with pytest.raises(TypeError, match="array\\('d'\\)"):
        compiled.engine.adam_kernel(params, array("d", [0.0] * 8), array("f", [0.0] * 8),
                                    0.9, 0.999, 1e-8, 1e-3, 1.0, 0.0, 1.0)
    with pytest.raises(TypeError):
        compiled.engine.sgd_kernel(params, None, 0.1, 0.9, 0.0, 0.0, False, True)


def test_a_fused_sum_shows_its_op(both):
    compiled, _ = both
    w = [compiled.Value(1.0), compiled.Value(2.0)]
    s = compiled.engine.weighted_sum(w, w, compiled.Value(0.5))
    assert s._op == "+"


def test_a_compiled_graph_kept_on_its_output_is_collected(engine):
    """loss.step = compile(loss): a cycle through the graph's output, which the GC frees
    (the compiled graph's own references to its nodes skip the output for that)."""
    import gc

    V = engine.Value
    graphs = lambda: sum(type(o) is engine.engine.CompiledGraph for o in gc.get_objects())  # noqa: E731
    gc.collect()
    before = graphs()
    for _ in range(3):
        w = [V(0.1 * j) for j in range(5)]
        loss = sum(x * x for x in w).tanh()
        loss.step = cmicrograd.compile(loss)
        loss.step.forward()
        loss.step.backward()
        del loss, w
    gc.collect()
    assert graphs() == before
