"""micrograd's demo training loop, for any MLP on any two-class data.

Each step builds the demo's graph: inputs as Value leaves, the SVM max-margin loss plus
``alpha * sum(p*p)``, then ``zero_grad``, ``backward`` and the SGD update with the
demo's learning-rate schedule. The loss curve is the same, bit for bit, on both
engines and from run to run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

import numpy as np

from .losses import accuracy, hinge_loss, l2_regularization
from .optim import SGD, linear_decay

StepCallback = Callable[[int, float, float], None]


@dataclass
class TrainResult:
    """The loss and accuracy at every step (before its update), the final loss and
    accuracy on all the data after training, and the wall time."""

    losses: List[float] = field(default_factory=list)
    accuracies: List[float] = field(default_factory=list)
    final_loss: float = float("nan")
    final_accuracy: float = float("nan")
    seconds: float = 0.0


def batch_loss(model: Any, X: np.ndarray, y: np.ndarray, alpha: float = 1e-4):
    """(total loss, accuracy) of the model on rows X with labels y in {-1, +1}:
    the demo's ``loss()``."""
    V = model.engine.Value
    inputs = [[V(x) for x in row] for row in np.asarray(X, dtype=float).tolist()]
    scores = [model(x) for x in inputs]
    labels = np.asarray(y, dtype=float).tolist()
    total = hinge_loss(scores, labels) + l2_regularization(model.parameters(), alpha)
    return total, accuracy(scores, labels)


def train(model: Any, X: np.ndarray, y: np.ndarray, steps: int = 100, lr: float = 1.0,
          batch_size: Optional[int] = None, alpha: float = 1e-4, seed: Optional[int] = None,
          on_step: Optional[StepCallback] = None) -> TrainResult:
    """Train ``model`` on (X, y) as micrograd's demo does; see the module docstring.

    ``batch_size`` None uses all rows each step; otherwise each step takes a random
    subset of that size (numpy's default_rng(seed)).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(X)
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and {n} (the number of rows), got {batch_size}")
    rng = np.random.default_rng(seed)
    params = model.parameters()
    opt = SGD(params, lr=linear_decay(lr, max(steps, 1)))
    result = TrainResult()
    start = time.perf_counter()
    for k in range(steps):
        if batch_size is None or batch_size == n:
            Xb, yb = X, y
        else:
            rows = rng.permutation(n)[:batch_size]
            Xb, yb = X[rows], y[rows]
        loss, acc = batch_loss(model, Xb, yb, alpha)
        model.zero_grad()
        loss.backward()
        opt.step()
        result.losses.append(loss.data)
        result.accuracies.append(acc)
        if on_step is not None:
            on_step(k, loss.data, acc)
    final_loss, final_acc = batch_loss(model, X, y, alpha)
    result.final_loss, result.final_accuracy = final_loss.data, final_acc
    result.seconds = time.perf_counter() - start
    return result


__all__ = ["train", "batch_loss", "TrainResult"]
