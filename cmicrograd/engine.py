"""``Value`` of the picked engine (mirrors ``micrograd.engine``).

The compiled engine unless ``CMICROGRAD_PURE_PYTHON=1`` is set or the extension is
missing; ``IMPLEMENTATION`` says which ("cython" or "python"). See
:mod:`cmicrograd._engines` for how the choice is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._engines import IMPLEMENTATION

if TYPE_CHECKING:  # type checkers see the compiled engine's API (src/*.pxi, _engine.pyi)
    from ._engine import Value
else:
    from ._engines import PICKED

    Value = PICKED.Value

__all__ = ["Value", "IMPLEMENTATION"]
