"""The pure-Python twin of cmicrograd: the same API and the same bits, no compiler.

It is the parity baseline of the tests and the fallback when the compiled engine is
missing.
"""

from .engine import Value

IMPLEMENTATION = "python"

__all__ = ["Value", "IMPLEMENTATION"]
