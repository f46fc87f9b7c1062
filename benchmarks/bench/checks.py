"""The bit-for-bit checks: a few steps from the same weights on every engine, compared
with the compiled engine's. They run before any timing; rows 1r and 1c report theirs."""

from __future__ import annotations

import ctypes
import gc
from typing import Any, Dict, List, Sequence

import cmicrograd.nn as compiled_nn
import cmicrograd.reference.nn as reference_nn

from .config import HIDDEN
from .engines import (cm_model, cm_step_factory, layer_blocks, mg_step_factory,
                      replay_step_factory, torch_step_factory)
from .measure import gc_mode, log
from .workload import Context, Record, Workload


def hexes(xs: Sequence[float]) -> List[str]:
    return [float(x).hex() for x in xs]


def run(ctx: Context) -> Dict[str, Any]:
    """Run a few steps from the same weights on every engine and compare the bits."""
    log("checks: the same steps on every engine ...")
    with gc_mode(True):  # the GC changes no result; off, the checks run faster
        return _run(ctx)


def _run(ctx: Context) -> Dict[str, Any]:
    weights, X, y, hw = ctx.weights, ctx.X, ctx.y, ctx.hw
    K, Kpy = ctx.cfg["check_steps"], ctx.cfg["check_steps_py"]
    checks: Dict[str, Any] = {"steps_compared": K, "steps_compared_python": Kpy}

    def run_steps(step, params_of, k):
        losses, after_first = [], None
        for i in range(k):
            losses.append(step())
            if i == 0:
                after_first = params_of()
        return losses, after_first, params_of()

    cstep = cm_step_factory(compiled_nn, weights, X, y)
    cparams = lambda: [p.data for p in cstep.model.parameters()]  # noqa: E731
    c_losses, c_p1, c_pK = run_steps(cstep, cparams, K)
    checks["compiled_losses"] = hexes(c_losses)

    rstep = cm_step_factory(reference_nn, weights, X, y)
    r_losses, r_p1, _ = run_steps(rstep, lambda: [p.data for p in rstep.model.parameters()], Kpy)
    checks["reference"] = {
        "losses_equal": r_losses == c_losses[:Kpy],
        "params_equal_after_1": r_p1 == c_p1,
    }

    if hw.lib is not None:
        state = hw.state(weights, X, y)
        one = (ctypes.c_double * 1)()
        hw.train(state, 1, one)
        p1 = list(state[0])
        rest = (ctypes.c_double * (K - 1))()
        hw.train(state, K - 1, rest)
        h_losses = [one[0]] + list(rest)
        first_equal = h_losses[0] == c_losses[0]
        checks["handwritten_c"] = {
            "step1_loss": h_losses[0].hex(), "compiled_step1_loss": c_losses[0].hex(),
            "step1_loss_equal": first_equal,
            "params_equal_after_1": p1 == c_p1,
            "losses_equal": h_losses == c_losses,
            "params_equal_after_K": list(state[0]) == c_pK,
            "first_differing_step": next((i + 1 for i, (a, b) in enumerate(zip(h_losses, c_losses)) if a != b), None),
            "losses": hexes(h_losses),
        }
    else:
        checks["handwritten_c"] = {"skipped": hw.error}

    replay = replay_step_factory(cm_model(compiled_nn, weights), X, y)
    p_losses = [replay() for _ in range(K)]
    checks["replay"] = {"losses_equal": p_losses == c_losses, "losses": hexes(p_losses)}

    if ctx.have_mg:
        mstep = mg_step_factory(weights, X, y)
        m_losses, m_p1, _ = run_steps(mstep, lambda: [float(p.data) for p in mstep.model.parameters()], Kpy)
        checks["micrograd"] = {
            "step1_loss_equal": m_losses[0] == c_losses[0],
            "losses_equal": m_losses == c_losses[:Kpy],
            "max_abs_param_diff_after_1": max(abs(a - b) for a, b in zip(m_p1, c_p1)),
            "losses": hexes(m_losses),
        }
        del mstep
        gc.collect()
    if ctx.torch_ok:
        tstep = torch_step_factory(weights, X, y)
        t_loss = tstep()
        t_p1 = [v for p in tstep.params for v in p.detach().reshape(-1).tolist()]
        # torch's parameter order is (W1, b1, W2, ...): put cmicrograd's in that order
        c_p1_torch = [v for rows, bias in layer_blocks(c_p1, [2] + HIDDEN + [1])
                      for v in [x for r in rows for x in r] + bias]
        checks["torch"] = {
            "step1_loss_rel_diff": abs(t_loss - c_losses[0]) / abs(c_losses[0]),
            "step1_loss_equal": t_loss == c_losses[0],
            "max_abs_param_diff_after_1": max(abs(a - b) for a, b in zip(t_p1, c_p1_torch)),
        }
    return checks


def details(ch: Dict[str, Any], record: Record) -> List[str]:
    ref = ch["reference"]
    lines = [f"bit-for-bit: reference vs compiled over {ch['steps_compared_python']} steps: losses "
             f"{'equal' if ref['losses_equal'] else 'DIFFER'}, weights after step 1 "
             f"{'equal' if ref['params_equal_after_1'] else 'DIFFER'}"]
    hwc = ch["handwritten_c"]
    if "skipped" in hwc:
        lines.append(f"bit-for-bit: handwritten C skipped ({hwc['skipped']})")
    else:
        lines.append(
            f"bit-for-bit: handwritten C vs compiled: step-1 loss {hwc['step1_loss']} vs "
            f"{hwc['compiled_step1_loss']}: {'EQUAL' if hwc['step1_loss_equal'] else 'DIFFERENT'}; "
            f"weights after step 1 {'equal' if hwc['params_equal_after_1'] else 'DIFFER'}; "
            f"losses over {ch['steps_compared']} steps "
            f"{'equal' if hwc['losses_equal'] else 'DIFFER from step %s' % hwc['first_differing_step']}; "
            f"weights after them {'equal' if hwc['params_equal_after_K'] else 'DIFFER'}")
    if "micrograd" in ch:
        mg = ch["micrograd"]
        lines.append(
            f"micrograd 0.1.0 vs compiled: step-1 loss {'equal' if mg['step1_loss_equal'] else 'DIFFERENT'}, "
            f"losses over {ch['steps_compared_python']} steps {'equal' if mg['losses_equal'] else 'differ'}, "
            f"max |weight diff| after step 1 {mg['max_abs_param_diff_after_1']:.3g} "
            "(micrograd sums gradients in set order)")
    if "torch" in ch:
        t = ch["torch"]
        lines.append(f"PyTorch vs compiled: step-1 loss relative difference {t['step1_loss_rel_diff']:.3g}, "
                     f"max |weight diff| after step 1 {t['max_abs_param_diff_after_1']:.3g}")
    return lines


WORKLOAD = Workload(key="checks", run=run, details=details)
