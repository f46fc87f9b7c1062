"""Row 1 and its variants: one training step of micrograd's moons demo on every engine
(1), by the compiled replay (1r), in PyTorch (1t) and in hand-written C (1c)."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any, Callable, Dict, List

import cmicrograd.nn as compiled_nn
import cmicrograd.reference.nn as reference_nn

from .config import COMPILED, HANDWRITTEN, MG_OFF, MG_ON, REF_OFF, REF_ON, REPLAY, TARGETS, TORCH
from .engines import (cm_model, cm_step_factory, mg_step_factory, replay_step_factory,
                      torch_step_factory)
from .measure import Sample, clocks, gc_mode, interleave, log, since
from .report import engine_row, sig, skipped_row, variant_row
from .workload import Context, Record, Row, Workload


def timed_steps(step: Callable[[], float], inner: int, gc_off: bool,
                cyclic: bool = False) -> Callable[[], Sample]:
    """A sampler: `inner` steps, timed together, with the GC off or on; `cyclic` collects
    the steps' cyclic garbage afterwards, untimed."""
    def sample() -> Sample:
        with gc_mode(gc_off):
            start = clocks()
            for _ in range(inner):
                step()
            took = since(start, inner)
        if cyclic:
            gc.collect()  # micrograd's garbage, untimed
        return took
    return sample


def run(ctx: Context) -> Dict[str, Any]:
    log("1. moons training step ...")
    weights, X, y, hw = ctx.weights, ctx.X, ctx.y, ctx.hw
    samplers: Dict[str, Callable[[], Sample]] = {}
    if ctx.have_mg:
        samplers[MG_ON] = timed_steps(mg_step_factory(weights, X, y), 1, False, cyclic=True)
        samplers[MG_OFF] = timed_steps(mg_step_factory(weights, X, y), 1, True, cyclic=True)
    samplers[REF_ON] = timed_steps(cm_step_factory(reference_nn, weights, X, y), 1, False)
    samplers[REF_OFF] = timed_steps(cm_step_factory(reference_nn, weights, X, y), 1, True)
    samplers[COMPILED] = timed_steps(cm_step_factory(compiled_nn, weights, X, y), 20, False)
    samplers[REPLAY] = timed_steps(replay_step_factory(cm_model(compiled_nn, weights), X, y), 20, False)
    if ctx.torch_ok:
        samplers[TORCH] = timed_steps(torch_step_factory(weights, X, y), 50, False)
    if hw.lib is not None:
        hw_state = hw.state(weights, X, y)

        def c_sample() -> Sample:
            steps = 500
            cpu = time.process_time()
            wall = hw.train(hw_state, steps)   # timed inside C: no ctypes overhead
            return wall / steps, (time.process_time() - cpu) / steps

        samplers[HANDWRITTEN] = c_sample

    cheap = [k for k in (COMPILED, REPLAY, TORCH, HANDWRITTEN) if k in samplers]
    warm = list(samplers) if not ctx.cfg["quick"] else cheap
    samples = interleave(samplers, ctx.cfg["repeat"], warmup=warm)
    return {"unit": "seconds per step", "samples": samples["wall"], "cpu_samples": samples["cpu"],
            "replay": "measured"}


def replay_row(s: Dict[str, List[float]], checks: Dict[str, Any]) -> Row:
    """Row 1r: its targets are against the reference, PyTorch and the C step, and its
    losses must equal the compiled engine's bit for bit."""
    row = variant_row("1r. moons step: compiled replay (cmicrograd.compile) (ms)", s, 1e3,
                      REPLAY, "replay")
    replay = statistics.median(s[REPLAY])
    r_off = statistics.median(s[REF_OFF]) / replay
    verdicts = [f"{'yes' if r_off >= TARGETS['replay'] else 'NO <--'} ({sig(r_off)}x)"]
    target = f">= {sig(TARGETS['replay'])}x vs GC off"
    if TORCH in s:
        vs_torch = statistics.median(s[TORCH]) / replay
        target += f"; >= {sig(TARGETS['replay_vs_torch'])}x faster than PyTorch"
        verdicts.append(f"{'yes' if vs_torch >= TARGETS['replay_vs_torch'] else 'NO <--'} ({sig(vs_torch)}x)")
    if HANDWRITTEN in s:
        vs_c = replay / statistics.median(s[HANDWRITTEN])
        target += f"; <= {sig(TARGETS['replay_vs_c'])}x the C time"
        verdicts.append(f"{'yes' if vs_c <= TARGETS['replay_vs_c'] else 'NO <--'} ({sig(vs_c)}x)")
    exact = checks.get("replay", {}).get("losses_equal")
    row[7] = target
    row[8] = "; ".join(verdicts) + f"; bit-exact: {'yes' if exact else 'NO  <-- MISMATCH'}"
    return row


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    s = result["samples"]
    checks = record["checks"]
    out = [engine_row("1. moons step, MLP(2,[16,16,1]) x100 pts (ms/step)", s, 1e3, "step"),
           replay_row(s, checks)]
    if TORCH in s:
        out.append(variant_row("1t. moons step: PyTorch f64 vectorised, 1 thread (ms)", s, 1e3,
                               TORCH, "torch"))
    else:
        out.append(skipped_row("1t. moons step: PyTorch f64 vectorised, 1 thread",
                               "skipped: torch not installed"))
    hw_check = checks.get("handwritten_c", {})
    if HANDWRITTEN in s:
        row = variant_row("1c. moons step: handwritten C -O2 (ms)", s, 1e3, HANDWRITTEN, "C")
        exact = (hw_check.get("step1_loss_equal") and hw_check.get("losses_equal")
                 and hw_check.get("params_equal_after_1") and hw_check.get("params_equal_after_K"))
        row[8] = "bit-exact: " + ("yes" if exact else "NO  <-- MISMATCH") + "; " + row[8]
        out.append(row)
    else:
        out.append(skipped_row("1c. moons step: handwritten C", f"skipped: {hw_check.get('skipped')}"))
    return out


WORKLOAD = Workload(key="step", number=1, run=run, rows=rows, needs=("checks",))
