#!/usr/bin/env python3
"""cmicrograd's benchmarks, in one process: the compiled engine against the pure-Python
reference (GC on and off), micrograd 0.1.0 (when installed), and two rows that are the
machine's limit: PyTorch float64 on one thread, and the same step in hand-written C.

    python benchmarks/run.py              # the full run (a few minutes)
    python benchmarks/run.py --quick      # the whole run in under a minute
    python benchmarks/run.py --json out.json --repeat 9
    python benchmarks/run.py --only 12     # one row (or several: --only 1,lanes)

Engines are interleaved within every repetition (their order rotates from one
repetition to the next), so slow drifts of a noisy machine hit them all alike; each
cell is the median over the repetitions with its min-max spread. benchmarks/README.md
explains every row; the workloads are in benchmarks/bench/. Only the C file's
compilation runs outside this process.
"""

from __future__ import annotations

import os

# One thread for every numeric library, before any is imported: numpy's OpenBLAS threads
# otherwise spin on the other core (on this 2-vCPU VM, a hyperthread sibling of ours)
# and halve the speed of whatever is being measured. PyTorch gets set_num_threads(1).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import gc
import sys
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    from bench.workload import Workload

INSTALL = 'python3 -m venv .venv && .venv/bin/pip install ".[bench]" && .venv/bin/python benchmarks/run.py'


def workloads() -> List[Workload]:
    """What the benchmark runs, in this order: memory first, while the process's heap is
    small and has little free memory to reuse (RSS deltas would undercount); the checks
    before any timing; the 10^7 chain last. A new row is a module in bench/ with a
    WORKLOAD (see bench/workload.py), added here."""
    from bench import (backward, build, chain, checks, cli, compile_cost, floor, gpt, lanes,
                       memory, optim_replay, step, two_graphs)
    return [memory.WORKLOAD, checks.WORKLOAD, step.WORKLOAD, backward.WORKLOAD,
            build.WORKLOAD, floor.WORKLOAD, gpt.WORKLOAD, compile_cost.WORKLOAD,
            optim_replay.WORKLOAD, two_graphs.WORKLOAD, cli.WORKLOAD, lanes.WORKLOAD,
            chain.WORKLOAD]


def select(plan: Sequence[Workload], only: str) -> List[Workload]:
    """The workloads of `plan` that `only` names (comma-separated numbers or keys: "12",
    "lanes", "1,9"), with those they need (row 1 reads the checks), in `plan`'s order.
    ValueError names what it does not know."""
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    known = {str(w.number) for w in plan if w.number is not None} | {w.key for w in plan}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        raise ValueError(f"unknown workload {', '.join(unknown) or '(none given)'}; choose among: "
                         + ", ".join(f"{w.number} ({w.key})" if w.number is not None else w.key
                                     for w in plan))
    keys = {w.key for w in plan if w.key in wanted or str(w.number) in wanted}
    keys |= {k for w in plan if w.key in keys for k in w.needs}
    return [w for w in plan if w.key in keys]


def why_not_runnable() -> Optional[str]:
    """None when the compiled engine can be measured, else why it cannot."""
    try:
        with warnings.catch_warnings():  # cmicrograd warns when it falls back to Python
            warnings.simplefilter("ignore")
            import cmicrograd
            import cmicrograd._engine  # noqa: F401
    except ImportError as exc:
        return f"cmicrograd with its compiled engine is not installed ({exc})"
    if cmicrograd.IMPLEMENTATION != "cython":
        return (f"cmicrograd picked its {cmicrograd.IMPLEMENTATION} engine, not the compiled "
                "one (is CMICROGRAD_PURE_PYTHON set?)")
    return None


def run(cfg: Dict[str, Any], plan: Sequence[Workload]) -> Dict[str, Any]:
    """Run every workload of `plan`; returns the record that --json writes."""
    from bench import report
    from bench.config import ALPHA, HIDDEN, LR, N_POINTS, NOISE, SEED, TARGETS
    from bench.engines import initial_weights, micrograd_available, torch_module
    from bench.handwritten import HandwrittenC
    from bench.measure import summary
    from bench.workload import Context
    from cmicrograd.datasets import make_moons

    t_start, c_start = time.perf_counter(), time.process_time()
    durations: Dict[str, float] = {}
    cpu: Dict[str, float] = {}
    have_mg = micrograd_available()
    torch_ok = torch_module() is not None
    X, y = make_moons(N_POINTS, NOISE, seed=SEED)
    weights = initial_weights()
    record: Dict[str, Any] = {"config": {**cfg, "seed": SEED, "points": N_POINTS, "noise": NOISE,
                                         "hidden": HIDDEN, "alpha": ALPHA, "lr": LR,
                                         "targets": TARGETS}}

    with tempfile.TemporaryDirectory(prefix="cmicrograd-bench-") as workdir:
        t = time.perf_counter()
        hw = HandwrittenC(workdir)
        durations["compile C"] = time.perf_counter() - t
        record["environment"] = report.environment(torch_ok, have_mg, hw)
        # Everything imported so far (PyTorch alone brings ~150,000 GC-tracked objects)
        # goes to the permanent generation: a GC-on sample then pays for collecting the
        # workload's own objects, as in a script that imports only its engine.
        gc.collect()
        gc.freeze()
        record["environment"]["gc_frozen_objects"] = gc.get_freeze_count()
        ctx = Context(cfg=cfg, weights=weights, X=X, y=y, have_mg=have_mg, torch_ok=torch_ok, hw=hw)
        for w in plan:
            t, c = time.perf_counter(), time.process_time()
            record[w.key] = w.run(ctx)
            durations[w.label] = time.perf_counter() - t
            cpu[w.label] = time.process_time() - c
            gc.collect()
    durations["total"] = time.perf_counter() - t_start
    cpu["total"] = time.process_time() - c_start
    record["durations"] = durations
    for w in plan:
        result = record[w.key]
        if "cpu_samples" in result:  # a timed workload: the summaries of its samples
            result["stats"] = {k: summary(v) for k, v in result["samples"].items()}
            result["cpu_stats"] = {k: summary(v) for k, v in result["cpu_samples"].items()}
    record["load_average_end"] = report.load_average()
    record["cpu_seconds"] = cpu
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="write every raw timing to PATH as JSON")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="repetitions per workload (default: 7, or 3 with --quick)")
    parser.add_argument("--only", metavar="ROWS",
                        help="run only these workloads: row numbers or keys, comma-separated "
                             "(e.g. 12, or 1,lanes); row 1 brings the checks it reports")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    problem = why_not_runnable()
    if problem:
        print(f"run.py: {problem}; from the repository's root: {INSTALL}", file=sys.stderr)
        return 2

    from bench import report
    from bench.config import settings

    cfg = settings(args.quick, args.repeat)
    plan = workloads()
    if args.only is not None:
        try:
            plan = select(plan, args.only)
        except ValueError as exc:
            parser.error(str(exc))
    record = run(cfg, plan)
    report.print_report(record, cfg, plan)
    if args.json:
        report.write_json(record, args.json)
        print(f"wrote every raw timing to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
