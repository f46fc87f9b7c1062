"""Graphs round-trip through pickle and copy in both engines, at any depth."""

from __future__ import annotations

import copy
import json
import pathlib
import pickle

import pytest

import programs as P


def _roundtrips(obj):
    yield pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    yield pickle.loads(pickle.dumps(obj, protocol=2))
    yield copy.deepcopy(obj)


def test_leaf_roundtrip(engine):
    v = engine.Value(2.5, label="w")
    v.grad = -1.0
    for w in _roundtrips(v):
        assert type(w) is engine.Value and w is not v
        assert (w.data, w.grad, w.label, w._op, w._prev) == (2.5, -1.0, "w", "", ())


def test_graph_roundtrip_keeps_structure_and_backprops(engine):
    V = engine.Value
    a, b = V(1.5, label="a"), V(-2.0, label="b")
    out = ((a * b + a) ** 2 - 3 / b).tanh() + a.exp() + b.sigmoid() * 2 + (a * a).log()
    out.label = "out"
    for copy_ in _roundtrips(out):
        assert copy_.data == out.data and copy_.label == "out" and copy_._op == out._op
        want = [(v.data, v._op, v.label, len(v._prev)) for v in engine.engine._topological_order(out)]
        got = [(v.data, v._op, v.label, len(v._prev)) for v in engine.engine._topological_order(copy_)]
        assert got == want
        copy_.backward()
    out.backward()
    fresh = pickle.loads(pickle.dumps(out))
    fresh_leaves = {v.label: v for v in engine.engine._topological_order(fresh) if v.label in "ab"}
    assert fresh_leaves["a"].grad == a.grad and fresh_leaves["b"].grad == b.grad


def test_unpickled_graph_backprops_like_the_original(engine):
    """No private visit marks carried over: backward reaches every node."""
    V = engine.Value
    x = V(0.5)
    y = x * x + x
    z = pickle.loads(pickle.dumps(y))
    z.backward()
    leaves = [v for v in engine.engine._topological_order(z) if not v._prev and v.data == 0.5]
    assert leaves and leaves[0].grad == 2.0


def test_shared_leaves_keep_identity_within_one_pickle(engine):
    V = engine.Value
    w = V(3.0)
    loss = w * w + 1
    params, loss2 = pickle.loads(pickle.dumps(([w], loss)))
    assert loss2._prev[0]._prev[0] is params[0]
    loss2.backward()
    assert params[0].grad == 6.0


def test_deep_graph_pickles_without_recursion(engine):
    V = engine.Value
    x = V(1.0)
    y = x
    for _ in range(1_000_000 if engine.name == "cython" else 100_000):
        y = y * 1.0
    data = pickle.dumps(y, protocol=pickle.HIGHEST_PROTOCOL)
    z = pickle.loads(data)
    z.backward()
    assert z.data == 1.0
    w = copy.deepcopy(y)
    assert w.data == 1.0
    del y, z, w


def test_custom_backward_with_module_function_roundtrips(engine):
    V = engine.Value
    a = V(2.0)
    out = V(4.0, (a,), "twice")
    out._backward = _module_level_backward
    out2 = pickle.loads(pickle.dumps(out))
    assert out2._op == "twice" and out2._backward is _module_level_backward


def _module_level_backward() -> None:
    pass


def test_copy_copy_gives_an_independent_node(engine):
    V = engine.Value
    a = V(2.0)
    b = a * 3
    c = copy.copy(b)
    assert c is not b and c.data == 6.0 and c._prev[0] is a  # leaves are shared


def test_random_graphs_roundtrip_in_both_engines(both):
    import random

    rng = random.Random(7)
    for _ in range(100):
        program = P.random_program(rng)
        if any(step.op == "custom" for step in program.steps):
            continue  # their backward is a closure, which pickle cannot save
        for ns in both:
            r = P.run(ns.Value, program)
            root = r.nodes[-1]
            copy_ = pickle.loads(pickle.dumps(root))
            P.assert_same_run(
                P.Run(nodes=[copy_]), P.Run(nodes=[root]), (ns.engine, ns.engine)
            )


@pytest.mark.parametrize("leaf", [1.5, "x", None, object()])
def test_crafted_graph_pickle_is_refused_not_crashed(engine, leaf):
    """A pickle whose leaf is not a Value: a clear ValueError, never a crash."""
    V = engine.Value
    a = V(2.0)
    out = a * a + 1.0
    rebuild, args = out.__reduce__()
    version, n, nums, meta, kids, leaves, extras = args
    assert leaves, "the graph has a leaf"
    bad = [(leaves[0][0], leaf)] + list(leaves[1:])
    with pytest.raises(ValueError, match="leaves must be distinct Values"):
        rebuild(version, n, nums, meta, kids, bad, extras)
    with pytest.raises(ValueError, match="leaves must be distinct Values"):
        rebuild(version, n, nums, meta, kids, [(n + 5, V(1.0))], extras)


# ---- files written by earlier versions still load ---------------------------------------
FORMAT1 = pathlib.Path(__file__).resolve().parent / "data" / "format1"


def _summary(engine_module, root):
    order = engine_module._topological_order(root)
    index = {id(v): i for i, v in enumerate(order)}
    return [[v._op, v.data.hex(), v.grad.hex(), v.label, [index[id(c)] for c in v._prev]]
            for v in order]


def test_pickles_of_pickle_format_1_still_load(engine):
    """tests/data/format1 was written by the code of commit 2ac2c04 (every op, labels,
    inline constants, a fused sum, a custom node, a 200-step chain, after backward)."""
    expected = json.loads((FORMAT1 / "expected.json").read_text())
    name = "compiled" if engine.name == "cython" else "reference"
    root = pickle.loads((FORMAT1 / f"graph_{name}.pkl").read_bytes())
    assert type(root) is engine.Value and root.label == "root"
    assert _summary(engine.engine, root) == expected[name]


def test_models_saved_by_version_1_still_load(engine):
    expected = json.loads((FORMAT1 / "expected.json").read_text())
    model = engine.nn.MLP.load(FORMAT1 / "model.json")
    assert model.nouts == [4, 2]
    assert [p.data.hex() for p in model.parameters()] == expected["model_parameters"]
