"""Row 5: long chains on the compiled engine (build, backward, free), to show that the
cost per node stays flat as the chain grows."""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List

import cmicrograd._engine as compiled_engine

from .config import CHAIN_LINEAR_LIMIT
from .measure import log, page_faults, settle
from .report import sig
from .workload import Context, Record, Row, Workload

PHASES = ("build", "backward", "free")


def chain(V: Any, n: int) -> Any:
    """y = y * 1.0, n times, from y = V(1.0)."""
    y = V(1.0)
    for _ in range(n):
        y = y * 1.0
    return y


def run(ctx: Context) -> Dict[str, Any]:
    sizes = ctx.cfg["chain_sizes"]
    log(f"5. chains of {', '.join(f'{n:.0e}' for n in sizes)} nodes (compiled) ...")
    V = compiled_engine.Value
    out: Dict[str, Any] = {"unit": "seconds", "sizes": {}}
    chain(V, 10**5).backward()  # warm the code paths
    for n in sizes:
        runs: Dict[str, List[float]] = {"build": [], "backward": [], "free": [], "build_page_faults": []}
        for _ in range(ctx.cfg["chain_repeat"]):
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
    for _ in range(ctx.cfg["chain_repeat"]):
        del_me = chain(V, 10**5)
        del del_me
        t0 = time.perf_counter()
        y = chain(V, 10**5)
        warm.append(time.perf_counter() - t0)
        del y
    out["warm_build_1e5"] = warm
    compiled_engine._trim_memory()
    return out


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    sizes = result["sizes"]
    per_node = {int(n_txt): sum(statistics.median(runs[k]) for k in PHASES) / int(n_txt)
                for n_txt, runs in sizes.items()}
    smallest = min(per_node)
    largest = max(per_node)
    out = []
    for n_txt, runs in sizes.items():
        n = int(n_txt)
        med = {k: statistics.median(runs[k]) * 1e9 / n for k in PHASES}
        growth = per_node[n] / per_node[smallest]
        if n == largest:
            met = ("yes" if growth <= CHAIN_LINEAR_LIMIT else "NO  <-- NOT MET") + f" (x{growth:.2f})"
        else:
            met = f"(x{growth:.2f})"
        out.append([
            f"5. chain of {n:.0e}: build / backward / free (ns/node)", "", "", "",
            f"{sig(med['build'])} / {sig(med['backward'])} / {sig(med['free'])}", "", "",
            f"linear: <= {CHAIN_LINEAR_LIMIT:g}x the 1e5 ns/node" if n == largest else "linear", met,
        ])
    return out


def details(result: Dict[str, Any], record: Record) -> List[str]:
    lines = []
    for n_txt, runs in result["sizes"].items():
        med = {k: statistics.median(v) for k, v in runs.items()}
        lines.append(f"5. chain of {int(n_txt):,}: build {med['build']:.3f} s, backward "
                     f"{med['backward']:.3f} s, free {med['free']:.3f} s (medians of "
                     f"{len(runs['build'])}); the build takes "
                     f"{med['build_page_faults'] / int(n_txt) * 1000:.1f} page faults per 1000 "
                     "nodes (fresh memory)")
    lines.append("5. for comparison, a 10^5 chain built on the chunks a freed one left (no page "
                 f"faults): {statistics.median(result['warm_build_1e5']) * 1e9 / 10**5:.0f} ns/node")
    return lines


WORKLOAD = Workload(key="chain", number=5, run=run, rows=rows, details=details)
