"""More than two classes: softmax and cross-entropy (stable, replayed exactly, the same bits on
both engines, PyTorch's numbers), class-index accuracy, the spiral and yin-yang data
and class-index labels from a CSV."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cmicrograd
from cmicrograd import datasets
from cmicrograd.losses import accuracy, cross_entropy, cross_entropy_loss, softmax

LOGITS = [
    [1.0, -2.0, 3.5],
    [0.25, 0.25, 0.25, 0.25],
    [700.0, 710.0, -1e4],  # exp would overflow without the shift
    [-3.0],
]


def _by_hand(z, t):
    m = max(z)
    return math.log(sum(math.exp(x - m) for x in z)) - (z[t] - m)


@pytest.mark.parametrize("z", LOGITS)
def test_cross_entropy_value_and_grads(engine, z):
    V = engine.Value
    for t in range(len(z)):
        logits = [V(x) for x in z]
        loss = cross_entropy(logits, t)
        assert loss.data == pytest.approx(_by_hand(z, t), rel=1e-15, abs=1e-15)
        loss.backward()
        m = max(z)
        total = sum(math.exp(x - m) for x in z)
        want = [math.exp(x - m) / total - (k == t) for k, x in enumerate(z)]
        assert [v.grad for v in logits] == pytest.approx(want, rel=1e-12, abs=1e-15)
    probs = softmax([V(x) for x in z])
    assert sum(p.data for p in probs) == pytest.approx(1.0, rel=1e-15)
    assert [p.data for p in probs] == pytest.approx([math.exp(x - max(z)) / total for x in z], rel=1e-14)


def test_cross_entropy_matches_torch(engine):
    torch = pytest.importorskip("torch", reason="PyTorch is optional; CI installs it")
    z, t = [0.3, -1.2, 2.5, 700.0], 2
    logits = [engine.Value(x) for x in z]
    loss = cross_entropy(logits, t)
    loss.backward()
    tz = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tz[None], torch.tensor([t]))
    tloss.backward()
    assert loss.data == pytest.approx(tloss.item(), rel=1e-12)
    assert [v.grad for v in logits] == pytest.approx(tz.grad.tolist(), rel=1e-12, abs=1e-300)
    probs = softmax([engine.Value(x) for x in z])
    assert [p.data for p in probs] == pytest.approx(torch.softmax(tz, 0).tolist(), rel=1e-12, abs=1e-300)


def test_engines_agree_bit_for_bit(both):
    runs = []
    for ns in both:
        V = ns.Value
        w = [V(0.5), V(-1.5), V(2.0)]
        batch = [[wk * x for wk in w] for x in (1.0, -2.0, 300.0)]
        loss = cross_entropy_loss(batch, [0, 2, 1]) + cross_entropy(batch[0], [0.2, 0.3, 0.5])
        loss.backward()
        runs.append([loss.data] + [v.grad for v in w] + [p.data for p in softmax(batch[2])])
    assert runs[0] == runs[1]


def test_replay_recomputes_the_shift(engine):
    """The max is a node: a compiled replay with new logits gives what a fresh graph
    gives, even where the recorded shift would overflow exp."""
    V = engine.Value
    logits = [V(x) for x in (1.0, 2.0, 3.0)]
    loss = cross_entropy(logits, 1)
    step = cmicrograd.compile(loss)
    cmicrograd.assign(logits, [900.0, -5.0, 2.0])
    value = step.forward()
    step.backward()
    fresh = [V(x) for x in (900.0, -5.0, 2.0)]
    expected = cross_entropy(fresh, 1)
    expected.backward()
    assert value == expected.data == 905.0
    assert [v.grad for v in logits] == [v.grad for v in fresh]


def test_one_hot_target_gives_the_index_loss(engine):
    V = engine.Value
    z = [V(0.1), V(-0.7), V(1.9)]
    assert cross_entropy(z, [0.0, 1.0, 0.0]).data == cross_entropy(z, 1).data
    mixed = cross_entropy(z, [0.5, 0.0, 0.5]).data
    assert mixed == pytest.approx(0.5 * cross_entropy(z, 0).data + 0.5 * cross_entropy(z, 2).data, rel=1e-15)


def test_batch_loss_is_the_mean(engine):
    V = engine.Value
    batch = [[V(1.0), V(2.0)], [V(0.5), V(-0.5)], [V(3.0), V(3.0)]]
    targets = [1, 0, 1]
    each = [cross_entropy(z, t).data for z, t in zip(batch, targets)]
    assert cross_entropy_loss(batch, targets).data == pytest.approx(sum(each) / 3, rel=1e-15)


def test_class_accuracy(engine):
    V = engine.Value
    scores = [[V(0.1), V(0.9), V(0.0)], [V(2.0), V(2.0), V(1.0)], [V(-1.0), V(-2.0), V(-0.5)]]
    assert accuracy(scores, [1, 0, 2]) == 1.0  # a tie goes to the first class
    assert accuracy(scores, np.array([1.0, 1.0, 0.0])) == 1 / 3  # labels read from a CSV are floats
    assert accuracy([V(0.5), V(-0.5)], [1, -1]) == 1.0  # one score per example: two classes


@pytest.mark.parametrize("call, error, message", [
    (lambda V: cross_entropy([V(1.0), V(2.0)], 2), ValueError, r"target 2 is not a class index 0\.\.1"),
    (lambda V: cross_entropy([V(1.0), V(2.0)], -1), ValueError, "target -1 is not a class index"),
    (lambda V: cross_entropy([V(1.0), V(2.0)], 0.5), ValueError, "must be a whole class index, got 0.5"),
    (lambda V: cross_entropy([V(1.0), V(2.0)], "1"), TypeError, "must be a class index \\(an int\\), not str"),
    (lambda V: cross_entropy([V(1.0), V(2.0)], True), TypeError, "not bool"),
    (lambda V: cross_entropy(V(1.0), 0), TypeError, "needs the logits as a non-empty list of Values"),
    (lambda V: cross_entropy([], 0), TypeError, "needs the logits as a non-empty list"),
    (lambda V: softmax([V(1.0), "x"]), TypeError, "logits must be Values, not str"),
    (lambda V: softmax([V(1.0), 2.0]), TypeError, "logits must be Values, not float"),
    (lambda V: cross_entropy([V(1.0), V(2.0)], [1.0]), ValueError, "2 logits but 1 target probabilities"),
    (lambda V: cross_entropy_loss([[V(1.0)]], [0, 0]), ValueError, "1 predictions but 2 targets"),
    (lambda V: accuracy([[V(1.0), V(2.0)]], [5]), ValueError, "a label 5 is not a class index"),
])
def test_bad_input(engine, call, error, message):
    with pytest.raises(error, match=message):
        call(engine.Value)


# ---- datasets ------------------------------------------------------------------------
def test_make_spiral():
    X, y = datasets.make_spiral(100, classes=3, noise=0.2, seed=3)
    assert X.shape == (100, 2) and y.dtype.kind == "i"
    assert np.bincount(y).tolist() == [34, 33, 33]
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1.0 + 1e-12)  # noise moves the angle only
    X2, y2 = datasets.make_spiral(100, classes=3, noise=0.2, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X, datasets.make_spiral(100, classes=3, noise=0.2, seed=4)[0])
    X5, y5 = datasets.make_spiral(50, classes=5, noise=0.0)
    assert set(y5.tolist()) == set(range(5))
    # without noise, each arm is the curve angle = 4 r + 2 pi j / K
    r = np.hypot(X5[:, 0], X5[:, 1])
    angle = np.arctan2(X5[:, 0], X5[:, 1])
    expected = 4 * r + 2 * np.pi * y5 / 5
    off = np.angle(np.exp(1j * (angle - expected)))  # the difference, wrapped to (-pi, pi]
    assert np.allclose(off[r > 0], 0, atol=1e-9)  # (the centre has no angle)


def test_make_yinyang():
    X, y = datasets.make_yinyang(301, seed=5)
    assert X.shape == (301, 2) and np.bincount(y).tolist() == [101, 100, 100]
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1.0)
    dots = np.minimum(np.hypot(X[:, 0], X[:, 1] - 0.5), np.hypot(X[:, 0], X[:, 1] + 0.5)) < 0.2
    assert np.array_equal(dots, y == 2)
    outside = (np.hypot(X[:, 0], X[:, 1] - 0.5) >= 0.5) & (np.hypot(X[:, 0], X[:, 1] + 0.5) >= 0.5)
    assert np.array_equal(y[outside], (X[outside, 0] >= 0).astype(int))  # left yin, right yang
    X2, _ = datasets.make_yinyang(301, seed=5)
    assert np.array_equal(X, X2)
    Xn, yn = datasets.make_yinyang(301, noise=0.1, seed=5)
    assert np.array_equal(yn, y) and not np.array_equal(Xn, X)


@pytest.mark.parametrize("call, message", [
    (lambda: datasets.make_spiral(2, classes=3), "n_samples must be an int of at least 3"),
    (lambda: datasets.make_spiral(10, classes=1), "classes must be an int of at least 2"),
    (lambda: datasets.make_spiral(10, noise=-0.1), "noise must be a finite number >= 0"),
    (lambda: datasets.make_yinyang(2), "n_samples must be an int of at least 3"),
    (lambda: datasets.make_yinyang(30, noise=math.inf), "noise must be a finite number >= 0"),
])
def test_dataset_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_class_indices():
    y, k = datasets.class_indices(np.array([0.0, 2.0, 1.0, 2.0]))
    assert y.tolist() == [0, 2, 1, 2] and y.dtype.kind == "i" and k == 3
    y, k = datasets.class_indices(np.array([0.0, 3.0]), classes=5)  # K given: gaps are fine
    assert k == 5


@pytest.mark.parametrize("labels, classes, message", [
    ([1, 2, 3], None, "no row has label 0 \\(class indices start at 0"),
    ([0, 1, 3], None, "labels run to 3 but no row has label 2"),
    ([0, 1.5], None, "labels must be class indices 0, 1, 2, ...; found 1.5"),
    ([-1, 1, 0], None, "found -1.0 \\(two classes may be labelled -1/\\+1 or 0/1\\)"),
    ([0, 4], 3, "found label 4, but there are 3 classes"),
    ([], None, "no labels"),
])
def test_bad_class_labels(labels, classes, message):
    with pytest.raises(datasets.DataError, match=message):
        datasets.class_indices(np.array(labels, dtype=float), classes)


def test_csv_with_class_indices(tmp_path):
    X, y = datasets.make_spiral(30, classes=4, seed=1)
    path = tmp_path / "spiral.csv"
    datasets.save_csv(path, X, y)
    X2, labels = datasets.load_csv(path)
    y2, k = datasets.class_indices(labels)
    assert np.array_equal(X, X2) and np.array_equal(y, y2) and k == 4
