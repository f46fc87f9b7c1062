"""Row 3: building a graph from Python, `c = a*b + c` in a loop, per op."""

from __future__ import annotations

import gc
from typing import Any, Callable, Dict, List

import cmicrograd._engine as compiled_engine
import cmicrograd.reference.engine as reference_engine

from .config import COMPILED, MG_OFF, MG_ON, REF_OFF, REF_ON
from .measure import Sample, clocks, gc_mode, interleave, log, since
from .report import engine_row
from .workload import Context, Record, Row, Workload


def run(ctx: Context) -> Dict[str, Any]:
    log("3. building graphs: c = a*b + c ...")
    iters = ctx.cfg["build_iters"]
    values: Dict[str, Any] = {"reference": reference_engine.Value, "compiled": compiled_engine.Value}
    if ctx.have_mg:
        from micrograd.engine import Value as MGValue
        values["micrograd"] = MGValue

    def sampler(engine: str, inner: int, gc_off: bool) -> Callable[[], Sample]:
        V = values[engine]

        def sample() -> Sample:
            wall = cpu = 0.0
            for _ in range(inner):
                a, b, c = V(1.0001), V(0.9999), V(0.0)
                with gc_mode(gc_off):
                    start = clocks()
                    for _ in range(iters):
                        c = a * b + c
                    w, u = since(start, 1)
                wall, cpu = wall + w, cpu + u
                del a, b, c            # freeing the chain is not timed
                if engine == "micrograd":
                    gc.collect()       # its chain is cyclic garbage
            ops = inner * iters * 2
            return wall / ops, cpu / ops
        return sample

    samplers = {}
    if ctx.have_mg:
        samplers[MG_ON] = sampler("micrograd", 1, False)
        samplers[MG_OFF] = sampler("micrograd", 1, True)
    samplers[REF_ON] = sampler("reference", 1, False)
    samplers[REF_OFF] = sampler("reference", 1, True)
    samplers[COMPILED] = sampler("compiled", 10, False)
    warm = [COMPILED] if ctx.cfg["quick"] else list(samplers)
    samples = interleave(samplers, ctx.cfg["repeat"], warmup=warm)
    return {"unit": "seconds per op", "iterations": iters, "samples": samples["wall"],
            "cpu_samples": samples["cpu"]}


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    return [engine_row("3. build c = a*b + c from Python (ns/op)", result["samples"], 1e9, "build")]


WORKLOAD = Workload(key="build", number=3, run=run, rows=rows)
