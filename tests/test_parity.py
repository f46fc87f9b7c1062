"""Parity is the product: the compiled engine and the reference give the same bits.

hypothesis builds random graphs over every op (reused nodes, constants of every
number type on both sides, custom nodes, long chains, special values); both engines
run them and must agree exactly: data, grad, exceptions, graph structure.
"""

from __future__ import annotations

import itertools
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import programs as P

def FAST(max_examples: int) -> settings:
    return settings(deadline=None, max_examples=max_examples,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.sampled_from(P.SPECIAL + P.EXTREME),
    st.floats(-5, 5),
    st.integers(-4, 4).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
)
odd_constants = st.sampled_from([2, -1, True, 0, np.float64(1.5), np.int32(3), np.float32(0.25)])


@st.composite
def programs(draw: st.DrawFn, max_steps: int = 30) -> P.Program:
    leaves = draw(st.lists(numbers, min_size=1, max_size=4))
    n_steps = draw(st.integers(1, max_steps))
    steps = []
    for n in range(n_steps):
        made = len(leaves) + n
        op = draw(st.sampled_from(P.ALL_OPS))
        i = draw(st.integers(0, made - 1))
        j = draw(st.integers(0, made - 1))
        if op == "pow":
            c = draw(st.sampled_from(P.EXPONENTS))
        else:
            c = draw(st.one_of(numbers, odd_constants))
        steps.append(P.Step(op, i, j, c))
    return P.Program(
        leaves, steps, inspect_first=draw(st.booleans()),
        seed_node=draw(st.integers(-1, len(leaves) + n_steps - 1)),
        backward_twice=draw(st.booleans()),
    )


@st.composite
def chains(draw: st.DrawFn) -> P.Program:
    """Long chains: a short pattern of ops repeated hundreds of times on the newest node."""
    leaves = draw(st.lists(st.floats(-2, 2), min_size=1, max_size=2))
    pattern = draw(st.lists(st.sampled_from(P.BINARY + P.WITH_CONSTANT + P.UNARY), min_size=1, max_size=5))
    length = draw(st.integers(100, 1500))
    steps = []
    for n in range(length):
        op = pattern[n % len(pattern)]
        made = len(leaves) + n
        c = 2 if op == "pow" else draw(st.sampled_from([0.5, 1.0, -1.0, 0.99, 2]))
        steps.append(P.Step(op, made - 1, draw(st.integers(0, made - 1)), c))
    return P.Program(leaves, steps, inspect_first=draw(st.booleans()))


@FAST(400)
@given(program=programs())
def test_random_graphs_give_the_same_bits(both, program):
    compiled, reference = both
    P.assert_same_run(P.run(compiled.Value, program), P.run(reference.Value, program),
                      (compiled.engine, reference.engine))


@st.composite
def networks(draw: st.DrawFn) -> P.Program:
    """Programs dominated by weighted sums over earlier nodes, as layers of a network
    are, with nodes reused across sums, inputs depending on weights, and activations."""
    leaves = draw(st.lists(st.floats(-2, 2), min_size=2, max_size=6))
    steps = []
    for n in range(draw(st.integers(3, 40))):
        made = len(leaves) + n
        op = draw(st.sampled_from(["wsum", "wsum", "wsum", "relu", "tanh", "*", "+c"]))
        steps.append(P.Step(op, draw(st.integers(0, made - 1)), draw(st.integers(0, made - 1)),
                            draw(st.sampled_from([0.5, -1.25, 2.0, 3.0]))))
    return P.Program(leaves, steps, inspect_first=draw(st.booleans()),
                     backward_twice=draw(st.booleans()))


@FAST(300)
@given(program=networks())
def test_weighted_sums_give_the_same_bits(both, program):
    compiled, reference = both
    P.assert_same_run(P.run(compiled.Value, program), P.run(reference.Value, program),
                      (compiled.engine, reference.engine))


@FAST(40)
@given(program=chains())
def test_long_chains_give_the_same_bits(both, program):
    compiled, reference = both
    P.assert_same_run(P.run(compiled.Value, program), P.run(reference.Value, program),
                      (compiled.engine, reference.engine))


def test_fixed_seed_slice_of_the_fuzz_run(both):
    """A fast, deterministic slice of the long fuzz run (tests/test_fuzz.py)."""
    import random

    compiled, reference = both
    rng = random.Random(20261129)
    for _ in range(300):
        program = P.random_program(rng)
        P.assert_same_run(P.run(compiled.Value, program), P.run(reference.Value, program),
                      (compiled.engine, reference.engine))


# ---- the C float_pow against Python's ** ---------------------------------------------
POW_SPECIALS = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, 1.5, -1.5, 10.0,
                1e-300, -1e-300, 1e300, -1e300, 5e-324, 1e308, math.inf, -math.inf, math.nan,
                2.0**53, -(2.0**53), 2.0**53 + 2, 1023.0, 1024.0, -1075.0, 0.1, 7.0]


def _python_pow(x: float, y: float):
    """Python's x ** y, except the contract's ValueError where Python goes complex."""
    if x < 0 and math.isfinite(x) and math.isfinite(y) and y != math.floor(y):
        return "ValueError"
    try:
        r = x**y
    except Exception as exc:
        return type(exc).__name__
    return P.bits(r)


def _engine_pow(pow_fn, x: float, y: float):
    try:
        return P.bits(pow_fn(x, y))
    except Exception as exc:
        return type(exc).__name__


def test_float_pow_matches_python_on_special_values(both):
    from cmicrograd._numbers import float_pow

    compiled, _ = both
    for x, y in itertools.product(POW_SPECIALS, POW_SPECIALS):
        want = _python_pow(x, y)
        assert _engine_pow(compiled.engine._float_pow, x, y) == want, (x, y)
        assert _engine_pow(float_pow, x, y) == want, (x, y)


@FAST(2000)
@given(x=st.floats(allow_nan=True, allow_infinity=True), y=st.floats(allow_nan=True, allow_infinity=True))
def test_float_pow_matches_python(both, x, y):
    from cmicrograd._numbers import float_pow

    compiled, _ = both
    want = _python_pow(x, y)
    assert _engine_pow(compiled.engine._float_pow, x, y) == want
    assert _engine_pow(float_pow, x, y) == want


@FAST(500)
@given(x=st.floats(allow_nan=True, allow_infinity=True))
def test_functions_match_math_bit_for_bit(both, x):
    """exp, log, tanh of a Value are math.exp/log/tanh of its data, in both engines."""
    for ns in both:
        for name, f in (("exp", math.exp), ("log", math.log), ("tanh", math.tanh)):
            try:
                want = P.bits(f(x))
            except (OverflowError, ValueError) as exc:
                want = type(exc).__name__
            try:
                got = P.bits(getattr(ns.Value(x), name)().data)
            except (OverflowError, ValueError) as exc:
                got = type(exc).__name__
            assert got == want, (ns.name, name, x)


def test_same_public_behaviour_for_int_exponent_spelling(both):
    for ns in both:
        v = ns.Value(1.0)
        assert (v ** (2**60 + 1))._op == f"**{2**60 + 1}"
        assert (v ** (2**60))._op == f"**{2**60}"
        assert (v ** True)._op == "**True"
        assert (v ** np.int64(3))._op == "**3"
        assert (v ** np.float32(0.5))._op == "**0.5"


def test_bits_helper_distinguishes_signed_zero():
    assert P.bits(0.0) != P.bits(-0.0) and P.bits(math.nan) == P.bits(-math.nan)
    assert struct.pack("<d", 1.0) == P.bits(1.0)
