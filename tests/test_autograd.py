"""Gradients of gradients: ``cmicrograd.grad(output, inputs, create_graph=...)``.

First derivatives have backward()'s bits (both modes, both engines); second and third
derivatives match PyTorch float64 to 1e-12 relative on random graphs of every op, and
known answers; deep graphs need no recursion; the derivative graph compiles like any
other; custom Functions take part when their backward is differentiable.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmicrograd
import programs as P
from cmicrograd import grad
from cmicrograd.function import Function

SETTINGS = settings(deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _bits(values):
    return [P.bits(v.data) for v in values]


@SETTINGS
@given(program=st.builds(lambda seed: P.random_program(random.Random(seed), max_steps=25),
                         st.integers(0, 2**32)))
def test_first_derivatives_have_the_bits_of_backward(engine, program):
    """Over the parity tests' random graphs (every op, constants, reused nodes, special
    values): grad() in both modes gives exactly the grads backward() gives, and leaves
    every .grad as it was."""
    program.steps = [s for s in program.steps if s.op != "custom"]   # hand-written backward
    program.backward_twice = False
    run = P.run(engine.Value, program)
    if run.error is not None or run.backward_error is not None or not program.steps:
        return
    fresh = P.run(engine.Value, program)   # the same graph, not backpropagated
    root = fresh.nodes[program.seed_node % len(fresh.nodes)]
    leaves = fresh.nodes[:len(program.leaves)]
    before = [(P.bits(v.data), P.bits(v.grad)) for v in fresh.nodes]
    want = [P.bits(v.grad) for v in run.nodes[:len(program.leaves)]]
    for create_graph in (False, True):
        got = grad(root, leaves, create_graph=create_graph)
        assert _bits(got) == want, create_graph
    assert [(P.bits(v.data), P.bits(v.grad)) for v in fresh.nodes] == before


def test_engines_build_the_same_derivative_graph(both):
    out = []
    for ns in both:
        V = ns.Value
        x, y = V(0.7), V(-1.3)
        f = (x * y).tanh() * x.exp() + (x ** 2 + y ** 2).log() - y.sigmoid() / x
        (dx, dy) = grad(f, [x, y], create_graph=True)
        (dxx, dxy) = grad(dx, [x, y], create_graph=True)
        (dxxy,) = grad(dxx, [y])
        out.append((_bits([dx, dy, dxx, dxy, dxxy]),
                    len(ns.engine._topological_order(dxx))))
    assert out[0] == out[1]


# ---- known answers --------------------------------------------------------------------
SECOND = [
    ("x**3", lambda x: x ** 3, lambda x: 6 * x),
    ("tanh", lambda x: x.tanh(), lambda x: -2 * math.tanh(x) * (1 - math.tanh(x) ** 2)),
    ("exp", lambda x: x.exp(), lambda x: math.exp(x)),
    ("log", lambda x: x.log(), lambda x: -1 / x ** 2),
    ("sigmoid", lambda x: x.sigmoid(), lambda x: (lambda s: s * (1 - s) * (1 - 2 * s))(1 / (1 + math.exp(-x)))),
    ("1/x", lambda x: 1 / x, lambda x: 2 / x ** 3),
    ("reciprocal", lambda x: x.reciprocal(), lambda x: 2 / x ** 3),
    ("relu", lambda x: x.relu() * x, lambda x: 2.0 if x > 0 else 0.0),
]


@pytest.mark.parametrize("name, f, d2", SECOND, ids=[s[0] for s in SECOND])
@pytest.mark.parametrize("x0", [0.3, 1.7, 2.5, -0.8])
def test_second_derivatives_known_answers(engine, name, f, d2, x0):
    if name in ("log",) and x0 <= 0:
        return
    x = engine.Value(x0)
    (d1,) = grad(f(x), [x], create_graph=True)
    (dd,) = grad(d1, [x])
    assert dd.data == pytest.approx(d2(x0), rel=1e-12, abs=1e-15)


def test_newtons_method_on_a_quartic(engine):
    """f(x) = (x - 1.5)**4 + x: Newton's steps x -= f'/f'' from the derivative graphs."""
    V = engine.Value
    x = V(3.0)
    for _ in range(40):
        f = (x - 1.5) ** 4 + x
        (d1,) = grad(f, [x], create_graph=True)
        (d2,) = grad(d1, [x])
        x = V(x.data - d1.data / d2.data)
    assert x.data == pytest.approx(1.5 - 0.25 ** (1 / 3), rel=1e-9)


def test_inputs_the_output_does_not_reach_get_zero(engine):
    V = engine.Value
    x, y, z = V(1.0), V(2.0), V(3.0)
    out = x * y
    got = grad(out, [x, z, y], create_graph=True)
    assert [g.data for g in got] == [2.0, 0.0, 1.0]
    assert grad(out, [z])[0].data == 0.0
    assert (x.grad, y.grad, z.grad) == (0.0, 0.0, 0.0)


def test_bad_arguments(engine):
    V = engine.Value
    x = V(1.0)
    with pytest.raises(TypeError, match="output"):
        grad(1.0, [x])
    with pytest.raises(TypeError, match="list of Values"):
        grad(x * 2, x)
    with pytest.raises(TypeError, match="item 1"):
        grad(x * 2, [x, 3.0])
    with pytest.raises(TypeError, match="create_graph"):
        grad(x * 2, [x], create_graph="yes")


# ---- custom ops ---------------------------------------------------------------------------
class Square(Function):
    differentiable = True

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_values
        return 2.0 * x * g


class OpaqueSquare(Square):
    differentiable = False


def test_a_differentiable_function_takes_part(engine):
    V = engine.Value
    x = V(1.5)
    y = Square.apply(x) * x            # x**3
    (d1,) = grad(y, [x], create_graph=True)
    (d2,) = grad(d1, [x])
    assert d1.data == pytest.approx(3 * 1.5 ** 2, rel=1e-15)
    assert d2.data == pytest.approx(6 * 1.5, rel=1e-15)
    y.backward()
    assert d1.data == x.grad           # the same bits as backward()


def test_what_cannot_be_differentiated_again_says_so(engine):
    V = engine.Value
    x = V(1.5)
    with pytest.raises(TypeError, match="not marked differentiable"):
        grad(OpaqueSquare.apply(x), [x], create_graph=True)
    assert grad(OpaqueSquare.apply(x), [x])[0].data == 3.0   # first derivatives still work
    z = V(2.0 * x.data, (x,), "double")

    def _backward():
        x.grad += 2.0 * z.grad

    z._backward = _backward
    with pytest.raises(TypeError, match="hand-written _backward"):
        grad(z, [x], create_graph=True)


# ---- deep graphs, compiled derivative graphs -------------------------------------------------
@pytest.mark.slow
def test_a_deep_chain_has_no_recursion_limit(engine):
    """A 10^6-node chain (10^5 on the pure engine, which takes ten times as long)."""
    V = engine.Value
    x = V(0.5)
    y = x
    for _ in range((10 ** 6 if engine.name == "cython" else 10 ** 5) // 3):
        y = (y * 0.999999 + 0.000001).tanh()
    (d1,) = grad(y, [x], create_graph=True)
    (d2,) = grad(d1, [x])
    assert math.isfinite(d1.data) and math.isfinite(d2.data) and d1.data > 0


def test_a_derivative_graph_compiles(engine):
    V = engine.Value
    w, x = V(0.4), V(1.3)
    loss = ((w * x).tanh() - 0.25) ** 2
    (dw,) = grad(loss, [w], create_graph=True)
    penalty = dw * dw                  # a gradient penalty
    step = cmicrograd.compile(penalty)
    for x0 in (1.3, -0.7, 2.2):
        x.data = x0
        w.grad = 0.0
        value = step.forward()
        step.backward()
        w2, x2 = V(w.data), V(x0)
        (dw2,) = grad(((w2 * x2).tanh() - 0.25) ** 2, [w2], create_graph=True)
        fresh = dw2 * dw2
        fresh.backward()
        assert (P.bits(value), P.bits(w.grad)) == (P.bits(fresh.data), P.bits(w2.grad))


def test_a_compiled_relu_derivative_follows_the_sign_of_its_input(engine):
    """relu's derivative is a node (heaviside), recomputed at every replay: the gradient
    penalty of a relu net replays as it builds, whichever side of 0 relu's input is."""
    V = engine.Value
    w, x = V(0.5), V(1.0)
    (dw,) = grad((w * x).relu(), [w], create_graph=True)     # x where w*x > 0, else 0
    step = cmicrograd.compile(dw * dw)
    for x0 in (1.0, -1.0, 0.0, 2.5, -0.0):
        x.data = x0
        w.grad = 0.0
        value = step.forward()
        step.backward()
        w2, x2 = V(0.5), V(x0)
        (dw2,) = grad((w2 * x2).relu(), [w2], create_graph=True)
        fresh = dw2 * dw2
        fresh.backward()
        assert (P.bits(value), P.bits(w.grad)) == (P.bits(fresh.data), P.bits(w2.grad)), x0
    x.data = -1.0
    assert step.forward() == 0.0


# ---- PyTorch float64 ------------------------------------------------------------------------
UNARY = [("tanh", lambda v: v.tanh(), "tanh"), ("exp", lambda v: (v * 0.3).exp(), None),
         ("log", lambda v: (v * v + 0.5).log(), None), ("sigmoid", lambda v: v.sigmoid(), "sigmoid"),
         ("relu", lambda v: v.relu(), "relu"), ("recip", lambda v: (v * v + 0.25).reciprocal(), None),
         ("pow", lambda v: (v * v + 0.1) ** 1.5, None)]


def _random_function(rng, V_ops):
    """A random scalar function of 3 inputs as a list of steps (so it can be replayed on
    Values and on torch tensors alike)."""
    steps = []
    for _ in range(rng.randint(3, 10)):
        kind = rng.choice(["add", "mul", "sub", "div", "unary", "const"])
        steps.append((kind, rng.randrange(100), rng.randrange(100), rng.randrange(len(UNARY)),
                      rng.choice([0.5, -1.25, 2.0])))
    return steps


def _evaluate(steps, xs, torch_mode):
    import torch

    nodes = list(xs)
    for kind, i, j, u, c in steps:
        a, b = nodes[i % len(nodes)], nodes[j % len(nodes)]
        if kind == "add":
            nodes.append(a + b)
        elif kind == "mul":
            nodes.append(a * b)
        elif kind == "sub":
            nodes.append(a - b)
        elif kind == "div":
            nodes.append(a / (b * b + 1.0))
        elif kind == "const":
            nodes.append(a * c + c)
        else:
            name, f, torch_name = UNARY[u]
            if torch_mode:
                if name == "recip":
                    nodes.append(1.0 / (a * a + 0.25))
                elif name == "relu":
                    nodes.append(torch.relu(a))
                else:
                    t = a
                    nodes.append({"tanh": torch.tanh, "sigmoid": torch.sigmoid,
                                  "exp": lambda t: torch.exp(t * 0.3),
                                  "log": lambda t: torch.log(t * t + 0.5),
                                  "pow": lambda t: (t * t + 0.1) ** 1.5}[name](t))
            else:
                nodes.append(f(a))
    return sum(nodes[len(xs):]) if torch_mode else sum(nodes[len(xs):])


def _torch_grad(torch, y, xs):
    """d y / d x for each x, as tensors that can be differentiated again (zeros where y
    does not depend on x, or is a constant)."""
    zero = torch.zeros((), dtype=torch.float64)
    if not y.requires_grad:
        return [zero] * len(xs)
    got = torch.autograd.grad(y, xs, create_graph=True, allow_unused=True)
    return [zero if g is None else g for g in got]


@pytest.mark.parametrize("seed", range(25))
def test_second_and_third_derivatives_match_pytorch(engine, seed):
    torch = pytest.importorskip("torch", reason="PyTorch is optional (CI installs it)")
    rng = random.Random(seed)
    steps = _random_function(rng, None)
    x0 = [rng.uniform(-1.5, 1.5) for _ in range(3)]
    V = engine.Value
    xs = [V(v) for v in x0]
    f = _evaluate(steps, xs, False)
    d1 = grad(f, xs, create_graph=True)
    d2 = grad(d1[0], xs, create_graph=True)       # the Hessian's first row
    d3 = grad(d2[1], xs)                          # d^3 f / dx0 dx1 dxi
    tx = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in x0]
    tf = _evaluate(steps, tx, True)
    t1 = _torch_grad(torch, tf, tx)
    t2 = _torch_grad(torch, t1[0], tx)
    t3 = _torch_grad(torch, t2[1], tx)
    for ours, theirs in ((d1, t1), (d2, t2), (d3, t3)):
        for o, t in zip(ours, theirs):
            want = float(t)
            assert o.data == pytest.approx(want, rel=1e-12, abs=1e-12), (seed, steps)
