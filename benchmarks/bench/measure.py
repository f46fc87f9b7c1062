"""How a sample is taken: the clocks, the GC modes, the interleaving of engines within
each repetition, the summaries of samples, and the process's memory (RSS, page faults,
and giving freed memory back before measuring it)."""

from __future__ import annotations

import ctypes
import gc
import os
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cmicrograd._engine as compiled_engine

Sample = Tuple[float, float]  # (wall seconds, CPU seconds of this process) per unit of work


def log(msg: str) -> None:
    """Progress, on stderr (the report goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# ---- time ----------------------------------------------------------------------------------
def clocks() -> Sample:
    return time.perf_counter(), time.process_time()


def since(start: Sample, units: float) -> Sample:
    wall, cpu = clocks()
    return (wall - start[0]) / units, (cpu - start[1]) / units


@contextmanager
def gc_mode(off: bool) -> Iterator[None]:
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


def summary(xs: Sequence[float]) -> Dict[str, float]:
    """n, median, min, max and the quartiles of some samples."""
    s = sorted(xs)
    out = {"n": len(s), "median": statistics.median(s), "min": s[0], "max": s[-1]}
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    out["q1"], out["q3"] = q1, q3
    return out


# ---- memory --------------------------------------------------------------------------------
def rss_bytes() -> Optional[int]:
    """This process's resident set size now (Linux /proc), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def page_faults() -> int:
    """Minor page faults of this process so far (0 where unknown)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):
        return 0


try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
    _malloc_trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def settle() -> None:
    """Free what can be freed, so that an RSS delta measures new memory only."""
    gc.collect()
    compiled_engine._trim_memory()
    if _malloc_trim is not None:
        _malloc_trim(0)
