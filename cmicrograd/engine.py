"""``Value`` of the picked engine (mirrors ``micrograd.engine``).

The compiled engine (``cmicrograd._engine``) unless ``CMICROGRAD_PURE_PYTHON=1`` is set
or the extension is missing, in which case the pure-Python reference is used with a
warning. With ``CMICROGRAD_REQUIRE_EXTENSION=1`` (set in CI and in wheel tests) a
missing extension is an ImportError instead: a broken build must not pass for a
working one.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


if TYPE_CHECKING:  # type checkers see the compiled engine's API (src/_engine.pyx, .pyi)
    from . import _engine as _impl

    IMPLEMENTATION: str
elif _flag("CMICROGRAD_PURE_PYTHON"):
    if _flag("CMICROGRAD_REQUIRE_EXTENSION"):
        raise ImportError(
            "CMICROGRAD_PURE_PYTHON and CMICROGRAD_REQUIRE_EXTENSION are both set"
        )
    from .reference import engine as _impl

    IMPLEMENTATION = "python"
else:
    try:
        from . import _engine as _impl

        IMPLEMENTATION = "cython"
    except ImportError as exc:
        if _flag("CMICROGRAD_REQUIRE_EXTENSION"):
            raise ImportError(
                "cmicrograd's compiled engine (cmicrograd._engine) could not be "
                f"imported and CMICROGRAD_REQUIRE_EXTENSION is set: {exc}"
            ) from exc
        warnings.warn(
            "cmicrograd's compiled engine is not available "
            f"({exc}); using the pure-Python engine, which is much slower",
            RuntimeWarning,
            stacklevel=2,
        )
        from .reference import engine as _impl

        IMPLEMENTATION = "python"

Value = _impl.Value
weighted_sum = _impl.weighted_sum
layer_forward = _impl.layer_forward
zero_grad = _impl.zero_grad
sgd_update = _impl.sgd_update
set_data = _impl.set_data

__all__ = ["Value", "IMPLEMENTATION", "_impl", "weighted_sum", "layer_forward", "zero_grad", "sgd_update",
           "set_data"]
