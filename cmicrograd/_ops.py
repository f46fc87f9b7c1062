"""The op table: every op a node can have, declared once, with its derivative as Value ops.

Both engines follow this table. An op that lacks a piece is named with the missing
piece: a C rule by the build (``setup.py`` turns the table into the compiled engine's op
codes and rule dispatch, ``src/_optable.pxi``), a rule of the pure engine by its import,
and its method in either engine, its derivative here, a parity generator in the tests or
a type-stub entry by ``tests/test_ops.py``. How to add an op: CONTRIBUTING.md.

This file is loaded by ``setup.py`` on its own (before the package is built), so it
imports nothing from cmicrograd.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple


class Op(NamedTuple):
    name: str
    """How the op's rules are named in both engines: ``{name}_forward``, ``{name}_backward``."""
    code: int
    """Its number in a node and in pickles. Never change or reuse one: saved graphs hold
    it. Ops that never reach a pickle (internal ones) use 128 and up."""
    symbol: str
    """What ``Value._op`` shows for its nodes (micrograd's spelling; ``**`` adds the exponent)."""
    method: Optional[str]
    """The ``Value`` method that makes it, or None (operators, leaves, internal ops)."""
    arity: int
    """How many Value operands it has (POW's exponent is a number, not an operand)."""
    forward_raises: bool
    """Whether its forward rule can raise (it reports an error code in the compiled engine)."""
    backward_raises: bool
    """Whether its backward rule can raise; a replay then keeps every intermediate grad.
    Whether it raises must depend on the data only, never on the incoming grad: the lane
    replay (src/lanes.pxi) checks every lane before it starts."""
    kind: str = "op"
    """``op`` (built in: a forward and a backward rule), ``leaf``, ``custom`` (the user's
    callable), or ``internal`` (an engine's private node kind, never seen from Python)."""


OPS: Tuple[Op, ...] = (
    Op("leaf", 0, "", None, 0, False, False, kind="leaf"),
    Op("add", 1, "+", None, 2, False, False),
    Op("mul", 2, "*", None, 2, False, False),
    Op("pow", 3, "**", None, 1, True, True),
    Op("relu", 4, "ReLU", "relu", 1, False, False),
    Op("tanh", 5, "tanh", "tanh", 1, False, False),
    Op("exp", 6, "exp", "exp", 1, True, False),
    Op("log", 7, "log", "log", 1, True, True),
    Op("sigmoid", 8, "sigmoid", "sigmoid", 1, False, False),
    Op("custom", 9, "", None, -1, False, False, kind="custom"),
    # the larger data of two, passing no gradient: a stable softmax's shift (losses.py)
    Op("detached_max", 10, "max", "detached_max", 2, False, False),
    # 1/x: log's derivative as a node, so that it can be differentiated again (grad())
    Op("reciprocal", 11, "1/x", "reciprocal", 1, True, True),
    # the unit step, 1 where x > 0: relu's derivative as a node that a replay recomputes
    Op("heaviside", 12, "heaviside", "heaviside", 1, False, False),
    # a fused weighted sum (src/fused.pxi): shows itself as the chain of '+' and '*'
    # nodes it stands for, and expands into it before anyone looks inside
    Op("dot", 128, "+", None, -1, False, False, kind="internal"),
)

BY_NAME = {op.name: op for op in OPS}
BY_CODE = {op.code: op for op in OPS}
BUILTIN = tuple(op for op in OPS if op.kind == "op")
"""The ops with forward and backward rules, in table order."""


# ---- each op's derivative as Value ops, for grad(..., create_graph=True) ----------------
# {name}_derivative(a, b, k, out, g): what the op's backward rule adds to each operand's
# grad (a tuple: a's, then b's for a binary op; None for nothing), built from Value ops
# that do exactly the float operations of the engines' backward rules, in the same order,
# so first derivatives come out bit-identical to backward()'s grads. a, b are the operand
# Values (b a number for an inline constant), k POW's exponent, out the node, g its grad.
def add_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (g, g)


def mul_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (b * g, a * g)


def pow_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return ((a ** (k - 1.0) * k) * g,)          # (k * a**(k - 1)) * g


def relu_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (g * out.heaviside(),)                # float(out > 0) * g


def tanh_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return ((1.0 - out ** 2) * g,)


def exp_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (out * g,)


def log_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (a.reciprocal() * g,)                 # (1/x) * g


def sigmoid_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return ((out * (1.0 - out)) * g,)


def detached_max_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (None, None)                          # no gradient passes


def reciprocal_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (((out * out) * -1.0) * g,)           # (-(r * r)) * g


def heaviside_derivative(a: Any, b: Any, k: float, out: Any, g: Any) -> Tuple[Any, ...]:
    return (None,)                               # zero wherever it exists: none passes


def _check(ops: Tuple[Op, ...]) -> None:
    codes = [op.code for op in ops]
    names = [op.name for op in ops]
    if len(set(codes)) != len(codes) or len(set(names)) != len(names):
        raise ValueError("op codes and names must be unique")
    for op in ops:
        if not 0 <= op.code < 256 or (op.kind == "internal") != (op.code >= 128):
            raise ValueError(f"op {op.name}: internal ops use codes 128-255, the others 0-127")


_check(OPS)

DERIVATIVES: Dict[int, Optional[Callable[..., Tuple[Any, ...]]]] = {
    op.code: globals().get(f"{op.name}_derivative") for op in BUILTIN}
"""Each built-in op's derivative rule by code (None where one is missing: test_ops.py says)."""

__all__ = ["Op", "OPS", "BY_NAME", "BY_CODE", "BUILTIN", "DERIVATIVES"]
