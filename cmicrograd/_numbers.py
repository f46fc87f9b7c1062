"""The number contract both engines share: what counts as a number, and the errors.

Both engines call into this module on their slow paths (an unusual number type) and
on every error, so conversions and messages are the same whichever engine raised them.
The compiled engine reports a math error as one of the ``ERR_*`` codes below and lets
:func:`math_error` build the exception.
"""

from __future__ import annotations

import numbers
from math import floor as _floor
from math import inf as _INF

# Error codes, shared with src/floats.pxi (keep the numbers in step).
ERR_ZERO_POW = 1  # 0.0 ** negative
ERR_FRACTIONAL_POW = 2  # negative ** non-integer (Python would return a complex)
ERR_POW_RANGE = 3  # x ** k too large for a float
ERR_EXP_RANGE = 4  # exp(x) too large for a float
ERR_LOG_DOMAIN = 5  # log(x) for x <= 0
ERR_ZERO_DIV = 6  # a division by zero in a backward rule (x.data changed to 0.0)
ERR_UNKNOWN_OP = 7  # an op code no rule knows: a bug in the engine, never user input


def math_error(code: int, x: float, k: float = 0.0) -> Exception:
    """The exception for error ``code`` raised while computing with ``x`` (and ``k``)."""
    if code == ERR_ZERO_POW:
        return ZeroDivisionError("0.0 cannot be raised to a negative power")
    if code == ERR_FRACTIONAL_POW:
        return ValueError(
            f"negative number cannot be raised to a fractional power: {x!r} ** {k!r}"
        )
    if code == ERR_POW_RANGE:
        return OverflowError(f"{x!r} ** {k!r} is too large for a float")
    if code == ERR_EXP_RANGE:
        return OverflowError(f"exp({x!r}) is too large for a float")
    if code == ERR_LOG_DOMAIN:
        return ValueError(f"log({x!r}) is undefined: log needs a positive number")
    if code == ERR_ZERO_DIV:
        return division_error()
    if code == ERR_UNKNOWN_OP:
        return SystemError(f"cmicrograd has no rule for this op code (an engine bug): {x!r}")
    return SystemError(f"unknown cmicrograd math error code {code}")


def division_error() -> ZeroDivisionError:
    """What dividing by zero raises, in a division (``a / b``) or a rule that divides:
    Python's own message for floats."""
    return ZeroDivisionError("float division by zero")


def _describe(x: object) -> str:
    return type(x).__name__


def to_float(x: object, what: str) -> float:
    """``x`` as a Python float, or TypeError/OverflowError saying what was wrong.

    Numbers are ints, bools, floats and anything registered as ``numbers.Real``
    (numpy's integer and floating scalars, ``fractions.Fraction``), plus numpy's
    bool scalar. Strings, None, containers, numpy arrays (even 0-d ones), complex
    numbers and Values are refused: a Value is never silently unwrapped.
    """
    t = type(x)
    if t is float:
        return x  # type: ignore[return-value]
    if t is int or t is bool:
        return float(x)  # type: ignore[arg-type]  # OverflowError if too large
    if isinstance(x, numbers.Real) or (
        t.__module__ == "numpy" and t.__name__ in ("bool", "bool_")
    ):
        return float(x)  # type: ignore[arg-type]
    raise TypeError(f"{what} must be a real number (int or float), not {_describe(x)}")


def is_number(x: object) -> bool:
    """True if :func:`to_float` accepts ``x`` (without converting it)."""
    t = type(x)
    if t is float or t is int or t is bool:
        return True
    return isinstance(x, numbers.Real) or (
        t.__module__ == "numpy" and t.__name__ in ("bool", "bool_")
    )


def operand_error(op: str, left: object, right: object) -> TypeError:
    """The TypeError for ``left <op> right`` when one side is not a number or Value."""
    from ._engines import is_value  # imported here: the engines import this module

    if is_value(left) and is_value(right):
        return TypeError(
            f"cannot combine Values of different engines with {op!r} "
            "(cmicrograd.Value and cmicrograd.reference.Value are separate types)"
        )
    return TypeError(
        f"unsupported operand type(s) for {op}: "
        f"'{_describe(left)}' and '{_describe(right)}'"
    )


def exponent_error(k: object) -> TypeError:
    """The TypeError for ``v ** k`` when ``k`` is not an int or float."""
    from ._engines import is_value

    if is_value(k):
        return TypeError(
            "the exponent must be an int or float, not a Value: "
            "Value ** Value is not supported (use (b * a.log()).exp() for a ** b)"
        )
    return TypeError(f"the exponent must be an int or float, not {_describe(k)}")


def float_pow(x: float, k: float) -> float:
    """``x ** k`` for floats, as Python computes it, but never a complex number.

    Where Python would go complex (a finite negative base to a finite non-integer
    power) this raises ValueError, before Python's complex pow could overflow.
    """
    if x < 0.0 and x != -_INF and k - k == 0.0 and k != _floor(k):
        raise math_error(ERR_FRACTIONAL_POW, x, k)
    try:
        r = x**k
    except ZeroDivisionError:
        raise math_error(ERR_ZERO_POW, x, k) from None
    except OverflowError:
        raise math_error(ERR_POW_RANGE, x, k) from None
    return float(r)
