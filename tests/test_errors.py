"""The error contract: numbers behave like Python floats, bad input gets a clear error.

Every case runs on both engines (the ``engine`` fixture) and checks the exception type
and message; test_same_messages_in_both_engines checks the two engines word for word.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

# (description, callable taking the Value class, exception type, message regex)
FORWARD_ERRORS = [
    # a division says division, as Python's float does (1.0 / 0.0)
    ("divide by zero Value", lambda V: V(1.0) / V(0.0), ZeroDivisionError, "^float division by zero$"),
    ("divide by -0.0 Value", lambda V: V(1.0) / V(-0.0), ZeroDivisionError, "^float division by zero$"),
    ("divide by zero number", lambda V: V(1.0) / 0, ZeroDivisionError, "^float division by zero$"),
    ("number / zero Value", lambda V: 1 / V(0.0), ZeroDivisionError, "^float division by zero$"),
    ("zero to a negative power", lambda V: V(0.0) ** -2, ZeroDivisionError, "negative power"),
    ("pow overflow", lambda V: V(10.0) ** 400, OverflowError, r"10.0 \*\* 400.0 is too large"),
    ("exp overflow", lambda V: V(1000.0).exp(), OverflowError, r"exp\(1000.0\) is too large"),
    ("log of zero", lambda V: V(0.0).log(), ValueError, r"log\(0.0\) is undefined"),
    ("log of negative", lambda V: V(-1.0).log(), ValueError, r"log\(-1.0\) is undefined"),
    ("log of -inf", lambda V: V(-math.inf).log(), ValueError, "log"),
    ("negative to fractional power", lambda V: V(-8.0) ** (1 / 3), ValueError, "fractional power"),
    ("Value exponent", lambda V: V(2.0) ** V(2.0), TypeError, "exponent must be an int or float, not a Value"),
    ("str exponent", lambda V: V(2.0) ** "2", TypeError, "exponent must be an int or float, not str"),
    ("pow with modulus", lambda V: pow(V(2.0), 2, 5), TypeError, "modulus"),
    ("number ** Value", lambda V: 2 ** V(2.0), TypeError, r"unsupported operand type\(s\) for \*\* or pow\(\): 'int' and 'Value'"),
    ("Value + str", lambda V: V(1.0) + "a", TypeError, r"unsupported operand type\(s\) for \+: 'Value' and 'str'"),
    ("str + Value", lambda V: "a" + V(1.0), TypeError, r"for \+: 'str' and 'Value'"),
    ("Value * None", lambda V: V(1.0) * None, TypeError, r"for \*: 'Value' and 'NoneType'"),
    ("list - Value", lambda V: [1] - V(1.0), TypeError, r"for -: 'list' and 'Value'"),
    ("Value / complex", lambda V: V(1.0) / 1j, TypeError, r"for /: 'Value' and 'complex'"),
    ("Value + ndarray", lambda V: V(1.0) + np.array([1.0, 2.0]), TypeError, r"'Value' and 'ndarray'"),
    ("ndarray * Value", lambda V: np.array([1.0]) * V(1.0), TypeError, "ufunc|Value"),
    ("huge int data", lambda V: V(10**400), OverflowError, "too large to convert to float"),
    ("huge int operand", lambda V: V(1.0) + 10**400, OverflowError, "too large to convert to float"),
    ("str data", lambda V: V("1.0"), TypeError, "Value data must be a real number .* not str"),
    ("None data", lambda V: V(None), TypeError, "not NoneType"),
    ("list data", lambda V: V([1.0]), TypeError, "not list"),
    ("array data", lambda V: V(np.array(1.0)), TypeError, "not ndarray"),
    ("complex data", lambda V: V(1j), TypeError, "not complex"),
    ("Value data", lambda V: V(V(1.0)), TypeError, "not Value"),
    ("bad label", lambda V: V(1.0, label=3), TypeError, "label must be a str, not int"),
    ("bad _op", lambda V: V(1.0, (), 3), TypeError, "_op must be a str, not int"),
    ("bad children", lambda V: V(1.0, (1.0,)), TypeError, "_children must contain only Values, not float"),
    ("children not iterable", lambda V: V(1.0, 5), TypeError, "_children must be an iterable of Values, not int"),
]


@pytest.mark.parametrize("case", FORWARD_ERRORS, ids=[c[0] for c in FORWARD_ERRORS])
def test_forward_errors(engine, case):
    _, make, exc_type, message = case
    with pytest.raises(exc_type, match=message):
        make(engine.Value)


def test_setters_validate(engine):
    v = engine.Value(1.0)
    with pytest.raises(TypeError, match="Value data must be a real number"):
        v.data = "x"
    with pytest.raises(TypeError, match="Value grad must be a real number"):
        v.grad = None
    with pytest.raises(OverflowError):
        v.grad = 10**400
    with pytest.raises(TypeError, match="label must be a str"):
        v.label = None
    assert (v.data, v.grad, v.label) == (1.0, 0.0, "")  # nothing changed


def test_zero_to_half_power_fails_in_backward(engine):
    """As micrograd: 0.0**0.5 is fine, its derivative 0.5 * 0.0**-0.5 is not."""
    V = engine.Value
    x = V(0.0)
    y = x**0.5
    assert y.data == 0.0
    with pytest.raises(ZeroDivisionError, match="0.0 cannot be raised to a negative power"):
        y.backward()
    assert x.grad == 0.0
    # the failed backward left no marks behind: a fresh graph backprops normally
    z = x * 3.0
    z.backward()
    assert x.grad == 3.0


def test_log_backward_after_data_changed_to_zero(engine):
    V = engine.Value
    x = V(2.0)
    y = x.log()
    x.data = 0.0
    with pytest.raises(ZeroDivisionError, match="float division by zero"):
        y.backward()


def test_overflow_to_inf_and_nan_propagate(engine):
    V = engine.Value
    big = V(1e308)
    assert (big + big).data == math.inf
    assert (big * 10).data == math.inf
    assert (big * -10).data == -math.inf
    n = V(math.nan)
    assert math.isnan((n + 1).data) and math.isnan(n.relu().data) and math.isnan(n.tanh().data)
    assert math.isnan(n.exp().data) and math.isnan(n.log().data) and math.isnan((n**2).data)
    y = n * 2.0
    y.backward()
    assert math.isnan(n.grad) is False and n.grad == 2.0
    inf = V(math.inf)
    z = inf * 0.0
    assert math.isnan(z.data)
    assert V(math.inf).exp().data == math.inf  # math.exp(inf) is inf, no error
    assert V(-math.inf).tanh().data == -1.0


def test_same_messages_in_both_engines(both):
    compiled, reference = both
    for name, make, _, _ in FORWARD_ERRORS:
        outcomes = []
        for ns in (compiled, reference):
            try:
                make(ns.Value)
            except Exception as exc:
                outcomes.append((type(exc), str(exc)))
            else:  # pragma: no cover - every case raises
                outcomes.append(None)
        if name == "ndarray * Value":
            assert outcomes[0][0] is outcomes[1][0]  # numpy words it with the type's name
            continue
        assert outcomes[0] == outcomes[1], name


def test_mixing_engines_is_a_clear_type_error(both):
    compiled, reference = both
    with pytest.raises(TypeError, match="cannot combine Values of different engines"):
        compiled.Value(1.0) + reference.Value(1.0)
    with pytest.raises(TypeError, match="cannot combine Values of different engines"):
        reference.Value(1.0) * compiled.Value(1.0)
    with pytest.raises(TypeError, match="_children must contain only Values"):
        compiled.Value(1.0, (reference.Value(1.0),))
