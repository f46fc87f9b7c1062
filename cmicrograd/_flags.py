"""The one place that reads the CMICROGRAD_* environment flags.

Used by the engine choice (cmicrograd/_engines.py), the tests and setup.py, which loads
this file on its own before the package is built: it imports nothing from cmicrograd.

CMICROGRAD_PURE_PYTHON=1        use (and build) only the pure-Python engine
CMICROGRAD_REQUIRE_EXTENSION=1  a missing compiled engine is an ImportError (CI, wheels)
CMICROGRAD_SIMD=0               the lane replay uses the baseline loops, not AVX2 (tests)
"""

from __future__ import annotations

import os

PURE_PYTHON = "CMICROGRAD_PURE_PYTHON"
REQUIRE_EXTENSION = "CMICROGRAD_REQUIRE_EXTENSION"
SIMD = "CMICROGRAD_SIMD"


def flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def flag_off(name: str) -> bool:
    """Whether environment variable ``name`` is set to a false value (0, false, no, off)."""
    return os.environ.get(name, "").strip().lower() in ("0", "false", "no", "off")


__all__ = ["flag", "flag_off", "PURE_PYTHON", "REQUIRE_EXTENSION", "SIMD"]
