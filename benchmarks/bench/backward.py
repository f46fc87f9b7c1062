"""Row 2: loss.backward() alone, on the graph of row 1's step, per node."""

from __future__ import annotations

import gc
from typing import Any, Callable, Dict, List

import cmicrograd._engine as compiled_engine
import cmicrograd.nn as compiled_nn
import cmicrograd.reference.engine as reference_engine
import cmicrograd.reference.nn as reference_nn
from cmicrograd.train import batch_loss

from .config import ALPHA, COMPILED, MG_OFF, MG_ON, REF_OFF, REF_ON
from .engines import cm_model, mg_forward, mg_model
from .measure import Sample, clocks, gc_mode, interleave, log, since
from .report import engine_row
from .workload import Context, Record, Row, Workload


def count_nodes_micrograd(root: Any) -> int:
    seen, stack = {id(root)}, [root]
    while stack:
        v = stack.pop()
        for c in v._prev:
            if id(c) not in seen:
                seen.add(id(c))
                stack.append(c)
    return len(seen)


def run(ctx: Context) -> Dict[str, Any]:
    log("2. backward() on the step's graph ...")
    weights, X, y = ctx.weights, ctx.X, ctx.y
    Xl, yl = X.tolist(), y.tolist()
    builders: Dict[str, Callable[[], Any]] = {}
    cm_ref = cm_model(reference_nn, weights)
    cm_cmp = cm_model(compiled_nn, weights)
    builders["reference"] = lambda: batch_loss(cm_ref, X, y, ALPHA)[0]
    builders["compiled"] = lambda: batch_loss(cm_cmp, X, y, ALPHA)[0]
    if ctx.have_mg:
        mg = mg_model(weights)
        builders["micrograd"] = lambda: mg_forward(mg, Xl, yl)[0]

    # the node count, on a separate identical graph (_topological_order expands fused sums)
    nodes = {
        "reference": len(reference_engine._topological_order(builders["reference"]())),
        "compiled": len(compiled_engine._topological_order(builders["compiled"]())),
    }
    if ctx.have_mg:
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
    if ctx.have_mg:
        samplers[MG_ON] = sampler("micrograd", 1, False)
        samplers[MG_OFF] = sampler("micrograd", 1, True)
    samplers[REF_ON] = sampler("reference", ctx.cfg["backward_inner_py"], False)
    samplers[REF_OFF] = sampler("reference", ctx.cfg["backward_inner_py"], True)
    samplers[COMPILED] = sampler("compiled", 40, False)
    warm = [COMPILED] if ctx.cfg["quick"] else list(samplers)
    samples = interleave(samplers, ctx.cfg["repeat"], warmup=warm)
    current["loss"] = None
    gc.collect()
    return {"unit": "seconds per node", "nodes": nodes, "samples": samples["wall"],
            "cpu_samples": samples["cpu"]}


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    return [engine_row("2. backward() on that graph (ns/node)", result["samples"], 1e9, "backward")]


def details(result: Dict[str, Any], record: Record) -> List[str]:
    return ["2. graph size (len(_topological_order(loss)) on a separate identical graph): "
            + ", ".join(f"{k} {v:,}" for k, v in result["nodes"].items()) + " nodes"]


WORKLOAD = Workload(key="backward", number=2, run=run, rows=rows, details=details)
