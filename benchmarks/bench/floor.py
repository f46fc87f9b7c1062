"""Row 6: the interpreter's floor. Row 3's loop `c = a*b + c` on Python floats, on
compiled Values and on reference Values, in the same process, every one with the GC off:
an op from Python cannot cost less than the same op on floats."""

from __future__ import annotations

import statistics
from typing import Any, Callable, Dict, List

import cmicrograd._engine as compiled_engine
import cmicrograd.reference.engine as reference_engine

from .config import COMPILED, FLOATS, REF_OFF, TARGETS
from .measure import Sample, clocks, gc_mode, interleave, log, since
from .report import NOT_MET, cell, ratio_cell, sig
from .workload import Context, Record, Row, Workload


def loop(a: Any, b: Any, c: Any, iters: int) -> Any:
    """The loop every sampler times: the same bytecode on floats and on Values."""
    for _ in range(iters):
        c = a * b + c
    return c


def run(ctx: Context) -> Dict[str, Any]:
    log("6. the interpreter's floor: c = a*b + c on floats and on Values, GC off ...")
    iters = ctx.cfg["build_iters"]
    inner = ctx.cfg["floor_inner"]

    def sampler(make: Callable[[float], Any], loops: int) -> Callable[[], Sample]:
        def sample() -> Sample:
            wall = cpu = 0.0
            for _ in range(loops):
                a, b, c = make(1.0001), make(0.9999), make(0.0)
                with gc_mode(True):
                    start = clocks()
                    c = loop(a, b, c, iters)
                    w, u = since(start, 1)
                wall, cpu = wall + w, cpu + u
                del a, b, c            # freeing a chain is not timed
            ops = loops * iters * 2
            return wall / ops, cpu / ops
        return sample

    samplers = {FLOATS: sampler(float, inner),
                COMPILED: sampler(compiled_engine.Value, inner),
                REF_OFF: sampler(reference_engine.Value, 1)}
    samples = interleave(samplers, ctx.cfg["repeat"], warmup=list(samplers))
    return {"unit": "seconds per op (2 ops per iteration)", "iterations": iters,
            "samples": samples["wall"], "cpu_samples": samples["cpu"]}


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    s = result["samples"]
    r_ref, t_ref = ratio_cell(s[REF_OFF], s[COMPILED])
    vs_floats = statistics.median(s[COMPILED]) / statistics.median(s[FLOATS])
    _, floats_vs_ref = ratio_cell(s[REF_OFF], s[FLOATS])
    _, t_floats = ratio_cell(s[COMPILED], s[FLOATS], spread_digits=3)
    need_ref, need_floats = TARGETS["floor_vs_ref"], TARGETS["floor_vs_floats"]
    return [
        ["6. floor: c = a*b + c, all GC off (ns/op)", "", "", cell(s[REF_OFF], 1e9),
         cell(s[COMPILED], 1e9), t_ref, "", f">= {sig(need_ref)}x vs GC off",
         "yes" if r_ref >= need_ref else NOT_MET],
        ["6f. the same loop on Python floats (ns/op)", "", "", "as row 6",
         f"floats: {cell(s[FLOATS], 1e9)}", floats_vs_ref, "",
         f"compiled <= {sig(need_floats)}x floats",
         f"{'yes' if vs_floats <= need_floats else NOT_MET} (compiled takes {t_floats})"],
    ]


def details(result: Dict[str, Any], record: Record) -> List[str]:
    cs = result["cpu_samples"]
    _, t = ratio_cell(cs[COMPILED], cs[FLOATS], spread_digits=3)
    return [f"6. {result['iterations']:,} iterations per loop, 2 ops each; by CPU time the compiled "
            f"loop takes {t} the float loop's time"]


WORKLOAD = Workload(key="floor", number=6, run=run, rows=rows, details=details)
