"""How much of the compiled engine's Value memory is in use: the memory and thread tests
compare it before and after to prove that every Value made in between was freed."""

from __future__ import annotations

import gc

try:
    import cmicrograd._engine as compiled
except ImportError:  # pragma: no cover - the conftest decides whether that is an error
    compiled = None


def values_held(engine_name: str = "cython") -> int:
    """Bytes of the compiled engine's chunks in use, after freeing unreachable objects
    and the empty chunks (0 for the pure engine, whose Values are Python objects).

    Collects until nothing more is found: the GC cannot see operand links, so freeing one
    cycle can make another unreachable that the same collection already passed over."""
    while gc.collect():
        pass
    return compiled._trim_memory() if engine_name == "cython" and compiled is not None else 0
