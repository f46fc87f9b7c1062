"""Threads: independent graphs in several threads give exactly the single-thread
results, concurrent building, freeing and pickling is safe, and a custom backward
may run backward() on another graph (reentrancy). The same for compiled graphs
(``engine.compile``), whose replays release the GIL.

The engine runs under the GIL: its global state (the Value allocator, the deferred-
release stack, the sort's scratch buffers, the set of live compiled graphs) is only
touched with the GIL held, and the interpreter switches threads only between bytecodes,
when Python code runs (a custom backward, a finaliser) or when a replay releases the
GIL. The tests make it switch as often as it can (``sys.setswitchinterval(1e-6)``) and
put Python code in the middle of the engine's work: custom backward callbacks,
Function nodes, finalisers that run while a graph is being freed.

Free-threaded CPython (3.13t and later, no GIL) is not supported (src/value_alloc.h
refuses to build there), so it is not tested. No test asserts anything about timing.
"""

from __future__ import annotations

import copy
import functools
import gc
import itertools
import math
import pickle
import random
import struct
import sys
import sysconfig
import threading

import pytest

from cmicrograd.function import Function
from cmicrograd.losses import hinge_loss, l2_regularization
from cmicrograd.optim import SGD

import programs as P
from chunks import values_held

pytestmark = pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="free-threaded CPython is not supported")

N_THREADS = 4


@pytest.fixture(autouse=True)
def _switch_often():
    """Switch threads every microsecond (the default is 5 ms)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run_threads(target, args_list):
    """Run target(*args) in one thread per args; re-raise the first exception."""
    results = [None] * len(args_list)
    errors = []
    start = threading.Barrier(len(args_list))

    def run(i, args):
        try:
            start.wait()  # all threads start together, so they really overlap
            results[i] = target(*args)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


# ---- the same numbers in threads as in one thread -------------------------------------
def _random_graph_grads(engine, seed: int) -> list[int]:
    """A random graph over every op (fused sums too) from a private RNG; the bits of
    the output and of every leaf's grad after backward."""
    V = engine.Value
    rng = random.Random(seed)
    leaves = [V(rng.uniform(0.5, 1.5)) for _ in range(12)]
    nodes = list(leaves)
    for _ in range(400):
        a, b = rng.choice(nodes), rng.choice(nodes)
        op = rng.randrange(9)
        if op == 0:
            n = a + b
        elif op == 1:
            n = a * b
        elif op == 2:
            n = (a * 0.5).tanh()
        elif op == 3:
            n = (a * 0.01).exp()
        elif op == 4:
            n = (a * a + 1.0).log()
        elif op == 5:
            n = (a - b).relu() + a.sigmoid()
        elif op == 6:
            n = (a * a + 0.5) ** 0.5
        elif op == 7:
            n = a / (b * b + 1.0)
        else:
            k = rng.randrange(1, 6)
            n = engine.engine.weighted_sum(rng.sample(nodes, k), [rng.uniform(-1, 1) for _ in range(k)], a)
        nodes.append(n * 0.5)  # keep magnitudes tame
    out = sum(nodes[-50:])
    out.backward()
    return [_bits(out.data)] + [_bits(v.grad) for v in leaves]


def _train(engine, model, X, Y, steps: int) -> list[int]:
    """A few SGD steps; the bits of every loss and of the final parameters."""
    V = engine.Value
    opt = SGD(model.parameters(), lr=0.05)
    trace = []
    for _ in range(steps):
        scores = [model([V(a), V(b)]) for a, b in X]
        loss = hinge_loss(scores, Y) + l2_regularization(model.parameters(), 1e-4)
        model.zero_grad()
        loss.backward()
        opt.step()
        trace.append(_bits(loss.data))
    return trace + [_bits(p.data) for p in model.parameters()]


def _job(engine, seed, model):
    rng = random.Random(1000 + seed)
    X = [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(8)]
    Y = [1 if a * b > 0 else -1 for a, b in X]
    return _random_graph_grads(engine, seed), _train(engine, model, X, Y, steps=15)


def _models(engine):
    """One model per job, made in this thread: their weights come from the global
    ``random``, which threads must not share."""
    models = []
    for seed in range(N_THREADS):
        random.seed(seed)
        models.append(engine.nn.MLP(2, [8, 8, 1]))
    return models


def test_threads_give_the_same_bits_as_one_thread(engine):
    serial = [_job(engine, i, m) for i, m in enumerate(_models(engine))]
    threaded = _run_threads(_job, [(engine, i, m) for i, m in enumerate(_models(engine))])
    assert threaded == serial
    # and the jobs differ from each other, so a mix-up between threads would show
    assert len({repr(r) for r in serial}) == N_THREADS


# ---- compiled graphs (engine.compile): replays run with the GIL released ------------------
def _scores_and_loss(engine, model, seed: int, n: int):
    """model's scores on n points drawn from Random(seed) (labels: the XOR of their
    signs) and its hinge loss over them."""
    rng = random.Random(seed)
    X = [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(n)]
    Y = [1 if a * b > 0 else -1 for a, b in X]
    scores = [model([engine.Value(a), engine.Value(b)]) for a, b in X]
    return scores, hinge_loss(scores, Y)


def _job_loss(engine, model, job: int):
    """Job ``job``'s loss: 8 points of its own."""
    return _scores_and_loss(engine, model, 1000 + job, 8)[1]


def _compiled_jobs(engine):
    """Per job: a model and the recorded step of its loss on its own data (all made in
    this thread, for the global ``random``)."""
    return [(model, engine.engine.compile(_job_loss(engine, model, job)))
            for job, model in enumerate(_models(engine))]


def _assert_replay_is_exact(model, step, build) -> None:
    """A replay of step now gives what building its graph anew (``build()``, from the
    current parameters) and backpropagating it gives: the loss and every parameter's
    grad, bit for bit."""
    P.assert_replay_equals_building_anew(step, model.parameters(), build)


def _replay_training(model, step, steps: int = 15) -> list[int]:
    opt = SGD(model.parameters(), lr=0.05)
    trace = []
    for _ in range(steps):
        trace.append(_bits(step.forward()))
        model.zero_grad()
        step.backward()
        opt.step()
    return trace + [_bits(p.data) for p in model.parameters()]


def test_compiled_steps_in_threads_give_the_same_bits_as_one_thread(engine):
    serial = [_replay_training(m, s) for m, s in _compiled_jobs(engine)]
    threaded = _run_threads(_replay_training, _compiled_jobs(engine))
    assert threaded == serial


def test_compiled_steps_are_exact_again_after_concurrent_use(engine):
    """Whatever happened while threads replayed and looked inside their graphs at the
    same time, a replay afterwards gives what building the graph anew gives."""
    jobs = _compiled_jobs(engine)

    def hammer(k):
        model, step = jobs[k]
        for _ in range(10):
            step.forward()
            model.zero_grad()
            step.backward()
            if k % 2:
                step.output._prev   # look inside: write back, detach, re-record next time
        return k

    assert _run_threads(hammer, [(k,) for k in range(N_THREADS)]) == list(range(N_THREADS))
    for job, (model, step) in enumerate(jobs):
        _assert_replay_is_exact(model, step, lambda: _job_loss(engine, model, job))


def test_one_compiled_graph_shared_by_threads_that_re_record_it(engine):
    """Threads sharing one compiled graph and making it re-record (looking inside it
    detaches it; the next call records it again, partly without the GIL): each call
    works or says that another thread is using the graph; never a crash (two threads
    recording into the same arrays once did: a segfault). Afterwards a replay is exact."""
    model, step = _compiled_jobs(engine)[0]

    def share(k):
        for i in range(150):
            try:
                if (i + k) % 3 == 0:
                    step.output._prev          # detach: the next call records again
                step.forward()
                step.backward()
            except RuntimeError as exc:
                assert "in another thread" in str(exc), exc
        return k

    assert _run_threads(share, [(k,) for k in range(N_THREADS)]) == list(range(N_THREADS))
    _assert_replay_is_exact(model, step, lambda: _job_loss(engine, model, 0))


def _wide_job(engine, model=None):
    """A seeded MLP(2, [16, 16, 1]) (or model), its scores on 64 points and its loss over
    them: a graph whose recording takes long enough for other threads to run meanwhile."""
    if model is None:
        random.seed(5)
        model = engine.nn.MLP(2, [16, 16, 1])
    return (model,) + _scores_and_loss(engine, model, 6, 64)


def _replay_re_recording(engine, step, rounds: int, done: threading.Event) -> None:
    """Replay step, looking inside its output every other round (which detaches it: the
    next call records again); a call refused because another thread uses or changes the
    graph is fine. Sets done at the end. The pure engine, which has no GIL-free part to
    race with, does a fifth of the rounds."""
    try:
        for i in range(rounds if engine.name == "cython" else rounds // 5):
            try:
                if i % 2:
                    step.output._prev
                step.forward()
                step.backward()
            except RuntimeError as exc:
                assert "thread" in str(exc) or "replaying" in str(exc), exc
    finally:
        done.set()


def test_a_graph_restructured_by_another_thread_while_it_records(engine):
    """One thread replays a compiled graph and makes it re-record; another looks inside
    its nodes meanwhile (``_prev`` turns a fused sum into a chain of + and *). A node
    changed while the recording ran without the GIL was once replayed as what it had
    been: a write through a stale pointer, a segfault. Each call works or raises
    RuntimeError; afterwards a replay is exact."""
    model, scores, loss = _wide_job(engine)
    step = engine.engine.compile(loss)
    del loss
    done = threading.Event()

    def look_inside():
        rng = random.Random(1)
        while not done.is_set():
            node = rng.choice(scores)
            try:
                for _ in range(rng.randrange(4)):
                    kids = list(node._prev)
                    if not kids:
                        break
                    node = rng.choice(kids)
            except RuntimeError as exc:
                assert "replaying" in str(exc), exc

    _run_threads(lambda k: _replay_re_recording(engine, step, 200, done) if k == 0
                 else look_inside(), [(0,), (1,)])
    _assert_replay_is_exact(model, step, lambda: _wide_job(engine, model)[2])


def test_graphs_compiled_over_a_graph_another_thread_re_records(engine):
    """One thread replays a compiled loss and makes it re-record; another compiles graphs
    over the same nodes (the loss times 2, a partial sum of its terms) and replays them:
    nodes recorded by two graphs at once, one of them replaying or recording without the
    GIL. Each call works or raises RuntimeError; afterwards a replay is exact."""
    model, _, loss = _wide_job(engine)
    terms = list(loss._prev)   # (a chain of additions: its operands, one level down)
    first = engine.engine.compile(loss)
    done = threading.Event()

    def compile_over_it():
        rng = random.Random(2)
        while not done.is_set():
            try:
                out = loss * 2 if rng.random() < 0.5 else sum(terms[:rng.randrange(1, len(terms) + 1)])
                other = engine.engine.compile(out)
                other.forward()
                other.backward()
            except RuntimeError as exc:
                assert "thread" in str(exc) or "replaying" in str(exc), exc

    _run_threads(lambda k: _replay_re_recording(engine, first, 100, done) if k == 0
                 else compile_over_it(), [(0,), (1,)])
    _assert_replay_is_exact(model, first, lambda: _wide_job(engine, model)[2])


# ---- concurrent building, freeing, pickling ------------------------------------------------
class _BusyFinaliser:
    """Held by a custom backward closure; when the graph is freed, its finaliser builds,
    backprops and frees another graph: Python code, and so thread switches, in the
    middle of the engine freeing a graph."""

    def __init__(self, engine, counter):
        self.engine = engine
        self.counter = counter

    def __del__(self):
        V = self.engine.Value
        y = functools.reduce(V.__mul__, itertools.repeat(1.0, 200), V(1.0))
        y.backward()
        self.counter.append(1)


def _all_grads(E, root) -> list[int]:
    return [_bits(v.grad) for v in E._topological_order(root)]


def _churn(engine, seed: int, finalised: list) -> int:
    V = engine.Value
    E = engine.engine
    rng = random.Random(seed)
    for round_ in range(6):
        w = [V(rng.uniform(-1, 1)) for _ in range(16)]
        x = [V(rng.uniform(-1, 1)) for _ in range(16)]
        s = E.weighted_sum(w, x, V(0.0))                      # a fused sum
        t = E.weighted_sum(w, [0.5] * 16, s)                  # with inline constants
        deep = functools.reduce(V.__add__, itertools.repeat(0.001, 5000), t)  # deep chain
        busy = _BusyFinaliser(engine, finalised)
        c = V(deep.data, (deep,), "custom")

        def back(c=c, deep=deep, busy=busy):
            deep.grad += c.grad
        c._backward = back
        del busy
        out = (c * s).tanh()
        out.backward()
        # a pickled copy (data and grads, of every node) backprops to the same bits
        copy_ = pickle.loads(pickle.dumps(t))
        t.backward()
        copy_.backward()
        assert _all_grads(E, copy_) == _all_grads(E, t)
        twin = copy.deepcopy(t)
        twin.backward()
        if round_ % 2:
            s._prev                                            # expand a fused sum
        del w, x, s, t, deep, c, out, copy_, twin
        if round_ % 3 == 0:
            gc.collect()                                       # the GC, from a thread
    return seed


def test_concurrent_build_free_and_pickle(engine):
    held = values_held(engine.name)
    finalised = []
    assert _run_threads(_churn, [(engine, i, finalised) for i in range(N_THREADS)]) == list(
        range(N_THREADS))
    # the custom nodes sit in cycles (c -> closure -> c): the last ones wait for the GC
    # (a gc.collect() in one thread returns at once while another thread collects)
    gc.collect()
    assert len(finalised) == 6 * N_THREADS, "every finaliser ran when its graph was freed"
    assert values_held(engine.name) == held, "every Value made in the threads was freed"


def test_pickled_graphs_in_threads_match_one_thread(engine):
    def job(seed):
        V = engine.Value
        rng = random.Random(seed)
        a = [V(rng.uniform(0.5, 2.0)) for _ in range(6)]
        g = engine.engine.weighted_sum(a, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], a[0])
        g = functools.reduce(lambda y, v: (y * v).tanh() + v.log(), a, g)
        r = pickle.loads(pickle.dumps(g))
        r.backward()
        leaves = [v for v in engine.engine._topological_order(r) if not v._prev]
        return [_bits(r.data)] + [_bits(v.grad) for v in leaves]

    serial = [job(i) for i in range(N_THREADS)]
    assert _run_threads(job, [(i,) for i in range(N_THREADS)]) == serial


# ---- reentrancy: backward() from inside a custom backward ---------------------------------
def _reentrant(engine):
    """outer: x -> y = x*x -> out = custom(y) (d out/dy = 2) -> top = out * 1.0.
    out's backward runs backward() on an unrelated graph (a -> a*a*a), on a graph
    sharing the leaf x (x * 5), and on a graph with a fused sum and a custom node of
    its own (nested callbacks)."""
    V = engine.Value
    x = V(3.0)
    y = x * x
    out = V(2 * y.data, (y,), "double")
    a = V(2.0)
    w = [V(1.0), V(2.0)]
    calls = []

    def inner_custom():
        s = engine.engine.weighted_sum(w, [10.0, 20.0], V(0.0))
        node = V(s.data, (s,), "inner")

        def node_back():
            s.grad += node.grad
            calls.append("nested")
        node._backward = node_back
        (node * 1.0).backward()

    def out_back():
        y.grad += 2.0 * out.grad
        (a * a * a).backward()      # unrelated graph
        (x * 5.0).backward()        # shares x with the graph being walked
        inner_custom()
        calls.append("outer")
    out._backward = out_back
    top = out * 1.0
    top.backward()
    return x.grad, a.grad, [v.grad for v in w], calls


def test_custom_backward_may_run_backward_on_another_graph(engine):
    x_grad, a_grad, w_grads, calls = _reentrant(engine)
    assert a_grad == 12.0           # d(a^3)/da at 2
    assert x_grad == 2 * 2 * 3.0 + 5.0  # through out and y = x*x, plus x * 5
    assert w_grads == [10.0, 20.0]
    assert calls == ["nested", "outer"]


class _ReplaysOthers(Function):
    """x**2, whose forward and backward also replay other compiled graphs."""
    others: list = []

    @staticmethod
    def replay_others():
        for step in _ReplaysOthers.others:
            step.forward()
            step.backward()

    @staticmethod
    def forward(ctx, x):
        _ReplaysOthers.replay_others()
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        _ReplaysOthers.replay_others()
        (x,) = ctx.saved_values
        return 2 * x * grad


def _function_replay_run(engine, with_other: bool, compiled: bool) -> list[int]:
    E, V = engine.engine, engine.Value
    w = [V(0.3), V(-0.2), V(0.1)]

    def graph():
        xs = [V(0.5 * i - 1) for i in range(6)]
        hidden = [E.weighted_sum(w, [x, x * x, 1.0], V(0.1)).tanh() for x in xs]
        return sum(_ReplaysOthers.apply(h) for h in hidden)

    other = E.compile(E.weighted_sum([V(1.0), V(2.0)], [3.0, 4.0], V(0.5)).tanh() * 2.0)
    _ReplaysOthers.others = [other] if with_other else []
    try:
        out = graph()
        step = E.compile(out) if compiled else None
        trace = []
        for _ in range(4):
            if compiled:
                trace.append(_bits(step.forward()))
            else:
                out = graph()
                trace.append(_bits(out.data))
            E.zero_grad(w)
            step.backward() if compiled else out.backward()
            trace += [_bits(p.grad) for p in w]
            for p in w:
                p.data -= 0.1 * p.grad
        return trace
    finally:
        _ReplaysOthers.others = []


def test_a_function_in_a_compiled_graph_may_replay_another_one(engine):
    """Reentrancy in a recorded graph: a Function node's forward and backward replay
    another compiled graph. The replay must still match building the graph anew."""
    eager = _function_replay_run(engine, with_other=True, compiled=False)
    assert _function_replay_run(engine, with_other=False, compiled=True) == eager
    assert _function_replay_run(engine, with_other=True, compiled=True) == eager


def test_reentrant_backward_in_threads(engine):
    want = _reentrant(engine)
    assert _run_threads(_reentrant, [(engine,)] * N_THREADS) == [want] * N_THREADS


def test_a_backward_that_raises_in_one_thread_leaves_the_others_alone(engine):
    """A custom backward raising in one thread while others backprop: every thread's
    graph is whole afterwards (a second, clean backward gives the right grads)."""
    V = engine.Value

    def job(k):
        x = V(1.5)
        bad = V(x.data, (x,), "bad")
        raised = []

        def back():
            if not raised:
                raised.append(1)
                raise RuntimeError(f"thread {k}")
            x.grad += bad.grad
        bad._backward = back
        top = functools.reduce(V.__mul__, itertools.repeat(1.0, 300), bad) * x
        with pytest.raises(RuntimeError):
            top.backward()
        engine.engine.zero_grad(engine.engine._topological_order(top))
        top.backward()
        return x.grad

    assert _run_threads(job, [(k,) for k in range(N_THREADS)]) == [2 * 1.5] * N_THREADS


def test_no_thread_sees_another_threads_deep_free(engine):
    """Several threads free deep chains at once (each free is iterative, through one
    deferred-release stack shared by the process) while others build and backprop."""
    V = engine.Value
    depth = 50_000 if engine.name == "cython" else 10_000

    def job(k):
        total = 0.0
        for _ in range(3):
            y = functools.reduce(V.__add__, itertools.repeat(1.0, depth), V(float(k)))
            y.backward()
            total += y.data
            del y
        return total

    held = values_held(engine.name)
    want = [3 * (k + depth) for k in range(N_THREADS)]
    assert _run_threads(job, [(k,) for k in range(N_THREADS)]) == [float(w) for w in want]
    assert values_held(engine.name) == held
    assert not math.isnan(sum(want))
