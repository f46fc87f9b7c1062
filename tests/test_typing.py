"""The public API type-checks: ``mypy --strict`` on a user's program (tests/typing)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parent / "typing" / "example.py"


def test_example_runs():
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_mypy_strict_passes_on_a_users_program(tmp_path):
    pytest.importorskip("mypy", reason="mypy comes with the test extra")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path),
         str(EXAMPLE)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stubs_describe_the_compiled_module():
    compiled = pytest.importorskip("cmicrograd._engine")
    stub = pathlib.Path(compiled.__file__).with_name("_engine.pyi")
    assert stub.exists(), "the stubs must ship next to the compiled module"
    text = stub.read_text()
    for name in compiled.__all__:
        assert f"def {name}(" in text or f"class {name}" in text, name
    assert (stub.parent / "py.typed").exists()
