"""Decision-region pictures: the file actually written, formats checked before any work,
K regions for K classes, numpy predictions that agree with the Values."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cmicrograd.datasets import make_spiral
from cmicrograd.losses import accuracy
from cmicrograd.plot import plot_decision_boundary, plot_path, predict, predict_classes

PNG = b"\x89PNG\r\n\x1a\n"


def _matplotlib():
    pytest.importorskip("matplotlib", reason="plotting needs the [plot] extra; CI installs it")


def test_plot_path(tmp_path):
    _matplotlib()
    assert plot_path(tmp_path / "noext") == str(tmp_path / "noext.png")
    assert plot_path(tmp_path / "b.svg") == str(tmp_path / "b.svg")
    assert plot_path("c.PDF") == "c.PDF"
    with pytest.raises(ValueError, match=r"matplotlib cannot write \.txtx files; use one of .*\.png"):
        plot_path("out.txtx")
    assert not list(tmp_path.iterdir())  # checking writes nothing


@pytest.mark.parametrize("classes", [1, 3])
def test_regions_are_drawn_and_the_written_file_named(engine, tmp_path, classes):
    _matplotlib()
    random.seed(0)
    model = engine.nn.MLP(2, [8, classes])
    X, y = make_spiral(30, classes=3, seed=0)
    labels = y if classes == 3 else np.where(y > 0, 1.0, -1.0)
    written = plot_decision_boundary(model, X, labels, tmp_path / "regions", title="t", resolution=40)
    assert written == str(tmp_path / "regions.png")
    assert (tmp_path / "regions.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("classes", [1, 4])
def test_numpy_predictions_agree_with_the_values(engine, classes):
    random.seed(5)
    model = engine.nn.MLP(2, [6, 5, classes], activation="tanh")
    X = np.random.default_rng(0).normal(size=(25, 2))
    scores = predict(model, X)
    assert scores.shape == ((25,) if classes == 1 else (25, classes))
    outputs = [model(row) for row in X]
    if classes == 1:
        assert scores == pytest.approx([o.data for o in outputs], rel=1e-12)
        labels = predict_classes(model, X)
        assert accuracy(outputs, labels.tolist()) == 1.0
    else:
        assert scores == pytest.approx(np.array([[o.data for o in out] for out in outputs]), rel=1e-12)
        assert accuracy(outputs, predict_classes(model, X).tolist()) == 1.0
