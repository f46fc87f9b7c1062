"""Training pieces: losses, SGD, datasets, gradcheck, Function, JSON models."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from cmicrograd import datasets
from cmicrograd.function import Function
from programs import Cube
from cmicrograd.gradcheck import gradcheck
from cmicrograd.losses import accuracy, hinge_loss, l2_regularization, mse_loss
from cmicrograd.optim import SGD, linear_decay


# ---- losses --------------------------------------------------------------------------
def test_hinge_loss_builds_the_demo_graph(engine):
    V = engine.Value
    scores = [V(0.5), V(-2.0), V(3.0)]
    labels = [1, -1, -1]
    loss = hinge_loss(scores, labels)
    want = (max(0.0, 1 - 0.5) + max(0.0, 1 - 2.0) + max(0.0, 1 + 3.0)) * (1.0 / 3)
    assert loss.data == want
    assert loss._op == "*" and loss._prev[1].data == 1.0 / 3


def test_mse_and_l2(engine):
    V = engine.Value
    p = [V(1.0), V(2.0)]
    assert mse_loss(p, [0.0, 4.0]).data == (1.0 + 4.0) * 0.5
    assert l2_regularization(p, alpha=0.5).data == 0.5 * 5.0
    assert accuracy([V(0.3), V(-0.1), V(2.0)], [1, -1, -1]) == 2 / 3
    assert accuracy([V(0.3)], [np.float64(1.0)]) == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda V: hinge_loss([V(1.0)], [1, -1]), "1 predictions but 2 targets"),
    (lambda V: mse_loss([], []), "empty batch"),
    (lambda V: hinge_loss([V(1.0)], ["a"]), "a target must be a real number"),
])
def test_loss_errors(engine, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(engine.Value)


# ---- optimizer -----------------------------------------------------------------------
def test_linear_decay_is_micrograds_schedule():
    s = linear_decay()
    assert [s(k) for k in range(100)] == [1.0 - 0.9 * k / 100 for k in range(100)]
    assert linear_decay(0.5, 10)(10) == pytest.approx(0.05)


def test_sgd_update_and_momentum(engine):
    V = engine.Value
    p = V(1.0)
    p.grad = 0.5
    opt = SGD([p], lr=0.1)
    opt.step()
    assert p.data == 1.0 - 0.1 * 0.5
    q = V(1.0)
    opt = SGD([q], lr=lambda k: 0.1 / (k + 1), momentum=0.9)
    q.grad = 1.0
    opt.step()  # v = 1
    opt.step()  # v = 0.9 + 1
    assert q.data == (1.0 - 0.1 * 1.0) - 0.05 * 1.9
    opt.zero_grad()
    assert q.grad == 0.0


def test_sgd_errors(engine):
    V = engine.Value
    with pytest.raises(ValueError, match="momentum"):
        SGD([V(1.0)], lr=0.1, momentum=1.5)
    with pytest.raises(TypeError, match="lr must be a real number"):
        SGD([V(1.0)], lr="fast")
    with pytest.raises(ValueError, match="at least one Value"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="expected a cmicrograd Value"):
        SGD([1.0], lr=0.1)


# ---- datasets ------------------------------------------------------------------------
def test_make_moons():
    X, y = datasets.make_moons(100, 0.1, seed=3)
    assert X.shape == (100, 2) and y.shape == (100,)
    assert set(y.tolist()) == {-1.0, 1.0} and (y == 1).sum() == 50
    X2, y2 = datasets.make_moons(100, 0.1, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X, datasets.make_moons(100, 0.1, seed=4)[0])
    Xc, _ = datasets.make_moons(11, 0.0, seed=0)
    assert Xc.shape == (11, 2)
    with pytest.raises(ValueError):
        datasets.make_moons(1)
    with pytest.raises(ValueError):
        datasets.make_moons(10, noise=-1)


def test_csv_roundtrip_and_header(tmp_path):
    X, y = datasets.make_moons(10, 0.1, seed=1)
    path = tmp_path / "moons.csv"
    datasets.save_csv(path, X, y)
    X2, y2 = datasets.load_csv(path)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    plain = tmp_path / "plain.csv"
    plain.write_text("1,2,0\n3,4,1\n\n")
    X3, y3 = datasets.load_csv(plain)
    assert X3.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert datasets.signed_labels(y3).tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("text, message", [
    ("", "no data rows"),
    ("a,b,label\n", "no data rows"),
    ("1,2,1\n3,4\n", "line 2 has 2 columns, expected 3"),
    ("1,2,1\n3,x,1\n", "line 2, column 2: 'x' is not a number"),
    ("1,nan,1\n", "not finite"),
    ("1\n2\n", "need at least one feature column"),
])
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(datasets.DataError, match=message):
        datasets.load_csv(path)


def test_bad_labels():
    with pytest.raises(datasets.DataError, match="two classes"):
        datasets.signed_labels(np.array([0.0, 1.0, 2.0]))


# ---- gradcheck -----------------------------------------------------------------------
def test_gradcheck_passes_on_correct_graphs(engine):
    V = engine.Value
    xs = [V(0.7), V(-1.3)]
    result = gradcheck(lambda a, b: (a * b + a.exp() / (b * b)).tanh() + (a**2).log(), xs)
    assert result.ok and result.max_error < 1e-6
    assert [x.data for x in xs] == [0.7, -1.3]
    assert result.analytic == [xs[0].grad, xs[1].grad]


def test_gradcheck_catches_a_wrong_backward(engine):
    V = engine.Value

    def wrong_square(a):
        out = V(a.data**2, (a,), "sq")

        def _backward():
            a.grad += 3 * a.data * out.grad  # should be 2 * a.data

        out._backward = _backward
        return out

    result = gradcheck(wrong_square, [V(1.5)])
    assert not result.ok and result.worst == 0 and result.max_error > 0.3


# ---- Function ------------------------------------------------------------------------
class Hypot(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.r = math.hypot(x, y)
        ctx.x, ctx.y = x, y
        return ctx.r

    @staticmethod
    def backward(ctx, grad):
        return (ctx.x / ctx.r * grad, ctx.y / ctx.r * grad)


def test_function_nodes_backprop_like_builtins(engine):
    V = engine.Value
    x = V(1.5)
    y = Cube.apply(x) * 2 + x
    assert y.data == 2 * 1.5**3 + 1.5
    y.backward()
    assert x.grad == 2 * 3 * 1.5**2 + 1
    node = y._prev[0]._prev[0]
    assert node._op == "Cube" and node._prev == (x,)
    a, b = V(3.0), V(4.0)
    assert gradcheck(lambda a, b: Hypot.apply(a, b) * a, [a, b]).ok
    assert gradcheck(lambda a: Hypot.apply(a, a), [V(2.0)]).ok  # the same input twice
    assert Hypot.apply(a, 4.0).data == 5.0  # numbers become constants


def test_function_errors(engine):
    V = engine.Value

    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return "x"

    with pytest.raises(TypeError, match="Bad.forward must return a number"):
        Bad.apply(V(1.0))

    class TooMany(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    with pytest.raises(ValueError, match="returned 2 gradients for 1 inputs"):
        TooMany.apply(V(1.0)).backward()
    with pytest.raises(TypeError, match="expected a cmicrograd Value"):
        Cube.apply("x")


def test_function_parity(both):
    compiled, reference = both
    results = []
    for ns in both:
        V = ns.Value
        x, y = V(0.3), V(-1.7)
        out = (Hypot.apply(x * y, Cube.apply(y)) + x).tanh()
        out.backward()
        results.append((out.data, x.grad, y.grad))
    assert results[0] == results[1]


# ---- JSON models ---------------------------------------------------------------------
def test_json_roundtrip(engine, tmp_path):
    random.seed(11)
    model = engine.nn.MLP(3, [5, 2], activation="tanh", output_activation="sigmoid")
    model.parameters()[0].data = 0.1 + 0.2  # a float that must round-trip exactly
    path = tmp_path / "m.json"
    model.save(path)
    spec = json.loads(path.read_text())
    assert spec["format"] == "cmicrograd.MLP" and spec["nouts"] == [5, 2]
    other = engine.nn.MLP.load(path)
    assert type(other) is type(model) and repr(other) == repr(model)
    assert [p.data for p in other.parameters()] == [p.data for p in model.parameters()]
    x = [0.2, -0.4, 0.9]
    assert [o.data for o in other(x)] == [o.data for o in model(x)]


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"format": "x"}', "not a cmicrograd model"),
    ('{"format": "cmicrograd.MLP", "version": 7}', "unsupported model version"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": 2, "nouts": [1]}', "has no 'parameters'"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": 2, "nouts": [1], "parameters": [1]}', "needs 3 parameters"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": 2, "nouts": [1], "parameters": [1, "a", 2]}', "list of numbers"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": -2, "nouts": [1], "parameters": []}', "invalid"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": 2, "nouts": [100000, 100000], "parameters": []}', "invalid"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": 2, "nouts": [1], "parameters": [1, 2, 3], "activation": "evil"}', "activation"),
    ("[" * 100000, "not valid JSON"),
])
def test_bad_model_files(engine, tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        engine.nn.MLP.load(path)
