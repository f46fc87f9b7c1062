"""Row 11: the command line never loses by compiling. `cmicrograd train --quiet` on a
few runs, with its default choice (compile when it pays), `--eager` and `--compiled`,
each run a call of `cmicrograd.cli.main([...])` in this process, timed whole (data,
model, training, the final evaluation; not the interpreter's start or the imports)."""

from __future__ import annotations

import io
import statistics
from typing import Any, Dict, List, Sequence

from cmicrograd.cli import main as cli_main

from .config import TARGETS
from .measure import clocks, interleave, log, since
from .report import NOT_MET, cell, sig
from .workload import Context, Record, Row, Workload

# (full run, quick run): the quick run keeps every kind of run, smaller
RUNS = [
    ((), ()),
    (("--hidden", "5000", "--steps", "2"), ("--hidden", "1000", "--steps", "2")),
    (("--hidden", "5000", "--steps", "1"), ("--hidden", "1000", "--steps", "1")),
    (("--hidden", "64,64", "--steps", "5"), ("--hidden", "64,64", "--steps", "5")),
    (("--dataset", "spiral", "--classes", "3"), ("--dataset", "spiral", "--classes", "3", "--steps", "30")),
]
MODES = {"default": (), "eager": ("--eager",), "compiled": ("--compiled",)}


def train(args: Sequence[str]) -> str:
    """Run `cmicrograd train --quiet ARGS`; returns its summary line."""
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["train", "--quiet", *args], out, err)
    if code != 0:
        raise RuntimeError(f"cmicrograd train {' '.join(args)} exited with {code}: {err.getvalue()}")
    return out.getvalue().strip()


def run(ctx: Context) -> Dict[str, Any]:
    log("11. the command line: default vs --eager vs --compiled ...")
    repeat = ctx.cfg["cli_repeat"]   # a full round of runs takes ~10 s: fewer than --repeat
    train([])   # warm up: the first run of a process pays for some first-time costs
    out: Dict[str, Any] = {"unit": "seconds per run", "repeat": repeat, "runs": []}
    for full, quick in RUNS:
        args = quick if ctx.cfg["quick"] else full
        chose: List[str] = []

        def sampler(mode: str):
            def sample():
                start = clocks()
                line = train([*args, *MODES[mode]])
                took = since(start, 1)
                if mode == "default":
                    chose.append("compiled" if "compiled step" in line else "eager")
                return took
            return sample

        samples = interleave({m: sampler(m) for m in MODES}, repeat)
        out["runs"].append({"args": list(args), "default_chose": chose,
                            "samples": samples["wall"], "cpu_samples": samples["cpu"]})
    return out


def verdict(run: Dict[str, Any], key: str = "samples"):
    """(ratio of the default's median to the faster mode's, paired min, paired max, faster mode)."""
    s = run[key]
    best = min(("eager", "compiled"), key=lambda m: statistics.median(s[m]))
    r = statistics.median(s["default"]) / statistics.median(s[best])
    paired = [d / min(e, c) for d, e, c in zip(s["default"], s["eager"], s["compiled"])]
    return r, min(paired), max(paired), best


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    need = TARGETS["cli_default"]
    out = []
    for run in result["runs"]:
        s = run["samples"]
        r, lo, hi, best = verdict(run)
        chose = sorted(set(run["default_chose"]))
        out.append([
            f"11. cmicrograd train {' '.join(run['args']) or '(the demo)'} (s)", "", "", "",
            f"default {cell(s['default'], 1)} / eager {sig(statistics.median(s['eager']))} / compiled "
            f"{sig(statistics.median(s['compiled']))}", "", "", f"default <= {sig(need)}x the faster",
            f"{'yes' if r <= need else NOT_MET} ({sig(r)}x {best} ({sig(lo, 3)}-{sig(hi, 3)})); "
            f"chose {'/'.join(chose)}",
        ])
    return out


def details(result: Dict[str, Any], record: Record) -> List[str]:
    by_cpu = ", ".join(f"{' '.join(run['args']) or 'the demo'} {sig(verdict(run, 'cpu_samples')[0])}x"
                       for run in result["runs"])
    return [f"11. cmicrograd.cli.main(['train', '--quiet', ...]) in this process, {result['repeat']} runs "
            f"of each mode, interleaved; by CPU time, the default vs the faster: {by_cpu}"]


WORKLOAD = Workload(key="cli", number=11, run=run, rows=rows, details=details)
