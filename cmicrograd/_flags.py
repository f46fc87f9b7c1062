"""The one place that reads the CMICROGRAD_* environment flags.

Used by the engine choice (cmicrograd/_engines.py), the tests and setup.py, which loads
this file on its own before the package is built: it imports nothing from cmicrograd.

CMICROGRAD_PURE_PYTHON=1        use (and build) only the pure-Python engine
CMICROGRAD_REQUIRE_EXTENSION=1  a missing compiled engine is an ImportError (CI, wheels)
"""

from __future__ import annotations

import os

PURE_PYTHON = "CMICROGRAD_PURE_PYTHON"
REQUIRE_EXTENSION = "CMICROGRAD_REQUIRE_EXTENSION"


def flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


__all__ = ["flag", "PURE_PYTHON", "REQUIRE_EXTENSION"]
