"""Draw a computation graph with Graphviz, as in Karpathy's micrograd lecture.

Needs the ``graphviz`` Python package (``pip install "cmicrograd[viz]"``); building the
graph is pure Python, and only rendering to a file (``render_dot``, or the returned
``Digraph``'s own ``render``/``pipe``) needs Graphviz's ``dot`` program.

    from cmicrograd.viz import draw_dot, render_dot
    draw_dot(loss)                     # a graphviz.Digraph (shows itself in Jupyter)
    render_dot(loss, "graph.png")      # or .svg, .pdf: the format follows the suffix

Each Value is a record ``label | data | grad``; a node made by an op gets a small op
node ('+', '*', 'tanh', '**2', ...) between it and its children.

Big graphs: only the ``max_nodes`` Values closest to the root (a breadth-first walk
from it) are drawn. Whatever hangs below them is collapsed into dashed boxes, one per
drawn node whose children were cut, saying how many Values it stands for ("… 1234 more
nodes"); the boxes' counts and the drawn Values add up to the whole graph (a Value
reachable through several boxes is counted in the first the walk reached). Edges from
the hidden part back up to drawn Values are left out. ``max_nodes=None`` draws every
node: ``dot`` lays out 500 nodes of an MLP's graph in about a second but 2,000 in about
a minute, so raise the cap with care.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Set, Tuple, Union

from ._engines import engine_of

if TYPE_CHECKING:  # pragma: no cover
    import graphviz  # type: ignore[import-untyped]

VIZ_HINT = 'drawing graphs needs the graphviz package: pip install "cmicrograd[viz]"'
DOT_HINT = (
    "rendering needs the Graphviz `dot` program, which is not installed (or not on "
    "PATH): apt-get install graphviz, brew install graphviz, choco install graphviz, "
    "or see https://graphviz.org/download/"
)
RANKDIRS = ("LR", "TB", "RL", "BT")

# Characters with a meaning in a record label: a backslash makes them literal.
_RECORD_SPECIAL = re.compile(r'([\\{}|<>"])')


# repr_svg draws graphs of at most this many Values (the lecture's neuron has 10, its
# MLP(3, [4, 4, 1]) on one input 126); a bigger one shows as text. Module-level, so that
# a notebook can change it: cmicrograd.viz.REPR_SVG_MAX_NODES = 500 (0: never draw).
REPR_SVG_MAX_NODES = 250


def repr_svg(root: Any) -> Optional[str]:
    """What a Value shows in Jupyter (its ``_repr_svg_``): its graph as SVG, or None, and
    Jupyter then shows the text repr, ``Value(data=..., grad=...)``.

    Only graphs of at most ``REPR_SVG_MAX_NODES`` Values (250) are drawn, and then all
    of them: an MLP's graph of 250 Values takes ``dot`` about a tenth of a second and
    makes about 350 kB of SVG. A training loss has tens of thousands of Values; even the
    500 nearest its root, what ``draw_dot`` draws, take a second and 800 kB, which
    Jupyter would also store in the notebook each time ``loss`` ends a cell. Counting
    stops at the cap, so a big graph costs no more than a small one. ``draw_dot(value)``
    draws a bigger graph on request (its result displays as SVG in Jupyter too).

    Never raises: without the graphviz package or the ``dot`` program, for a graph
    ``dot`` cannot draw, or for anything that is not a Value, the answer is None (and
    ``dot`` writes nothing to the notebook). On the compiled engine, looking inside a
    graph that ``cmicrograd.compile`` recorded makes it record again on its next call.
    """
    try:
        if _more_than(root, REPR_SVG_MAX_NODES):
            return None
        dot = draw_dot(root, max_nodes=None)
        return str(dot.pipe(format="svg", encoding="utf-8", quiet=True))
    except Exception:  # no graphviz, no dot, not a Value, ...: the text repr will do
        return None


def _more_than(root: Any, limit: int) -> bool:
    """Whether the graph of ``root`` holds more than ``limit`` Values: a walk without
    recursion that stops at the first Value over the limit."""
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"REPR_SVG_MAX_NODES must be an int, not {type(limit).__name__}")
    _check_value(root, "repr_svg")
    seen = {id(root): root}  # holding each Value seen, so that no id is reused
    todo = [root]
    while todo and len(seen) <= limit:
        for child in todo.pop()._prev:
            if id(child) not in seen:
                seen[id(child)] = child
                todo.append(child)
                if len(seen) > limit:
                    return True
    return len(seen) > limit


def require_graphviz() -> Any:
    """The graphviz module, or ImportError with the install hint."""
    try:
        import graphviz
    except ImportError:
        raise ImportError(VIZ_HINT) from None
    return graphviz


def draw_dot(root: Any, format: str = "svg", rankdir: str = "LR",
             max_nodes: Optional[int] = 500) -> graphviz.Digraph:
    """The graph of ``root`` (a Value of either engine) as a ``graphviz.Digraph``.

    ``format`` is what ``render``/``pipe`` produce by default; ``rankdir`` is 'LR'
    (inputs on the left, as in the lecture), 'TB', 'RL' or 'BT'. At most ``max_nodes``
    Values are drawn, the ones nearest the root; the rest is summarised in "… N more
    nodes" boxes (``None``: no cap). Node names are the breadth-first positions, so the
    same graph gives the same DOT source on both engines and across runs.

    On the compiled engine, walking the graph turns fused sums and inline constants
    into ordinary nodes (what ``_prev`` always does); values and gradients are unchanged.
    """
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")
    if max_nodes is not None and (type(max_nodes) is not int or max_nodes < 1):
        raise ValueError(f"max_nodes must be a positive int or None, not {max_nodes!r}")
    _check_value(root, "draw_dot")
    graphviz = require_graphviz()

    kept, links, cuts, sizes = _walk(root, max_nodes)
    dot = graphviz.Digraph(format=format, graph_attr={"rankdir": rankdir})
    # In LR/RL layouts a record's fields stack vertically unless wrapped in braces.
    wrap = "{{ {} }}" if rankdir in ("LR", "RL") else "{}"
    for i, v in enumerate(kept):
        fields = f"data {v.data:.4f} | grad {v.grad:.4f}"
        if v.label:
            fields = f"{_escape_record(v.label)} | {fields}"
        dot.node(f"v{i}", label=graphviz.nohtml(wrap.format(fields)), shape="record")
        if v._op:
            dot.node(f"op{i}", label=graphviz.nohtml(_escape(v._op)))
            dot.edge(f"op{i}", f"v{i}")
    for g, n in sizes.items():
        dot.node(f"more{g}", label=f"… {n} more node{'' if n == 1 else 's'}",
                 shape="box", style="dashed", color="gray40", fontcolor="gray40")
    for child, parent in links:
        dot.edge(f"v{child}", _target(kept, parent))
    for g, parent in cuts:
        dot.edge(f"more{g}", _target(kept, parent), style="dashed", color="gray40")
    return dot


def render_dot(root: Any, path: Union[str, "os.PathLike[str]"], **kwargs: Any) -> pathlib.Path:
    """Draw ``root`` with ``draw_dot(root, **kwargs)`` and write it to ``path``.

    The format follows the file's suffix (.png, .svg, .pdf, ...) unless ``format=`` is
    given. RuntimeError with install instructions if Graphviz's ``dot`` is missing.
    Returns the path written.
    """
    path = pathlib.Path(path)
    fmt = kwargs.pop("format", None) or path.suffix.lstrip(".").lower()
    if not fmt:
        raise ValueError(f"cannot tell the image format of {str(path)!r}: give it a suffix (.png, .svg) or format=")
    dot = draw_dot(root, format=fmt, **kwargs)
    graphviz = require_graphviz()
    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise RuntimeError(DOT_HINT) from exc
    path.write_bytes(data)
    return path


def _check_value(root: Any, who: str) -> None:
    try:
        engine_of(root)
    except TypeError:
        t = type(root)
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        raise TypeError(
            f"{who} needs a cmicrograd Value (cmicrograd.Value or cmicrograd.reference.Value), "
            f"not {name}"
        ) from None


def _walk(root: Any, max_nodes: Optional[int]) -> Tuple[
        List[Any], List[Tuple[int, int]], List[Tuple[int, int]], Dict[int, int]]:
    """Breadth-first walk from root, without recursion (graphs can be 10**6 deep).

    Returns the drawn Values in walk order; the (child, parent) index pairs among them;
    the (group, parent) pairs where a drawn parent has children in a collapsed group;
    and each group's size. A group is named by the drawn parent that first cut into it,
    and holds every hidden Value first reached through it.
    """
    kept: List[Any] = [root]
    index: Dict[int, int] = {id(root): 0}  # Values are identified by id: all stay alive
    links: List[Tuple[int, int]] = []
    cuts: Dict[Tuple[int, int], None] = {}  # an ordered set
    group_of: Dict[int, int] = {}
    sizes: Dict[int, int] = {}
    hidden: Deque[Tuple[Any, int]] = deque()
    # kept grows while we read it: that list is the breadth-first queue of drawn nodes.
    i = 0
    while i < len(kept):
        for child in kept[i]._prev:
            key = id(child)
            if key in index:
                links.append((index[key], i))
            elif key in group_of:
                cuts[(group_of[key], i)] = None
            elif max_nodes is None or len(kept) < max_nodes:
                index[key] = len(kept)
                kept.append(child)
                links.append((index[key], i))
            else:
                group_of[key] = i
                sizes[i] = sizes.get(i, 0) + 1
                cuts[(i, i)] = None
                hidden.append((child, i))
        i += 1
    # Count the hidden part, each Value once, in the group of whoever reached it first.
    seen: Set[int] = set(index)
    seen.update(group_of)
    while hidden:
        v, g = hidden.popleft()
        for child in v._prev:
            key = id(child)
            if key not in seen:
                seen.add(key)
                sizes[g] += 1
                hidden.append((child, g))
    return kept, links, list(cuts), sizes


def _target(kept: List[Any], i: int) -> str:
    """Where a child's edge goes: the parent's op node, or the parent if it has no op."""
    return f"op{i}" if kept[i]._op else f"v{i}"


def _escape(text: str) -> str:
    """Text for a plain DOT label: backslashes literal, newlines kept."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_record(text: str) -> str:
    """Text for one field of a record label."""
    return _RECORD_SPECIAL.sub(r"\\\1", text).replace("\n", "\\n")


__all__ = ["draw_dot", "render_dot", "require_graphviz"]
