"""Row 9: the optimizer in the replay. On the moons step: the replay's forward +
backward alone, the whole training step `step()` of `cmicrograd.compile(loss,
optimizer=opt)`, and the README's loop (`step.forward(); model.zero_grad();
step.backward(); opt.step()`), for SGD with the demo's linear_decay schedule and for
Adam. Every variant has its own model (the same weights) and its own recording."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import cmicrograd
import cmicrograd.nn as compiled_nn
from cmicrograd.optim import SGD, Adam, linear_decay

from .compile_cost import build_loss
from .config import TARGETS
from .engines import cm_model
from .measure import Sample, interleave, log
from .report import NOT_MET, cell, ratio_cell, sig
from .step import timed_steps
from .workload import Context, Record, Row, Workload

FB = "forward_backward"
VARIANTS = {  # key: (optimizer, how the step runs)
    "sgd_step": ("sgd", "step"), "sgd_loop": ("sgd", "loop"),
    "adam_step": ("adam", "step"), "adam_loop": ("adam", "loop"),
}
INNER = 100  # steps per sample


def run(ctx: Context) -> Dict[str, Any]:
    log("9. the optimizer in the replay ...")
    Xl, yl = ctx.X.tolist(), ctx.y.tolist()
    repeat = ctx.cfg["repeat"]
    steps_in_run = (repeat + 1) * INNER   # the schedule decays over the whole run, to 10%

    def fresh():
        model = cm_model(compiled_nn, ctx.weights)
        return model, build_loss(model, Xl, yl)

    samplers: Dict[str, Callable[[], Sample]] = {}
    model, loss = fresh()
    g = cmicrograd.compile(loss)

    def fwd_bwd() -> float:
        value = g.forward()
        g.backward()
        return value

    samplers[FB] = timed_steps(fwd_bwd, INNER, False)
    graphs = {FB: g}
    for key, (which, how) in VARIANTS.items():
        model, loss = fresh()
        params = model.parameters()
        opt = (SGD(params, lr=linear_decay(1.0, steps_in_run)) if which == "sgd"
               else Adam(params, lr=0.05))
        if how == "step":
            step = cmicrograd.compile(loss, optimizer=opt)
        else:
            graph = cmicrograd.compile(loss)

            def step(graph=graph, model=model, opt=opt) -> float:
                value = graph.forward()
                model.zero_grad()
                graph.backward()
                opt.step()
                return value

        graphs[key] = step if how == "step" else graph
        samplers[key] = timed_steps(step, INNER, False)
    samples = interleave(samplers, repeat, warmup=list(samplers))
    return {"unit": "seconds per step", "steps_per_sample": INNER,
            "recordings": {k: v.recordings for k, v in graphs.items()},
            "samples": samples["wall"], "cpu_samples": samples["cpu"]}


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    s = result["samples"]
    need = TARGETS["optimizer_step"]
    out = [["9. moons replay: forward() + backward() alone (ms)", "", "", "",
            f"fwd+bwd: {cell(s[FB], 1e3)}", "", "", "(the baseline of 9s, 9a)", ""]]
    names = {"sgd": "SGD(linear_decay)", "adam": "Adam"}
    for key, (which, how) in VARIANTS.items():
        r, text = ratio_cell(s[key], s[FB], spread_digits=3)
        letter = which[0]
        if how == "step":
            out.append([f"9{letter}. {names[which]}: step() of compile(loss, optimizer=opt) (ms)", "", "", "",
                        f"step(): {cell(s[key], 1e3)}", "", "", f"<= {sig(need)}x fwd+bwd",
                        f"{'yes' if r <= need else NOT_MET} ({text})"])
        else:
            out.append([f"9{letter}l. {names[which]}: README loop, fwd, zero_grad, bwd, opt.step() (ms)", "", "",
                        "", f"loop: {cell(s[key], 1e3)}", "", "", "(for comparison)", f"{text} fwd+bwd"])
    return out


def details(result: Dict[str, Any], record: Record) -> List[str]:
    cs = result["cpu_samples"]
    by_cpu = ", ".join(f"{k} {sig(ratio_cell(cs[k], cs[FB])[0])}x" for k in VARIANTS)
    rec = result["recordings"]
    return [f"9. {result['steps_per_sample']} steps per sample, each variant with its own model and "
            f"recording; by CPU time, vs forward+backward: {by_cpu}; recordings: "
            + ("1 each" if set(rec.values()) == {1} else str(rec))]


WORKLOAD = Workload(key="optim_replay", number=9, run=run, rows=rows, details=details)
