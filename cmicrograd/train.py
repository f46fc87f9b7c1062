"""micrograd's demo training loop, for any MLP on any two-class data.

Each step is the demo's: inputs as Value leaves, the SVM max-margin loss plus
``alpha * sum(p*p)``, ``zero_grad``, ``backward`` and the SGD update with the demo's
learning-rate schedule. By default the graph is recorded once and replayed
(``cmicrograd.compile``); ``compiled=False`` builds it anew every step, as micrograd
does. Both give the same loss curve, bit for bit, on both engines and run to run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

from .losses import accuracy, hinge_loss, l2_regularization
from .optim import SGD, linear_decay
from .replay import assign, compile

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


def batch_loss(model: Any, X: NDArray[Any], y: NDArray[Any], alpha: float = 1e-4) -> Tuple[Any, float]:
    """(total loss, accuracy) of the model on rows X with labels y in {-1, +1}:
    the demo's ``loss()``."""
    V = model.engine.Value
    inputs = [[V(x) for x in row] for row in np.asarray(X, dtype=float).tolist()]
    labels = np.asarray(y, dtype=float).tolist()
    total, scores = _loss_graph(model, inputs, labels, alpha)
    return total, accuracy(scores, labels)


def _loss_graph(model: Any, inputs: List[Any], labels: List[Any], alpha: float) -> Tuple[Any, List[Any]]:
    """The demo's loss over given input rows (Values) and labels (numbers or Values)."""
    scores = [model(x) for x in inputs]
    total = hinge_loss(scores, labels) + l2_regularization(model.parameters(), alpha)
    return total, scores


def train(model: Any, X: NDArray[Any], y: NDArray[Any], steps: int = 100, lr: float = 1.0,
          batch_size: Optional[int] = None, alpha: float = 1e-4, seed: Optional[int] = None,
          on_step: Optional[StepCallback] = None, compiled: bool = True) -> TrainResult:
    """Train ``model`` on (X, y) as micrograd's demo does; see the module docstring.

    ``batch_size`` None uses all rows each step; otherwise each step takes a random
    subset of that size (numpy's default_rng(seed)), fed to one recorded graph whose
    inputs and labels are leaves.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(X)
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and {n} (the number of rows), got {batch_size}")
    full = batch_size is None or batch_size == n
    size = n if batch_size is None else batch_size
    rng = np.random.default_rng(seed)
    params = model.parameters()
    opt = SGD(params, lr=linear_decay(lr, max(steps, 1)))
    V = model.engine.Value
    zero_grad = model.engine.zero_grad

    def new_leaves() -> Tuple[List[Any], List[Any]]:
        # the inputs are leaves; in mini-batches the labels are leaves too, so that one
        # recording serves every batch (the same graph, eager or compiled)
        return ([[V(0.0) for _ in range(X.shape[1])] for _ in range(size)],
                y.tolist() if full else [V(0.0) for _ in range(size)])

    inputs, labels = new_leaves()
    graph: Any = None
    result = TrainResult()
    start = time.perf_counter()
    for k in range(steps):
        rows = slice(None) if full else rng.permutation(n)[:batch_size]
        Xb, yb = X[rows], y[rows]
        if not compiled:  # fresh leaves every step, as the demo makes them
            inputs, labels = new_leaves()
        assign(inputs, Xb)
        if not full:
            assign(labels, yb)
        if graph is None:  # eager: every step; compiled: the first one only
            loss, scores = _loss_graph(model, inputs, labels, alpha)
            value = loss.data
            if compiled:
                graph = compile(loss)
        else:
            value = graph.forward()
        acc = accuracy(scores, yb.tolist())
        zero_grad(params)
        if graph is not None:
            graph.backward()
        else:
            loss.backward()
        opt.step()
        result.losses.append(value)
        result.accuracies.append(acc)
        if on_step is not None:
            on_step(k, value, acc)
    final_loss, final_acc = batch_loss(model, X, y, alpha)
    result.final_loss, result.final_accuracy = final_loss.data, final_acc
    result.seconds = time.perf_counter() - start
    return result


__all__ = ["train", "batch_loss", "TrainResult"]
