"""What a Value shows in Jupyter: cmicrograd.viz.repr_svg, behind Value._repr_svg_.

A graph of at most viz.REPR_SVG_MAX_NODES Values is drawn as SVG; a bigger one, and
anything that cannot be drawn, gives None (Jupyter then shows the text repr). It never
raises, and never prints.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import sys
import time
from typing import Any

import pytest

from cmicrograd import viz
from cmicrograd.datasets import make_moons
from cmicrograd.losses import hinge_loss, l2_regularization

needs_graphviz = pytest.mark.skipif(
    importlib.util.find_spec("graphviz") is None,
    reason='the graphviz package is not installed (pip install "cmicrograd[viz]")',
)
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="the Graphviz `dot` program is not installed (apt-get install graphviz)",
)
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fakes `dot` with a shell script")


def neuron(V: Any) -> Any:
    """The lecture's neuron, o = tanh(x1*w1 + x2*w2 + b), after o.backward(): 10 Values."""
    x1, x2 = V(2.0, label="x1"), V(0.0, label="x2")
    w1, w2 = V(-3.0, label="w1"), V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    s = x1 * w1 + x2 * w2
    s.label = "x1w1+x2w2"
    o = (s + b).tanh()
    o.label = "o"
    o.backward()
    return o


def squarings(V: Any, n: int) -> Any:
    """x, x*x, (x*x)*(x*x), ...: n + 1 Values, each the one child of the next, used twice
    (a count that followed both operands would find 2**n)."""
    v = V(1.0, label="x")
    for _ in range(n):
        v = v * v
    return v


def moons_loss(engine: Any) -> Any:
    """The demo's training loss over 100 points: tens of thousands of Values."""
    if engine.nn is None:
        pytest.skip("cmicrograd.nn is on the pure engine (CMICROGRAD_PURE_PYTHON is set)")
    X, y = make_moons(100, noise=0.1, seed=42)
    random.seed(42)
    model = engine.nn.MLP(2, [16, 16, 1])
    scores = [model([engine.Value(x) for x in row]) for row in X.tolist()]
    loss = hinge_loss(scores, y) + l2_regularization(model.parameters(), 1e-4)
    loss.backward()
    return loss


@needs_graphviz
@needs_dot
def test_a_small_graph_is_drawn_as_svg(engine):
    o = neuron(engine.Value)
    svg = o._repr_svg_()
    assert svg.startswith("<?xml") and "<svg" in svg
    for text in ("x1w1+x2w2", "grad 0.5000", "data 0.7071", "tanh"):
        assert text in svg
    assert svg == viz.repr_svg(o) == viz.draw_dot(o).pipe(format="svg", encoding="utf-8")


@needs_graphviz
@needs_dot
def test_the_cap(engine):
    cap = viz.REPR_SVG_MAX_NODES
    assert cap == 250  # the README says so
    assert "<svg" in viz.repr_svg(squarings(engine.Value, cap - 1))  # cap Values: drawn
    assert viz.repr_svg(squarings(engine.Value, cap)) is None         # one more: text
    assert engine.Value(1.0)._repr_svg_() is not None


@needs_graphviz
@needs_dot
def test_the_cap_can_be_changed(engine, monkeypatch):
    o = neuron(engine.Value)  # 10 Values
    monkeypatch.setattr(viz, "REPR_SVG_MAX_NODES", 10)
    assert o._repr_svg_() is not None
    monkeypatch.setattr(viz, "REPR_SVG_MAX_NODES", 9)
    assert o._repr_svg_() is None
    monkeypatch.setattr(viz, "REPR_SVG_MAX_NODES", 0)  # never draw, not even a leaf
    assert engine.Value(1.0)._repr_svg_() is None
    for bad in ("many", None, 2.5, True):  # a bad setting is no reason to raise
        monkeypatch.setattr(viz, "REPR_SVG_MAX_NODES", bad)
        assert o._repr_svg_() is None


def test_a_training_graph_is_text_and_costs_nothing(engine):
    loss = moons_loss(engine)
    start = time.perf_counter()
    assert loss._repr_svg_() is None
    assert time.perf_counter() - start < 0.5  # draw_dot's capped picture takes ~0.3 s and 800 kB
    # counting stops at the cap: a walk of the whole chain would take ~0.1 s (python,
    # 2*10**5) to ~0.6 s (compiled, 10**6), stopping at 251 Values takes ~0.1 ms
    v = engine.Value(0.5)
    for _ in range(10**6 if engine.name == "cython" else 2 * 10**5):
        v = v.tanh()
    start = time.perf_counter()
    assert viz.repr_svg(v) is None
    assert time.perf_counter() - start < 0.05


def test_never_raises_for_what_is_not_a_value(engine):
    for thing in (1.0, None, "x", [engine.Value(1.0)], object()):
        assert viz.repr_svg(thing) is None


def test_without_the_graphviz_package(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz now fails
    assert neuron(engine.Value)._repr_svg_() is None


@needs_graphviz
def test_without_dot(engine, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` to be found
    assert neuron(engine.Value)._repr_svg_() is None
    assert capfd.readouterr() == ("", "")


@needs_graphviz
@posix_only
@pytest.mark.parametrize("script, expected", [
    ("echo 'Error: something dot cannot do' >&2; exit 1", None),     # dot fails
    ("cat > /dev/null; echo 'Warning: odd' >&2; echo '<svg>ok</svg>'", "<svg>ok</svg>\n"),
])
def test_what_dot_says_stays_out_of_the_notebook(engine, tmp_path, monkeypatch, capfd, script, expected):
    fake = tmp_path / "dot"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert neuron(engine.Value)._repr_svg_() == expected
    assert capfd.readouterr() == ("", "")


@needs_graphviz
@needs_dot
def test_what_jupyter_displays(engine):
    """IPython's display formatter (what a notebook runs on a cell's last value): the
    picture and the text for a small graph, the text only for a big one; draw_dot's
    Digraph displays as SVG."""
    formatters = pytest.importorskip("IPython.core.formatters", reason="IPython is not installed")
    show = formatters.DisplayFormatter().format
    o = neuron(engine.Value)
    data, _ = show(o)
    assert sorted(data) == ["image/svg+xml", "text/plain"]
    assert data["text/plain"] == repr(o) and "x1w1+x2w2" in data["image/svg+xml"]
    data, _ = show(squarings(engine.Value, viz.REPR_SVG_MAX_NODES))
    assert sorted(data) == ["text/plain"]
    data, _ = show(viz.draw_dot(o))
    assert "image/svg+xml" in data and "x1w1+x2w2" in data["image/svg+xml"]
