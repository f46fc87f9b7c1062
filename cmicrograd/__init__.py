"""cmicrograd: micrograd's scalar autograd engine and neural nets, with the graph in C.

``from cmicrograd import Value`` gives the compiled engine (or the pure-Python one, see
:mod:`cmicrograd.engine`); ``cmicrograd.IMPLEMENTATION`` says which ("cython" or
"python"). ``cmicrograd.reference`` is always the pure-Python twin.
"""

from .engine import IMPLEMENTATION, Value
from .arrays import (
    grads_to_vector,
    parameters_to_vector,
    to_array,
    values,
    vector_to_parameters,
)
from .autograd import grad
from .replay import assign
from .replay import compile as compile  # explicit: typed as exported, yet not in __all__

__version__ = "0.1.0"

from types import ModuleType as _ModuleType

# The other submodules (cmicrograd.train, .optim, .losses, .datasets, ...) load on first
# use: `import cmicrograd` stays light (no numpy) and still reaches all of them.
_SUBMODULES = ("nn", "optim", "losses", "datasets", "train", "progress", "plot", "cli", "gradcheck",
               "function", "viz", "reference", "autograd")


def __getattr__(name: str) -> "_ModuleType":
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_SUBMODULES))


# compile is cmicrograd.compile, but `from cmicrograd import *` leaves it out: it would
# shadow the builtin compile().
__all__ = [
    "Value", "IMPLEMENTATION", "grad", "assign", "values", "to_array",
    "parameters_to_vector", "vector_to_parameters", "grads_to_vector", "__version__",
]
