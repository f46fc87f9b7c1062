"""cmicrograd.viz: the lecture's draw_dot on both engines, capped for big graphs."""

from __future__ import annotations

import random
import re
import shutil
import sys
import time
from typing import Any, Dict, List, Tuple

import pytest

from cmicrograd import viz
from cmicrograd.reference.engine import Value as RefValue


@pytest.fixture
def graphviz() -> Any:
    """The graphviz package; tests that build a Digraph skip without it."""
    return pytest.importorskip(
        "graphviz", reason='the graphviz package is not installed (pip install "cmicrograd[viz]")'
    )


uses_graphviz = pytest.mark.usefixtures("graphviz")
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="the Graphviz `dot` program is not installed (apt-get install graphviz)",
)

_NODE = re.compile(r"^\t(\S+) \[(.*)\]$")
_EDGE = re.compile(r"^\t(\S+) -> (\S+)(?: \[.*\])?$")
_LABEL = re.compile(r'label=(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def parse(dot: Any) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
    """({node name: label}, [(tail, head)]) of a Digraph built by draw_dot."""
    nodes: Dict[str, str] = {}
    edges: List[Tuple[str, str]] = []
    for line in dot.body:
        line = line.rstrip("\n")
        edge = _EDGE.match(line)
        if edge:
            edges.append((edge.group(1), edge.group(2)))
            continue
        node = _NODE.match(line)
        assert node, f"unexpected DOT line {line!r}"
        label = _LABEL.search(node.group(2))
        nodes[node.group(1)] = label.group(1) if label.group(1) is not None else label.group(2)
    return nodes, edges


def kinds(nodes: Dict[str, str]) -> Dict[str, List[str]]:
    """Node labels by kind: Values ('v'), op nodes ('op'), placeholders ('more')."""
    out: Dict[str, List[str]] = {"v": [], "op": [], "more": []}
    for name, label in nodes.items():
        out[re.match(r"[a-z]+", name).group()].append(label)
    return out


def neuron(V: Any) -> Any:
    """The lecture's neuron, o = tanh(x1*w1 + x2*w2 + b), after o.backward()."""
    x1, x2 = V(2.0, label="x1"), V(0.0, label="x2")
    w1, w2 = V(-3.0, label="w1"), V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    x1w1 = x1 * w1
    x1w1.label = "x1*w1"
    x2w2 = x2 * w2
    x2w2.label = "x2*w2"
    s = x1w1 + x2w2
    s.label = "x1w1+x2w2"
    n = s + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    o.backward()
    return o


def chain(V: Any, length: int) -> Any:
    v = V(0.5)
    for _ in range(length):
        v = v.tanh()
    return v


def more_counts(nodes: Dict[str, str]) -> List[int]:
    return sorted(int(re.search(r"(\d+) more node", label).group(1)) for label in kinds(nodes)["more"])


def test_neuron_graph(engine, graphviz):
    dot = viz.draw_dot(neuron(engine.Value))
    assert isinstance(dot, graphviz.Digraph)
    nodes, edges = parse(dot)
    by_kind = kinds(nodes)
    assert len(by_kind["v"]) == 10 and sorted(by_kind["op"]) == ["*", "*", "+", "+", "tanh"]
    assert by_kind["more"] == []
    # 5 op -> value edges, and 9 child -> op edges (two per binary op, one for tanh)
    assert len(edges) == 14 and len(set(edges)) == 14
    assert all(nodes[tail] in ("*", "+", "tanh") for tail, head in edges if head.startswith("v"))
    labels = set(by_kind["v"])
    for expected in ("{ o | data 0.7071 | grad 1.0000 }", "{ x1 | data 2.0000 | grad -1.5000 }",
                     "{ w1 | data -3.0000 | grad 1.0000 }", "{ x2 | data 0.0000 | grad 0.5000 }",
                     "{ w2 | data 1.0000 | grad 0.0000 }", "{ b | data 6.8814 | grad 0.5000 }",
                     "{ x1w1+x2w2 | data -6.0000 | grad 0.5000 }", "{ x1*w1 | data -6.0000 | grad 0.5000 }"):
        assert expected in labels
    assert 'rankdir=LR' in dot.source and dot.format == "svg"


@uses_graphviz
def test_op_names_constants_and_unlabelled_nodes(engine):
    V = engine.Value
    a = V(3.0, label="a")
    root = (a**2 + a.relu() * 2).exp()  # the constant 2 is a leaf of micrograd's graph
    nodes, edges = parse(viz.draw_dot(root))
    assert sorted(kinds(nodes)["op"]) == ["*", "**2", "+", "ReLU", "exp"]
    assert "{ data 2.0000 | grad 0.0000 }" in kinds(nodes)["v"]  # no empty label field
    assert len(kinds(nodes)["v"]) == 7  # a, a**2, relu, 2, *, +, exp
    assert sum(1 for tail, head in edges if nodes[tail].startswith("{ a |")) == 2


@uses_graphviz
def test_same_dot_source_on_both_engines(both):
    compiled, reference = both
    for make in (neuron, lambda V: (V(2.0) - V(3.0) / 4) ** -1):
        assert viz.draw_dot(make(compiled.Value)).source == viz.draw_dot(make(reference.Value)).source


@uses_graphviz
def test_custom_nodes(engine):
    V = engine.Value
    a, b = V(1.0, label="a"), V(2.0, label="b")
    no_op = V(3.0, (a, b), label="c")  # children but no op: edges go straight to it
    op_only = V(4.0, (), "in", label="d")  # an op but no children
    root = no_op * op_only
    nodes, edges = parse(viz.draw_dot(root, rankdir="TB"))
    name = {label.split(" |")[0]: n for n, label in nodes.items() if n.startswith("v")}
    assert (name["a"], name["c"]) in edges and (name["b"], name["c"]) in edges
    assert sorted(kinds(nodes)["op"]) == ["*", "in"]
    assert nodes[name["d"]] == "d | data 4.0000 | grad 0.0000"  # TB: no braces


@uses_graphviz
def test_cap_on_a_small_graph(engine):
    # breadth-first from o: o, n, x1w1+x2w2 are kept; b hangs off n, the rest off the sum
    nodes, edges = parse(viz.draw_dot(neuron(engine.Value), max_nodes=3))
    by_kind = kinds(nodes)
    assert sorted(label.split(" |")[0] for label in by_kind["v"]) == ["{ n", "{ o", "{ x1w1+x2w2"]
    assert sorted(by_kind["more"]) == ["… 1 more node", "… 6 more nodes"]
    for name in nodes:
        if name.startswith("more"):
            assert [nodes[head] for tail, head in edges if tail == name] == ["+"]


@uses_graphviz
def test_cap_counts_add_up_on_a_shared_graph(engine):
    if engine.nn is None:
        pytest.skip("cmicrograd.nn is on the pure engine (CMICROGRAD_PURE_PYTHON is set)")
    random.seed(1)
    model = engine.nn.MLP(3, [4, 4, 1])
    V = engine.Value
    loss = sum((model([V(x), V(-x), V(2 * x)]) - 1) ** 2 for x in (0.5, -1.0, 2.0))
    loss.backward()
    total = len(engine.engine._topological_order(loss))
    for cap in (1, 2, 10, 50, total - 1):
        nodes, _ = parse(viz.draw_dot(loss, max_nodes=cap))
        assert len(kinds(nodes)["v"]) == cap
        assert cap + sum(more_counts(nodes)) == total
    nodes, _ = parse(viz.draw_dot(loss, max_nodes=None))
    assert len(kinds(nodes)["v"]) == total and kinds(nodes)["more"] == []


@uses_graphviz
def test_cap_on_a_long_chain_is_fast(engine):
    root = chain(engine.Value, 10**5)
    start = time.perf_counter()
    nodes, edges = parse(viz.draw_dot(root))
    assert time.perf_counter() - start < 10
    assert len(kinds(nodes)["v"]) == 500
    assert kinds(nodes)["more"] == ["… 99501 more nodes"]
    assert ("more499", "op499") in edges


@uses_graphviz
@pytest.mark.slow
def test_no_recursion_on_a_million_deep_chain(both):
    compiled, _ = both
    root = chain(compiled.Value, 10**6)  # a recursive walk stops at ~1,000 deep
    nodes, _ = parse(viz.draw_dot(root, max_nodes=20))
    assert kinds(nodes)["more"] == ["… 999981 more nodes"]


@uses_graphviz
def test_labels_are_escaped(engine):
    V = engine.Value
    v = V(1.0, label='a|b {c} <d> "e" \\f')
    w = v ** 2
    w.label = "two\nlines"
    src = viz.draw_dot(w).source
    assert r'a\|b \{c\} \<d\> \"e\" \\f | data 1.0000' in src
    assert r"two\nlines | data" in src


@uses_graphviz
@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<svg"), (".png", b"\x89PNG\r\n\x1a\n")])
def test_render(engine, tmp_path, suffix, magic):
    root = neuron(engine.Value)
    root.label = 'o {"weird"|<label>}'  # must not break the record syntax
    path = viz.render_dot(root, tmp_path / f"graph{suffix}")
    data = path.read_bytes()
    assert magic in data[:400]
    if suffix == ".svg":
        assert b"x1w1+x2w2" in data and b"grad 0.5000" in data and b"tanh" in data
    assert list(tmp_path.iterdir()) == [path]  # no DOT source left beside it


@uses_graphviz
@needs_dot
def test_render_capped_chain(tmp_path):
    path = viz.render_dot(chain(RefValue, 2000), tmp_path / "chain.svg", max_nodes=50)
    assert "1951 more nodes" in path.read_text(encoding="utf-8")


@uses_graphviz
def test_render_without_dot(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` to be found
    root = neuron(engine.Value)
    assert viz.draw_dot(root).source  # building the graph needs no `dot`
    with pytest.raises(RuntimeError, match=r"Graphviz `dot` program.*apt-get install graphviz"):
        viz.render_dot(root, tmp_path / "graph.png")
    assert not (tmp_path / "graph.png").exists()


def test_without_the_graphviz_package(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz now fails
    with pytest.raises(ImportError, match=re.escape('pip install "cmicrograd[viz]"')):
        viz.draw_dot(engine.Value(1.0))
    with pytest.raises(ImportError, match=re.escape('pip install "cmicrograd[viz]"')):
        viz.render_dot(engine.Value(1.0), "unused.png")


def test_bad_input():
    bad: List[Any] = [1.0, None, [RefValue(1.0)], "x"]
    try:
        from micrograd.engine import Value as MicrogradValue
        bad.append(MicrogradValue(1.0))
    except ImportError:
        pass
    for root in bad:
        with pytest.raises(TypeError, match="needs a cmicrograd Value"):
            viz.draw_dot(root)
        with pytest.raises(TypeError, match="needs a cmicrograd Value"):
            viz.render_dot(root, "unused.svg")
    v = RefValue(1.0)
    with pytest.raises(ValueError, match="rankdir"):
        viz.draw_dot(v, rankdir="XY")
    for cap in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_nodes"):
            viz.draw_dot(v, max_nodes=cap)
    with pytest.raises(ValueError, match="suffix"):
        viz.render_dot(v, "no_suffix")
