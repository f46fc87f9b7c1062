"""What the benchmark measures: the problem every engine solves, the sizes of a full and
of a quick run, the targets, and the names of the table's variants."""

from __future__ import annotations

from typing import Any, Dict, Optional

# ---- the problem: micrograd's demo -------------------------------------------------------
SEED = 1            # random.seed before building the MLP, and make_moons' seed
N_POINTS = 100      # micrograd's demo: 100 moons points, noise 0.1
NOISE = 0.1
HIDDEN = [16, 16]   # MLP(2, [16, 16, 1])
ALPHA = 1e-4        # L2 strength of the demo's loss
LR = 0.1            # a constant learning rate (the demo's decays from 1.0)

# ---- sizes -------------------------------------------------------------------------------
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
    "floor_inner":   (10,                   5),           # workload 6: loops per float/compiled sample
    "gpt_steps":     (3,                    1),           # workload 7: training steps per sample
    "first_compiles": (3,                   1),           # workload 8: fresh processes per width
    "cli_repeat":    (3,                    2),           # workload 11: runs of each mode (not --repeat)
    # workload 12: the moons points of problems (a), (b), (c) (MLP(2,[16,16,1]) twice,
    # then MLP(2,[64,64,1])), and how long one sample of a variant lasts (its steps per
    # sample are set from a timed warm-up)
    "lanes_points":  ((100, 1000, 1000),    (100, 200, 200)),
    "lanes_sample_seconds": (0.1,           0.01),
}


def settings(quick: bool, repeat: Optional[int] = None) -> Dict[str, Any]:
    """The sizes of a full or a quick run ("quick" says which), with `repeat` overriding
    the number of repetitions."""
    cfg: Dict[str, Any] = {k: v[1 if quick else 0] for k, v in MODES.items()}
    cfg["quick"] = quick
    if repeat is not None:
        cfg["repeat"] = repeat
    return cfg


# ---- targets -------------------------------------------------------------------------------
TARGETS = {"step": 50.0, "backward": 60.0, "build": 25.0, "memory": 100.0,
           # row 6: Values at most this many times the same loop on floats, and at least
           # this many times faster than the reference (all GC off)
           "floor_vs_floats": 1.5, "floor_vs_ref": 20.0,
           # row 7: the GPT step, times faster than the plain __slots__ Value (GC on)
           "gpt_step": 30.0, "gpt_fwd_bwd": 60.0,
           # row 8: compile(loss) at most this many eager builds of the graph; the RSS
           # of a recording at most this many times the graph's own
           "compile_vs_build": 1.0, "recording_vs_graph": 2.0,
           # row 9: the whole compiled training step at most this many times the
           # replay's forward + backward
           "optimizer_step": 1.1,
           # row 10: two graphs sharing their parameters, alternated, at most this many
           # times the same calls on graphs replayed alone
           "two_graphs": 1.2,
           # row 11: `cmicrograd train`'s default at most this many times the faster of
           # --eager and --compiled
           "cli_default": 1.2,
           # the compiled replay (row 1r): vs the reference with GC off, how many times
           # faster than PyTorch, at most how many times the hand-written C's time
           "replay": 1000.0, "replay_vs_torch": 3.0, "replay_vs_c": 3.0,
           # row 12: the lanes' training step (threads=1) at most this many times the
           # hand-written C -O2's time on the demo (12a), at least this many times faster
           # than PyTorch on the demo (12a) and on 1,000 points (12b); threads=2 at least
           # this many times faster than threads=1 on 1,000 points, MLP(2,[64,64,1]) (12c)
           "lanes_vs_c": 1.0, "lanes_vs_torch_demo": 10.0, "lanes_vs_torch": 3.0,
           "lanes_threads": 1.7}
CHAIN_LINEAR_LIMIT = 2.0  # largest chain's ns/node at most this times the smallest's

# ---- variants: the keys of a workload's samples, in table order --------------------------
# The GC-off ones run with gc.disable() around the timing.
MG_ON, MG_OFF = "micrograd_gc_on", "micrograd_gc_off"
REF_ON, REF_OFF = "reference_gc_on", "reference_gc_off"
COMPILED = "compiled"
# other ways to run row 1's step
TORCH, HANDWRITTEN, REPLAY = "torch", "handwritten_c", "compiled_replay"
# the same loop on Python floats (row 6)
FLOATS = "floats"
# the GPT's plain-Python __slots__ Value class (row 7)
PLAIN_ON, PLAIN_OFF = "plain_gc_on", "plain_gc_off"
