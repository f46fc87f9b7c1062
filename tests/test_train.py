"""train(): K classes with cross-entropy, a choice of optimizer, eager / compiled / decided
by cost (the same bits whichever), a NaN loss that stops the run, and its progress bar."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

import cmicrograd.train as train_module
import programs as P
from cmicrograd.datasets import DataError, make_moons, make_spiral
from cmicrograd.optim import Adam
from cmicrograd.train import TrainingDiverged, batch_loss, compile_pays, train


def _spiral_run(nn, steps, compiled, batch_size=None, optimizer="adam", n=60, seed=3):
    X, y = make_spiral(n, classes=3, seed=seed)
    random.seed(seed)
    model = nn.MLP(2, [8, 3])
    result = train(model, X, y, steps=steps, batch_size=batch_size, seed=seed, compiled=compiled,
                   optimizer=optimizer)
    return result, [P.bits(p.data) for p in model.parameters()]


@pytest.mark.parametrize("batch_size", [None, 16])
def test_k_classes_eager_compiled_and_auto_give_the_same_bits(engine, batch_size):
    runs = [_spiral_run(engine.nn, 12, compiled, batch_size) for compiled in (False, True, None)]
    (eager, eager_params), (compiled, compiled_params), (auto, auto_params) = runs
    assert [P.bits(x) for x in eager.losses] == [P.bits(x) for x in compiled.losses] == [P.bits(x) for x in auto.losses]
    assert eager.accuracies == compiled.accuracies == auto.accuracies
    assert eager_params == compiled_params == auto_params
    assert compiled.compiled and not eager.compiled and eager.classes == 3


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_k_classes_same_bits_on_both_engines(both, optimizer):
    compiled, reference = both
    ours, ours_params = _spiral_run(compiled.nn, 8, True, optimizer=optimizer)
    theirs, theirs_params = _spiral_run(reference.nn, 8, True, optimizer=optimizer)
    assert [P.bits(x) for x in ours.losses] == [P.bits(x) for x in theirs.losses]
    assert ours_params == theirs_params


def test_spiral_trains_to_high_accuracy(engine):
    steps = 150 if engine.name == "cython" else 40
    X, y = make_spiral(150, classes=3, seed=1)
    random.seed(1)
    model = engine.nn.MLP(2, [16, 16, 3])
    result = train(model, X, y, steps=steps, optimizer="adam", compiled=True)
    assert result.final_accuracy >= (0.95 if engine.name == "cython" else 0.6)
    assert result.final_loss < result.losses[0]
    loss, acc = batch_loss(model, X, y)
    assert (loss.data, acc) == (result.final_loss, result.final_accuracy)


def test_an_optimizer_object(engine):
    X, y = make_moons(20, 0.1, seed=2)
    random.seed(2)
    model = engine.nn.MLP(2, [4, 1])
    opt = Adam(model.parameters(), lr=0.02)
    train(model, X, y, steps=3, optimizer=opt)
    assert opt.steps == 3
    with pytest.raises(ValueError, match="lr is set on the optimizer you pass"):
        train(model, X, y, steps=1, optimizer=opt, lr=0.1)
    other = engine.nn.MLP(2, [4, 1])
    with pytest.raises(ValueError, match="must optimize the model's parameters"):
        train(other, X, y, steps=1, optimizer=opt)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, adamw"):
        train(model, X, y, steps=1, optimizer="rmsprop")


def test_labels_must_fit_the_model(engine):
    X, _ = make_moons(6, 0.1, seed=2)
    one, three = engine.nn.MLP(2, [4, 1]), engine.nn.MLP(2, [4, 3])
    with pytest.raises(DataError, match="labels must be two classes"):
        train(one, X, np.array([0, 1, 2, 0, 1, 2]), steps=1)
    with pytest.raises(DataError, match="found label 3, but there are 3 classes"):
        train(three, X, np.array([0, 1, 3, 0, 1, 2]), steps=1)
    with pytest.raises(ValueError, match="6 rows but 5 labels"):
        train(three, X, np.array([0, 1, 2, 0, 1]), steps=1)
    with pytest.raises(ValueError, match="rows of 2 features"):
        train(three, X[:, :1], np.array([0, 1, 2, 0, 1, 2]), steps=1)
    zero_one = train(one, X, np.array([0, 1, 0, 1, 0, 1]), steps=2, compiled=False)
    signed = train(engine.nn.MLP(2, [4, 1]), X, np.array([-1, 1, -1, 1, -1, 1]), steps=0)
    assert zero_one.classes == signed.classes == 2


def test_compile_pays_from_the_second_step():
    assert not compile_pays(0) and not compile_pays(1)
    assert compile_pays(2) and compile_pays(1000)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_auto_compiles_when_it_pays(engine, steps):
    result, _ = _spiral_run(engine.nn, steps, None, n=20)
    assert result.compiled is compile_pays(steps)


def test_divergence_stops_the_run(engine):
    X, y = make_moons(20, 0.1, seed=1)
    random.seed(1)
    model = engine.nn.MLP(2, [8, 1])
    with pytest.raises(TrainingDiverged, match=r"the loss is (nan|inf) at step \d+") as info:
        train(model, X, y, steps=50, lr=1e200)
    assert isinstance(info.value, ArithmeticError)
    assert 1 <= len(info.value.result.losses) < 50


def test_progress_ends_with_the_final_numbers(engine):
    X, y = make_moons(20, 0.1, seed=1)
    random.seed(1)
    stream = io.StringIO()
    result = train(engine.nn.MLP(2, [4, 1]), X, y, steps=20, progress=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].split("]")[1].startswith("  0/20  loss")
    assert lines[-1].endswith(f"20/20  loss {result.final_loss:.4f}  accuracy {result.final_accuracy * 100:5.1f}%")
    after_10 = next(line for line in lines if "10/20" in line)
    assert f"loss {result.losses[10]:.4f}" in after_10  # after 10 updates: what step 10 measured before its own


def test_submodules_are_reachable_from_the_package_without_loading_numpy():
    import subprocess
    import sys

    code = (
        "import sys, cmicrograd\n"
        "assert 'numpy' not in sys.modules, 'import cmicrograd loaded numpy'\n"
        "assert 'cmicrograd.train' not in sys.modules\n"
        "assert callable(cmicrograd.train.train) and callable(cmicrograd.optim.Adam)\n"
        "assert 'train' in dir(cmicrograd) and cmicrograd.losses.cross_entropy\n"
        "try:\n    cmicrograd.nonexistent\nexcept AttributeError as e:\n    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "module 'cmicrograd' has no attribute 'nonexistent'"
