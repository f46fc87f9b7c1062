"""Compile once, replay many: ``compile(loss)`` records a graph; ``assign`` feeds it.

A training step over a fixed batch builds the same graph every time; recording it once
and replaying it skips the building. See ``CompiledGraph`` (in either engine) for what
a replay does, and the README for a training loop.
"""

from __future__ import annotations

from typing import Any, List

from ._engines import engine_of, is_value


def compile(output: Any, optimizer: Any = None, *, threads: int = 1, lanes: bool = True) -> Any:
    """Record the graph that produced ``output`` (a Value of either engine).

    Returns a ``CompiledGraph``: ``forward()`` recomputes the graph from the leaves'
    current data and returns the output's data; ``backward()`` then does what
    ``output.backward()`` would. Both are bit-identical to building the graph anew.
    With ``optimizer`` (a ``cmicrograd.optim`` optimizer), calling the graph runs a whole
    training step: forward, the optimizer's zero_grad, backward, its step.

    A loss summed over a batch of examples that each build the same small graph (the
    usual training loss) is replayed one example per SIMD lane, and split over
    ``threads`` threads; ``lanes=False`` replays it one node at a time. Every choice
    gives the same bits; the pure-Python engine accepts both and ignores them.

    Recording costs less than one eager build of the graph, so compiling pays from the
    second step on.
    """
    try:
        engine = engine_of(output)
    except TypeError:
        raise TypeError(f"compile() needs a cmicrograd Value, not {type(output).__name__}") from None
    return engine.compile(output, optimizer, threads=threads, lanes=lanes)


def _flatten(values: Any) -> List[Any]:
    flat: List[Any] = []
    stack = [values]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def assign(values: Any, array: Any) -> None:
    """Set the data of ``values`` (a Value, or nested lists of Values) from ``array``
    (a number, or an array/nested sequence of the same shape): how new inputs are fed
    to a compiled graph's input leaves, e.g. a fresh mini-batch."""
    import numpy as np  # imported when needed: `import cmicrograd` stays light

    data = np.asarray(array, dtype=float)
    if is_value(values):
        if data.ndim != 0:
            raise ValueError(f"assign: one Value but an array of shape {data.shape}")
        values.data = float(data)
        return
    flat = _flatten(values)
    if data.size != len(flat):
        raise ValueError(f"assign: {len(flat)} Values but an array of {data.size} numbers (shape {data.shape})")
    if flat:
        engine_of(flat[0]).set_data(flat, data.ravel().tolist())


__all__ = ["compile", "assign"]
