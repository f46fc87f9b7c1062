"""``benchmarks/run.py --quick`` runs to the end and prints its table.

Only that it works is checked: the exit code, the table's header and that every row
(1 to 12) is in it. No timing is asserted (the numbers depend on the machine and on what
else runs on it); the bit-for-bit checks the rows report are (``bit-exact: yes``).

benchmarks/ ships in the sdist (MANIFEST.in), so this runs from a checkout and from the
unpacked sdist against the installed wheel (tools/check_dist.sh); it skips where tests/
runs alone, as cibuildwheel copies it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
REQUIRE_EXTENSION = os.environ.get("CMICROGRAD_REQUIRE_EXTENSION", "").strip().lower() in (
    "1", "true", "yes", "on",
)


@pytest.mark.slow
@pytest.mark.skipif(not RUN.exists(), reason="benchmarks/run.py is not here: tests/ runs on its "
                    "own (as cibuildwheel copies it); the benchmark runs from a checkout or the sdist")
def test_quick_benchmark_run_prints_its_table():
    try:
        import cmicrograd._engine  # noqa: F401
    except ImportError:
        if REQUIRE_EXTENSION:
            raise
        pytest.skip("the benchmarks need the compiled engine, which is not built")
    env = dict(os.environ)
    env.pop("CMICROGRAD_PURE_PYTHON", None)  # the benchmark measures the compiled engine
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick"],
        capture_output=True, text=True, timeout=900, env=env,
        cwd=str(RUN.parent.parent),
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "cmicrograd benchmarks (quick run" in done.stdout
    header = next((line for line in done.stdout.splitlines() if line.startswith("workload ")), "")
    for column in ("micrograd (GC on / off)", "reference GC on", "reference GC off", "compiled",
                   "ratio vs ref GC off", "ratio vs ref GC on", "target", "met?"):
        assert column in header, (column, done.stdout[:3000])
    table = done.stdout.split(header, 1)[1].split("\ndetails:", 1)[0]
    names = [line.split(" | ", 1)[0] for line in table.splitlines()[1:] if line.strip()]
    for row in ROWS:
        assert any(name.startswith(row) for name in names), (row, names)
    assert "MISMATCH" not in table, table


# the rows the table must have: every workload's, and row 12's variants per problem
ROWS = ["1.", "1r.", "1t.", "1c.", "2.", "3.", "4.", "5.", "6.", "6f.", "7.", "8.", "9.", "9s.",
        "10.", "11."] + [f"12{p}{v}." for p in "abc" for v in ("", "2", "s", "t", "c", "o")]


@pytest.mark.skipif(not RUN.exists(), reason="benchmarks/run.py is not here")
def test_only_selects_workloads_and_what_they_need():
    try:
        import cmicrograd._engine  # noqa: F401
    except ImportError:
        if REQUIRE_EXTENSION:
            raise
        pytest.skip("the benchmarks need the compiled engine, which is not built")
    sys.path.insert(0, str(RUN.parent))
    try:
        import run as bench_run
        plan = bench_run.workloads()
        assert [w.key for w in bench_run.select(plan, "12")] == ["lanes"]
        assert [w.key for w in bench_run.select(plan, "lanes,1")] == ["checks", "step", "lanes"]
        with pytest.raises(ValueError, match="unknown workload 13"):
            bench_run.select(plan, "13")
        assert len({w.number for w in plan if w.number is not None}) == 12
    finally:
        sys.path.remove(str(RUN.parent))
        sys.modules.pop("run", None)
