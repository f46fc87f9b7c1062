"""Row 7: training a character-level GPT with scalar Values (bench/gpt_model.py), one
word per step: forward (building the loss), backward, the Adam loop, on a plain-Python
__slots__ Value class of the kind such programs define inline, on the reference and on
the compiled engine."""

from __future__ import annotations

import gc
import sys
from typing import Any, Callable, Dict, List, Optional

import cmicrograd._engine as compiled_engine
import cmicrograd.reference.engine as reference_engine

from . import gpt_model
from .config import COMPILED, PLAIN_OFF, PLAIN_ON, REF_OFF, REF_ON, TARGETS
from .measure import Sample, clocks, gc_mode, interleave, log
from .report import NOT_MET, cell, ratio_cell, sig
from .workload import Context, Record, Row, Workload

PHASES = ("forward", "backward", "update", "free")
N_EMBD, BLOCK_SIZE, N_HEAD, N_WORDS = 16, 8, 4, 300
RECURSION_LIMIT = 10_000   # PlainValue.backward recurses once per level of the graph


def graph_shape(root: Any) -> Dict[str, int]:
    """Nodes and depth (the longest path from the loss to a leaf) of a PlainValue graph,
    walked without recursion."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            order.append(v)
        elif id(v) not in seen:
            seen.add(id(v))
            stack.append((v, True))
            stack.extend((c, False) for c in v._children)
    depth: Dict[int, int] = {}
    for v in order:
        depth[id(v)] = 1 + max((depth[id(c)] for c in v._children), default=0)
    return {"nodes": len(order), "depth": depth[id(root)]}


def run(ctx: Context) -> Dict[str, Any]:
    log("7. a character-level GPT with scalar Values ...")
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))
    try:
        return _run(ctx)
    finally:
        sys.setrecursionlimit(old_limit)


def _run(ctx: Context) -> Dict[str, Any]:
    words = gpt_model.make_words(N_WORDS)
    letters, end = gpt_model.vocabulary(words)
    vocab = len(letters) + 1
    docs = [gpt_model.encode(w, letters, end) for w in words]
    per_sample = ctx.cfg["gpt_steps"]

    classes = {PLAIN_ON: gpt_model.PlainValue, PLAIN_OFF: gpt_model.PlainValue,
               REF_ON: reference_engine.Value, REF_OFF: reference_engine.Value,
               COMPILED: compiled_engine.Value}
    gc_off = {PLAIN_OFF, REF_OFF}
    phases: Dict[str, Dict[str, Dict[str, List[float]]]] = {
        clock: {p: {k: [] for k in classes} for p in PHASES} for clock in ("wall", "cpu")}
    losses: Dict[str, List[float]] = {k: [] for k in classes}

    def sampler(key: str) -> Callable[[], Sample]:
        model = gpt_model.GPT(classes[key], vocab, N_EMBD, BLOCK_SIZE, N_HEAD)
        opt = gpt_model.Adam(model.params)
        plain = classes[key] is gpt_model.PlainValue

        def sample() -> Sample:
            spent = {clock: dict.fromkeys(PHASES, 0.0) for clock in ("wall", "cpu")}
            with gc_mode(key in gc_off):
                for _ in range(per_sample):
                    tokens = docs[len(losses[key]) % len(docs)]   # every variant: the same words
                    t0 = clocks()
                    loss = model.loss(tokens)
                    t1 = clocks()
                    loss.backward()
                    t2 = clocks()
                    opt.step()
                    t3 = clocks()
                    losses[key].append(loss.data)
                    del loss
                    t4 = clocks()
                    for p, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
                        spent["wall"][p] += b[0] - a[0]
                        spent["cpu"][p] += b[1] - a[1]
            if plain:
                # PlainValue.backward's build_topo closure refers to itself, so its topo
                # list (the whole graph) is cyclic garbage: collected here, untimed
                gc.collect()
            for clock in ("wall", "cpu"):
                for p in PHASES:
                    phases[clock][p][key].append(spent[clock][p] / per_sample)
            return (sum(spent["wall"].values()) / per_sample, sum(spent["cpu"].values()) / per_sample)
        return sample

    samplers = {k: sampler(k) for k in classes}
    samples = interleave(samplers, ctx.cfg["repeat"], warmup=list(samplers))
    for clock in ("wall", "cpu"):   # drop the warm-up step from the phases
        for p in PHASES:
            for k in classes:
                del phases[clock][p][k][0]

    # the graph of one step, and the bits
    probe = gpt_model.GPT(gpt_model.PlainValue, vocab, N_EMBD, BLOCK_SIZE, N_HEAD)
    shape = graph_shape(probe.loss(docs[0]))
    cm_graph = gpt_model.GPT(compiled_engine.Value, vocab, N_EMBD, BLOCK_SIZE, N_HEAD).loss(docs[0])
    shape["nodes_compiled"] = len(compiled_engine._topological_order(cm_graph))
    del cm_graph
    gc.collect()
    c = losses[COMPILED]
    plain = losses[PLAIN_ON]
    rel = [abs(a - b) / abs(b) for a, b in zip(plain, c)]
    checks = {
        "steps": len(c),
        "reference_equal": losses[REF_ON] == c and losses[REF_OFF] == c,
        "plain_gc_on_off_equal": losses[PLAIN_ON] == losses[PLAIN_OFF],
        "plain_max_rel_diff": max(rel),
        "plain_equal_steps": sum(a == b for a, b in zip(plain, c)),
        "plain_first_differing_step": next((i + 1 for i, (a, b) in enumerate(zip(plain, c)) if a != b), None),
        "losses": {k: [x.hex() for x in v] for k, v in losses.items()},
    }
    return {"unit": "seconds per training step", "steps_per_sample": per_sample,
            "model": {"n_embd": N_EMBD, "block_size": BLOCK_SIZE, "n_head": N_HEAD, "vocab": vocab,
                      "params": len(probe.params),
                      "words": len(words), "mean_word_length": sum(map(len, words)) / len(words)},
            "graph_of_first_word": shape, "checks": checks,
            "samples": samples["wall"], "cpu_samples": samples["cpu"],
            "phases": phases["wall"], "cpu_phases": phases["cpu"]}


def fwd_bwd(ph: Dict[str, Dict[str, List[float]]]) -> Dict[str, List[float]]:
    return {k: [a + b for a, b in zip(ph["forward"][k], ph["backward"][k])] for k in ph["forward"]}


def gpt_row(name: str, s: Dict[str, List[float]], target: Optional[float]) -> Row:
    """A GPT row: the plain Value (GC on / off) in the first column; the target, if
    any, is against the plain Value with its GC on."""
    vs_plain_on, t_plain_on = ratio_cell(s[PLAIN_ON], s[COMPILED])
    vs_plain_off, _ = ratio_cell(s[PLAIN_OFF], s[COMPILED])
    _, t_off = ratio_cell(s[REF_OFF], s[COMPILED])
    _, t_on = ratio_cell(s[REF_ON], s[COMPILED])
    verdict = f"{t_plain_on} vs plain GC on, {sig(vs_plain_off)}x vs GC off"
    if target is not None:
        verdict = ("yes" if vs_plain_on >= target else NOT_MET) + f" ({verdict})"
    return [name, f"plain Value: {cell(s[PLAIN_ON], 1e3)} / {cell(s[PLAIN_OFF], 1e3)}",
            cell(s[REF_ON], 1e3), cell(s[REF_OFF], 1e3), cell(s[COMPILED], 1e3), t_off, t_on,
            f">= {sig(target)}x plain Value GC on" if target is not None else "", verdict]


def rows(result: Dict[str, Any], record: Record) -> List[Row]:
    ph = result["phases"]
    m = result["model"]
    return [
        gpt_row(f"7. GPT step (n_embd {m['n_embd']}, 4 heads, 1 word): total (ms)", result["samples"],
                TARGETS["gpt_step"]),
        gpt_row("7f. GPT step: forward, building the loss (ms)", ph["forward"], None),
        gpt_row("7b. GPT step: loss.backward() (ms)", ph["backward"], None),
        gpt_row("7fb. GPT step: forward + backward (ms)", fwd_bwd(ph), TARGETS["gpt_fwd_bwd"]),
        gpt_row("7u. GPT step: Adam, a Python loop over params (ms)", ph["update"], None),
    ]


def details(result: Dict[str, Any], record: Record) -> List[str]:
    m, g, ch = result["model"], result["graph_of_first_word"], result["checks"]
    free = result["phases"]["free"]
    cpu = result["cpu_samples"]
    cpu_fb = fwd_bwd(result["cpu_phases"])
    within = ch["plain_max_rel_diff"] <= 1e-12
    return [
        f"7. the GPT: vocab {m['vocab']} ({m['words']} made-up words, {m['mean_word_length']:.1f} letters on "
        f"average), n_embd {m['n_embd']}, block {m['block_size']}, {m['n_head']} heads, MLP 4x with relu, "
        f"{m['params']:,} parameters; the first word's graph: {g['nodes']:,} nodes (compiled "
        f"_topological_order: {g['nodes_compiled']:,}), depth {g['depth']}; {result['steps_per_sample']} "
        "step(s) per sample, each variant training on the same words from the same weights",
        "7. the total includes freeing the graph ("
        + ", ".join(f"{k} {cell(free[k], 1e3)} ms" for k in (PLAIN_ON, REF_OFF, COMPILED))
        + "); the plain Value's graph is cyclic garbage (its backward's closure), collected after "
        "each of its samples, untimed",
        f"7. losses over {ch['steps']} steps: reference vs compiled "
        f"{'bit-identical' if ch['reference_equal'] else 'DIFFER  <-- MISMATCH'}; plain Value vs "
        f"compiled: max relative difference {ch['plain_max_rel_diff']:.3g} "
        f"({'within' if within else 'NOT within  <--'} 1e-12), bit-identical at {ch['plain_equal_steps']} of "
        f"{ch['steps']} steps"
        + (f" (first difference at step {ch['plain_first_differing_step']})"
           if ch["plain_first_differing_step"] else ""),
        f"7. by CPU time: compiled vs plain Value GC on {sig(ratio_cell(cpu[PLAIN_ON], cpu[COMPILED])[0])}x per "
        f"step, {sig(ratio_cell(cpu_fb[PLAIN_ON], cpu_fb[COMPILED])[0])}x forward+backward",
    ]


WORKLOAD = Workload(key="gpt", number=7, run=run, rows=rows, details=details)
