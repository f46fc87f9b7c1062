"""The notebooks in examples/: committed without outputs, and each runs from top to
bottom without an error, a traceback or a warning.

Every examples/*.ipynb is picked up: a new notebook is tested by being there. Each runs
headless with nbclient in a fresh IPython kernel of this very interpreter (a kernel
spec written for sys.executable, not whatever "python3" kernel the machine has), in an
empty temporary directory (files the notebook writes go there), with a timeout per
cell. The run checks what a learner would see: no error, no traceback or warning on
stderr, the graph pictures (SVG) where a notebook draws graphs and the plots (PNG)
where it plots, and cmicrograd imported from where the tests import it.

Where these tests run: from a checkout and from the unpacked sdist (MANIFEST.in ships
examples/; tools/check_dist.sh runs the suite there), needing nbclient, nbformat and
ipykernel (the test extra installs them: pip install -e ".[test]"). Without them the
notebooks skip, unless CMICROGRAD_REQUIRE_EXTENSION=1 (CI, wheel tests): then they
fail. Where tests/ runs alone (cibuildwheel copies only tests/ and pyproject.toml) there
is nothing to run, and they skip saying so. A notebook that draws graphs or plots skips
without Graphviz's dot or matplotlib, as the README's examples do.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shutil
import sys
import time
from typing import Any, Dict, List

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
REQUIRE_EXTENSION = os.environ.get("CMICROGRAD_REQUIRE_EXTENSION", "").strip().lower() in (
    "1", "true", "yes", "on",
)
CELL_TIMEOUT = 300  # seconds a cell may take; all three notebooks run in a few seconds
KERNEL = "cmicrograd-tests"  # the kernel spec written for sys.executable

# Where tests/ runs alone there are no notebooks; a checkout or the sdist has them.
if NOTEBOOKS:
    PARAMS = [pytest.param(path, id=path.name) for path in NOTEBOOKS]
else:
    PARAMS = [pytest.param(None, id="no-notebooks", marks=pytest.mark.skip(
        reason="examples/ is not here: tests/ runs on its own (as cibuildwheel copies it); "
               "the notebooks are run from a checkout or the unpacked sdist"))]


def test_the_notebooks_are_here():
    """Next to README.md (a checkout, the unpacked sdist) examples/ must be there too:
    a sdist without it would skip every notebook without anyone noticing."""
    if not README.exists():
        pytest.skip("README.md is not here either: tests/ runs on its own (as cibuildwheel copies it)")
    assert NOTEBOOKS, (f"no notebooks in {EXAMPLES}: a checkout has examples/*.ipynb, and "
                       "MANIFEST.in must ship them in the sdist")


@pytest.mark.skipif(not README.exists() or not NOTEBOOKS, reason="README.md or examples/ is not here")
def test_the_readme_lists_every_notebook():
    text = README.read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if f"examples/{p.name}" not in text]
    assert not missing, f"README.md's Notebooks section does not mention {', '.join(missing)}"


# ---- committed without outputs -------------------------------------------------------------
@pytest.mark.parametrize("path", PARAMS)
def test_committed_without_outputs(path: pathlib.Path):
    """Outputs belong to whoever runs the notebook: committed ones go stale, bloat the
    repository (an inline graph is hundreds of kB) and make every rerun a diff.
    In Jupyter: Edit > Clear Outputs of All Cells, then save."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb.get("nbformat") == 4, f"{path.name}: not an nbformat 4 notebook"
    dirty = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            dirty.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            dirty.append(f"cell {i} has execution count {cell['execution_count']}")
    assert not dirty, f"{path.name} was committed with outputs: " + "; ".join(dirty)
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} holds saved widget state"


# ---- runs without errors ---------------------------------------------------------------------
def _missing_runner() -> List[str]:
    return [m for m in ("nbclient", "nbformat", "ipykernel", "jupyter_client")
            if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="session")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    """A kernel spec directory holding one kernel: ipykernel in this interpreter."""
    missing = _missing_runner()
    if missing:
        why = (f"running the notebooks needs {', '.join(missing)}, which the test extra "
               f'installs: pip install -e ".[test]"')
        if REQUIRE_EXTENSION:
            pytest.fail(f"{why} (CMICROGRAD_REQUIRE_EXTENSION is set: CI must run the notebooks)")
        pytest.skip(f"{why} (set CMICROGRAD_REQUIRE_EXTENSION=1 to fail instead)")
    kernels = tmp_path_factory.mktemp("kernels")
    spec = kernels / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info[0]}.{sys.version_info[1]} (the tests' interpreter)",
        "language": "python",
    }), encoding="utf-8")
    return [str(kernels)]


OPTIONAL = [
    # (text in the notebook's code, is it there?, why the notebook skips without it)
    (("cmicrograd.viz",), lambda: importlib.util.find_spec("graphviz") is not None,
     'the graphviz package is not installed (pip install "cmicrograd[viz]")'),
    (("cmicrograd.viz",), lambda: shutil.which("dot") is not None,
     "Graphviz's dot program is not installed (apt-get install graphviz)"),
    (("matplotlib",), lambda: importlib.util.find_spec("matplotlib") is not None,
     'matplotlib is not installed (pip install "cmicrograd[plot]")'),
]

# Python's warnings ("file.py:3: UserWarning: ...") and tracebacks, as they reach stderr.
NOISE = re.compile(r"\b\w*Warning: |Traceback \(most recent call last\)")

# Appended to the notebook in memory (never saved): which Python and cmicrograd ran it.
WHO_RAN = """\
import json, sys, cmicrograd
print("WHO_RAN " + json.dumps({"executable": sys.executable, "cmicrograd": cmicrograd.__file__,
                               "engine": cmicrograd.IMPLEMENTATION}))
"""


def _outputs(nb: Any) -> List[Dict[str, Any]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.parametrize("path", PARAMS)
def test_notebook_runs(path: pathlib.Path, kernel_dirs: List[str], tmp_path: pathlib.Path,
                       monkeypatch: pytest.MonkeyPatch):
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    for words, present, why in OPTIONAL:
        if any(w in code for w in words) and not present():
            pytest.skip(f"{path.name}: {why}")
    nb.cells.append(nbformat.v4.new_code_cell(WHO_RAN))

    # The kernel inherits this environment: keep it off the user's files and settings.
    for name in ("runtime", "ipython", "cwd"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection file
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))           # profile, history
    monkeypatch.delenv("MPLBACKEND", raising=False)  # plots show inline, as in Jupyter
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's frozen-modules note

    specs = KernelSpecManager(kernel_dirs=kernel_dirs, ensure_native_kernel=False)
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, startup_timeout=120,
                            resources={"metadata": {"path": str(tmp_path / "cwd")}})
    start = time.perf_counter()
    try:
        client.execute(cleanup_kc=True)  # cleanup_kc: shut the kernel down, though we made km
    except (CellExecutionError, CellTimeoutError) as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    seconds = time.perf_counter() - start

    outputs = _outputs(nb)
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    noise = [out.text for out in outputs if out.output_type == "stream" and out.name == "stderr"
             and NOISE.search(out.text)]
    assert not noise, f"{path.name} shows a warning or traceback:\n" + "\n".join(noise)
    shown = {mime for out in outputs for mime in out.get("data", {})}
    if "cmicrograd.viz" in code:
        assert "image/svg+xml" in shown, f"{path.name} draws graphs, but no picture came out"
    if "matplotlib" in code:
        assert "image/png" in shown, f"{path.name} plots, but no plot came out"

    ran = [line for out in outputs if out.output_type == "stream"
           for line in out.text.splitlines() if line.startswith("WHO_RAN ")]
    assert len(ran) == 1, f"{path.name}: the check appended to the notebook printed nothing"
    who = json.loads(ran[0][len("WHO_RAN "):])
    import cmicrograd
    assert who == {"executable": sys.executable, "cmicrograd": cmicrograd.__file__,
                   "engine": cmicrograd.IMPLEMENTATION}, "the kernel ran another Python or cmicrograd"
    print(f"{path.name}: {seconds:.1f} s")
