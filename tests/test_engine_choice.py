"""Which engine ``import cmicrograd`` picks, and what it says when it cannot pick the
compiled one. Each case runs in a fresh interpreter, with the environment it names."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import cmicrograd

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE = pathlib.Path(cmicrograd.__file__).resolve().parent
FLAGS = ("CMICROGRAD_PURE_PYTHON", "CMICROGRAD_REQUIRE_EXTENSION")


def _python(code: str, cwd=None, options=(), **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in FLAGS}
    environ.update(env)
    return subprocess.run([sys.executable, *options, "-W", "always", "-c", code],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=environ)


REPORT = "import cmicrograd, cmicrograd.nn as nn; print(cmicrograd.IMPLEMENTATION, nn.MLP.engine.__name__)"
BLOCK_EXTENSION = "import sys; sys.modules['cmicrograd._engine'] = None; "


def test_pure_python_flag_picks_the_reference_quietly():
    done = _python(REPORT, CMICROGRAD_PURE_PYTHON="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["python", "cmicrograd.reference.engine"]
    assert "Warning" not in done.stderr


def test_both_flags_at_once_are_an_error():
    done = _python(REPORT, CMICROGRAD_PURE_PYTHON="1", CMICROGRAD_REQUIRE_EXTENSION="1")
    assert done.returncode != 0
    assert "CMICROGRAD_PURE_PYTHON and CMICROGRAD_REQUIRE_EXTENSION are both set" in done.stderr


def test_a_missing_extension_falls_back_with_a_warning():
    done = _python(BLOCK_EXTENSION + REPORT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["python", "cmicrograd.reference.engine"]
    assert "RuntimeWarning" in done.stderr and "could not be imported" in done.stderr
    assert "pure-Python engine, which is much slower" in done.stderr


def test_a_missing_extension_is_an_error_when_required():
    done = _python(BLOCK_EXTENSION + REPORT, CMICROGRAD_REQUIRE_EXTENSION="1")
    assert done.returncode != 0
    assert "ImportError" in done.stderr and "CMICROGRAD_REQUIRE_EXTENSION is set" in done.stderr


def test_importing_from_a_source_tree_without_the_extension_says_so(tmp_path):
    """Python started in a clone's root after `pip install .` imports the source folder,
    which has no built extension: the warning says exactly that and how to fix it."""
    tree = tmp_path / "clone"
    shutil.copytree(PACKAGE, tree / "cmicrograd",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    (tree / "setup.py").write_text("# the checkout's build script\n")
    # -S: no site-packages, so that an editable install's import hook cannot win over
    # the folder in the current directory (a plain `pip install .` has no such hook)
    done = _python(REPORT, cwd=tree, options=("-S",))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "python"
    assert "being imported from its source tree" in done.stderr
    assert "pip install -e ." in done.stderr and "circular import" not in done.stderr


@pytest.mark.slow
def test_the_suite_core_passes_on_the_pure_engine():
    """The core of the suite with CMICROGRAD_PURE_PYTHON=1: the picked engine, nn and
    everything built on them are the reference's, and they work."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE / "test_engine.py"), str(HERE / "test_nn.py"), str(HERE / "test_training.py"),
         "-k", "python"],
        capture_output=True, text=True, timeout=900, cwd=HERE.parent,
        env={**{k: v for k, v in os.environ.items() if k not in FLAGS}, "CMICROGRAD_PURE_PYTHON": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and " failed" not in done.stdout
