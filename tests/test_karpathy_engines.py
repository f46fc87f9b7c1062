"""Programs written for Karpathy's newer single-file engines reproduce bit for bit.

Those engines (a GPT trained with scalar Values, for one) give each op its local
derivatives and let ``backward()`` chain them: ``child.grad += local_grad * v.grad``,
with ``(1/x)`` for log, ``exp(x)`` for exp, ``float(x > 0)`` for relu and
``other * x**(other - 1)`` for pow; the lecture's tanh uses ``(1 - t**2) * grad``. Both
engines do exactly these float operations, so a graph built with them gives the same
data and grads, bit for bit, as it does with such an engine. (Their tanh forward is
exp-based and overflows for large inputs; ours is ``math.tanh``, which saturates: only
the backward is compared there.)
"""

from __future__ import annotations

import math
import random

import pytest

import programs as P


class LocalGradValue:
    """A scalar Value in the style of those engines: children and local grads per node,
    ``backward`` by a recursive topological sort, grads chained by multiplication."""

    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, LocalGradValue) else LocalGradValue(other)
        return LocalGradValue(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, LocalGradValue) else LocalGradValue(other)
        return LocalGradValue(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return LocalGradValue(self.data**other, (self,), (other * self.data ** (other - 1),))

    def log(self):
        return LocalGradValue(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return LocalGradValue(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return LocalGradValue(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return other * self**-1

    def backward(self):
        topo, visited = [], set()

        def build(v):
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build(child)
                topo.append(v)

        build(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local in zip(v._children, v._local_grads):
                child.grad += local * v.grad


OPS = ["+", "*", "-", "/", "+c", "c-", "*c", "c/", "pow", "log", "exp", "relu", "neg"]


def _run(V, seed, n_steps=25):
    rng = random.Random(seed)
    nodes = [V(rng.uniform(0.5, 2.0)) for _ in range(3)]
    for _ in range(n_steps):
        op = rng.choice(OPS)
        i, j = rng.randrange(len(nodes)), rng.randrange(len(nodes))
        a, b = nodes[i], nodes[j]
        c = rng.choice([0.5, 1.5, 3.0, 2.0])
        if op in ("log", "pow", "/", "c/") or (op == "exp" and abs(a.data) > 50):
            # keep to where the ops are defined and finite: positive, moderate operands
            if not 0.01 < a.data < 1e6 or not 0.01 < b.data < 1e6:
                continue
        exponent = random.Random(rng.random()).choice([2, 3, -1, 0.5])
        step = P.Step(op, i, j, exponent if op == "pow" else c)
        nodes.append(P.apply(V, step, nodes))   # the parity tests' ops
    root = nodes[-1]
    root.backward()
    return [(P.bits(float(v.data)), P.bits(float(v.grad))) for v in nodes]


@pytest.mark.parametrize("seed", range(60))
def test_random_graphs_give_the_bits_of_a_local_grad_engine(engine, seed):
    assert _run(engine.Value, seed) == _run(LocalGradValue, seed)


def test_log_backward_is_one_over_x_times_grad(engine):
    """(1/x) * g and g / x differ in the last bit for these: we give the first."""
    x, g = 7.0, 0.3
    assert (1 / x) * g != g / x
    v = engine.Value(x)
    y = v.log() * g
    y.backward()
    assert v.grad == (1 / x) * g


def test_tanh_backward_is_one_minus_t_squared_times_grad(engine):
    """The lecture's (1 - t**2) * grad, t**2 by pow as Python computes it."""
    for x in (0.3, -1.7, 0.9, 2.2, 20.0):
        v = engine.Value(x)
        t = math.tanh(x)
        y = v.tanh() * 0.9
        y.backward()
        assert P.bits(v.grad) == P.bits((1 - t**2) * 0.9)
