"""Row 8: what compiling costs. `cmicrograd.compile(loss)` next to one eager build of
the same graph (the moons loss of MLP(2, [h, h, 1]) over 100 points, for three widths),
in this process after earlier recordings (whose freed arrays the engine reuses) and as
the first compile of a fresh process (a subprocess: `python -m bench.compile_cost H`),
where the memory of the recording and of the graph is measured too. Also: after how
many steps compiling pays."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
from typing import Any, Dict, List, Sequence

import cmicrograd
from cmicrograd import Value
from cmicrograd.datasets import make_moons
from cmicrograd.losses import hinge_loss, l2_regularization
from cmicrograd.nn import MLP
from cmicrograd.optim import SGD

from .config import ALPHA, LR, N_POINTS, NOISE, SEED, TARGETS
from .measure import clocks, gc_mode, log, rss_bytes, settle, since
from .report import NOT_MET, cell, sig
from .workload import Context, Record, Row, Workload

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_loss(model: Any, X: Sequence[Sequence[float]], y: Sequence[float]) -> Any:
    """The demo's loss as the README builds it: inputs as Value leaves, the model's
    scores, the hinge loss plus the L2 term."""
    inputs = [[Value(x) for x in row] for row in X]
    scores = [model(row) for row in inputs]
    return hinge_loss(scores, y) + l2_regularization(model.parameters(), ALPHA)


def problem(hidden: int):
    """(model, X, y): MLP(2, [hidden, hidden, 1]) after random.seed(SEED), the moons."""
    X, y = make_moons(N_POINTS, NOISE, seed=SEED)
    random.seed(SEED)
    return MLP(2, [hidden, hidden, 1]), X.tolist(), y.tolist()


# ---- the first compile of a process (run in a subprocess) ------------------------------------
def first_in_process(hidden: int) -> Dict[str, float]:
    """The first build and the first compile of a fresh process, and the RSS each adds
    (after settle(): gc.collect, _trim_memory, malloc_trim)."""
    model, X, y = problem(hidden)
    settle()
    r0, t0 = rss_bytes(), clocks()
    loss = build_loss(model, X, y)
    build_s = since(t0, 1)
    r1 = rss_bytes()
    settle()
    r1b, t1 = rss_bytes(), clocks()
    graph = cmicrograd.compile(loss)
    compile_s = since(t1, 1)
    r2 = rss_bytes()
    assert graph.recordings == 1
    return {"build": build_s[0], "compile": compile_s[0], "build_cpu": build_s[1],
            "compile_cpu": compile_s[1], "graph_rss": r1 - r0, "recording_rss": r2 - r1b}


def first_in_subprocess(hidden: int) -> Dict[str, float]:
    env = dict(os.environ)
    env.pop("CMICROGRAD_PURE_PYTHON", None)
    done = subprocess.run([sys.executable, "-m", "bench.compile_cost", str(hidden)], cwd=BENCH_DIR,
                          env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout)


# ---- later compiles, in this process -----------------------------------------------------------
SIZES = (16, 64, 200)
# per width: replayed steps and eager steps per sample
STEPS = {16: (20, 5), 64: (10, 2), 200: (5, 1)}


def measure_later(hidden: int, repeat: int) -> Dict[str, List[float]]:
    """Per repetition: eager training steps (build, zero_grad, backward, SGD, free),
    then one build (timed), its compile (timed), replayed steps (the README's loop)
    and freeing both (untimed). One untimed round first, so that every timed build
    reuses a freed graph's memory and every compile a freed recording's arrays."""
    model, X, y = problem(hidden)
    params = model.parameters()
    opt = SGD(params, lr=LR)
    n_replay, n_eager = STEPS[hidden]
    out: Dict[str, List[float]] = {"build": [], "compile": [], "eager_step": [], "replay_step": []}
    for r in range(repeat + 1):
        start = clocks()
        for _ in range(n_eager):
            loss = build_loss(model, X, y)
            model.zero_grad()
            loss.backward()
            opt.step()
            del loss
        eager = since(start, n_eager)[0]
        start = clocks()
        loss = build_loss(model, X, y)
        build = since(start, 1)[0]
        start = clocks()
        graph = cmicrograd.compile(loss)
        compiled = since(start, 1)[0]
        start = clocks()
        for _ in range(n_replay):
            graph.forward()
            model.zero_grad()
            graph.backward()
            opt.step()
        replay = since(start, n_replay)[0]
        assert graph.recordings == 1
        del graph, loss
        if r:   # the first round warms up
            for k, v in (("build", build), ("compile", compiled), ("eager_step", eager),
                         ("replay_step", replay)):
                out[k].append(v)
    return out


def run(ctx: Context) -> Dict[str, Any]:
    log("8. what compiling costs: compile(loss) vs one eager build ...")
    first_runs = ctx.cfg["first_compiles"]
    out: Dict[str, Any] = {"unit": "seconds", "sizes": {}}
    for h in SIZES:
        with gc_mode(False):
            later = measure_later(h, ctx.cfg["repeat"])
        firsts = [first_in_subprocess(h) for _ in range(first_runs)]
        first = {k: [f[k] for f in firsts] for k in firsts[0]}
        out["sizes"][str(h)] = {"later": later, "first": first}
    return out


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def pays_after(s: Dict[str, Any]) -> int:
    """Steps after which compile + n replayed steps cost no more than n eager steps
    (the graph the compile records comes from an eager step counted on both sides)."""
    later = s["later"]
    gain = med(later["eager_step"]) - med(later["replay_step"])
    return math.ceil(med(later["compile"]) / gain) if gain > 0 else -1


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    out = []
    need, need_mem = TARGETS["compile_vs_build"], TARGETS["recording_vs_graph"]
    for h, s in result["sizes"].items():
        later, first = s["later"], s["first"]
        r_later = med(later["compile"]) / med(later["build"])
        r_first = med(first["compile"]) / med(first["build"])
        r_mem = med(first["recording_rss"]) / med(first["graph_rss"])
        out.append([
            f"8. compile(loss) vs eager build, MLP(2,[{h},{h},1]) x100 (ms)", "", "", "",
            f"compile {cell(later['compile'], 1e3)} / build {cell(later['build'], 1e3)}; "
            f"first in process {sig(med(first['compile']) * 1e3)} / {sig(med(first['build']) * 1e3)}",
            "", "", f"compile <= {sig(need)}x build; recording <= {sig(need_mem)}x graph RSS",
            f"{'yes' if r_later <= need else NOT_MET} ({sig(r_later)}x); first: "
            f"{'yes' if r_first <= need else NOT_MET} ({sig(r_first)}x); RSS: "
            f"{'yes' if r_mem <= need_mem else NOT_MET} ({sig(r_mem)}x)",
        ])
    return out


def details(result: Dict[str, Any], record: Record) -> List[str]:
    lines = []
    for h, s in result["sizes"].items():
        later, first = s["later"], s["first"]
        n = pays_after(s)
        lines.append(
            f"8. MLP(2,[{h},{h},1]): eager step {sig(med(later['eager_step']) * 1e3)} ms, replayed step "
            f"(forward, zero_grad, backward, opt.step) {sig(med(later['replay_step']) * 1e3)} ms: compile + n "
            f"replays <= n eager steps from n = {n if n > 0 else 'never'}; first compile of a process: "
            f"compile {cell(first['compile'], 1e3)} ms vs build {cell(first['build'], 1e3)} ms "
            f"({len(first['build'])} process(es)); RSS added by the graph {sig(med(first['graph_rss']) / 2**20)} MiB, "
            f"by its recording {sig(med(first['recording_rss']) / 2**20)} MiB")
    return lines


WORKLOAD = Workload(key="compile_cost", number=8, run=run, rows=rows, details=details)


if __name__ == "__main__":   # the first compile of a fresh process, as JSON on stdout
    json.dump(first_in_process(int(sys.argv[1])), sys.stdout)
