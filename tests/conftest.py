"""One suite, two engines: the ``engine`` fixture runs a test on the compiled engine
and on the pure-Python reference.

The compiled engine is required when CMICROGRAD_REQUIRE_EXTENSION=1 (CI, wheel tests):
a missing extension is then an error, never a skip. Without that variable, the compiled
half is skipped with a reason when the extension is not built.
"""

from __future__ import annotations

import importlib
import os
import types

import pytest

import cmicrograd
import cmicrograd.reference.engine as reference_engine

REQUIRE_EXTENSION = os.environ.get("CMICROGRAD_REQUIRE_EXTENSION", "").strip().lower() in (
    "1", "true", "yes", "on",
)

try:
    compiled_engine = importlib.import_module("cmicrograd._engine")
except ImportError as exc:  # pragma: no cover - depends on the build
    if REQUIRE_EXTENSION:
        raise ImportError(
            f"CMICROGRAD_REQUIRE_EXTENSION is set but cmicrograd._engine is missing: {exc}"
        ) from exc
    compiled_engine = None


import cmicrograd.reference.nn as reference_nn

if compiled_engine is not None and cmicrograd.IMPLEMENTATION == "cython":
    import cmicrograd.nn as compiled_nn
else:
    compiled_nn = None


def _namespace(name: str, engine_module: types.ModuleType | None,
               nn_module: types.ModuleType | None) -> types.SimpleNamespace:
    return types.SimpleNamespace(name=name, engine=engine_module, nn=nn_module,
                                 Value=getattr(engine_module, "Value", None))


ENGINES = {
    "cython": _namespace("cython", compiled_engine, compiled_nn),
    "python": _namespace("python", reference_engine, reference_nn),
}


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"cmicrograd {cmicrograd.__version__} from {os.path.dirname(cmicrograd.__file__)}",
        f"picked engine: {cmicrograd.IMPLEMENTATION}; compiled engine "
        f"{'available' if compiled_engine else 'MISSING'}; "
        f"CMICROGRAD_REQUIRE_EXTENSION={'1' if REQUIRE_EXTENSION else 'unset'}",
    ]


def pytest_configure(config: pytest.Config) -> None:
    if REQUIRE_EXTENSION and cmicrograd.IMPLEMENTATION != "cython":
        raise pytest.UsageError(
            "CMICROGRAD_REQUIRE_EXTENSION is set but cmicrograd picked the "
            f"{cmicrograd.IMPLEMENTATION} engine"
        )


@pytest.fixture(params=["cython", "python"])
def engine(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    """The engine under test: ``engine.Value``, ``engine.name``, ``engine.engine``."""
    ns = ENGINES[request.param]
    if ns.engine is None:
        pytest.skip("the compiled engine is not built (set CMICROGRAD_REQUIRE_EXTENSION=1 to fail instead)")
    return ns


@pytest.fixture
def both() -> tuple[types.SimpleNamespace, types.SimpleNamespace]:
    """(compiled, reference), for tests that compare the two engines directly."""
    if compiled_engine is None:
        pytest.skip("the compiled engine is not built (set CMICROGRAD_REQUIRE_EXTENSION=1 to fail instead)")
    return ENGINES["cython"], ENGINES["python"]
