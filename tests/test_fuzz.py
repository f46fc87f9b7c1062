"""The long differential fuzz run: many thousands of random graphs, compiled engine vs
reference, eager and replayed, data, grads and exceptions compared exactly.

Deselected in the normal suite (which keeps a fixed-seed slice of it, in
test_parity.py); run it with ``pytest -m fuzz`` or ``tools/fuzz.sh``. The number of
programs comes from CMICROGRAD_FUZZ_EXAMPLES (default 20000), the seed from
CMICROGRAD_FUZZ_SEED (default: random, printed on failure).
"""

from __future__ import annotations

import os
import random

import pytest

import cmicrograd
import programs as P

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("CMICROGRAD_FUZZ_EXAMPLES", "20000"))
SEED = int(os.environ.get("CMICROGRAD_FUZZ_SEED", str(random.randrange(2**32))))


def test_eager_engines_agree(both):
    compiled, reference = both
    rng = random.Random(SEED)
    for n in range(EXAMPLES):
        program = P.random_program(rng, max_steps=60)
        try:
            P.assert_same_run(P.run(compiled.Value, program), P.run(reference.Value, program),
                              (compiled.engine, reference.engine))
        except AssertionError as exc:
            raise AssertionError(f"seed {SEED}, program {n}: {program}") from exc


def _replayed(V, program: P.Program, new_leaves) -> P.Run:
    import sys

    engine = sys.modules[V.__module__]
    nodes = [V(x) for x in program.leaves]
    for step in program.steps:
        nodes.append(P.apply(V, step, nodes, engine))
    root = nodes[-1]
    g = cmicrograd.compile(root)
    for leaf, x in zip(nodes, new_leaves):
        leaf.data = x
    result = P.Run(nodes=[root])
    try:
        g.forward()
        g.backward()
    except (ArithmeticError, ValueError) as exc:
        result.error = (type(exc).__name__, str(exc), -1)
    return result


def test_replays_agree_with_building_anew(both):
    rng = random.Random(SEED + 1)
    for n in range(EXAMPLES // 4):
        program = P.random_program(rng, max_steps=40)
        program.steps = [s for s in program.steps if s.op != "custom"]
        if not program.steps:
            continue
        new_leaves = [P.random_number(rng, extreme=False) for _ in program.leaves]
        for ns in both:
            built = P.run(ns.Value, program)
            if built.error is not None:
                break
            fresh = P.run(ns.Value, P.Program(new_leaves, program.steps))
            if fresh.error is not None or fresh.backward_error is not None:
                break
            replayed = _replayed(ns.Value, program, new_leaves)
            fresh.nodes = [fresh.nodes[-1]]
            try:
                assert replayed.error is None
                P.assert_same_run(replayed, fresh, (ns.engine, ns.engine))
            except AssertionError as exc:
                raise AssertionError(f"seed {SEED}, program {n} ({ns.name}): {program}") from exc
