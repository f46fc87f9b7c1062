"""Which engine a Value belongs to, for engine-agnostic code (losses, optim, compile)."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Iterable

_ENGINE_MODULES = ("cmicrograd._engine", "cmicrograd.reference.engine")


def engine_of(value: Any) -> ModuleType:
    """The engine module (compiled or reference) whose Value ``value`` is."""
    module = type(value).__module__
    if module in _ENGINE_MODULES and type(value).__name__ == "Value":
        return sys.modules[module]
    raise TypeError(f"expected a cmicrograd Value, not {type(value).__name__}")


def engine_of_all(values: Iterable[Any], what: str) -> ModuleType:
    """The one engine of all ``values`` (TypeError if empty of Values or mixed)."""
    found = None
    for v in values:
        engine = engine_of(v)
        if found is None:
            found = engine
        elif engine is not found:
            raise TypeError(f"{what} mixes Values of the compiled and the pure-Python engine")
    if found is None:
        raise ValueError(f"{what} needs at least one Value")
    return found
