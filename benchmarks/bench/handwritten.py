"""The hand-written C step (benchmarks/handwritten.c): compiled at run time into a
temporary directory and called through ctypes. The only part of the benchmark that runs
outside this process is that compilation."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .config import ALPHA, HIDDEN, LR

SOURCE = Path(__file__).resolve().parent.parent / "handwritten.c"


class HandwrittenC:
    """handwritten.c, compiled into `workdir` for MLP(2, hidden + [1]) (row 1's by
    default; other sizes through -DH1/-DH2) with `opt` as its optimisation flags (-O2 by
    default; -ffp-contract=off -fno-builtin-pow always); hw_train runs N steps inside C
    and returns the seconds they took. When it cannot be compiled, `lib` is None and
    `error` says why (the C row is then skipped, with that reason)."""

    OPT = ("-O2",)
    FLAGS = ["-ffp-contract=off", "-fno-builtin-pow", "-shared", "-fPIC"]

    def __init__(self, workdir: str, hidden: Sequence[int] = HIDDEN,
                 opt: Sequence[str] = OPT) -> None:
        self.error: Optional[str] = None
        self.lib = None
        self.hidden = list(hidden)
        self.opt = list(opt)
        self.compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        self.command: List[str] = []
        self.compiler_version = ""
        if not self.compiler:
            self.error = "no C compiler (cc) found"
            return
        if len(self.hidden) != 2:
            raise ValueError(f"handwritten.c has two hidden layers, not {self.hidden}")
        # one file per build: several may be loaded at once (ctypes loads them RTLD_LOCAL)
        tag = "_".join(str(h) for h in self.hidden) + "".join(f.strip("-=").replace("=", "_") for f in self.opt)
        so = os.path.join(workdir, f"handwritten_{tag}.so")
        sizes_flags = [] if self.hidden == HIDDEN else [f"-DH1={self.hidden[0]}", f"-DH2={self.hidden[1]}"]
        self.command = [self.compiler, *self.opt, *self.FLAGS, *sizes_flags, "-o", so, str(SOURCE)]
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
        if list(sizes) != [2] + self.hidden:
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
        """Run `steps` steps on `state`, writing each step's loss into `losses` (a C
        double array) when given; returns the wall seconds they took, timed inside C."""
        params, Xc, yc, n = state
        return self.lib.hw_train(steps, params, Xc, yc, n, LR, ALPHA, losses)
