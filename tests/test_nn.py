"""The nn library on both engines: micrograd's behaviour, its bugs fixed, same bits."""

from __future__ import annotations

import random

import numpy as np
import pytest

import programs as P


def test_same_weights_and_forward_as_micrograd(engine):
    mnn = pytest.importorskip("micrograd.nn", reason="compare with micrograd 0.1.0 where installed (CI installs it)")
    for seed in (0, 1, 1337):
        random.seed(seed)
        theirs = mnn.MLP(2, [16, 16, 1])
        random.seed(seed)
        ours = engine.nn.MLP(2, [16, 16, 1])
        assert [p.data for p in ours.parameters()] == [float(p.data) for p in theirs.parameters()]
        assert repr(ours) == repr(theirs)
        for x in ([0.5, -1.5], [2.0, 0.25], [-0.3, 0.0]):
            assert ours(x).data == theirs(x).data


def test_demo_loss_matches_micrograd(engine):
    """Our hinge + L2 loss is micrograd's demo loss, value and gradients."""
    meng = pytest.importorskip("micrograd.engine", reason="CI installs micrograd 0.1.0")
    mnn = pytest.importorskip("micrograd.nn")
    from cmicrograd.datasets import make_moons
    from cmicrograd.train import batch_loss

    X, y = make_moons(20, 0.1, seed=3)
    random.seed(5)
    theirs = mnn.MLP(2, [8, 8, 1])
    random.seed(5)
    ours = engine.nn.MLP(2, [8, 8, 1])
    inputs = [list(map(meng.Value, row)) for row in X]
    scores = list(map(theirs, inputs))
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    total = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in theirs.parameters())
    total.backward()
    loss, acc = batch_loss(ours, X, y)
    loss.backward()
    assert loss.data == total.data
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert a.grad == pytest.approx(b.grad, rel=1e-12, abs=1e-15)  # micrograd sums in set order


def test_reprs_and_structure(engine):
    nn = engine.nn
    random.seed(0)
    model = nn.MLP(2, [3, 1])
    assert repr(model) == "MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2)], Layer of [LinearNeuron(3)]]"
    assert len(model.parameters()) == 3 * 3 + 4
    layer = model.layers[0]
    assert model.parameters()[:3] == layer.neurons[0].w + [layer.neurons[0].b]
    assert repr(nn.Neuron(2, activation="tanh")) == "TanhNeuron(2)"
    assert nn.Neuron(2, nonlin=False).nonlin is False
    assert all(p.data == 0.0 for p in (n.b for n in layer.neurons))


def test_one_neuron_hidden_layer_works(engine):
    """micrograd's MLP(2, [1, 1]) raises TypeError; ours works."""
    model = engine.nn.MLP(2, [1, 1])
    out = model([1.0, 2.0])
    assert type(out) is engine.Value
    out.backward()
    assert isinstance(engine.nn.Layer(2, 1)([1.0, 2.0]), engine.Value)
    assert len(engine.nn.Layer(2, 3)([1.0, 2.0])) == 3


def test_wide_output_returns_a_list(engine):
    outs = engine.nn.MLP(2, [4, 3])([1.0, 2.0])
    assert isinstance(outs, list) and len(outs) == 3


@pytest.mark.parametrize("bad, error, message", [
    ([1.0], ValueError, "expects 2 inputs, got 1"),
    ([1.0, 2.0, 3.0], ValueError, "expects 2 inputs, got 3"),
    ([1.0, "a"], TypeError, "inputs must be numbers or Values, not str"),
    ([1.0, None], TypeError, "not NoneType"),
    ("ab", TypeError, "sequence of 2 inputs"),
    (3.0, TypeError, "sequence of 2 inputs"),
    (np.zeros((1, 1, 2)), ValueError, "1-D input"),
])
def test_bad_inputs(engine, bad, error, message):
    model = engine.nn.MLP(2, [3, 1])
    with pytest.raises(error, match=message):
        model(bad)


@pytest.mark.parametrize("make, error, message", [
    (lambda nn: nn.Neuron(0), ValueError, "at least 1"),
    (lambda nn: nn.Neuron(-2), ValueError, "at least 1"),
    (lambda nn: nn.Neuron(2.5), TypeError, "must be an int"),
    (lambda nn: nn.Neuron(True), TypeError, "must be an int"),
    (lambda nn: nn.Layer(2, 0), ValueError, "at least 1"),
    (lambda nn: nn.MLP(2, []), ValueError, "at least one layer"),
    (lambda nn: nn.MLP(2, [3, -1]), ValueError, "at least 1"),
    (lambda nn: nn.MLP(0, [3]), ValueError, "at least 1"),
    (lambda nn: nn.MLP(2, 3), TypeError, "list of layer sizes"),
    (lambda nn: nn.MLP(2, [3], activation="gelu"), ValueError, "activation must be one of"),
])
def test_bad_sizes(engine, make, error, message):
    with pytest.raises(error, match=message):
        make(engine.nn)


def test_inputs_numbers_values_numpy(engine):
    random.seed(1)
    model = engine.nn.MLP(2, [4, 1])
    V = engine.Value
    a = model([0.5, -1.0]).data
    assert model([V(0.5), V(-1.0)]).data == a
    assert model(np.array([0.5, -1.0])).data == a
    assert model((np.float64(0.5), -1)).data == a
    rows = model(np.array([[0.5, -1.0], [0.5, -1.0]]))
    assert [r.data for r in rows] == [a, a]


def test_activations(engine):
    random.seed(2)
    for act in ("relu", "tanh", "sigmoid", "linear"):
        model = engine.nn.MLP(3, [4, 1], activation=act, output_activation=act)
        out = model([0.1, 0.2, 0.3])
        ops = {v._op for v in engine.engine._topological_order(out)}
        assert ({"ReLU": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}.keys() & ops) == (
            set() if act == "linear" else {{"relu": "ReLU"}.get(act, act)})


def _train_curve(nn, steps=100, seed=4, batch_size=None, compiled=True):
    from cmicrograd.datasets import make_moons
    from cmicrograd.train import train

    X, y = make_moons(100, 0.1, seed=seed)
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1])
    result = train(model, X, y, steps=steps, batch_size=batch_size, seed=seed, compiled=compiled)
    return result, [p.data for p in model.parameters()]


@pytest.mark.parametrize("batch_size", [None, 16])
def test_compiled_step_equals_eager_step(engine, batch_size):
    steps = 30 if engine.name == "cython" else 6
    compiled, compiled_params = _train_curve(engine.nn, steps, batch_size=batch_size)
    eager, eager_params = _train_curve(engine.nn, steps, batch_size=batch_size, compiled=False)
    assert [P.bits(x) for x in compiled.losses] == [P.bits(x) for x in eager.losses]
    assert compiled.accuracies == eager.accuracies
    assert [P.bits(x) for x in compiled_params] == [P.bits(x) for x in eager_params]


def test_training_is_bit_identical_across_engines_and_runs(both):
    compiled, reference = both
    ours, ours_params = _train_curve(compiled.nn)
    again, again_params = _train_curve(compiled.nn)
    theirs, theirs_params = _train_curve(reference.nn)
    assert [P.bits(x) for x in ours.losses] == [P.bits(x) for x in theirs.losses]
    assert ours.accuracies == theirs.accuracies
    assert [P.bits(x) for x in ours_params] == [P.bits(x) for x in theirs_params]
    assert ours.losses == again.losses and ours_params == again_params
    assert ours.final_accuracy == 1.0


def test_minibatch_training_is_bit_identical(both):
    compiled, reference = both
    ours, _ = _train_curve(compiled.nn, steps=30, batch_size=16)
    theirs, _ = _train_curve(reference.nn, steps=30, batch_size=16)
    assert [P.bits(x) for x in ours.losses] == [P.bits(x) for x in theirs.losses]


def test_lecture_example_trains(engine):
    """MLP(3, [4, 4, 1]) with tanh, 4 samples, squared error, 20 steps (the lecture)."""
    random.seed(3)
    model = engine.nn.MLP(3, [4, 4, 1], activation="tanh", output_activation="tanh")
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    first = None
    for _ in range(20):
        ypred = [model(x) for x in xs]
        loss = sum((yout - ygt) ** 2 for ygt, yout in zip(ys, ypred))
        first = loss.data if first is None else first
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data += -0.1 * p.grad
    assert loss.data < 0.05 < first


def test_module_zero_grad(engine):
    model = engine.nn.MLP(2, [2, 1])
    model([1.0, 1.0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 and type(p.grad) is float for p in model.parameters())


def test_models_pickle_and_deepcopy(engine):
    import copy
    import pickle

    random.seed(9)
    model = engine.nn.MLP(2, [4, 1])
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert type(other) is type(model) and repr(other) == repr(model)
        assert [p.data for p in other.parameters()] == [p.data for p in model.parameters()]
        assert other([0.3, 0.7]).data == model([0.3, 0.7]).data
