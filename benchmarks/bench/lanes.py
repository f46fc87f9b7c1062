"""Row 12: lanes and threads. One whole training step through the public API,
`step = cmicrograd.compile(loss, optimizer=SGD(...), lanes=..., threads=...)` then
`step()` (forward, zero_grad, backward, the SGD update), on three problems:

  (a) micrograd's demo: 100 moons points, MLP(2, [16, 16, 1]) (row 1's step);
  (b) the same on 1,000 points;
  (c) 1,000 points, MLP(2, [64, 64, 1]);

each run by the scalar replay (lanes=False), the lanes on one thread and on two,
PyTorch float64 on one thread, and handwritten.c built with -O2 (as row 1c) and with
-O3 -march=native, interleaved in one process. Before timing, every variant runs a few
steps from the same weights: losses and weights must be equal bit for bit (PyTorch's
only close: BLAS sums in its own order).

What two threads can gain is bounded by the machine: two copies of the C -O2 step run
at once, in two threads (ctypes releases the GIL; each copy its own .so, so its own
static arrays), measure how much more work two cores do than one (row 12cp).
"""

from __future__ import annotations

import ctypes
import gc
import os
import statistics
import tempfile
import threading
from typing import Any, Callable, Dict, List, Sequence, Tuple

import cmicrograd
import cmicrograd.nn as compiled_nn
from cmicrograd.datasets import make_moons
from cmicrograd.optim import SGD

from .compile_cost import build_loss
from .config import LR, NOISE, SEED, TARGETS
from .engines import cm_model, initial_weights, torch_step_factory
from .handwritten import HandwrittenC
from .measure import Sample, clocks, interleave, log, since, summary
from .report import NOT_MET, cell, ratio_cell, sig
from .step import timed_steps
from .workload import Context, Record, Row, Workload

# (letter, hidden layers, the targets its rows judge); the points come from
# config.MODES["lanes_points"] (1,000 for (b) and (c) in a full run, 200 with --quick)
PROBLEMS: List[Tuple[str, List[int], Tuple[str, ...]]] = [
    ("a", [16, 16], ("lanes_vs_c", "lanes_vs_torch_demo")),
    ("b", [16, 16], ("lanes_vs_torch",)),
    ("c", [64, 64], ("lanes_threads",)),
]

# the variants, in table order
LANES1, LANES2, SCALAR = "lanes_threads1", "lanes_threads2", "scalar_replay"
TORCH, C_O2, C_NATIVE = "torch", "c_O2", "c_O3_native"
REPLAYS = {LANES1: {"lanes": True, "threads": 1}, LANES2: {"lanes": True, "threads": 2},
           SCALAR: {"lanes": False, "threads": 1}}
C_BUILDS = {C_O2: ("-O2",), C_NATIVE: ("-O3", "-march=native")}
# the machine's limit for two threads: two copies of the C -O2 step at once
C_PAIR = "c_O2_two_at_once"
# the replay's phases, timed for the lanes (where the threads' time goes)
PHASES = {"forward": "forward()", "forward_backward": "forward() + backward()"}


def calibrate(run_k: Callable[[int], float], seconds: float) -> int:
    """How many steps make a sample of about `seconds`: run_k(k) runs k steps and
    returns their wall time; after one untimed step (a first call starts the threads),
    k grows until a run lasts a tenth of the sample."""
    run_k(1)
    k = 1
    while True:
        took = run_k(k)
        if took >= seconds / 10 or k >= 100_000:
            return max(1, round(seconds * k / max(took, 1e-9)))
        k *= 4


def python_run_k(step: Callable[[], Any]) -> Callable[[int], float]:
    def run_k(k: int) -> float:
        start = clocks()
        for _ in range(k):
            step()
        return since(start, 1)[0]
    return run_k


def c_sampler(hw: HandwrittenC, state: Any, steps: int) -> Callable[[], Sample]:
    def sample() -> Sample:
        cpu = clocks()[1]
        wall = hw.train(state, steps)   # timed inside C: no ctypes overhead
        return wall / steps, (clocks()[1] - cpu) / steps
    return sample


def c_pair_sampler(hw: HandwrittenC, state: Any, hw2: HandwrittenC, state2: Any,
                   steps: int) -> Callable[[], Sample]:
    """`steps` C steps in this thread and as many of the copy in another, at once (ctypes
    releases the GIL); per step of one thread, so that one core's C time over it is the
    speed-up two threads give, at best."""
    def sample() -> Sample:
        other = threading.Thread(target=hw2.train, args=(state2, steps))
        start = clocks()
        other.start()
        hw.train(state, steps)
        other.join()
        return since(start, steps)
    return sample


def compiled_steps(weights: Sequence[float], hidden: Sequence[int], Xl: List[List[float]],
                   yl: List[float]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """({variant: compiled training step}, {variant: its model}): each variant its own
    model from `weights` and its own recording, as the README writes it."""
    steps, models = {}, {}
    for key, how in REPLAYS.items():
        model = cm_model(compiled_nn, weights, hidden)
        loss = build_loss(model, Xl, yl)
        steps[key] = cmicrograd.compile(loss, optimizer=SGD(model.parameters(), lr=LR), **how)
        models[key] = model
        del loss
    return steps, models


def measure_problem(ctx: Context, letter: str, n: int, hidden: List[int],
                    builds: Dict[str, HandwrittenC], c_copy: HandwrittenC) -> Dict[str, Any]:
    log(f"12{letter}. {n} moons points, MLP(2,{hidden + [1]}) ...")
    X, y = make_moons(n, NOISE, seed=SEED)
    Xl, yl = X.tolist(), y.tolist()
    weights = initial_weights(hidden)
    K = ctx.cfg["check_steps"]
    seconds = ctx.cfg["lanes_sample_seconds"]

    # ---- the bit-for-bit checks: K steps from the same weights on every variant ----
    steps, models = compiled_steps(weights, hidden, Xl, yl)
    losses: Dict[str, List[float]] = {}
    params: Dict[str, List[float]] = {}
    for key, step in steps.items():
        losses[key] = [step() for _ in range(K)]
        params[key] = [p.data for p in models[key].parameters()]
    c_states = {}
    skipped: Dict[str, str] = {}
    for key, hw in builds.items():
        if hw.lib is None:
            skipped[key] = hw.error or "not compiled"
            continue
        state = hw.state(weights, X, y)
        out = (ctypes.c_double * K)()
        hw.train(state, K, out)
        losses[key], params[key] = list(out), list(state[0])
        c_states[key] = state
    tstep = None
    if ctx.torch_ok:
        tstep = torch_step_factory(weights, X, y, hidden)
        losses[TORCH] = [tstep() for _ in range(K)]
    else:
        skipped[TORCH] = "torch not installed"
    # every row against the hand-written C -O2 (that row against the scalar replay)
    reference = C_O2 if C_O2 in losses else SCALAR
    exact, first_diff = {}, {}
    for key in list(REPLAYS) + list(C_BUILDS):
        if key not in losses:
            continue
        other = SCALAR if key == reference else reference
        exact[key] = losses[key] == losses[other] and params[key] == params[other]
        first_diff[key] = next((i + 1 for i, (a, b) in enumerate(zip(losses[key], losses[other]))
                                if a != b), None)
    torch_rel = (max(abs(a - b) / abs(b) for a, b in zip(losses[TORCH], losses[reference]))
                 if TORCH in losses else None)

    # ---- timing: every variant's steps per sample from a timed warm-up, then interleaved ----
    samplers: Dict[str, Callable[[], Sample]] = {}
    inner: Dict[str, int] = {}
    for key, step in steps.items():
        inner[key] = calibrate(python_run_k(step), seconds)
        samplers[key] = timed_steps(step, inner[key], False)
    if tstep is not None:
        inner[TORCH] = calibrate(python_run_k(tstep), seconds)
        samplers[TORCH] = timed_steps(tstep, inner[TORCH], False)
    for key, state in c_states.items():
        hw = builds[key]
        inner[key] = calibrate(lambda k, hw=hw, state=state: hw.train(state, k), seconds)
        samplers[key] = c_sampler(hw, state, inner[key])
    if C_O2 in c_states and c_copy.lib is not None:
        inner[C_PAIR] = inner[C_O2]
        samplers[C_PAIR] = c_pair_sampler(builds[C_O2], c_states[C_O2], c_copy,
                                          c_copy.state(weights, X, y), inner[C_PAIR])
    # the lanes' phases: forward() alone, forward() + backward() (grads accumulate, as
    # backward() does; no update), next to the whole step() above
    for key in (LANES1, LANES2):
        step = steps[key]

        def fwd_bwd(step=step) -> float:
            value = step.forward()
            step.backward()
            return value

        for phase, fn in (("forward", step.forward), ("forward_backward", fwd_bwd)):
            pkey = f"{key}:{phase}"
            inner[pkey] = calibrate(python_run_k(fn), seconds)
            samplers[pkey] = timed_steps(fn, inner[pkey], False)
    samples = interleave(samplers, ctx.cfg["repeat"], warmup=list(samplers))
    result = {
        "letter": letter, "points": n, "hidden": hidden, "steps_per_sample": inner,
        "lanes": {k: s.lanes for k, s in steps.items()},
        "threads": {k: s.threads for k, s in steps.items()},
        "recordings": {k: s.recordings for k, s in steps.items()},
        "checks": {"steps_compared": K, "reference": reference, "exact": exact,
                   "first_differing_step": first_diff, "torch_max_rel_loss_diff": torch_rel,
                   "losses": {k: [float(v).hex() for v in ls] for k, ls in losses.items()}},
        "skipped": skipped,
        "samples": samples["wall"], "cpu_samples": samples["cpu"],
    }
    result["stats"] = {k: summary(v) for k, v in samples["wall"].items()}
    result["cpu_stats"] = {k: summary(v) for k, v in samples["cpu"].items()}
    del steps, models, samplers, tstep
    gc.collect()
    return result


def run(ctx: Context) -> Dict[str, Any]:
    log("12. lanes and threads ...")
    points = ctx.cfg["lanes_points"]
    out: Dict[str, Any] = {"unit": "seconds per step", "problems": [], "c_commands": {}}
    with tempfile.TemporaryDirectory(prefix="cmicrograd-bench-lanes-") as workdir:
        builds: Dict[Tuple[int, ...], Dict[str, HandwrittenC]] = {}
        copies: Dict[Tuple[int, ...], HandwrittenC] = {}
        os.mkdir(os.path.join(workdir, "copy"))
        for _, hidden, _ in PROBLEMS:
            if tuple(hidden) not in builds:
                builds[tuple(hidden)] = {key: HandwrittenC(workdir, hidden, opt)
                                         for key, opt in C_BUILDS.items()}
                for key, hw in builds[tuple(hidden)].items():
                    out["c_commands"][f"{key} {hidden}"] = " ".join(hw.command)
                copies[tuple(hidden)] = HandwrittenC(os.path.join(workdir, "copy"), hidden, C_BUILDS[C_O2])
        for (letter, hidden, _), n in zip(PROBLEMS, points):
            out["problems"].append(measure_problem(ctx, letter, n, hidden, builds[tuple(hidden)],
                                                   copies[tuple(hidden)]))
    return out


# ---- the table ---------------------------------------------------------------------------
def title(p: Dict[str, Any]) -> str:
    h = p["hidden"]
    return f"{p['points']:,} moons pts, MLP(2,[{h[0]},{h[1]},1])"


def verdict(ok: bool, text: str) -> str:
    return f"{'yes' if ok else NOT_MET} ({text})"


def exact_text(p: Dict[str, Any], key: str) -> str:
    ok = p["checks"]["exact"].get(key)
    return "bit-exact: " + ("yes" if ok else "NO  <-- MISMATCH")


def lanes_text(p: Dict[str, Any], key: str) -> str:
    """graph.lanes: the number of points with lanes, 0 for the scalar replay."""
    found, want = p["lanes"][key], 0 if key == SCALAR else p["points"]
    return f"graph.lanes {found}" + ("" if found == want else f"  <-- NOT {want}")


def problem_rows(p: Dict[str, Any], targets: Sequence[str]) -> List[Row]:
    s, L = p["samples"], p["letter"]
    lanes = s[LANES1]
    head = f"12{L}. {title(p)}: step()"
    # the main row: lanes, one thread, with this problem's targets
    goals, verdicts = [], []
    if "lanes_vs_c" in targets and C_O2 in s:
        r, text = ratio_cell(lanes, s[C_O2])
        goals.append(f"<= {sig(TARGETS['lanes_vs_c'])}x the C -O2 time")
        verdicts.append(verdict(r <= TARGETS["lanes_vs_c"], text))
    for t in ("lanes_vs_torch_demo", "lanes_vs_torch"):
        if t in targets and TORCH in s:
            r, text = ratio_cell(s[TORCH], lanes)
            goals.append(f">= {sig(TARGETS[t])}x faster than PyTorch")
            verdicts.append(verdict(r >= TARGETS[t], text))
    _, buy = ratio_cell(s[SCALAR], lanes)
    _, vs_native = ratio_cell(lanes, s[C_NATIVE]) if C_NATIVE in s else (None, "-")
    out = [[f"{head}, lanes, threads=1 (ms)", "", "", "", f"lanes: {cell(lanes, 1e3)}",
            f"lanes=False takes {buy}", f"{vs_native} the C -O3 native time",
            "; ".join(goals) or "(the base of the rows below)",
            "; ".join(verdicts + [exact_text(p, LANES1), lanes_text(p, LANES1)])]]
    # two threads
    r, text = ratio_cell(lanes, s[LANES2])
    row = [f"12{L}2. the same, lanes, threads=2 (ms)", "", "", "", f"2 threads: {cell(s[LANES2], 1e3)}",
           f"speed-up over 1 thread: {text}", "", "", ""]
    tail = [exact_text(p, LANES2), lanes_text(p, LANES2)]
    if "lanes_threads" in targets:
        row[7] = f">= {sig(TARGETS['lanes_threads'])}x faster than threads=1"
        limit = pair_speedup(p)
        if limit is not None:
            tail.append(f"the machine's 2 threads give {sig(limit)}x (12{L}p)")
        row[8] = "; ".join([verdict(r >= TARGETS["lanes_threads"], text)] + tail)
    else:
        row[7] = "(for comparison)"
        row[8] = "; ".join(tail)
    out.append(row)
    # the others: how many times the lanes' time each takes
    others = [(SCALAR, "s", "lanes=False, the scalar replay", "scalar"),
              (TORCH, "t", "PyTorch f64 vectorised, 1 thread", "torch"),
              (C_O2, "c", "handwritten C -O2", "C -O2"),
              (C_NATIVE, "o", "handwritten C -O3 -march=native", "C -O3 native")]
    for key, suffix, name, label in others:
        if key not in s:
            out.append([f"12{L}{suffix}. the same, {name}", "", "", "",
                        f"skipped: {p['skipped'].get(key, '?')}", "", "", "", "-"])
            continue
        _, text = ratio_cell(s[key], lanes)
        if key == TORCH:
            rel = p["checks"]["torch_max_rel_loss_diff"]
            met = f"losses within {rel:.2g} relative (not bit for bit: BLAS order)"
        else:
            met = exact_text(p, key)
            if key == SCALAR:
                met += f"; {lanes_text(p, key)}"
        out.append([f"12{L}{suffix}. the same, {name} (ms)", "", "", "", f"{label}: {cell(s[key], 1e3)}",
                    f"{text} the lanes' time", "", "(for comparison)" if key == SCALAR else "(limit)",
                    met])
    if "lanes_threads" in targets and C_PAIR in s:
        paired = [2 * a / b for a, b in zip(s[C_O2], s[C_PAIR])]
        out.append([f"12{L}p. the machine: two C -O2 steps at once, 2 threads (ms per step)", "", "", "",
                    f"2 at once: {cell(s[C_PAIR], 1e3)}",
                    f"2 threads do {sig(pair_speedup(p))}x ({sig(min(paired), 2)}-{sig(max(paired), 2)}) "
                    "the work of 1", "", "(limit)", "the most 2 threads can gain here"])
    return out


def pair_speedup(p: Dict[str, Any]) -> Any:
    """How many times the work of one thread two do at once on this machine: 2 x the
    C -O2 step's time over the time of the two copies' steps at once (None if not run)."""
    s = p["samples"]
    if C_PAIR not in s or C_O2 not in s:
        return None
    return 2 * statistics.median(s[C_O2]) / statistics.median(s[C_PAIR])


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    out: List[Row] = []
    for (letter, _, targets), p in zip(PROBLEMS, result["problems"]):
        assert p["letter"] == letter
        out.extend(problem_rows(p, targets))
    return out


def details(result: Dict[str, Any], record: Record) -> List[str]:
    lines = []
    for p in result["problems"]:
        L, ch, cs, s = p["letter"], p["checks"], p["cpu_samples"], p["samples"]
        ref = {"c_O2": "the handwritten C -O2", "scalar_replay": "the scalar replay"}[ch["reference"]]
        diffs = ", ".join(f"{k} from step {v}" for k, v in ch["first_differing_step"].items() if v)
        lines.append(
            f"12{L}. {title(p)}: bit-for-bit over {ch['steps_compared']} steps from the same weights "
            f"(losses and the weights after them), every variant against {ref} (and it against the scalar "
            f"replay): {'all equal' if all(ch['exact'].values()) else 'DIFFER: ' + (diffs or 'weights')}; "
            f"graph.lanes {p['lanes']}, threads {p['threads']}, recordings {p['recordings']}")
        per = ", ".join(f"{k} {v}" for k, v in p["steps_per_sample"].items() if ":" not in k)
        by_cpu = ", ".join(f"{k} {sig(statistics.median(cs[k]) / statistics.median(cs[LANES1]))}x"
                           for k in [LANES2, SCALAR, TORCH, C_O2, C_NATIVE] if k in cs)
        lines.append(f"12{L}. steps per sample: {per}; by CPU time of the process (both threads counted), "
                     f"each over the lanes on 1 thread: {by_cpu}")
        phases = []
        for phase, name in PHASES.items():
            one = statistics.median(s[f"{LANES1}:{phase}"])
            two = statistics.median(s[f"{LANES2}:{phase}"])
            phases.append(f"{name} {sig(one * 1e3)} / {sig(two * 1e3)} ({sig(one / two)}x)")
        one, two = statistics.median(s[LANES1]), statistics.median(s[LANES2])
        phases.append(f"whole step() {sig(one * 1e3)} / {sig(two * 1e3)} ({sig(one / two)}x)")
        lines.append(f"12{L}. the lanes' phases, ms per call, threads=1 / threads=2 (speed-up): "
                     + ", ".join(phases))
        limit = pair_speedup(p)
        if limit is not None:
            lines.append(f"12{L}. the machine: two copies of the C -O2 step at once in two threads do "
                         f"{sig(limit)}x the work of one (by wall time; the bound on a second thread's gain)")
    cmds = result["c_commands"]
    lines.append("12. C builds: " + "; ".join(f"{k}: {v.split(' -o ')[0]}" for k, v in cmds.items()))
    return lines


WORKLOAD = Workload(key="lanes", number=12, run=run, rows=rows, details=details)
