"""A Value takes the user's own attributes, as micrograd's plain class does: optimizer
state on parameters (``p.m = 0.0``), a colour for drawing (``setattr(n, '_vis_color',
c)``). Both engines keep, return and delete them, copy them through pickle and deepcopy,
and ignore them everywhere else; a Value that has none costs nothing more."""

from __future__ import annotations

import copy
import gc
import pickle

import pytest

import cmicrograd
from chunks import values_held


def test_set_get_delete(engine):
    v = engine.Value(2.0, label="w")
    v.m, v.v = 0.0, 1.5
    setattr(v, "_vis_color", "red")
    assert (v.m, v.v, getattr(v, "_vis_color"), v.label) == (0.0, 1.5, "red", "w")
    assert hasattr(v, "_vis_color") and not hasattr(v, "missing")
    assert vars(v) == {"m": 0.0, "v": 1.5, "_vis_color": "red"}
    del v.m
    assert not hasattr(v, "m")
    with pytest.raises(AttributeError, match="missing"):
        v.missing
    with pytest.raises(AttributeError, match="missing"):
        del v.missing
    v.m = [1, 2]
    v.m.append(3)
    assert v.m == [1, 2, 3]


def test_attributes_leave_the_value_alone(engine):
    v = engine.Value(2.0)
    v.data_copy = v.data
    v.grad_hint = "x"
    v.data, v.grad = 3, 4
    assert (v.data, v.grad, type(v.data), v.data_copy) == (3.0, 4.0, float, 2.0)
    y = v * v
    y.backward()
    assert v.grad == 4.0 + 6.0 and y._prev == (v,)
    with pytest.raises(TypeError):
        v.data = "three"          # the Value's own attributes keep their checks


def test_every_node_takes_attributes_and_the_graph_is_unchanged(engine):
    V = engine.Value
    a, b = V(1.5), V(-2.0)
    out = (a * b + 1.0).tanh()
    for node in (out, *out._prev):
        node.note = "seen"
    out.backward()
    fresh_a, fresh_b = V(1.5), V(-2.0)
    fresh = (fresh_a * fresh_b + 1.0).tanh()
    fresh.backward()
    assert (a.grad, b.grad, out.data) == (fresh_a.grad, fresh_b.grad, fresh.data)
    assert out.note == "seen"


def test_pickle_and_deepcopy_keep_attributes(engine):
    V = engine.Value
    p = V(0.5, label="p")
    p.m, p.v, p._vis_color = 0.25, 0.125, (1, 0, 0)
    loss = (p * 3.0 + 1.0) ** 2
    loss.tag = "loss"
    for copy_ in (pickle.loads(pickle.dumps(loss)), copy.deepcopy(loss)):
        assert copy_.tag == "loss"
        leaf = copy_._prev[0]._prev[0]._prev[0]
        assert (leaf.label, leaf.m, leaf.v, leaf._vis_color) == ("p", 0.25, 0.125, (1, 0, 0))
    leaf_copy = copy.deepcopy(p)
    assert vars(leaf_copy) == vars(p) and leaf_copy is not p
    assert pickle.loads(pickle.dumps(V(1.0))).__dict__ == {}


def test_a_compiled_graph_whose_nodes_carry_attributes(engine):
    """Parameters with optimizer state on them, an intermediate with a colour: the
    replay equals building the graph anew at every step, and the attributes stay."""
    V = engine.Value
    params = [V(0.5), V(-1.0)]
    for p in params:
        p.m = 0.0
    x = V(2.0)
    h = (params[0] * x + params[1]).relu()
    h.color = "blue"
    step = cmicrograd.compile(h * h)
    for k in range(4):
        x.data = 1.0 + k
        for p in params:
            p.grad = 0.0
        value = step.forward()
        step.backward()
        fresh = [V(p.data) for p in params]
        fresh_h = (fresh[0] * V(x.data) + fresh[1]).relu()
        fresh_loss = fresh_h * fresh_h
        fresh_loss.backward()
        assert value == fresh_loss.data
        assert [p.grad for p in params] == [p.grad for p in fresh]
        for p in params:  # a momentum update keeping its state on the parameters
            p.m = 0.9 * p.m + 0.1 * p.grad
            p.data -= 0.01 * p.m
    assert h.color == "blue" and all(p.m != 0.0 for p in params)
    assert h.data * h.data == value   # a node Python holds shows the replay's numbers


def test_a_cycle_through_an_attribute_is_collected(engine):
    before = values_held(engine.name)
    v = engine.Value(1.0)
    v.me = v
    w = v * 2.0
    w.back = [w, v]
    del v, w
    assert values_held(engine.name) == before


def test_values_without_attributes_stay_small(both):
    """The attribute dict lives in the node's record slot, NULL until first used."""
    compiled, _ = both
    assert compiled.engine._sizeof_node() + 16 <= 96
