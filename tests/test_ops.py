"""The op table (cmicrograd/_ops.py) is followed everywhere: the checklist for a new op.

Each test names the op and the missing piece: its method, its forward or backward rule
in either engine, a parity generator in the tests, or a type-stub entry. Stored codes
(the numbers in pickles) are pinned: a new op gets a new code, old codes never move.
"""

from __future__ import annotations

import math
import pathlib
import re

import pytest

import programs as P
from cmicrograd import _ops

STUB = pathlib.Path(__file__).resolve().parent.parent / "cmicrograd" / "_engine.pyi"
if not STUB.exists():  # run against an installed wheel: the stub ships in the package
    import cmicrograd

    STUB = pathlib.Path(cmicrograd.__file__).parent / "_engine.pyi"

# The codes of pickle format 1 (tests/data/format1 holds files written with them).
STORED_CODES = {"leaf": 0, "add": 1, "mul": 2, "pow": 3, "relu": 4, "tanh": 5, "exp": 6,
                "log": 7, "sigmoid": 8, "custom": 9}

SAMPLES = [0.0, -0.0, 0.5, -1.25, 2.0, 3.0, 1e-300, 700.0, -700.0, math.inf, -math.inf, math.nan]


def test_stored_codes_never_change():
    for name, code in STORED_CODES.items():
        assert _ops.BY_NAME[name].code == code, f"op {name} must keep code {code} (saved pickles hold it)"


@pytest.mark.parametrize("op", _ops.BUILTIN, ids=lambda op: op.name)
def test_every_op_has_its_code_in_the_pure_engine(op):
    """The reference engine names each op's code at its top (its methods use the names).
    A missing forward or backward rule there already stops the import, naming the op."""
    import cmicrograd.reference.engine as R

    assert getattr(R, op.name.upper(), None) == op.code, (
        f"op {op.name}: cmicrograd/reference/engine.py has no {op.name.upper()} = {op.code} "
        "(add the name to the op codes at its top)")


def _outcome(fn, *args):
    try:
        return tuple(P.bits(x) for x in fn(*args))
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("op", _ops.BUILTIN, ids=lambda op: op.name)
def test_every_op_has_the_same_rules_in_both_engines(both, op):
    """The compiled engine's rules for the op exist (src/value.pxi; a code with no rule
    raises SystemError) and give the reference's bits."""
    compiled, reference = both
    R = reference.engine
    for a in SAMPLES:
        for b in (1.5, -0.0):
            k = 2.0 if op.name == "pow" else 0.0
            want = _outcome(lambda: (getattr(R, f"{op.name}_forward")(a, b, k),))
            got = _outcome(lambda: (compiled.engine._forward_rule(op.code, a, b, k),))
            assert got == want, f"op {op.name}: forward rules differ at {a!r}, {b!r}"
            if isinstance(want[0], str):
                continue
            out = R.FORWARD[op.code](a, b, k)
            ra, rb = R.Value(a), R.Value(b)
            node = R.Value._node(out, op.code, ra, rb if op.arity == 2 else None, k)
            node._grad = 0.75
            want_g = _outcome(lambda: (R.BACKWARD[op.code](node), (ra._grad, rb._grad))[1])
            got_g = _outcome(compiled.engine._backward_rule, op.code, a, b, k, out, 0.75)
            assert got_g == want_g, f"op {op.name}: backward rules differ at {a!r}, {b!r}"


def test_an_unknown_op_code_fails_loudly(both):
    compiled, _ = both
    unused = next(c for c in range(1, 128) if c not in _ops.BY_CODE)
    with pytest.raises(SystemError, match="no rule for this op code"):
        compiled.engine._forward_rule(unused, 1.0, 2.0, 0.0)
    with pytest.raises(SystemError, match="no rule for this op code"):
        compiled.engine._backward_rule(unused, 1.0, 2.0, 0.0, 3.0, 1.0)


@pytest.mark.parametrize("op", _ops.BUILTIN, ids=lambda op: op.name)
def test_every_op_has_its_derivative_as_value_ops(op):
    rule = getattr(_ops, f"{op.name}_derivative", None)
    assert callable(rule), (f"op {op.name}: cmicrograd/_ops.py has no {op.name}_derivative "
                            "(its backward rule as Value ops, for grad(create_graph=True))")
    assert _ops.DERIVATIVES[op.code] is rule


@pytest.mark.parametrize("op", [op for op in _ops.BUILTIN if op.method], ids=lambda op: op.name)
def test_every_op_derivative_gives_the_bits_of_backward(engine, op):
    """An op's derivative as Value ops (grad with create_graph) and its grad as numbers
    (grad without it) do the float operations of its backward rule: backward()'s bits."""
    from cmicrograd import autograd

    for a in (0.5, -1.25, 3.0, 1e-3, 20.0):
        for b in (0.75, -2.0):
            x, y = engine.Value(a), engine.Value(b)
            try:
                out = getattr(x, op.method)(*[y] * (op.arity - 1))
                out.backward()
            except (ArithmeticError, ValueError):
                continue
            want = [P.bits(x.grad), P.bits(y.grad)] if op.arity == 2 else [P.bits(x.grad)]
            leaves = [x, y][:op.arity]
            for create_graph in (False, True):
                got = [P.bits(v.data) for v in autograd.grad(out, leaves, create_graph=create_graph)]
                assert got == want, (f"op {op.name} at {a!r}" + (f", {b!r}" if op.arity == 2 else "")
                                     + f": grad(create_graph={create_graph}) differs from backward() "
                                     "(cmicrograd/_ops.py's derivative must do its backward rule's "
                                     "float operations, in order)")


@pytest.mark.parametrize("op", [op for op in _ops.OPS if op.method], ids=lambda op: op.name)
def test_every_method_op_has_its_method(engine, op):
    method = getattr(engine.Value, op.method, None)
    assert callable(method), f"op {op.name}: {engine.name} Value has no method {op.method}()"
    node = getattr(engine.Value(0.5), op.method)(*[engine.Value(0.25)] * (op.arity - 1))
    assert node._op == op.symbol, f"op {op.name}: its nodes show _op {node._op!r}, not {op.symbol!r}"


@pytest.mark.parametrize("op", _ops.BUILTIN, ids=lambda op: op.name)
def test_every_op_has_a_parity_generator(op):
    steps = P.COVERS.get(op.name)
    assert steps, (f"op {op.name}: tests/programs.py has no step that makes it (a Value method: "
                   "add it to METHODS or BINARY_METHODS; another op: a step in ALL_OPS and COVERS)")
    missing = [s for s in steps if s not in P.ALL_OPS]
    assert not missing, f"op {op.name}: steps {missing} are not in tests/programs.py's ALL_OPS"


@pytest.mark.parametrize("op", [op for op in _ops.OPS if op.method], ids=lambda op: op.name)
def test_every_method_op_is_in_the_type_stub(op):
    text = STUB.read_text()
    value_class = text[text.index("class Value"):]
    value_class = value_class[:value_class.index("\nclass ") if "\nclass " in value_class else None]
    assert re.search(rf"def {op.method}\(self[,)].*-> Value: \.\.\.", value_class), (
        f"op {op.name}: cmicrograd/_engine.pyi's Value has no `def {op.method}(self...) -> Value: ...`")


def test_the_table_is_consistent():
    codes = [op.code for op in _ops.OPS]
    assert len(set(codes)) == len(codes)
    for op in _ops.OPS:
        assert (op.kind == "internal") == (op.code >= 128), op.name
        if op.kind == "op":
            assert op.arity in (1, 2), op.name
