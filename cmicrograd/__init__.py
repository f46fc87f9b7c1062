"""cmicrograd: micrograd's scalar autograd engine and neural nets, with the graph in C.

``from cmicrograd import Value`` gives the compiled engine (or the pure-Python one, see
:mod:`cmicrograd.engine`); ``cmicrograd.IMPLEMENTATION`` says which ("cython" or
"python"). ``cmicrograd.reference`` is always the pure-Python twin.
"""

from .engine import IMPLEMENTATION, Value
from .replay import assign, compile

__version__ = "0.1.0"

__all__ = ["Value", "IMPLEMENTATION", "compile", "assign", "__version__"]
