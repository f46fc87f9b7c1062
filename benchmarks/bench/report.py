"""The report: numbers into cells, the rows every timed workload shares, the table, the
environment in the header, and printing it all (stdout) or writing it as JSON."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import cmicrograd

from .config import COMPILED, MG_OFF, MG_ON, REF_OFF, REF_ON, TARGETS
from .engines import torch_module
from .handwritten import HandwrittenC
from .measure import summary
from .workload import Record, Row, Workload

COLUMNS = ["workload", "micrograd (GC on / off)", "reference GC on", "reference GC off",
           "compiled", "ratio vs ref GC off", "ratio vs ref GC on", "target", "met?"]
NOT_MET = "NO  <-- NOT MET"


# ---- cells -------------------------------------------------------------------------------
def sig(x: float, digits: int = 3) -> str:
    """x with about `digits` significant digits, without exponent notation."""
    if x is None or not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def cell(xs: Optional[Sequence[float]], scale: float) -> str:
    """median (min-max) of the samples times `scale`."""
    if not xs:
        return "-"
    s = summary([x * scale for x in xs])
    if s["n"] == 1:
        return sig(s["median"])
    return f"{sig(s['median'])} ({sig(s['min'], 2)}-{sig(s['max'], 2)})"


def ratio_cell(num: Optional[Sequence[float]], den: Optional[Sequence[float]],
               spread_digits: int = 2) -> Tuple[Optional[float], str]:
    """(median ratio, text): median(num) / median(den), with the spread of the paired
    per-repetition ratios (to `spread_digits` significant digits)."""
    if not num or not den:
        return None, "-"
    r = statistics.median(num) / statistics.median(den)
    paired = [a / b for a, b in zip(num, den)]
    if len(paired) > 1:
        lo, hi = sig(min(paired), spread_digits), sig(max(paired), spread_digits)
        return r, f"{sig(r)}x ({lo}-{hi})"
    return r, f"{sig(r)}x"


# ---- rows of the timed workloads ------------------------------------------------------------
def engine_row(name: str, samples: Dict[str, List[float]], scale: float, target_key: str) -> Row:
    """A row that times every engine: micrograd, the reference with the GC on and off,
    and the compiled engine, whose ratio to the reference (GC off) must reach
    TARGETS[target_key]."""
    if MG_ON in samples:
        mg = f"{cell(samples[MG_ON], scale)} / {cell(samples[MG_OFF], scale)}"
    else:
        mg = "not installed"
    r_off, t_off = ratio_cell(samples[REF_OFF], samples.get(COMPILED))
    _, t_on = ratio_cell(samples[REF_ON], samples.get(COMPILED))
    need = TARGETS[target_key]
    met = "yes" if r_off is not None and r_off >= need else NOT_MET
    return [name, mg, cell(samples[REF_ON], scale), cell(samples[REF_OFF], scale),
            cell(samples.get(COMPILED), scale), t_off, t_on, f">= {sig(need)}x vs GC off", met]


def variant_row(name: str, samples: Dict[str, List[float]], scale: float, key: str,
                label: str) -> Row:
    """A row for another way to run the same work as the row above it (samples[key]):
    the reference columns repeat that row, the ratios compare with the reference, and
    "met?" says how many times longer the compiled engine takes. Target: "(limit)"."""
    _, t_off = ratio_cell(samples[REF_OFF], samples.get(key))
    _, t_on = ratio_cell(samples[REF_ON], samples.get(key))
    comp_vs = statistics.median(samples[COMPILED]) / statistics.median(samples[key])
    return [name, "as row 1", "as row 1", "as row 1", f"{label}: {cell(samples.get(key), scale)}",
            t_off, t_on, "(limit)", f"compiled takes {sig(comp_vs)}x its time"]


def skipped_row(name: str, why: str) -> Row:
    return [name, "", "", "", why, "", "", "", "-"]


# ---- the table -------------------------------------------------------------------------------
def in_table_order(workloads: Sequence[Workload]) -> List[Workload]:
    """The numbered workloads by number, then the others in their run order."""
    numbered = sorted((w for w in workloads if w.number is not None), key=lambda w: w.number)
    return numbered + [w for w in workloads if w.number is None]


def format_table(rows: List[Row]) -> str:
    widths = [max(len(r[i]) for r in rows + [COLUMNS]) for i in range(len(COLUMNS))]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(COLUMNS), sep] + [line(r) for r in rows])


# ---- the environment -------------------------------------------------------------------------
def load_average() -> Optional[str]:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                if row.lower().startswith("model name"):
                    return row.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(torch_ok: bool, have_mg: bool, hw: HandwrittenC) -> Dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    mg_version = None
    if have_mg:
        try:
            from importlib.metadata import version
            mg_version = version("micrograd")
        except Exception:  # noqa: BLE001 - only for the header
            mg_version = "installed"
    return {
        "machine": cpu_model(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "cmicrograd": cmicrograd.__version__,
        "cmicrograd_implementation": cmicrograd.IMPLEMENTATION,
        "numpy": np.__version__,
        "torch": torch_module().__version__ if torch_ok else None,
        "micrograd": mg_version,
        "cc": hw.compiler_version or hw.compiler,
        "cc_command": " ".join(hw.command),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_start": load_average(),
    }


# ---- printing and writing ----------------------------------------------------------------------
def print_report(record: Record, cfg: Dict[str, Any], workloads: Sequence[Workload]) -> None:
    env = record["environment"]
    mode = "quick" if cfg["quick"] else "full"
    print(f"cmicrograd benchmarks ({mode} run, {cfg['repeat']} repetitions, engines interleaved)")
    print(f"machine: {env['machine']} | cores: {env['cores']} (usable {env['cores_usable']}) | "
          f"{env['platform']}")
    print(f"Python {env['python']} | cmicrograd {env['cmicrograd']} ({env['cmicrograd_implementation']}) | "
          f"numpy {env['numpy']} | torch {env['torch'] or 'not installed'} | "
          f"micrograd {env['micrograd'] or 'not installed'} | {env['date']}")
    print(f"C: {env['cc_command'] or 'no compiler'}")
    print(f"load average (1, 5, 15 min) at start: {env['load_average_start']}, at end: "
          f"{record.get('load_average_end')}  (a load above the core count means other processes took CPU time)")
    print(f"gc.freeze() moved the {env['gc_frozen_objects']:,} objects alive after the imports out of the "
          "GC's reach; compiled samples run with the GC on (its Values are not GC-tracked)")
    print("cells: median (min-max) over the repetitions; ratio: reference median / compiled "
          "median (min-max of the per-repetition ratios)")
    print()
    ordered = in_table_order(workloads)
    rows = [row for w in ordered for row in w.rows(record[w.key], record)]
    print(format_table(rows))
    print()

    print("details:")
    for w in ordered:
        for line in w.details(record[w.key], record):
            print(f"  {line}")
    for w in ordered:  # the timed workloads' ratios by CPU time
        cs = record[w.key].get("cpu_samples")
        if not cs or REF_OFF not in cs or COMPILED not in cs:
            continue
        r_off, _ = ratio_cell(cs[REF_OFF], cs[COMPILED])
        on = f", vs GC on {sig(ratio_cell(cs[REF_ON], cs[COMPILED])[0])}x" if REF_ON in cs else ""
        print(f"  {w.number}. by CPU time of this process (time.process_time, blind to time spent "
              f"descheduled): ratio vs ref GC off {sig(r_off)}x{on}")
    d, cpu = record["durations"], record["cpu_seconds"]
    print(f"  run time: {d['total']:.1f} s wall, {cpu['total']:.1f} s CPU (this process; a wall time "
          "well above the CPU time means other processes took the cores); wall by part: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in d.items() if k != "total"))


def write_json(record: Record, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, default=str)
        f.write("\n")
