"""The Value API, run against both engines (the ``engine`` fixture)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest


def test_data_is_always_float(engine):
    V = engine.Value
    for x in (2, True, 2.5, np.float64(2.5), np.int64(3), np.float32(0.5), np.bool_(True)):
        v = V(x)
        assert type(v.data) is float and v.data == float(x)
        assert type(v.grad) is float and v.grad == 0.0
    v = V(1)
    v.data = 7
    v.grad = np.int32(3)
    assert (type(v.data), v.data, type(v.grad), v.grad) == (float, 7.0, float, 3.0)


def test_repr_and_label(engine):
    V = engine.Value
    assert repr(V(2)) == "Value(data=2.0, grad=0.0)"
    v = V(-1.5, label="x")
    assert v.label == "x"
    v.label = "y"
    assert v.label == "y"
    assert V(1).label == ""
    w = v + 1
    w.label = "w"
    assert (w.label, w._op) == ("w", "+")


def test_ops_and_prev(engine):
    V = engine.Value
    a, b = V(3.0), V(-2.0)
    assert (a + b)._op == "+" and (a + b)._prev == (a, b)
    assert (a * b)._op == "*"
    s = a + a
    assert s._prev == (a,)
    c = a + 1
    (child, const) = c._prev
    assert child is a and const.data == 1.0 and const._prev == ()
    assert (a**2)._op == "**2" and (a**2.5)._op == "**2.5" and (a**-1)._op == "**-1"
    assert (a**np.float64(2.0))._op == "**2.0"
    assert a.relu()._op == "ReLU"
    assert [f(a)._op for f in (V.tanh, V.exp, V.log, V.sigmoid)] == ["tanh", "exp", "log", "sigmoid"]
    assert V(1.0)._op == "" and V(1.0)._prev == ()


def test_composites_build_micrograds_graph(engine):
    V = engine.Value
    a, b = V(3.0), V(-2.0)
    neg = -a
    assert neg._op == "*" and neg._prev[0] is a and neg._prev[1].data == -1.0
    sub = a - b
    assert sub._op == "+" and sub._prev[0] is a and sub._prev[1]._op == "*"
    assert sub._prev[1]._prev[0] is b
    rsub = 2 - a  # 2 + (-a): the negation first, the constant on the right
    assert rsub._op == "+" and rsub._prev[0]._op == "*" and rsub._prev[1].data == 2.0
    div = a / b  # a * b**-1
    assert div._op == "*" and div._prev[1]._op == "**-1" and div._prev[1]._prev[0] is b
    rdiv = 3 / a  # a**-1 * 3
    assert rdiv._op == "*" and rdiv._prev[0]._op == "**-1" and rdiv._prev[1].data == 3.0
    divn = a / 4  # a * 4**-1
    assert divn._prev[1].data == 0.25


def test_numbers_on_either_side(engine):
    V = engine.Value
    v = V(3.0)
    for result in (2 * v, v * 2, 1 - v, v - 1, 3 / v, v / 3, 1 + v, v + 1,
                   np.float64(2) * v, v * np.float64(2), np.int64(2) + v, np.float32(2) - v,
                   np.float64(6) / v, True * v):
        assert type(result) is V
    assert (np.float64(2) * v).data == 6.0
    assert sum([V(1.0), V(2.0), V(3.5)]).data == 6.5
    assert (2**0.5 * v).data == 2**0.5 * 3.0


def test_identity_hash_and_eq(engine):
    V = engine.Value
    a, b = V(1.0), V(1.0)
    assert a != b and a == a
    assert len({a, b, a}) == 2
    assert hash(a) != hash(b)


def test_backward_micrograd_semantics(engine):
    V = engine.Value
    a, b = V(2.0), V(-3.0)
    c = a * b + a
    c.backward()
    assert (c.grad, a.grad, b.grad) == (1.0, -2.0, 2.0)
    # A second call accumulates again, as micrograd does: into the leaves *and* into
    # the intermediate node a*b (whose grad is now 2), so a.grad is not simply doubled.
    c.backward()
    assert (c.grad, a.grad, b.grad) == (1.0, -7.0, 6.0)


def test_shared_nodes_accumulate(engine):
    V = engine.Value
    a = V(3.0)
    y = a * a  # one child, two contributions
    y.backward()
    assert a.grad == 6.0
    a.grad = 0
    z = a + a
    z.backward()
    assert a.grad == 2.0


def test_local_derivatives(engine):
    V = engine.Value
    cases = [
        (lambda x: x.relu(), 2.0, 2.0, 1.0),
        (lambda x: x.relu(), -2.0, 0.0, 0.0),
        (lambda x: x.relu(), 0.0, 0.0, 0.0),  # relu's gradient at 0 is 0
        (lambda x: x.tanh(), 0.5, math.tanh(0.5), 1 - math.tanh(0.5) ** 2),
        (lambda x: x.exp(), 0.5, math.exp(0.5), math.exp(0.5)),
        (lambda x: x.log(), 0.5, math.log(0.5), 2.0),
        (lambda x: x.sigmoid(), 0.0, 0.5, 0.25),
        (lambda x: x**3, 2.0, 8.0, 12.0),
        (lambda x: x**0.5, 4.0, 2.0, 0.25),
    ]
    for f, x0, value, slope in cases:
        x = V(x0)
        y = f(x)
        y.backward()
        assert y.data == pytest.approx(value, rel=1e-15, abs=0)
        assert x.grad == pytest.approx(slope, rel=1e-15, abs=0)


def test_tanh_and_sigmoid_saturate(engine):
    V = engine.Value
    assert V(1000.0).tanh().data == 1.0 and V(-1000.0).tanh().data == -1.0
    assert V(1000.0).sigmoid().data == 1.0 and V(-1000.0).sigmoid().data == 0.0
    y = V(-1000.0).tanh()
    y.backward()
    assert y._prev[0].grad == 0.0


def test_backward_underscore_callable(engine):
    V = engine.Value
    a, b = V(2.0), V(5.0)
    c = a * b
    c.grad = 1.0
    c._backward()  # micrograd's per-node step
    assert (a.grad, b.grad) == (5.0, 2.0)
    V(1.0)._backward()  # a leaf's step does nothing


def test_custom_backward_like_the_lecture(engine):
    V = engine.Value
    x = V(0.5)
    t = math.tanh(x.data)
    out = V(t, (x,), "my_tanh")
    assert out._prev == (x,) and out._op == "my_tanh"

    def _backward():
        x.grad += (1 - t**2) * out.grad

    out._backward = _backward
    y = out * 2
    y.backward()
    assert x.grad == 2 * (1 - t**2)
    with pytest.raises(TypeError, match="callable"):
        out._backward = 3


def test_user_children_have_no_backward(engine):
    V = engine.Value
    a, b = V(1.0), V(2.0)
    c = V(3.0, (a, b, a), "+")
    assert c._prev == (a, b)
    c.backward()
    assert (c.grad, a.grad, b.grad) == (1.0, 0.0, 0.0)


def test_deep_chain_backward_and_free(engine):
    V = engine.Value
    x = V(1.0)
    y = x
    for _ in range(1_000_000 if engine.name == "cython" else 200_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0
    del y  # freeing must not recurse
    assert sys.getrecursionlimit() < 200_000


@pytest.mark.slow
def test_million_node_chain_both_engines(engine):
    V = engine.Value
    x = V(0.5)
    y = x
    for _ in range(1_000_000):
        y = y + 1.0
    y.backward()
    assert x.grad == 1.0 and y.data == 1_000_000.5
    del y


def test_micrograd_private_attributes_are_read_only(engine):
    V = engine.Value
    v = V(1.0)
    with pytest.raises(AttributeError):
        v._prev = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        v._op = "x"  # type: ignore[misc]
