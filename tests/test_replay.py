"""Compile once, replay many: a replay equals building the graph anew, bit for bit."""

from __future__ import annotations

import copy
import math
import pickle
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmicrograd
import programs as P
from cmicrograd.datasets import make_moons
from programs import Cube
from cmicrograd.train import batch_loss


def _moons_model(engine, seed=1):
    random.seed(seed)
    return engine.nn.MLP(2, [16, 16, 1])


def test_training_replay_equals_eager(engine):
    X, y = make_moons(100, 0.1, seed=2)

    def run(replay: bool):
        model = _moons_model(engine)
        params = model.parameters()
        if replay:
            loss, _ = batch_loss(model, X, y)
            g = cmicrograd.compile(loss)
        curve = []
        for k in range(25):
            if replay:
                value = g.forward()
                model.zero_grad()
                g.backward()
            else:
                loss, _ = batch_loss(model, X, y)
                model.zero_grad()
                loss.backward()
                value = loss.data
            for p in params:
                p.data -= (1.0 - 0.9 * k / 100) * p.grad
            curve.append(P.bits(value))
        return curve, [P.bits(p.data) for p in params]

    assert run(replay=True) == run(replay=False)


def test_replays_agree_across_engines(both):
    X, y = make_moons(30, 0.1, seed=5)
    out = []
    for ns in both:
        model = _moons_model(ns, seed=3)
        loss, _ = batch_loss(model, X, y)
        g = cmicrograd.compile(loss)
        curve = []
        for _ in range(5):
            curve.append(g.forward())
            model.zero_grad()
            g.backward()
            ns.engine.sgd_update(model.parameters(), 0.05)
        out.append((curve, [p.data for p in model.parameters()]))
    assert out[0] == out[1]


def _replay_program(V, program: P.Program, new_leaves, twice: bool):
    """Build the program's graph with its own leaves, compile it, set new leaf values,
    replay. Returns a Run like programs.run's."""
    import sys

    engine = sys.modules[V.__module__]
    result = P.Run(nodes=[V(x) for x in program.leaves])
    for step in program.steps:
        result.nodes.append(P.apply(V, step, result.nodes, engine))
    root = result.nodes[program.seed_node % len(result.nodes)]
    g = cmicrograd.compile(root)
    for leaf, x in zip(result.nodes, new_leaves):
        leaf.data = x
    try:
        g.forward()
    except (ArithmeticError, ValueError) as exc:
        result.error = (type(exc).__name__, "", -1)
        return result
    try:
        g.backward()
        if twice:
            g.backward()
    except (ArithmeticError, ValueError) as exc:
        result.backward_error = (type(exc).__name__, str(exc))
    if program.inspect_first:
        for node in result.nodes:
            node._prev
    return result


numbers = st.one_of(st.floats(-3, 3), st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, 0.5]))


@st.composite
def replay_cases(draw):
    n_leaves = draw(st.integers(1, 4))
    leaves = draw(st.lists(numbers, min_size=n_leaves, max_size=n_leaves))
    new_leaves = draw(st.lists(numbers, min_size=n_leaves, max_size=n_leaves))
    steps = []
    for n in range(draw(st.integers(1, 25))):
        made = n_leaves + n
        op = draw(st.sampled_from([o for o in P.ALL_OPS if o != "custom"]))
        c = draw(st.sampled_from(P.EXPONENTS)) if op == "pow" else draw(numbers)
        steps.append(P.Step(op, draw(st.integers(0, made - 1)), draw(st.integers(0, made - 1)), c))
    program = P.Program(leaves, steps, inspect_first=draw(st.booleans()),
                        seed_node=draw(st.integers(-1, n_leaves + len(steps) - 1)))
    return program, new_leaves, draw(st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=replay_cases())
def test_replay_of_random_graphs_equals_building_anew(engine, case):
    program, new_leaves, twice = case
    try:
        P.run(engine.Value, program)  # the graph must build with the original leaves
    except Exception:
        return
    if P.run(engine.Value, program).error is not None:
        return
    fresh = P.run(engine.Value, P.Program(new_leaves, program.steps, seed_node=program.seed_node,
                                          backward_twice=twice))
    replayed = _replay_program(engine.Value, program, new_leaves, twice)
    if fresh.error is not None:
        return  # a failing node may lie outside the compiled graph (errors: tested below)
    assert replayed.error is None
    # only the graph under the compiled output is replayed: compare that graph
    seed = program.seed_node
    replayed.nodes = [replayed.nodes[seed % len(replayed.nodes)]]
    fresh.nodes = [fresh.nodes[seed % len(fresh.nodes)]]
    P.assert_same_run(replayed, fresh, (engine.engine, engine.engine))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=replay_cases(), keep=st.lists(st.booleans(), min_size=25, max_size=25))
def test_nodes_held_from_outside_show_every_replay(engine, case, keep):
    """Python holds some recorded nodes (a list keeps them; the others are dropped before
    compiling): each shows the replay's data and grad in its attributes, without being
    looked inside. (The engine tells them from the nodes only the graph holds, which
    live in its arrays, by their references: a miscount shows stale numbers here.)"""
    import sys

    program, new_leaves, twice = case
    if P.run(engine.Value, program).error is not None:
        return
    fresh = P.run(engine.Value, P.Program(new_leaves, program.steps, seed_node=program.seed_node,
                                          backward_twice=twice))
    if fresh.error is not None or fresh.backward_error is not None:
        return
    V = engine.Value
    nodes = [V(x) for x in program.leaves]
    for step in program.steps:
        nodes.append(P.apply(V, step, nodes, sys.modules[V.__module__]))
    seed = program.seed_node % len(nodes)
    leaves = nodes[:len(program.leaves)]
    held = {i: nodes[i] for i in range(len(leaves), len(nodes)) if keep[i - len(leaves)]}
    root = nodes[seed]
    del nodes                      # only the kept nodes (and root) stay held from outside
    g = cmicrograd.compile(root)
    for leaf, x in zip(leaves, new_leaves):
        leaf.data = x
    g.forward()
    g.backward()
    if twice:
        g.backward()
    in_graph = {id(v) for v in engine.engine._topological_order(fresh.nodes[seed])}
    for i, node in held.items():
        if id(fresh.nodes[i]) in in_graph:
            want = fresh.nodes[i]
            assert (P.bits(node.data), P.bits(node.grad)) == (P.bits(want.data), P.bits(want.grad)), i


def test_replay_after_dropping_intermediates(engine):
    V = engine.Value
    a, b = V(1.5), V(-2.0)
    out = ((a * b + a.exp()) * (a - b)).tanh() + (a * a).log()
    g = cmicrograd.compile(out)
    del out  # the recording keeps alive what it needs
    for x in (0.3, 1.1, -0.7):
        a.data = x
        value = g.forward()
        a.grad = b.grad = 0.0
        g.backward()
        a2, b2 = V(x), V(-2.0)
        fresh = ((a2 * b2 + a2.exp()) * (a2 - b2)).tanh() + (a2 * a2).log()
        fresh.backward()
        assert (value, a.grad, b.grad) == (fresh.data, a2.grad, b2.grad)
    assert g.output.data == value


def test_compile_needs_a_value(engine):
    for bad in (1.0, "x", None, [engine.Value(1.0)]):
        with pytest.raises(TypeError, match="compile\\(\\) needs a cmicrograd Value"):
            cmicrograd.compile(bad)


def test_handwritten_backward_cannot_be_compiled(engine):
    V = engine.Value
    x = V(0.5)
    out = V(x.data * 2, (x,), "twice")

    def _backward():
        x.grad += 2 * out.grad

    out._backward = _backward
    with pytest.raises(TypeError, match="cannot compile a node with op 'twice'.*Function"):
        cmicrograd.compile(out * 3)


def test_function_nodes_replay(engine):
    V = engine.Value
    w = V(0.7)
    out = (Cube.apply(w * 2.0) + w).tanh()
    g = cmicrograd.compile(out)
    for x in (0.1, -0.4, 0.9):
        w.data = x
        w.grad = 0.0
        value = g.forward()
        g.backward()
        w2 = V(x)
        fresh = (Cube.apply(w2 * 2.0) + w2).tanh()
        fresh.backward()
        assert (value, w.grad) == (fresh.data, w2.grad)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_function_nodes_between_neurons_replay(engine, activation):
    """Neurons whose activations feed Function nodes and read their results (the
    compiled engine folds each activation into its neuron's fused sum, Functions or
    not): every replay, and a second backward without a forward, equals building anew."""
    V = engine.Value
    ws = [[V(0.3 * k - 0.2 * j) for j in range(3)] for k in range(4)]

    def build(xs):
        act = [getattr(engine.engine.weighted_sum(ws[k], xs, ws[k][0]), activation)() for k in range(3)]
        cubes = [Cube.apply(a) for a in act]
        return getattr(engine.engine.weighted_sum(ws[3], cubes, ws[3][1]), activation)() + act[1]

    xs = [V(0.5), V(-0.25), V(1.5)]
    g = cmicrograd.compile(build(xs))
    params = [w for row in ws for w in row]
    for inputs in ([0.1, 0.2, -0.3], [-1.5, 0.75, 0.4], [0.9, -0.6, 0.05]):
        for x, d in zip(xs, inputs):
            x.data = d
        P.assert_replay_equals_building_anew(g, params, lambda: build([V(d) for d in inputs]),
                                             backwards=2)


def test_minibatches_reuse_one_recording(engine):
    X, y = make_moons(40, 0.1, seed=7)
    model = _moons_model(engine, seed=4)
    V = engine.Value
    xb = [[V(0.0), V(0.0)] for _ in range(8)]
    yb = [V(0.0) for _ in range(8)]
    from cmicrograd.losses import hinge_loss, l2_regularization

    scores = [model(row) for row in xb]
    loss = hinge_loss(scores, yb) + l2_regularization(model.parameters())
    g = cmicrograd.compile(loss)
    rng = np.random.default_rng(0)
    for _ in range(4):
        rows = rng.permutation(len(X))[:8]
        cmicrograd.assign(xb, X[rows])
        cmicrograd.assign(yb, y[rows])
        value = g.forward()
        model.zero_grad()
        g.backward()
        replay_grads = [p.grad for p in model.parameters()]
        replay_scores = [s.data for s in scores]
        fresh_x = [[V(a), V(b)] for a, b in X[rows].tolist()]
        fresh_y = [V(t) for t in y[rows].tolist()]
        fresh_scores = [model(row) for row in fresh_x]
        fresh = hinge_loss(fresh_scores, fresh_y) + l2_regularization(model.parameters())
        model.zero_grad()
        fresh.backward()
        assert value == fresh.data and replay_scores == [s.data for s in fresh_scores]
        assert replay_grads == [p.grad for p in model.parameters()]


def test_assign_errors(engine):
    V = engine.Value
    with pytest.raises(ValueError, match="2 Values but an array of 3 numbers"):
        cmicrograd.assign([V(0.0), V(0.0)], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="could not convert|invalid|float"):
        cmicrograd.assign([V(0.0)], ["x"])
    v = V(0.0)
    cmicrograd.assign(v, 2)
    cmicrograd.assign([[v]], np.array([[3.0]]))
    assert v.data == 3.0


def test_backward_twice_and_without_forward(engine):
    V = engine.Value
    w = [V(0.3), V(-0.8)]
    x = [V(1.5), V(2.0)]

    def build():
        s = engine.engine.weighted_sum(w, x, V(0.1))
        return (s.relu() * s + s) * 2.0

    out = build()
    g = cmicrograd.compile(out)
    g.backward()  # straight after compile: the graph as it is
    g.backward()
    got = [v.grad for v in w + x]
    for v in w + x:
        v.grad = 0.0
    fresh = build()
    fresh.backward()
    fresh.backward()
    assert got == [v.grad for v in w + x]
    for v in w + x:
        v.grad = 0.0
    g.forward()
    g.backward()
    g.backward()
    assert [v.grad for v in w + x] == got


def test_hidden_nodes_are_revealed_exactly(engine):
    """_prev, pickling, eager backward and topological order see the replay's values."""
    V = engine.Value
    X, y = make_moons(10, 0.1, seed=8)
    model = _moons_model(engine, seed=6)
    loss, _ = batch_loss(model, X, y)
    g = cmicrograd.compile(loss)
    for p in model.parameters():
        p.data *= 0.5
    g.forward()
    model.zero_grad()
    g.backward()
    fresh, _ = batch_loss(model, X, y)
    model.zero_grad()
    fresh.backward()
    got_order = [(P.bits(v.data), P.bits(v.grad), v._op) for v in engine.engine._topological_order(loss)]
    want_order = [(P.bits(v.data), P.bits(v.grad), v._op) for v in engine.engine._topological_order(fresh)]
    assert got_order == want_order
    copy_ = pickle.loads(pickle.dumps(loss))
    assert copy_.data == fresh.data
    g.forward()  # replay again after being revealed: it records afresh
    model.zero_grad()
    g.backward()
    grads = [p.grad for p in model.parameters()]
    model.zero_grad()
    loss.backward()  # an eager backward through a recorded graph
    assert [p.grad for p in model.parameters()] != [] and grads != []


def test_replay_output_value_and_repr(engine):
    V = engine.Value
    a = V(2.0)
    out = a * a + 1
    g = cmicrograd.compile(out)
    a.data = 3.0
    assert g.forward() == 10.0 and out.data == 10.0
    assert "CompiledGraph" in repr(g) and g.num_nodes >= 3
    g2 = cmicrograd.compile(a)  # a leaf as the output
    assert g2.forward() == 3.0
    g2.backward()
    assert a.grad == 1.0


def test_forward_error_then_backward(engine):
    V = engine.Value
    x = V(1.0)
    out = x.log() * 2
    g = cmicrograd.compile(out)
    x.data = -1.0
    with pytest.raises(ValueError, match=r"log\(-1.0\) is undefined"):
        g.forward()
    with pytest.raises(RuntimeError, match="call forward\\(\\) again"):
        g.backward()
    x.data = math.e
    assert g.forward() == pytest.approx(2.0)
    g.backward()
    assert x.grad == pytest.approx(2 / math.e)


def test_two_tapes_over_one_graph(engine):
    V = engine.Value
    a = V(0.5)
    out = (a * a).tanh()
    g1 = cmicrograd.compile(out)
    g2 = cmicrograd.compile(out)
    for g in (g1, g2, g1, g2):
        a.data = random.random()
        a.grad = 0.0
        value = g.forward()
        g.backward()
        fresh = (V(a.data) * V(a.data)).tanh()
        assert value == fresh.data


def test_deepcopy_of_model_and_replay(engine):
    X, y = make_moons(10, 0.1, seed=9)
    model = _moons_model(engine, seed=2)
    other = copy.deepcopy(model)
    loss, _ = batch_loss(model, X, y)
    loss2, _ = batch_loss(other, X, y)
    g1, g2 = cmicrograd.compile(loss), cmicrograd.compile(loss2)
    assert g1.forward() == g2.forward()


def test_revealing_one_graph_never_disturbs_a_replay_in_another_thread(engine):
    """Thread B replays and looks inside its own graph (which detaches every tape)
    while thread A replays: A's tape must not be detached halfway through a replay."""
    import sys
    import threading

    X, y = make_moons(40, 0.1, seed=11)

    def setup(seed):
        model = _moons_model(engine, seed=seed)
        loss, _ = batch_loss(model, X, y)
        return model, loss

    def train(model, loss, steps=25):
        g = cmicrograd.compile(loss)
        trace = []
        for _ in range(steps):
            trace.append(P.bits(g.forward()))
            model.zero_grad()
            g.backward()
            trace.extend(P.bits(p.grad) for p in model.parameters())
            engine.engine.sgd_update(model.parameters(), 0.05)
        return trace

    want = train(*setup(1))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(3):
            a_model, a_loss = setup(1)
            b_model, b_loss = setup(2)
            b_step = cmicrograd.compile(b_loss)
            inside = b_loss._prev[0]
            stop = threading.Event()

            def poke():
                while not stop.is_set():
                    b_step.forward()
                    b_step.backward()
                    inside._prev

            t = threading.Thread(target=poke)
            t.start()
            try:
                got = train(a_model, a_loss)
            finally:
                stop.set()
                t.join()
            assert got == want
    finally:
        sys.setswitchinterval(interval)
