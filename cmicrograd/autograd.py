"""Gradients as Values: ``grad(output, inputs)``, and gradients of gradients.

``grad(output, inputs)`` returns d output / d input for each input, as Values, without
touching any ``.grad``. With ``create_graph=True`` the returned Values are nodes of a new
graph built from the ops' derivatives (cmicrograd/_ops.py, each written with Value ops
doing exactly the float operations of the engines' backward rules), so they can be
differentiated again: Hessians, Hessian-vector products, Newton's method, gradient
penalties. First derivatives come out bit-identical to ``output.backward()``'s grads.

    x = Value(2.0)
    y = x ** 3
    (dy,) = grad(y, [x], create_graph=True)      # 3 x**2 = 12.0, a node
    (d2y,) = grad(dy, [x])                        # 6 x = 12.0

Custom ``Function`` ops take part when they say their backward is differentiable (the
class attribute ``differentiable = True``: its ``forward`` and ``backward``, given
Values instead of floats, build the derivative from Value ops); a hand-written
``_backward`` cannot be differentiated again, and says so.
"""

from __future__ import annotations

from typing import Any, List, Sequence

from . import _ops
from ._engines import engine_of


def grad(output: Any, inputs: Sequence[Any], *, create_graph: bool = False) -> List[Any]:
    """d output / d input for each of ``inputs`` (Values of output's engine), as a list
    of Values; an input the output does not depend on gets ``Value(0.0)``. No ``.grad``
    changes. With ``create_graph`` the results are nodes of a graph that can be
    differentiated again (see the module docstring); without, they are leaves."""
    engine = _check(output, inputs)
    V = engine.Value
    if not isinstance(create_graph, bool):
        raise TypeError(f"create_graph must be True or False, not {type(create_graph).__name__}")
    topo = engine._topological_order(output)  # micrograd's graph: fused sums expanded
    if not create_graph:
        return [V(g) for g in _first_derivatives(output, inputs, topo)]
    return _derivative_graph(engine, output, inputs, topo)


def _check(output: Any, inputs: Sequence[Any]) -> Any:
    try:
        engine = engine_of(output)
    except TypeError:
        raise TypeError(f"grad() needs a cmicrograd Value as its output, not {type(output).__name__}") from None
    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__") or engine_of_or_none(inputs):
        raise TypeError("grad()'s inputs must be a list of Values (one Value: [x])")
    for i, x in enumerate(inputs):
        if engine_of_or_none(x) is not engine:
            raise TypeError(f"grad()'s inputs must be Values of the output's engine; item {i} is "
                            f"{'a Value of the other engine' if engine_of_or_none(x) else type(x).__name__}")
    return engine


def engine_of_or_none(x: Any) -> Any:
    try:
        return engine_of(x)
    except TypeError:
        return None


def _first_derivatives(output: Any, inputs: Sequence[Any], topo: List[Any]) -> List[float]:
    """One backward from zero grads; every grad is put back as it was."""
    saved = [v.grad for v in topo]
    reached = {id(v) for v in topo}
    try:
        for v in topo:
            v.grad = 0.0
        output.backward()
        return [x.grad if id(x) in reached else 0.0 for x in inputs]
    finally:
        for v, g in zip(topo, saved):
            v.grad = g


def _derivative_graph(engine: Any, output: Any, inputs: Sequence[Any], topo: List[Any]) -> List[Any]:
    """Reverse mode over topo, each node's contributions built with Value ops. A grad is
    accumulated as backward accumulates it, from 0.0: (c1 + 0.0) + c2 + ..., and a node
    nothing reached still passes on its grad of 0.0 (0.0 * nan is nan, as in backward),
    so the first derivatives have backward()'s bits."""
    V = engine.Value
    index = {id(v): i for i, v in enumerate(topo)}
    wanted = {id(x) for x in inputs}
    # only nodes an input can be reached from need their grads
    needed = [False] * len(topo)
    parts = [engine._node_parts(v) for v in topo]
    for i, v in enumerate(topo):
        needed[i] = id(v) in wanted or any(
            needed[index[id(c)]] for c in parts[i][1] if not isinstance(c, float))
    acc: List[Any] = [None] * len(topo)
    acc[-1] = V(1.0)  # the seed: backward() sets output.grad = 1.0
    zero = V(0.0)     # the grad of a node no contribution reached
    for i in range(len(topo) - 1, -1, -1):
        code, operands, k = parts[i]
        if code == _ops.BY_NAME["leaf"].code or not needed[i]:
            continue
        g = zero if acc[i] is None else acc[i]
        if code == _ops.BY_NAME["custom"].code:
            operands, contributions = _custom_derivative(topo[i], g)
        else:
            rule = _ops.DERIVATIVES[code]
            assert rule is not None, f"op code {code} has no derivative"   # tests/test_ops.py
            a, b = (tuple(operands) + (None,))[:2]
            contributions = rule(a, b, k, topo[i], g)
        for child, c in zip(operands, contributions):
            if c is None or isinstance(child, float):
                continue
            j = index[id(child)]
            if needed[j]:
                acc[j] = c + 0.0 if acc[j] is None else acc[j] + c
    out = []
    for x in inputs:
        at = index.get(id(x))
        out.append(acc[at] if at is not None and acc[at] is not None else V(0.0))
    return out


def _custom_derivative(node: Any, g: Any) -> Any:
    """A Function node's contributions as Values: its forward and backward run again
    on the input Values, if its backward is differentiable."""
    fb = node._backward
    function = getattr(fb, "function", None)
    if function is None:
        raise TypeError(f"grad(create_graph=True) cannot differentiate a node with op {node._op!r}: "
                        "it has a hand-written _backward; define it as a cmicrograd.function."
                        "Function with differentiable = True")
    if not getattr(function, "differentiable", False):
        raise TypeError(f"grad(create_graph=True) cannot differentiate {function.__name__}: its "
                        "backward is not marked differentiable (set differentiable = True on the "
                        "class if forward and backward work on Values as well as floats)")
    from .function import Context

    ctx = Context()
    function.forward(ctx, *fb.inputs)
    grads = function.backward(ctx, g)
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) != len(fb.inputs):
        raise ValueError(f"{function.__name__}.backward returned {len(grads)} gradients for "
                         f"{len(fb.inputs)} inputs")
    V = type(node)
    return fb.inputs, [None if c is None else (c if type(c) is V else V(c)) for c in grads]


__all__ = ["grad"]
