#!/usr/bin/env python3
"""cmicrograd's benchmarks, in one process: the compiled engine against the pure-Python
reference (GC on and off), micrograd 0.1.0 (when installed), and two rows that are the
machine's limit: PyTorch float64 on one thread, and the same step in hand-written C.

    python benchmarks/run.py              # the full run (a few minutes)
    python benchmarks/run.py --quick      # the whole run in under a minute
    python benchmarks/run.py --json out.json --repeat 9

Engines are interleaved within every repetition (their order rotates from one
repetition to the next), so slow drifts of a noisy machine hit them all alike; each
cell is the median over the repetitions with its min-max spread. benchmarks/README.md
explains every row. Only the C file's compilation runs outside this process.
"""

from __future__ import annotations

import os

# One thread for every numeric library, before any is imported: numpy's OpenBLAS threads
# otherwise spin on the other core (on this 2-vCPU VM, a hyperthread sibling of ours)
# and halve the speed of whatever is being measured. PyTorch gets set_num_threads(1).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import ctypes
import datetime
import gc
import json
import math
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent

try:
    import cmicrograd
except ImportError:  # run from a checkout that is not installed: use it in place
    sys.path.insert(0, str(HERE.parent))
    import cmicrograd

import numpy as np

import cmicrograd.nn as compiled_nn
import cmicrograd.reference.engine as reference_engine
import cmicrograd.reference.nn as reference_nn
from cmicrograd.datasets import make_moons
from cmicrograd.optim import SGD
from cmicrograd.train import batch_loss

try:
    import cmicrograd._engine as compiled_engine
except ImportError:  # reported in main()
    compiled_engine = None

# ---- what is measured ------------------------------------------------------------------
SEED = 1            # random.seed before building the MLP, and make_moons' seed
N_POINTS = 100      # micrograd's demo: 100 moons points, noise 0.1
NOISE = 0.1
HIDDEN = [16, 16]   # MLP(2, [16, 16, 1])
ALPHA = 1e-4        # L2 strength of the demo's loss
LR = 0.1            # a constant learning rate (the demo's decays from 1.0)

MODES = {
    #                  full                 quick
    "repeat":        (7,                    3),
    "build_iters":   (50_000,               10_000),      # workload 3: loop iterations
    "mem_ops":       (1_000_000,            50_000),      # workload 4: ops in the chain
    "mem_ops_mg_gc": (100_000,              50_000),      # workload 4: micrograd with its GC on
    "mem_ops_traced": (100_000,             20_000),      # workload 4: tracemalloc cross-check
    "backward_inner_py": (2,                1),           # workload 2: backward calls per sample
    "chain_sizes":   ((10**5, 10**6, 10**7), (10**5, 10**6)),
    "chain_repeat":  (3,                    2),
    "check_steps":   (10,                   5),           # bit-for-bit checks: C vs compiled
    "check_steps_py": (3,                   1),           # reference / micrograd vs compiled
}

TARGETS = {"step": 50.0, "backward": 60.0, "build": 25.0, "memory": 100.0,
           # the compiled replay (row 1r): vs the reference with GC off, how many times
           # faster than PyTorch, at most how many times the hand-written C's time
           "replay": 1000.0, "replay_vs_torch": 3.0, "replay_vs_c": 3.0}
CHAIN_LINEAR_LIMIT = 2.0  # largest chain's ns/node at most this times the smallest's

# variant keys, in table order; the GC-off ones run with gc.disable() around the timing
MG_ON, MG_OFF = "micrograd_gc_on", "micrograd_gc_off"
REF_ON, REF_OFF = "reference_gc_on", "reference_gc_off"
COMPILED = "compiled"
TORCH, HANDWRITTEN, REPLAY = "torch", "handwritten_c", "compiled_replay"


# ---- small tools -------------------------------------------------------------------------
@contextmanager
def gc_mode(off: bool):
    """Run the block with the cyclic GC on or off (then restore it).

    It collects nothing itself: a full collection walks every live object, which costs
    far more than the samples it would protect. Only micrograd makes cyclic garbage
    (each node's _backward closure refers to the node); its samplers collect it
    (untimed) as soon as they finish, so no other engine's sample pays for it."""
    was_enabled = gc.isenabled()
    if off:
        gc.disable()
    else:
        gc.enable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        else:
            gc.disable()


def summary(xs: Sequence[float]) -> Dict[str, float]:
    s = sorted(xs)
    out = {"n": len(s), "median": statistics.median(s), "min": s[0], "max": s[-1]}
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    out["q1"], out["q3"] = q1, q3
    return out


Sample = Tuple[float, float]  # (wall seconds, CPU seconds of this process) per unit of work


def clocks() -> Sample:
    return time.perf_counter(), time.process_time()


def since(start: Sample, units: float) -> Sample:
    wall, cpu = clocks()
    return (wall - start[0]) / units, (cpu - start[1]) / units


def interleave(samplers: Dict[str, Callable[[], Sample]], repeat: int,
               warmup: Sequence[str] = ()) -> Dict[str, Dict[str, List[float]]]:
    """Run every sampler once per repetition, rotating the order each repetition.

    Each sampler returns one measurement, (wall, CPU) seconds per unit of work.
    Returns {"wall": {key: [...]}, "cpu": {key: [...]}}."""
    keys = list(samplers)
    out: Dict[str, Dict[str, List[float]]] = {"wall": {k: [] for k in keys},
                                              "cpu": {k: [] for k in keys}}
    for k in warmup:
        if k in samplers:
            samplers[k]()
    for r in range(repeat):
        shift = r % len(keys)
        for k in keys[shift:] + keys[:shift]:
            wall, cpu = samplers[k]()
            out["wall"][k].append(wall)
            out["cpu"][k].append(cpu)
    return out


def rss_bytes() -> Optional[int]:
    """This process's resident set size now (Linux /proc), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


try:
    _libc = ctypes.CDLL(None)
    _malloc_trim = _libc.malloc_trim
    _malloc_trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def settle() -> None:
    """Free what can be freed, so that an RSS delta measures new memory only."""
    gc.collect()
    if compiled_engine is not None:
        compiled_engine._trim_memory()
    if _malloc_trim is not None:
        _malloc_trim(0)


def page_faults() -> int:
    """Minor page faults of this process so far (0 where unknown)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):
        return 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the model and the training step on each engine --------------------------------------
def initial_weights() -> List[float]:
    """MLP(2, [16, 16, 1])'s initial weights after random.seed(SEED), in micrograd's
    parameter order (layer -> neuron -> (w..., b)); every engine starts from these."""
    random.seed(SEED)
    return [p.data for p in reference_nn.MLP(2, HIDDEN + [1]).parameters()]


def load_weights(params: Sequence[Any], weights: Sequence[float]) -> None:
    assert len(params) == len(weights)
    for p, w in zip(params, weights):
        p.data = w


def cm_model(nn_module: Any, weights: Sequence[float]) -> Any:
    random.seed(SEED)
    model = nn_module.MLP(2, HIDDEN + [1])
    load_weights(model.parameters(), weights)
    return model


def cm_step_factory(nn_module: Any, weights: Sequence[float], X: np.ndarray,
                    y: np.ndarray) -> Callable[[], float]:
    """One cmicrograd training step: batch_loss, zero_grad, backward, SGD."""
    model = cm_model(nn_module, weights)
    opt = SGD(model.parameters(), lr=LR)

    def step() -> float:
        loss, _acc = batch_loss(model, X, y, ALPHA)
        model.zero_grad()
        loss.backward()
        opt.step()
        return loss.data

    step.model = model  # type: ignore[attr-defined]
    return step


def micrograd_available() -> bool:
    try:
        import micrograd.engine  # noqa: F401
        import micrograd.nn  # noqa: F401
    except ImportError:
        return False
    return True


def mg_model(weights: Sequence[float]) -> Any:
    from micrograd.nn import MLP
    random.seed(SEED)
    model = MLP(2, HIDDEN + [1])
    load_weights(model.parameters(), weights)
    return model


def mg_forward(model: Any, Xl: List[List[float]], yl: List[float]):
    """micrograd's demo loss(), written with micrograd's own Value and MLP (inputs are
    Python floats: the demo passes numpy scalars, which makes micrograd slower still)."""
    from micrograd.engine import Value
    inputs = [list(map(Value, xrow)) for xrow in Xl]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(yl, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = ALPHA * sum((p * p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yl, scores)]
    return total_loss, sum(accuracy) / len(accuracy)


def mg_step_factory(weights: Sequence[float], X: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """micrograd's demo training step (constant learning rate LR)."""
    model = mg_model(weights)
    Xl, yl = X.tolist(), y.tolist()

    def step() -> float:
        total_loss, _acc = mg_forward(model, Xl, yl)
        model.zero_grad()
        total_loss.backward()
        for p in model.parameters():
            p.data -= LR * p.grad
        return total_loss.data

    step.model = model  # type: ignore[attr-defined]
    return step


def layer_blocks(weights: Sequence[float], sizes: Sequence[int]):
    """[(rows of w, biases)] per layer from the flat micrograd-ordered weights."""
    blocks, i = [], 0
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        rows, bias = [], []
        for _ in range(nout):
            rows.append(list(weights[i:i + nin]))
            bias.append(weights[i + nin])
            i += nin + 1
        blocks.append((rows, bias))
    assert i == len(weights)
    return blocks


def torch_module():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_step_factory(weights: Sequence[float], X: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """The same step vectorised in PyTorch float64 on one thread: X @ W.T + b, relu,
    hinge loss, L2, backward, SGD."""
    torch = torch_module()
    torch.set_num_threads(1)
    dt = torch.float64
    params = []
    for rows, bias in layer_blocks(weights, [2] + HIDDEN + [1]):
        params.append(torch.tensor(rows, dtype=dt, requires_grad=True))
        params.append(torch.tensor(bias, dtype=dt, requires_grad=True))
    Xt = torch.tensor(X, dtype=dt)
    yt = torch.tensor(y, dtype=dt)
    inv_n = 1.0 / len(y)
    n_layers = len(params) // 2

    def step() -> float:
        for p in params:
            p.grad = None
        h = Xt
        for i in range(n_layers):
            h = h @ params[2 * i].T + params[2 * i + 1]
            if i < n_layers - 1:
                h = torch.relu(h)
        scores = h.squeeze(1)
        data_loss = torch.relu(1 + -yt * scores).sum() * inv_n
        reg_loss = ALPHA * sum((p * p).sum() for p in params)
        total = data_loss + reg_loss
        total.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
        return total.item()

    step.params = params  # type: ignore[attr-defined]
    return step


# ---- the hand-written C step ---------------------------------------------------------------
class HandwrittenC:
    """benchmarks/handwritten.c, compiled now into a temporary directory and called
    through ctypes; hw_train runs N steps inside C and returns the seconds they took."""

    FLAGS = ["-O2", "-ffp-contract=off", "-fno-builtin-pow", "-shared", "-fPIC"]

    def __init__(self, workdir: str) -> None:
        self.error: Optional[str] = None
        self.lib = None
        self.compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        self.command: List[str] = []
        self.compiler_version = ""
        if not self.compiler:
            self.error = "no C compiler (cc) found"
            return
        so = os.path.join(workdir, "handwritten.so")
        self.command = [self.compiler, *self.FLAGS, "-o", so, str(HERE / "handwritten.c")]
        try:
            self.compiler_version = subprocess.run(
                [self.compiler, "--version"], capture_output=True, text=True, timeout=30
            ).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            pass
        try:
            done = subprocess.run(self.command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            self.error = f"compiling handwritten.c failed: {exc}"
            return
        if done.returncode != 0:
            self.error = f"compiling handwritten.c failed: {done.stderr.strip()[:500]}"
            return
        lib = ctypes.CDLL(so)
        D = ctypes.POINTER(ctypes.c_double)
        lib.hw_train.restype = ctypes.c_double
        lib.hw_train.argtypes = [ctypes.c_int, D, D, D, ctypes.c_int, ctypes.c_double,
                                 ctypes.c_double, D]
        lib.hw_nparams.restype = ctypes.c_int
        lib.hw_sizes.restype = ctypes.c_int
        lib.hw_sizes.argtypes = [ctypes.POINTER(ctypes.c_int)]
        sizes = (ctypes.c_int * 3)()
        self.max_rows = lib.hw_sizes(sizes)
        if list(sizes) != [2] + HIDDEN:
            self.error = f"handwritten.c is built for MLP({sizes[0]}, [{sizes[1]}, {sizes[2]}, 1])"
            return
        self.lib = lib

    def state(self, weights: Sequence[float], X: np.ndarray, y: np.ndarray):
        """(params, X, y, n) as C arrays; params is updated in place by train()."""
        assert self.lib is not None and len(weights) == self.lib.hw_nparams()
        if len(y) > self.max_rows:
            raise ValueError(f"handwritten.c takes at most {self.max_rows} rows")
        params = (ctypes.c_double * len(weights))(*weights)
        Xc = (ctypes.c_double * X.size)(*np.ascontiguousarray(X, dtype=float).ravel().tolist())
        yc = (ctypes.c_double * len(y))(*np.asarray(y, dtype=float).tolist())
        return params, Xc, yc, len(y)

    def train(self, state, steps: int, losses=None) -> float:
        params, Xc, yc, n = state
        return self.lib.hw_train(steps, params, Xc, yc, n, LR, ALPHA, losses)


# ---- the compiled replay (row 1r) -------------------------------------------------------------
def replay_step_factory(model: Any, X: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """cm_step_factory's step through cmicrograd.compile's replay, on `model` (a
    cmicrograd.nn.MLP): the step's graph is recorded once, with the inputs as Value
    leaves (they never change), and each step replays it. Bit-identical to building it
    anew (the checks compare the losses)."""
    loss, _acc = batch_loss(model, X, y, ALPHA)
    graph = cmicrograd.compile(loss)
    params = model.parameters()
    engine = compiled_engine

    def step() -> float:
        value = graph.forward()
        engine.zero_grad(params)
        graph.backward()
        engine.sgd_update(params, LR)
        return value

    step.model = model  # type: ignore[attr-defined]
    return step


# ---- workload 1: the moons training step ----------------------------------------------------
def workload_step(cfg, weights, X, y, have_mg, torch_ok, hw, record):
    log("1. moons training step ...")
    samplers: Dict[str, Callable[[], Sample]] = {}

    def timed_steps(step: Callable[[], float], inner: int, gc_off: bool,
                    cyclic: bool = False) -> Callable[[], Sample]:
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

    if have_mg:
        samplers[MG_ON] = timed_steps(mg_step_factory(weights, X, y), 1, False, cyclic=True)
        samplers[MG_OFF] = timed_steps(mg_step_factory(weights, X, y), 1, True, cyclic=True)
    samplers[REF_ON] = timed_steps(cm_step_factory(reference_nn, weights, X, y), 1, False)
    samplers[REF_OFF] = timed_steps(cm_step_factory(reference_nn, weights, X, y), 1, True)
    samplers[COMPILED] = timed_steps(cm_step_factory(compiled_nn, weights, X, y), 20, False)

    samplers[REPLAY] = timed_steps(replay_step_factory(cm_model(compiled_nn, weights), X, y), 20, False)
    if torch_ok:
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
    warm = list(samplers) if not cfg["quick"] else cheap
    samples = interleave(samplers, cfg["repeat"], warmup=warm)
    record["step"] = {"unit": "seconds per step", "samples": samples["wall"], "cpu_samples": samples["cpu"],
                      "replay": "measured"}


# ---- bit-for-bit checks ------------------------------------------------------------------------
def hexes(xs: Sequence[float]) -> List[str]:
    return [float(x).hex() for x in xs]


def run_checks(cfg, weights, X, y, have_mg, torch_ok, hw, record):
    """Run a few steps from the same weights on every engine and compare the bits."""
    log("checks: the same steps on every engine ...")
    with gc_mode(True):  # the GC changes no result; off, the checks run faster
        _run_checks(cfg, weights, X, y, have_mg, torch_ok, hw, record)


def _run_checks(cfg, weights, X, y, have_mg, torch_ok, hw, record):
    K, Kpy = cfg["check_steps"], cfg["check_steps_py"]
    checks: Dict[str, Any] = {"steps_compared": K, "steps_compared_python": Kpy}

    def run(step, params_of, k):
        losses, after_first = [], None
        for i in range(k):
            losses.append(step())
            if i == 0:
                after_first = params_of()
        return losses, after_first, params_of()

    cstep = cm_step_factory(compiled_nn, weights, X, y)
    cparams = lambda: [p.data for p in cstep.model.parameters()]  # noqa: E731
    c_losses, c_p1, c_pK = run(cstep, cparams, K)
    checks["compiled_losses"] = hexes(c_losses)

    rstep = cm_step_factory(reference_nn, weights, X, y)
    r_losses, r_p1, r_pK = run(rstep, lambda: [p.data for p in rstep.model.parameters()], Kpy)
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

    if have_mg:
        mstep = mg_step_factory(weights, X, y)
        m_losses, m_p1, _ = run(mstep, lambda: [float(p.data) for p in mstep.model.parameters()], Kpy)
        checks["micrograd"] = {
            "step1_loss_equal": m_losses[0] == c_losses[0],
            "losses_equal": m_losses == c_losses[:Kpy],
            "max_abs_param_diff_after_1": max(abs(a - b) for a, b in zip(m_p1, c_p1)),
            "losses": hexes(m_losses),
        }
        del mstep
        gc.collect()
    if torch_ok:
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
    record["checks"] = checks


# ---- workload 2: backward per node -------------------------------------------------------------
def count_nodes_micrograd(root: Any) -> int:
    seen, stack = {id(root)}, [root]
    while stack:
        v = stack.pop()
        for c in v._prev:
            if id(c) not in seen:
                seen.add(id(c))
                stack.append(c)
    return len(seen)


def workload_backward(cfg, weights, X, y, have_mg, record):
    log("2. backward() on the step's graph ...")
    Xl, yl = X.tolist(), y.tolist()
    builders: Dict[str, Callable[[], Any]] = {}
    cm_ref = cm_model(reference_nn, weights)
    cm_cmp = cm_model(compiled_nn, weights)
    builders["reference"] = lambda: batch_loss(cm_ref, X, y, ALPHA)[0]
    builders["compiled"] = lambda: batch_loss(cm_cmp, X, y, ALPHA)[0]
    if have_mg:
        mg = mg_model(weights)
        builders["micrograd"] = lambda: mg_forward(mg, Xl, yl)[0]

    # the node count, on a separate identical graph (_topological_order expands fused sums)
    nodes = {
        "reference": len(reference_engine._topological_order(builders["reference"]())),
        "compiled": len(compiled_engine._topological_order(builders["compiled"]())),
    }
    if have_mg:
        nodes["micrograd"] = count_nodes_micrograd(builders["micrograd"]())
    gc.collect()

    # One graph is alive at a time (so that no engine's GC-on sample walks another
    # engine's graph). It serves at most two samples in a row (an engine's GC-on and
    # GC-off ones, or two compiled ones), then is rebuilt; grads accumulate over the
    # calls but stay far from overflow.
    current: Dict[str, Any] = {"engine": None, "loss": None, "uses": 0}

    def graph(engine: str) -> Any:
        if current["engine"] != engine or current["uses"] >= 2:
            old = current["engine"]
            current["loss"] = None
            if old == "micrograd":
                gc.collect()                # its cyclic garbage, untimed
            with gc_mode(True):             # built untimed, GC off (faster)
                current.update(engine=engine, loss=builders[engine](), uses=0)
            gc.collect(1)  # age the new graph as a build with the GC on would have
        current["uses"] += 1
        return current["loss"]

    def sampler(engine: str, inner: int, gc_off: bool) -> Callable[[], Sample]:
        def sample() -> Sample:
            loss = graph(engine)
            with gc_mode(gc_off):
                start = clocks()
                for _ in range(inner):
                    loss.backward()
                return since(start, inner * nodes[engine])
        return sample

    samplers = {}
    if have_mg:
        samplers[MG_ON] = sampler("micrograd", 1, False)
        samplers[MG_OFF] = sampler("micrograd", 1, True)
    samplers[REF_ON] = sampler("reference", cfg["backward_inner_py"], False)
    samplers[REF_OFF] = sampler("reference", cfg["backward_inner_py"], True)
    samplers[COMPILED] = sampler("compiled", 40, False)
    warm = [COMPILED] if cfg["quick"] else list(samplers)
    samples = interleave(samplers, cfg["repeat"], warmup=warm)
    current["loss"] = None
    gc.collect()
    record["backward"] = {"unit": "seconds per node", "nodes": nodes, "samples": samples["wall"],
                          "cpu_samples": samples["cpu"]}


# ---- workload 3: building graphs from Python ---------------------------------------------------
def workload_build(cfg, have_mg, record):
    log("3. building graphs: c = a*b + c ...")
    iters = cfg["build_iters"]
    values = {"reference": reference_engine.Value, "compiled": compiled_engine.Value}
    if have_mg:
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
    if have_mg:
        samplers[MG_ON] = sampler("micrograd", 1, False)
        samplers[MG_OFF] = sampler("micrograd", 1, True)
    samplers[REF_ON] = sampler("reference", 1, False)
    samplers[REF_OFF] = sampler("reference", 1, True)
    samplers[COMPILED] = sampler("compiled", 10, False)
    samples = interleave(samplers, cfg["repeat"], warmup=[COMPILED] if cfg["quick"] else list(samplers))
    record["build"] = {"unit": "seconds per op", "iterations": iters, "samples": samples["wall"],
                       "cpu_samples": samples["cpu"]}


# ---- workload 4: memory per op -----------------------------------------------------------------
def chain(V: Any, n: int) -> Any:
    y = V(1.0)
    for _ in range(n):
        y = y * 1.0
    return y


def workload_memory(cfg, have_mg, record):
    """Bytes per op of a live chain y = y * 1.0, by the same method for every engine:
    the growth of the process's RSS (run first, while the heap has little free memory
    to reuse). Cross-checks: the compiled engine's chunk bytes (_trim_memory) and, for
    the Python engines, tracemalloc on a shorter chain."""
    n = cfg["mem_ops"]
    log(f"4. memory of {n:,} ops y = y * 1.0 ...")
    out: Dict[str, Any] = {"ops": n, "unit": "bytes per op"}

    def measure(V: Any, gc_off: bool, ops: int) -> Dict[str, Any]:
        settle()
        held0 = compiled_engine._trim_memory()
        with gc_mode(gc_off):
            before = rss_bytes()
            y = chain(V, ops)
            after = rss_bytes()
            held1 = compiled_engine._trim_memory()
            del y
        settle()
        return {"rss": (after - before) / ops if before is not None else None,
                "chunks": (held1 - held0) / ops, "ops": ops}

    def traced(V: Any, ops: int) -> float:
        settle()
        with gc_mode(True):
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            y = chain(V, ops)
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            del y
        settle()
        return (after - before) / ops

    out[COMPILED] = measure(compiled_engine.Value, False, n)
    out[COMPILED]["sizeof_value"] = compiled_engine._sizeof_node()
    out[REF_ON] = measure(reference_engine.Value, False, n)
    out[REF_OFF] = measure(reference_engine.Value, True, n)
    n_traced = min(n, cfg["mem_ops_traced"])
    out["tracemalloc"] = {"ops": n_traced, "reference": traced(reference_engine.Value, n_traced)}
    if have_mg:
        from micrograd.engine import Value as MGValue
        out[MG_OFF] = measure(MGValue, True, n)
        # micrograd's closures put every node in a reference cycle: with its GC on,
        # building a long chain is dominated by collections that free nothing (minutes
        # for 10^6 ops), so that one is measured on a shorter chain
        out[MG_ON] = measure(MGValue, False, min(n, cfg["mem_ops_mg_gc"]))
        out["tracemalloc"]["micrograd"] = traced(MGValue, n_traced)
    record["memory"] = out


# ---- workload 5: a long chain ------------------------------------------------------------------
def workload_chain(cfg, record):
    sizes = cfg["chain_sizes"]
    log(f"5. chains of {', '.join(f'{n:.0e}' for n in sizes)} nodes (compiled) ...")
    V = compiled_engine.Value
    out: Dict[str, Any] = {"unit": "seconds", "sizes": {}}
    chain(V, 10**5).backward()  # warm the code paths
    for n in sizes:
        runs: Dict[str, List[float]] = {"build": [], "backward": [], "free": [], "build_page_faults": []}
        for _ in range(cfg["chain_repeat"]):
            # every run starts from trimmed memory, so that a small chain does not get
            # pages a previous run left mapped while a big one pays to fault its own in
            settle()
            f0 = page_faults()
            t0 = time.perf_counter()
            y = V(1.0)
            for _ in range(n):
                y = y * 1.0
            t1 = time.perf_counter()
            f1 = page_faults()
            y.backward()
            t2 = time.perf_counter()
            del y
            t3 = time.perf_counter()
            runs["build"].append(t1 - t0)
            runs["backward"].append(t2 - t1)
            runs["free"].append(t3 - t2)
            runs["build_page_faults"].append(f1 - f0)
        out["sizes"][str(n)] = runs
        compiled_engine._trim_memory()
    # for comparison: a 10^5 chain built where a freed one left its chunks (no page faults)
    warm = []
    for _ in range(cfg["chain_repeat"]):
        del_me = chain(V, 10**5)
        del del_me
        t0 = time.perf_counter()
        y = chain(V, 10**5)
        warm.append(time.perf_counter() - t0)
        del y
    out["warm_build_1e5"] = warm
    compiled_engine._trim_memory()
    record["chain"] = out


# ---- the report --------------------------------------------------------------------------------
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
    if not xs:
        return "-"
    s = summary([x * scale for x in xs])
    if s["n"] == 1:
        return sig(s["median"])
    return f"{sig(s['median'])} ({sig(s['min'], 2)}-{sig(s['max'], 2)})"


def ratio_cell(num: Optional[Sequence[float]], den: Optional[Sequence[float]]):
    """(median ratio, text): median(num) / median(den), with the spread of the paired
    per-repetition ratios."""
    if not num or not den:
        return None, "-"
    r = statistics.median(num) / statistics.median(den)
    paired = [a / b for a, b in zip(num, den)]
    if len(paired) > 1:
        return r, f"{sig(r)}x ({sig(min(paired), 2)}-{sig(max(paired), 2)})"
    return r, f"{sig(r)}x"


COLUMNS = ["workload", "micrograd (GC on / off)", "reference GC on", "reference GC off",
           "compiled", "ratio vs ref GC off", "ratio vs ref GC on", "target", "met?"]


def build_rows(record: Dict[str, Any], cfg) -> List[List[str]]:
    rows: List[List[str]] = []

    def mg_cell(samples, scale):
        if MG_ON not in samples:
            return "not installed"
        return f"{cell(samples[MG_ON], scale)} / {cell(samples[MG_OFF], scale)}"

    def timing_row(name, samples, scale, target_key, other=None, label=None):
        key = other or COMPILED
        r_off, t_off = ratio_cell(samples[REF_OFF], samples.get(key))
        _, t_on = ratio_cell(samples[REF_ON], samples.get(key))
        comp = cell(samples.get(key), scale)
        if label:
            comp = f"{label}: {comp}"
        if other is not None:  # a row of the step workload other than the compiled engine's
            comp_vs = statistics.median(samples[COMPILED]) / statistics.median(samples[key])
            target, met = "(limit)", f"compiled takes {sig(comp_vs)}x its time"
            if target_key is not None:
                need = TARGETS[target_key]
                target = f">= {sig(need)}x vs GC off"
                met = ("yes" if r_off is not None and r_off >= need else "NO  <-- NOT MET") + "; " + met
            rows.append([name, "as row 1", "as row 1", "as row 1", comp, t_off, t_on, target, met])
            return
        if target_key is None:
            target, met = "(limit)", "-"
        else:
            need = TARGETS[target_key]
            target = f">= {sig(need)}x vs GC off"
            met = "yes" if r_off is not None and r_off >= need else "NO  <-- NOT MET"
        rows.append([name, mg_cell(samples, scale), cell(samples[REF_ON], scale),
                     cell(samples[REF_OFF], scale), comp, t_off, t_on, target, met])

    s = record["step"]["samples"]
    timing_row("1. moons step, MLP(2,[16,16,1]) x100 pts (ms/step)", s, 1e3, "step")
    timing_row("1r. moons step: compiled replay (cmicrograd.compile) (ms)", s, 1e3, None, REPLAY, "replay")
    exact = record["checks"]["replay"]["losses_equal"]
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
    rows[-1][7] = target
    rows[-1][8] = "; ".join(verdicts) + f"; bit-exact: {'yes' if exact else 'NO  <-- MISMATCH'}"
    if TORCH in s:
        timing_row("1t. moons step: PyTorch f64 vectorised, 1 thread (ms)", s, 1e3, None, TORCH, "torch")
    else:
        rows.append(["1t. moons step: PyTorch f64 vectorised, 1 thread", "", "", "",
                     "skipped: torch not installed", "", "", "", "-"])
    hw_check = record["checks"].get("handwritten_c", {})
    if HANDWRITTEN in s:
        timing_row("1c. moons step: handwritten C -O2 (ms)", s, 1e3, None, HANDWRITTEN, "C")
        exact = (hw_check.get("step1_loss_equal") and hw_check.get("losses_equal")
                 and hw_check.get("params_equal_after_1") and hw_check.get("params_equal_after_K"))
        rows[-1][8] = "bit-exact: " + ("yes" if exact else "NO  <-- MISMATCH") + "; " + rows[-1][8]
    else:
        rows.append(["1c. moons step: handwritten C", "", "", "",
                     f"skipped: {hw_check.get('skipped')}", "", "", "", "-"])

    timing_row("2. backward() on that graph (ns/node)", record["backward"]["samples"], 1e9, "backward")
    timing_row("3. build c = a*b + c from Python (ns/op)", record["build"]["samples"], 1e9, "build")

    m = record["memory"]
    n_ops = m["ops"]

    def mem(key):
        v = m[key]["rss"]
        return v if v is not None else float("nan")

    def mem_txt(key):
        v = sig(mem(key))
        return v if m[key]["ops"] == n_ops else f"{v} ({m[key]['ops']:.0e} ops)"

    c = m[COMPILED]
    comp_b = mem(COMPILED)
    mg_txt = f"{mem_txt(MG_ON)} / {mem_txt(MG_OFF)}" if MG_ON in m else "not installed"
    need = TARGETS["memory"]
    met = ("RSS: " + ("yes" if comp_b <= need else "NO <--") + ", chunks: "
           + ("yes" if c["chunks"] <= need else "NO <--"))
    rows.append([
        f"4. memory, y = y*1.0 x {n_ops:.0e} (bytes/op, RSS)", mg_txt,
        mem_txt(REF_ON), mem_txt(REF_OFF), f"{sig(comp_b)} ({sig(c['chunks'])} in chunks)",
        f"{sig(mem(REF_OFF) / comp_b)}x less", f"{sig(mem(REF_ON) / comp_b)}x less",
        f"<= {sig(need)} B/op", met,
    ])

    sizes = record["chain"]["sizes"]
    per_node = {}
    for n_txt, runs in sizes.items():
        n = int(n_txt)
        per_node[n] = sum(statistics.median(runs[k]) for k in ("build", "backward", "free")) / n
    smallest = min(per_node)
    largest = max(per_node)
    for n_txt, runs in sizes.items():
        n = int(n_txt)
        med = {k: statistics.median(runs[k]) * 1e9 / n for k in ("build", "backward", "free")}
        growth = per_node[n] / per_node[smallest]
        if n == largest:
            met = ("yes" if growth <= CHAIN_LINEAR_LIMIT else "NO  <-- NOT MET") + f" (x{growth:.2f})"
        else:
            met = f"(x{growth:.2f})"
        rows.append([
            f"5. chain of {n:.0e}: build / backward / free (ns/node)", "", "", "",
            f"{sig(med['build'])} / {sig(med['backward'])} / {sig(med['free'])}", "", "",
            f"linear: <= {CHAIN_LINEAR_LIMIT:g}x the 1e5 ns/node" if n == largest else "linear", met,
        ])
    return rows


def format_table(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows + [COLUMNS]) for i in range(len(COLUMNS))]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(COLUMNS), sep] + [line(r) for r in rows])


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


def print_report(record: Dict[str, Any], cfg) -> None:
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
    print(format_table(build_rows(record, cfg)))
    print()

    # details under the table
    b = record["backward"]["nodes"]
    print("details:")
    print("  2. graph size (len(_topological_order(loss)) on a separate identical graph): "
          + ", ".join(f"{k} {v:,}" for k, v in b.items()) + " nodes")
    m = record["memory"]
    c = m[COMPILED]
    extra = ""
    if c["rss"] is not None and c["chunks"] > 0:
        per_chunk = (c["rss"] - c["chunks"]) / (c["chunks"] / 65536)
        extra = f"; RSS beyond the chunks: {per_chunk / 1024:.1f} KiB per 64 KiB chunk"
    tm = m["tracemalloc"]
    print(f"  4. compiled: {sig(c['chunks'])} B/op held in Value chunks (_trim_memory), one Value "
          f"{c['sizeof_value']} B + a 16 B GC header{extra}. tracemalloc on {tm['ops']:,} ops (GC off): "
          + ", ".join(f"{k} {sig(v)} B/op" for k, v in tm.items() if k != "ops"))
    for n_txt, runs in record["chain"]["sizes"].items():
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(f"  5. chain of {int(n_txt):,}: build {med['build']:.3f} s, backward {med['backward']:.3f} s, "
              f"free {med['free']:.3f} s (medians of {len(runs['build'])}); the build takes "
              f"{med['build_page_faults'] / int(n_txt) * 1000:.1f} page faults per 1000 nodes (fresh memory)")
    print(f"  5. for comparison, a 10^5 chain built on the chunks a freed one left (no page faults): "
          f"{statistics.median(record['chain']['warm_build_1e5']) * 1e9 / 10**5:.0f} ns/node")
    ch = record["checks"]
    ref = ch["reference"]
    print(f"  bit-for-bit: reference vs compiled over {ch['steps_compared_python']} steps: losses "
          f"{'equal' if ref['losses_equal'] else 'DIFFER'}, weights after step 1 "
          f"{'equal' if ref['params_equal_after_1'] else 'DIFFER'}")
    hwc = ch["handwritten_c"]
    if "skipped" in hwc:
        print(f"  bit-for-bit: handwritten C skipped ({hwc['skipped']})")
    else:
        print(f"  bit-for-bit: handwritten C vs compiled: step-1 loss {hwc['step1_loss']} vs "
              f"{hwc['compiled_step1_loss']}: {'EQUAL' if hwc['step1_loss_equal'] else 'DIFFERENT'}; "
              f"weights after step 1 {'equal' if hwc['params_equal_after_1'] else 'DIFFER'}; "
              f"losses over {ch['steps_compared']} steps "
              f"{'equal' if hwc['losses_equal'] else 'DIFFER from step %s' % hwc['first_differing_step']}; "
              f"weights after them {'equal' if hwc['params_equal_after_K'] else 'DIFFER'}")
    if "micrograd" in ch:
        mg = ch["micrograd"]
        print(f"  micrograd 0.1.0 vs compiled: step-1 loss {'equal' if mg['step1_loss_equal'] else 'DIFFERENT'}, "
              f"losses over {ch['steps_compared_python']} steps {'equal' if mg['losses_equal'] else 'differ'}, "
              f"max |weight diff| after step 1 {mg['max_abs_param_diff_after_1']:.3g} "
              "(micrograd sums gradients in set order)")
    if "torch" in ch:
        t = ch["torch"]
        print(f"  PyTorch vs compiled: step-1 loss relative difference {t['step1_loss_rel_diff']:.3g}, "
              f"max |weight diff| after step 1 {t['max_abs_param_diff_after_1']:.3g}")
    for key, label in (("step", "1"), ("backward", "2"), ("build", "3")):
        cs = record[key]["cpu_samples"]
        r_off, _ = ratio_cell(cs[REF_OFF], cs[COMPILED])
        r_on, _ = ratio_cell(cs[REF_ON], cs[COMPILED])
        print(f"  {label}. by CPU time of this process (time.process_time, blind to time spent "
              f"descheduled): ratio vs ref GC off {sig(r_off)}x, vs GC on {sig(r_on)}x")
    d, cpu = record["durations"], record["cpu_seconds"]
    print(f"  run time: {d['total']:.1f} s wall, {cpu['total']:.1f} s CPU (this process; a wall time "
          "well above the CPU time means other processes took the cores); wall by part: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in d.items() if k != "total"))


# ---- main ------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="write every raw timing to PATH as JSON")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="repetitions per workload (default: 7, or 3 with --quick)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if compiled_engine is None or cmicrograd.IMPLEMENTATION != "cython":
        print("run.py: the compiled engine (cmicrograd._engine) is not available; build it "
              "first (pip install -e .)", file=sys.stderr)
        return 2

    idx = 1 if args.quick else 0
    cfg = {k: v[idx] for k, v in MODES.items()}
    cfg["quick"] = args.quick
    if args.repeat is not None:
        cfg["repeat"] = args.repeat

    t_start, c_start = time.perf_counter(), time.process_time()
    durations: Dict[str, float] = {}
    cpu: Dict[str, float] = {}
    have_mg = micrograd_available()
    torch_ok = torch_module() is not None
    X, y = make_moons(N_POINTS, NOISE, seed=SEED)
    weights = initial_weights()
    record: Dict[str, Any] = {"config": {**cfg, "seed": SEED, "points": N_POINTS, "noise": NOISE,
                                         "hidden": HIDDEN, "alpha": ALPHA, "lr": LR,
                                         "targets": TARGETS}}

    with tempfile.TemporaryDirectory(prefix="cmicrograd-bench-") as workdir:
        t = time.perf_counter()
        hw = HandwrittenC(workdir)
        durations["compile C"] = time.perf_counter() - t
        record["environment"] = environment(torch_ok, have_mg, hw)
        # Everything imported so far (PyTorch alone brings ~150,000 GC-tracked objects)
        # goes to the permanent generation: a GC-on sample then pays for collecting the
        # workload's own objects, as in a script that imports only its engine.
        gc.collect()
        gc.freeze()
        record["environment"]["gc_frozen_objects"] = gc.get_freeze_count()
        # memory first, while the process's heap is small and has little free memory
        # to reuse (RSS deltas would undercount); the 10^7 chain last
        for name, fn in (
            ("4 memory", lambda: workload_memory(cfg, have_mg, record)),
            ("checks", lambda: run_checks(cfg, weights, X, y, have_mg, torch_ok, hw, record)),
            ("1 step", lambda: workload_step(cfg, weights, X, y, have_mg, torch_ok, hw, record)),
            ("2 backward", lambda: workload_backward(cfg, weights, X, y, have_mg, record)),
            ("3 build", lambda: workload_build(cfg, have_mg, record)),
            ("5 chain", lambda: workload_chain(cfg, record)),
        ):
            t, c = time.perf_counter(), time.process_time()
            fn()
            durations[name] = time.perf_counter() - t
            cpu[name] = time.process_time() - c
            gc.collect()
    durations["total"] = time.perf_counter() - t_start
    cpu["total"] = time.process_time() - c_start
    record["durations"] = durations
    for key in ("step", "backward", "build"):
        w = record[key]
        w["stats"] = {k: summary(v) for k, v in w["samples"].items()}
        w["cpu_stats"] = {k: summary(v) for k, v in w["cpu_samples"].items()}
    record["load_average_end"] = load_average()
    record["cpu_seconds"] = cpu

    print_report(record, cfg)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, default=str)
            f.write("\n")
        print(f"wrote every raw timing to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
