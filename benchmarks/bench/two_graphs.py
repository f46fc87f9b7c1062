"""Row 10: two compiled graphs over the same parameters, a training loss (the 100 moons
points) and a validation loss (50 other points), replayed alternately (train forward +
backward, then val forward), against the same calls on two graphs that each have their
parameters to themselves, replayed on their own."""

from __future__ import annotations

from statistics import median
from typing import Any, Dict, List

import cmicrograd
import cmicrograd.nn as compiled_nn
from cmicrograd.datasets import make_moons

from .compile_cost import build_loss
from .config import NOISE, SEED, TARGETS
from .engines import cm_model
from .measure import clocks, interleave, log, since
from .report import NOT_MET, cell, sig
from .workload import Context, Record, Row, Workload

INNER = 100    # iterations per sample
VAL_POINTS = 50
ALTERNATING, TRAIN_ALONE, VAL_ALONE = "alternating", "train_alone", "val_alone"


def run(ctx: Context) -> Dict[str, Any]:
    log("10. two compiled graphs over the same parameters, alternated ...")
    Xt, yt = ctx.X.tolist(), ctx.y.tolist()
    Xv, yv = (a.tolist() for a in make_moons(VAL_POINTS, NOISE, seed=SEED + 1))

    shared = cm_model(compiled_nn, ctx.weights)
    train = cmicrograd.compile(build_loss(shared, Xt, yt))
    val = cmicrograd.compile(build_loss(shared, Xv, yv))
    train_alone = cmicrograd.compile(build_loss(cm_model(compiled_nn, ctx.weights), Xt, yt))
    val_alone = cmicrograd.compile(build_loss(cm_model(compiled_nn, ctx.weights), Xv, yv))

    def alternating():
        start = clocks()
        for _ in range(INNER):
            train.forward()
            train.backward()
            val.forward()
        return since(start, INNER)

    def train_only():
        start = clocks()
        for _ in range(INNER):
            train_alone.forward()
            train_alone.backward()
        return since(start, INNER)

    def val_only():
        start = clocks()
        for _ in range(INNER):
            val_alone.forward()
        return since(start, INNER)

    samplers = {ALTERNATING: alternating, TRAIN_ALONE: train_only, VAL_ALONE: val_only}
    samples = interleave(samplers, ctx.cfg["repeat"], warmup=list(samplers))
    recordings = {"train": train.recordings, "val": val.recordings}

    # each replays what a graph built anew computes (no parameter changed meanwhile)
    shared.zero_grad()
    val_value = val.forward()
    train_value = train.forward()
    train.backward()
    replay_grads = [p.grad for p in shared.parameters()]
    shared.zero_grad()
    eager = build_loss(shared, Xt, yt)
    eager.backward()
    exact = {
        "train_loss": train_value == eager.data,
        "train_grads": replay_grads == [p.grad for p in shared.parameters()],
        "val_loss": val_value == build_loss(shared, Xv, yv).data,
    }
    return {"unit": "seconds per iteration", "iterations_per_sample": INNER, "val_points": VAL_POINTS,
            "recordings": recordings, "recordings_after_checks": {"train": train.recordings,
                                                                  "val": val.recordings},
            "exact": exact, "samples": samples["wall"], "cpu_samples": samples["cpu"]}


def alone_sum(s: Dict[str, List[float]]) -> List[float]:
    return [a + b for a, b in zip(s[TRAIN_ALONE], s[VAL_ALONE])]


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    s = result["samples"]
    alone = alone_sum(s)
    paired = [a / b for a, b in zip(s[ALTERNATING], alone)]
    r = median(s[ALTERNATING]) / median(alone)
    need = TARGETS["two_graphs"]
    rec, exact = result["recordings"], result["exact"]
    rec_ok = set(rec.values()) == {1}
    return [
        ["10. two graphs, same params: train fwd+bwd, val fwd, alternated (ms)", "", "", "",
         f"alternating: {cell(s[ALTERNATING], 1e3)}", "", "", f"<= {sig(need)}x alone; recordings stay 1",
         f"{'yes' if r <= need else NOT_MET} ({sig(r)}x ({sig(min(paired), 3)}-{sig(max(paired), 3)})); "
         f"recordings {rec['train']}, {rec['val']}: {'yes' if rec_ok else NOT_MET}; "
         f"bit-exact: {'yes' if all(exact.values()) else 'NO  <-- MISMATCH'}"],
        ["10a. the same calls, each graph alone (ms)", "", "", "",
         f"train {cell(s[TRAIN_ALONE], 1e3)} + val {cell(s[VAL_ALONE], 1e3)}", "", "", "", ""],
    ]


def details(result: Dict[str, Any], record: Record) -> List[str]:
    cs = result["cpu_samples"]
    exact = result["exact"]
    return [f"10. {result['iterations_per_sample']} iterations per sample; val: {result['val_points']} other moons "
            f"points; by CPU time alternating takes {sig(median(cs[ALTERNATING]) / median(alone_sum(cs)))}x alone; "
            f".recordings after the timing: train {result['recordings']['train']}, val "
            f"{result['recordings']['val']} (after the checks: {result['recordings_after_checks']}); replays vs "
            "graphs built anew: " + ", ".join(f"{k} {'equal' if v else 'DIFFER'}" for k, v in exact.items())]


WORKLOAD = Workload(key="two_graphs", number=10, run=run, rows=rows, details=details)
