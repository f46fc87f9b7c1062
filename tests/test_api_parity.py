"""The compiled and pure APIs are the same: names, signatures and docstrings (as
cytoolz checks its C and Python twins)."""

from __future__ import annotations

import inspect

import pytest

from cmicrograd import _ops

# every Value method the op table names (a new op's method is checked without an edit here)
OP_METHODS = sorted({op.method for op in _ops.OPS if op.method})

OPERATORS = {
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
    "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__repr__",
    "__init__", "__reduce__",
}


MICROGRAD_PRIVATE_API = {"_prev", "_op", "_backward"}  # micrograd users rely on these


def _public(cls: type) -> set[str]:
    names = {n for n in dir(cls) if not n.startswith("_")}
    return names | ((OPERATORS | MICROGRAD_PRIVATE_API) & set(dir(cls)))


def test_value_has_the_same_names(both):
    compiled, reference = both
    assert _public(compiled.Value) == _public(reference.Value)
    expected = {"data", "grad", "label", "_prev", "_op", "_backward", "backward",
                "relu", "tanh", "exp", "log", "sigmoid"}
    assert expected <= _public(compiled.Value)


def _parameters(fn) -> list[tuple[str, object]]:
    sig = inspect.signature(fn)
    return [(p.name, p.default) for p in sig.parameters.values()]


def _embedded_signature(doc: str | None) -> str:
    """The signature line Cython embeds at the top of a docstring."""
    return (doc or "").split("\n", 1)[0]


def _without_signature(doc: str | None) -> str | None:
    if doc and doc.startswith("Value") and "\n\n" in doc:
        first, rest = doc.split("\n\n", 1)
        if first.endswith(")"):
            return rest
    return doc


@pytest.mark.parametrize("name", ["backward"] + OP_METHODS)
def test_value_methods_have_the_same_signatures(both, name):
    compiled, reference = both
    assert _parameters(getattr(compiled.Value, name)) == _parameters(getattr(reference.Value, name))


def test_constructor_has_the_same_signature(both):
    compiled, reference = both
    params = inspect.signature(reference.Value).parameters.values()
    spelled = ", ".join(
        p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params
    )
    assert _embedded_signature(compiled.Value.__doc__) == f"Value({spelled})"


@pytest.mark.parametrize("name", ["backward"] + OP_METHODS + ["data", "grad", "label", "_prev", "_op",
                                                                "_backward"])
def test_value_members_have_the_same_docstrings(both, name):
    compiled, reference = both
    ours = _without_signature(inspect.getdoc(getattr(compiled.Value, name)))
    theirs = inspect.getdoc(getattr(reference.Value, name))
    assert ours and ours == theirs


def test_value_class_docstrings_match(both):
    compiled, reference = both
    assert _without_signature(inspect.getdoc(compiled.Value)) == inspect.getdoc(reference.Value)


def test_module_level_names(both):
    compiled, reference = both
    for name in ("Value", "_topological_order", "_rebuild", "PICKLE_FORMAT"):
        assert hasattr(compiled.engine, name) and hasattr(reference.engine, name), name
    assert compiled.engine.PICKLE_FORMAT == reference.engine.PICKLE_FORMAT
