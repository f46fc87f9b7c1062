"""The two engines: which one ``cmicrograd`` picked, and which one a Value belongs to.

``PICKED`` is the compiled engine (``cmicrograd._engine``) unless
``CMICROGRAD_PURE_PYTHON=1`` is set or the extension is missing, in which case it is the
pure-Python reference (``cmicrograd.reference.engine``), with a warning saying why.
With ``CMICROGRAD_REQUIRE_EXTENSION=1`` (CI, wheel tests) a missing extension is an
ImportError instead: a broken build must not pass for a working one.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings
from types import ModuleType
from typing import Any, Iterable

from ._flags import PURE_PYTHON, REQUIRE_EXTENSION, flag

ENGINE_MODULES = ("cmicrograd._engine", "cmicrograd.reference.engine")


def _missing_extension_hint(exc: ImportError) -> str:
    """Why the compiled engine did not import, and what to do, in one sentence."""
    here = os.path.dirname(os.path.abspath(__file__))
    built = glob.glob(os.path.join(here, "_engine.*"))
    if not any(p.endswith((".so", ".pyd")) for p in built) and os.path.exists(
            os.path.join(here, os.pardir, "setup.py")):
        return (f"cmicrograd is being imported from its source tree ({here}), which holds no "
                "built extension: Python finds that folder first when started in the "
                "checkout's root. Start Python elsewhere to use the installed package, or "
                "build in place with `pip install -e .`")
    return f"cmicrograd's compiled engine (cmicrograd._engine) could not be imported: {exc}"


def _pick() -> ModuleType:
    if flag(PURE_PYTHON):
        if flag(REQUIRE_EXTENSION):
            raise ImportError(f"{PURE_PYTHON} and {REQUIRE_EXTENSION} are both set")
        from .reference import engine

        return engine
    try:
        from . import _engine

        return _engine
    except ImportError as exc:
        hint = _missing_extension_hint(exc)
        if flag(REQUIRE_EXTENSION):
            raise ImportError(f"{hint} (and {REQUIRE_EXTENSION} is set)") from exc
        warnings.warn(f"{hint}. Using the pure-Python engine, which is much slower.",
                      RuntimeWarning, stacklevel=4)
        from .reference import engine

        return engine


PICKED: ModuleType = _pick()
IMPLEMENTATION = "cython" if PICKED.__name__ == "cmicrograd._engine" else "python"


def engine_of(value: Any) -> ModuleType:
    """The engine module (compiled or reference) whose Value ``value`` is; TypeError for
    anything else (micrograd's own Value included)."""
    module = sys.modules.get(type(value).__module__)
    if module is not None and module.__name__ in ENGINE_MODULES and type(value) is module.Value:
        return module
    raise TypeError(f"expected a cmicrograd Value, not {type(value).__name__}")


def is_value(x: Any) -> bool:
    """Whether x is a Value of either engine."""
    try:
        engine_of(x)
    except TypeError:
        return False
    return True


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


def check_optimizer(optimizer: Any, value_type: type) -> Any:
    """``optimizer`` if it is None or a cmicrograd.optim optimizer over Values of
    ``value_type`` (for compile(loss, optimizer=...)); TypeError otherwise."""
    if optimizer is None:
        return None
    from .optim import Optimizer

    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a cmicrograd.optim optimizer (SGD, Adam, AdamW), "
                        f"not {type(optimizer).__name__}")
    if optimizer.params and type(optimizer.params[0]) is not value_type:
        raise TypeError("the optimizer's parameters are Values of the other engine than the loss")
    return optimizer


MAX_THREADS = 64


def check_threads(threads: Any) -> int:
    """``threads`` if it is a whole number of threads a replay may use (1 to 64);
    TypeError or ValueError otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, not {type(threads).__name__}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be between 1 and {MAX_THREADS}, not {threads}")
    return threads


def check_lanes(lanes: Any) -> bool:
    """``lanes`` if it is True or False; TypeError otherwise."""
    if not isinstance(lanes, bool):
        raise TypeError(f"lanes must be True or False, not {type(lanes).__name__}")
    return lanes


__all__ = ["PICKED", "IMPLEMENTATION", "engine_of", "engine_of_all", "is_value", "check_optimizer",
           "check_threads", "check_lanes", "MAX_THREADS"]
