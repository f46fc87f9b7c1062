"""Bad input at every public entry point: the documented exception with a message that
says what was wrong, the same in both engines; never a crash or a silent wrong answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cmicrograd
from cmicrograd import datasets
from cmicrograd.arrays import values
from cmicrograd.gradcheck import gradcheck
from cmicrograd.losses import accuracy, hinge_loss, l2_regularization, mse_loss
from cmicrograd.optim import SGD, linear_decay

WEIRD = [None, "1.0", [1.0], (1.0,), {"a": 1}, np.array([1.0, 2.0]), np.array(1.0), 1j, object()]


@pytest.mark.parametrize("bad", WEIRD, ids=lambda b: type(b).__name__)
def test_value_refuses_non_numbers(engine, bad):
    with pytest.raises(TypeError, match="must be a real number"):
        engine.Value(bad)
    v = engine.Value(1.0)
    with pytest.raises(TypeError):
        v + bad
    with pytest.raises(TypeError):
        bad * v if not isinstance(bad, np.ndarray) else v * bad
    assert v.data == 1.0 and v.grad == 0.0


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf, True, False, 10**300, np.float16(2), np.uint8(7)])
def test_value_takes_odd_numbers(engine, x):
    v = engine.Value(x)
    assert type(v.data) is float and (v.data == float(x) or math.isnan(v.data))


def test_huge_ints_overflow_everywhere(engine):
    V = engine.Value
    for call in (lambda: V(10**400), lambda: V(1.0) * 10**400, lambda: 10**400 - V(1.0),
                 lambda: V(2.0) ** 10**400, lambda: setattr(V(1.0), "data", -(10**400))):
        with pytest.raises(OverflowError):
            call()


@pytest.mark.parametrize("bad", [[1.0, None], [1.0, "x"], [1.0, [2.0]], [1.0, 1j]])
def test_nn_inputs(engine, bad):
    model = engine.nn.MLP(2, [3, 1])
    with pytest.raises(TypeError, match="inputs must be numbers or Values"):
        model(bad)


def test_nn_nan_inputs_propagate(engine):
    out = engine.nn.MLP(2, [3, 1], activation="tanh")([math.nan, 1.0])
    assert math.isnan(out.data)


def test_nn_bool_sizes(engine):
    for make in (lambda: engine.nn.Neuron(True), lambda: engine.nn.Layer(2, False),
                 lambda: engine.nn.MLP(2, [True])):
        with pytest.raises(TypeError, match="must be an int"):
            make()


def test_nn_numpy_int_sizes_work(engine):
    assert len(engine.nn.MLP(np.int64(2), [np.int32(3), 1]).parameters()) == 3 * 3 + 4


def test_losses_bad_input(engine):
    V = engine.Value
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        mse_loss([V(1.0), V(2.0)], [1.0])
    with pytest.raises(TypeError, match="a target must be a real number"):
        mse_loss([V(1.0)], [None])
    with pytest.raises(TypeError, match="alpha must be a real number"):
        l2_regularization([V(1.0)], alpha="big")
    with pytest.raises(ValueError, match="empty batch"):
        accuracy([], [])
    with pytest.raises(TypeError, match="a score must be a real number"):
        accuracy(["x"], [1])
    assert math.isnan(hinge_loss([V(math.nan)], [1]).data)


def test_optim_bad_input(engine):
    V = engine.Value
    with pytest.raises(ValueError, match="steps must be a positive int"):
        linear_decay(1.0, 0)
    with pytest.raises(TypeError, match="lr must be a real number"):
        SGD([V(1.0)], lr=None)
    opt = SGD([V(1.0)], lr=lambda k: "fast")
    with pytest.raises(TypeError, match="scheduled learning rate must be a real number"):
        opt.step()
    with pytest.raises(TypeError, match="mixes Values of the compiled and the pure-Python engine"):
        SGD([cmicrograd.Value(1.0), cmicrograd.reference.Value(1.0)], lr=0.1)


def test_compile_and_assign_bad_input(engine):
    V = engine.Value
    with pytest.raises(TypeError, match="compile\\(\\) needs a cmicrograd Value"):
        cmicrograd.compile(np.float64(1.0))
    with pytest.raises(ValueError, match="1 Values but an array of 2 numbers"):
        cmicrograd.assign([V(1.0)], [1.0, 2.0])
    with pytest.raises(TypeError, match="set_data needs Values"):
        engine.engine.set_data([1.0], [2.0])
    with pytest.raises(TypeError, match="Value data must be a real number"):
        engine.engine.set_data([V(1.0)], ["x"])


def test_gradcheck_bad_input(engine):
    V = engine.Value
    with pytest.raises(ValueError, match="h must be a positive finite number"):
        gradcheck(lambda a: a * a, [V(1.0)], h=0)
    with pytest.raises(TypeError, match="f must return a Value"):
        gradcheck(lambda a: 1.0, [V(1.0)])
    with pytest.raises(TypeError, match="expected a cmicrograd Value"):
        gradcheck(lambda a: a, [1.0])


def test_weighted_sum_and_layer_bad_input(engine):
    V = engine.Value
    with pytest.raises(ValueError, match="2 weights, 1 inputs"):
        engine.engine.weighted_sum([V(1.0), V(2.0)], [1.0], V(0.0))
    with pytest.raises(TypeError, match="unsupported operand"):
        engine.engine.weighted_sum([V(1.0)], ["x"], V(0.0))


def test_datasets_bad_input(tmp_path):
    for bad in (0, 1, -5, 2.5, "10", True):
        with pytest.raises(ValueError, match="n_samples"):
            datasets.make_moons(bad)
    for noise in (-0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="noise"):
            datasets.make_moons(10, noise)
    with pytest.raises(FileNotFoundError):
        datasets.load_csv(tmp_path / "missing.csv")
    hostile = tmp_path / "hostile.csv"
    hostile.write_text("1,1\n__import__('os').system('echo pwned'),1\n")
    with pytest.raises(datasets.DataError, match="is not a number"):
        datasets.load_csv(hostile)


def test_values_helper_bad_input():
    with pytest.raises(TypeError, match="array of numbers"):
        values(np.array([None, 1.0], dtype=object))
    with pytest.raises(TypeError, match="array of numbers"):
        values(["a", "b"])
