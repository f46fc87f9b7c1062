"""Random graph programs, run on two engines and compared bit for bit.

A program is a list of leaf values and a list of steps; each step applies one op to
nodes made earlier (any of them, so nodes are reused) and constants (on either side).
``run`` executes it on one engine, recording every node, the first exception, and the
exception from ``backward()``. ``assert_same_run`` compares two runs: same exceptions
(type and message), and the same bits in every node's data and grad (any NaN matches
any NaN), the same ``_op`` strings and the same ``_prev`` structure.

Used by the hypothesis tests (test_parity.py) and the long fuzz run
(test_fuzz.py / ``pytest -m fuzz``). ``with_and_without_simd`` runs a check in fresh
processes on both instruction sets of the compiled loops.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from cmicrograd.function import Function

BINARY = ["+", "*", "-", "/"]
WITH_CONSTANT = ["+c", "c+", "*c", "c*", "-c", "c-", "/c", "c/"]
METHODS = ["relu", "tanh", "exp", "log", "sigmoid", "reciprocal", "heaviside"]  # Value methods: step op == name
BINARY_METHODS = ["detached_max"]                     # a.op(b), or a.op(c) for a step "op c"
UNARY = ["neg", "pow"] + METHODS
OTHER = ["sum", "custom", "wsum"]
ALL_OPS = BINARY + WITH_CONSTANT + UNARY + BINARY_METHODS + [m + " c" for m in BINARY_METHODS] + OTHER

# The steps above that make nodes of each op of the op table (cmicrograd/_ops.py):
# tests/test_ops.py fails, naming the op, when an op has no step here.
COVERS = {
    "add": ["+", "-", "+c", "c+", "-c", "c-", "sum", "wsum"],
    "mul": ["*", "/", "*c", "c*", "/c", "c/", "neg", "wsum"],
    "pow": ["pow", "/", "c/"],
    **{name: [name] for name in METHODS},
    **{name: [name, name + " c"] for name in BINARY_METHODS},
}

EXPONENTS: List[Any] = [2, 3, -1, -2, 0, 1, 0.5, -0.5, 1.5, 2.0, 3.0, -1.5, np.float64(2.0), np.int64(3), 1e-3]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 3.0, -2.5, 1e-300, 1e300, 700.0, -700.0, 1e-8]
EXTREME = [math.inf, -math.inf, math.nan]


@dataclass
class Step:
    op: str
    i: int  # index of the first operand among the nodes made so far
    j: int = 0  # second operand (binary), or how many nodes to sum
    c: Any = 0.0  # the constant operand / the exponent


@dataclass
class Program:
    leaves: List[Any]
    steps: List[Step]
    inspect_first: bool = False  # read every _prev before backward (materializes constants)
    seed_node: int = -1  # backward from this node (-1: the last)
    backward_twice: bool = False  # a second backward, accumulating into every node again


@dataclass
class Run:
    nodes: List[Any] = field(default_factory=list)
    error: Optional[Tuple[str, str, int]] = None  # (type, message, step) of the forward
    backward_error: Optional[Tuple[str, str]] = None


def apply(V: type, step: Step, nodes: Sequence[Any], engine: Any = None) -> Any:
    a = nodes[step.i % len(nodes)]
    b = nodes[step.j % len(nodes)]
    c = step.c
    op = step.op
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b
    if op == "/":
        return a / b
    if op == "+c":
        return a + c
    if op == "c+":
        return c + a
    if op == "*c":
        return a * c
    if op == "c*":
        return c * a
    if op == "-c":
        return a - c
    if op == "c-":
        return c - a
    if op == "/c":
        return a / c
    if op == "c/":
        return c / a
    if op == "neg":
        return -a
    if op == "pow":
        return a**c
    if op in METHODS:
        return getattr(a, op)()
    if op in BINARY_METHODS:
        return getattr(a, op)(b)
    if op.endswith(" c") and op[:-2] in BINARY_METHODS:
        return getattr(a, op[:-2])(c)
    if op == "sum":
        start = step.i % len(nodes)
        return sum(nodes[start : start + 1 + step.j % 4])
    if op == "wsum":  # weighted_sum: fused in the compiled engine, a chain in the reference
        n = 1 + step.j % 5
        start = step.i % len(nodes)
        ws = [nodes[(start + 2 * k) % len(nodes)] for k in range(n)]
        xs: List[Any] = [nodes[(step.j + 3 * k) % len(nodes)] for k in range(n)]
        if isinstance(c, float) and c == c and abs(c) < 10:
            xs[n // 2] = c  # a float input: an inline constant
        if step.j % 7 == 3:
            xs[0] = 2  # an int input: not fused
        bias = nodes[(step.i + step.j) % len(nodes)] if step.j % 5 != 4 else 0.5
        return engine.weighted_sum(ws, xs, bias)
    if op == "custom":  # the lecture's pattern: a node with a hand-written backward
        out = V(a.data * 2.0, (a, b), "custom")

        def _backward() -> None:
            a.grad += 2.0 * out.grad
            b.grad += out.grad

        out._backward = _backward
        return out
    raise AssertionError(op)


def run(V: type, program: Program) -> Run:
    import sys

    engine = sys.modules[V.__module__]
    result = Run(nodes=[V(x) for x in program.leaves])
    for n, step in enumerate(program.steps):
        try:
            result.nodes.append(apply(V, step, result.nodes, engine))
        except Exception as exc:  # the same exception must come from both engines
            result.error = (type(exc).__name__, str(exc), n)
            break
    if program.inspect_first:
        for node in result.nodes:
            node._prev
    root = result.nodes[program.seed_node % len(result.nodes)]
    try:
        root.backward()
        if program.backward_twice:
            root.backward()
    except Exception as exc:
        result.backward_error = (type(exc).__name__, str(exc))
    return result


def bits(x: float) -> bytes:
    return b"nan" if math.isnan(x) else struct.pack("<d", x)


def _graph(roots: Sequence[Any]) -> Tuple[List[Any], dict]:
    """Every node reachable from roots, in a deterministic discovery order."""
    order: List[Any] = []
    index: dict = {}
    stack = list(reversed(roots))
    while stack:
        v = stack.pop()
        if id(v) in index:
            continue
        index[id(v)] = len(order)
        order.append(v)
        stack.extend(reversed(v._prev))
    return order, index


def assert_same_run(got: Run, want: Run, engines: Tuple[Any, Any] = (None, None)) -> None:
    assert got.error == want.error, "forward exceptions differ"
    assert got.backward_error == want.backward_error, "backward exceptions differ"
    assert len(got.nodes) == len(want.nodes)
    g_order, g_index = _graph(got.nodes)
    w_order, w_index = _graph(want.nodes)
    assert len(g_order) == len(w_order), "graphs have different sizes"
    for n, (g, w) in enumerate(zip(g_order, w_order)):
        where = f"node {n} ({w._op!r})"
        assert bits(g.data) == bits(w.data), f"{where}: data {g.data!r} != {w.data!r}"
        assert bits(g.grad) == bits(w.grad), f"{where}: grad {g.grad!r} != {w.grad!r}"
        assert g._op == w._op, f"{where}: op {g._op!r} != {w._op!r}"
        assert type(g.data) is float and type(g.grad) is float
        assert [g_index[id(c)] for c in g._prev] == [w_index[id(c)] for c in w._prev], where
        assert g.label == w.label
    g_engine, w_engine = engines
    if g_engine is not None and w_engine is not None:
        for g_root, w_root in zip(got.nodes[-3:], want.nodes[-3:]):
            g_topo = [g_index[id(v)] for v in g_engine._topological_order(g_root)]
            w_topo = [w_index[id(v)] for v in w_engine._topological_order(w_root)]
            assert g_topo == w_topo, "topological orders differ"


def assert_replay_equals_building_anew(graph: Any, params: Sequence[Any], build: Any,
                                       backwards: int = 1) -> None:
    """A compiled graph's forward() and `backwards` backward()s give what building its
    graph anew (``build()``, from the current leaves) and backpropagating it as often
    give: the output and every parameter's grad, bit for bit (NaN payloads included).
    The parameters' grads start at 0.0 on both sides."""
    def exact(x: float) -> bytes:
        return struct.pack("<d", x)

    for p in params:
        p.grad = 0.0
    value = graph.forward()
    for _ in range(backwards):
        graph.backward()
    got = [exact(value)] + [exact(p.grad) for p in params]
    for p in params:
        p.grad = 0.0
    fresh = build()
    for _ in range(backwards):
        fresh.backward()
    assert got == [exact(fresh.data)] + [exact(p.grad) for p in params]


# ---- plain-random programs (the fuzz run; hypothesis builds its own in test_parity) --
def random_number(rng: random.Random, extreme: bool = True) -> float:
    r = rng.random()
    if r < 0.25:
        return rng.choice(SPECIAL)
    if extreme and r < 0.28:
        return rng.choice(EXTREME)
    if r < 0.4:
        return float(rng.randint(-4, 4))
    return rng.uniform(-3.0, 3.0)


def random_program(rng: random.Random, max_steps: int = 40) -> Program:
    leaves = [random_number(rng) for _ in range(rng.randint(1, 4))]
    steps = []
    chain = rng.random() < 0.2  # long chains: operate mostly on the newest node
    for n in range(rng.randint(1, max_steps)):
        op = rng.choice(ALL_OPS)
        made = len(leaves) + n
        i = made - 1 if chain and rng.random() < 0.8 else rng.randrange(made)
        j = rng.randrange(made)
        c: Any = rng.choice(EXPONENTS) if op == "pow" else random_number(rng)
        if op in WITH_CONSTANT and rng.random() < 0.2:
            c = rng.choice([2, -1, True, np.float64(1.5), np.int32(3), np.float32(0.25)])
        steps.append(Step(op, i, j, c))
    return Program(leaves, steps, inspect_first=rng.random() < 0.3,
                   seed_node=rng.choice([-1, -1, -1, rng.randrange(len(leaves) + len(steps))]),
                   backward_twice=rng.random() < 0.2)


class Cube(Function):
    """x**3 as a Function (a custom op with a Python forward and backward), for tests."""

    @staticmethod
    def forward(ctx: Any, x: float) -> float:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, grad: float) -> float:
        (x,) = ctx.saved_values
        return 3 * x**2 * grad


def with_and_without_simd(script: str) -> List[Any]:
    """What ``script`` prints as JSON, run by ``python -c`` with tests/ as argv[1], once
    with CMICROGRAD_SIMD=1 (the default loops: AVX2 where the CPU has it) and once with
    CMICROGRAD_SIMD=0 (the baseline loops), each in a fresh process."""
    import json
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    outputs = []
    for simd in ("1", "0"):
        done = subprocess.run([sys.executable, "-c", script, here],
                              env=dict(os.environ, CMICROGRAD_SIMD=simd),
                              capture_output=True, text=True, check=True)
        outputs.append(json.loads(done.stdout))
    return outputs
