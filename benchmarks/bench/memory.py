"""Row 4: the memory of a live chain y = y * 1.0, in bytes per op."""

from __future__ import annotations

import tracemalloc
from typing import Any, Dict, List

import cmicrograd._engine as compiled_engine
import cmicrograd.reference.engine as reference_engine

from .chain import chain
from .config import COMPILED, MG_OFF, MG_ON, REF_OFF, REF_ON, TARGETS
from .measure import gc_mode, log, rss_bytes, settle
from .report import sig
from .workload import Context, Record, Row, Workload


def run(ctx: Context) -> Dict[str, Any]:
    """Bytes per op of a live chain y = y * 1.0, by the same method for every engine:
    the growth of the process's RSS (run first, while the heap has little free memory
    to reuse). Cross-checks: the compiled engine's chunk bytes (_trim_memory) and, for
    the Python engines, tracemalloc on a shorter chain."""
    n = ctx.cfg["mem_ops"]
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
    n_traced = min(n, ctx.cfg["mem_ops_traced"])
    out["tracemalloc"] = {"ops": n_traced, "reference": traced(reference_engine.Value, n_traced)}
    if ctx.have_mg:
        from micrograd.engine import Value as MGValue
        out[MG_OFF] = measure(MGValue, True, n)
        # micrograd's closures put every node in a reference cycle: with its GC on,
        # building a long chain is dominated by collections that free nothing (minutes
        # for 10^6 ops), so that one is measured on a shorter chain
        out[MG_ON] = measure(MGValue, False, min(n, ctx.cfg["mem_ops_mg_gc"]))
        out["tracemalloc"]["micrograd"] = traced(MGValue, n_traced)
    return out


def rows(m: Dict[str, Any], record: Record) -> List[Row]:
    n_ops = m["ops"]

    def mem(key: str) -> float:
        v = m[key]["rss"]
        return v if v is not None else float("nan")

    def mem_txt(key: str) -> str:
        v = sig(mem(key))
        return v if m[key]["ops"] == n_ops else f"{v} ({m[key]['ops']:.0e} ops)"

    c = m[COMPILED]
    comp_b = mem(COMPILED)
    mg_txt = f"{mem_txt(MG_ON)} / {mem_txt(MG_OFF)}" if MG_ON in m else "not installed"
    need = TARGETS["memory"]
    met = ("RSS: " + ("yes" if comp_b <= need else "NO <--") + ", chunks: "
           + ("yes" if c["chunks"] <= need else "NO <--"))
    return [[
        f"4. memory, y = y*1.0 x {n_ops:.0e} (bytes/op, RSS)", mg_txt,
        mem_txt(REF_ON), mem_txt(REF_OFF), f"{sig(comp_b)} ({sig(c['chunks'])} in chunks)",
        f"{sig(mem(REF_OFF) / comp_b)}x less", f"{sig(mem(REF_ON) / comp_b)}x less",
        f"<= {sig(need)} B/op", met,
    ]]


def details(m: Dict[str, Any], record: Record) -> List[str]:
    c = m[COMPILED]
    extra = ""
    if c["rss"] is not None and c["chunks"] > 0:
        per_chunk = (c["rss"] - c["chunks"]) / (c["chunks"] / 65536)
        extra = f"; RSS beyond the chunks: {per_chunk / 1024:.1f} KiB per 64 KiB chunk"
    tm = m["tracemalloc"]
    return [f"4. compiled: {sig(c['chunks'])} B/op held in Value chunks (_trim_memory), one Value "
            f"{c['sizeof_value']} B + a 16 B GC header{extra}. tracemalloc on {tm['ops']:,} ops (GC off): "
            + ", ".join(f"{k} {sig(v)} B/op" for k, v in tm.items() if k != "ops")]


WORKLOAD = Workload(key="memory", number=4, run=run, rows=rows, details=details)
