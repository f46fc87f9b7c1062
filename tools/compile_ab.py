"""In-process A/B of what `compile(loss)` costs in two builds of the compiled engine.

    python tools/compile_ab.py OLD NEW [--hidden 16] [--rounds 100] [--repeat 3]

OLD and NEW are checkouts with a built extension (`python setup.py build_ext --inplace`),
e.g. a git worktree of the commit before a change, and this checkout. Both builds are
loaded into one process (their packages copied to a scratch directory as `cma` and
`cmb`) and run the sequence of the benchmark's row 8 (a few eager training steps, one
build, its compile, replayed steps, then both freed), round by round, alternating the
two: on a shared VM, speed drifts from one process to the next by more than most
changes to the recording, and in one process it hits both builds alike. Prints, per
repetition, each build's median build and compile times and the median of the per-round
ratios NEW / OLD of the compile time.

The instructions a recording executes, which no VM noise touches (run in one checkout):

    valgrind --tool=callgrind --toggle-collect='__pyx_pw_10cmicrograd_7_engine_*compile' \\
        python tools/compile_ab.py . . --rounds 5 --repeat 1

(then `callgrind_annotate` on the output, divided by the compiles it made).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple


def load(checkout: str, name: str, scratch: str) -> Any:
    """The cmicrograd package of checkout, imported as `name` (a copy in scratch)."""
    src = os.path.join(os.path.abspath(checkout), "cmicrograd")
    if not os.path.isdir(src):
        sys.exit(f"compile_ab: {checkout} is no cmicrograd checkout (no cmicrograd/ in it)")
    if not any(f.startswith("_engine.") and f.endswith((".so", ".pyd")) for f in os.listdir(src)):
        sys.exit(f"compile_ab: {checkout} has no built extension (python setup.py build_ext --inplace)")
    shutil.copytree(src, os.path.join(scratch, name), ignore=shutil.ignore_patterns("__pycache__"))
    return importlib.import_module(name)


def setup(pkg: Any, hidden: int, X: List[List[float]], y: List[float]) -> Tuple[Callable, Callable, Callable]:
    """(build, eager_step, zero_grad) for MLP(2, [hidden, hidden, 1]) of that package,
    seeded as the benchmark seeds it: build() makes the moons loss as the README does;
    eager_step() builds, backpropagates and updates with a plain SGD loop over the
    parameters (the packages' optimizers check for the installed engine's Values)."""
    nn = importlib.import_module(pkg.__name__ + ".nn")
    losses = importlib.import_module(pkg.__name__ + ".losses")
    random.seed(1)                  # (benchmarks/bench/config.py: SEED)
    model = nn.MLP(2, [hidden, hidden, 1])
    params = model.parameters()

    def build() -> Any:
        inputs = [[pkg.Value(v) for v in row] for row in X]
        scores = [model(row) for row in inputs]
        return losses.hinge_loss(scores, y) + losses.l2_regularization(params, 1e-4)

    def sgd() -> None:
        for p in params:
            p.data -= 0.05 * p.grad

    def eager_step() -> None:
        loss = build()
        model.zero_grad()
        loss.backward()
        sgd()

    return build, eager_step, lambda: model.zero_grad()


def one_repetition(builds: Dict[str, Any], rounds: int, eager: int, replays: int) -> Dict[str, List[Tuple[float, float]]]:
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in builds}
    for r in range(rounds + 1):
        for name in (sorted(builds) if r % 2 else sorted(builds, reverse=True)):
            pkg, (build, eager_step, zero_grad) = builds[name]
            for _ in range(eager):
                eager_step()
            t = time.perf_counter()
            loss = build()
            b = time.perf_counter() - t
            t = time.perf_counter()
            graph = pkg._engine.compile(loss)
            c = time.perf_counter() - t
            for _ in range(replays):
                graph.forward()
                zero_grad()
                graph.backward()
            del graph, loss
            if r:                       # the first round warms up
                times[name].append((b, c))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--hidden", type=int, default=16, help="MLP(2, [h, h, 1]) (default 16: the moons graph)")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--eager", type=int, default=5, help="eager training steps before each build")
    ap.add_argument("--replays", type=int, default=20, help="replayed steps after each compile")
    args = ap.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cmicrograd.datasets import make_moons

    X, y = make_moons(100, 0.1, seed=1)   # (the benchmark's moons: labels -1/+1)
    scratch = tempfile.mkdtemp(prefix="compile-ab-")
    sys.path.insert(0, scratch)
    try:
        builds = {}
        for name, checkout in (("old", args.old), ("new", args.new)):
            pkg = load(checkout, "cma" if name == "old" else "cmb", scratch)
            builds[name] = (pkg, setup(pkg, args.hidden, X.tolist(), y.tolist()))
        gc.disable()
        for rep in range(args.repeat):
            times = one_repetition(builds, args.rounds, args.eager, args.replays)
            med = {name: (statistics.median(b for b, c in v), statistics.median(c for b, c in v))
                   for name, v in times.items()}
            ratio = statistics.median(n[1] / o[1] for o, n in zip(times["old"], times["new"]))
            print(f"repetition {rep + 1}: "
                  + "; ".join(f"{name} build {m[0] * 1e3:.3f} ms compile {m[1] * 1e3:.3f} ms "
                              f"({m[1] / m[0]:.3f}x)" for name, m in med.items())
                  + f"; compile new/old {ratio:.3f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
