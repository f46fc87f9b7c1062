"""micrograd's demo training loop, for any MLP on two or more classes.

Each step is the demo's: inputs as Value leaves, a loss plus ``alpha * sum(p*p)``,
``zero_grad``, ``backward`` and an optimizer step whose learning rate decays linearly to
10% (the demo's schedule). A one-output model is trained on two classes (labels -1/+1
or 0/1) with micrograd's SVM max-margin loss; a K-output model on class indices 0..K-1
with cross-entropy. The graph is built anew every step (``compiled=False``, as
micrograd does), or recorded once and replayed (``cmicrograd.compile``; ``True``), or
recorded when that pays (``None``, see ``compile_pays``). All give the same loss curve,
bit for bit, on both engines and run to run.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, List, Optional, TextIO, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

from .datasets import class_indices, signed_labels
from .losses import accuracy, cross_entropy_loss, hinge_loss, l2_regularization
from .optim import OPTIMIZERS, Optimizer, linear_decay
from .progress import Progress
from .replay import assign, compile

StepCallback = Callable[[int, float, float], None]

# The learning rate each optimizer starts from when train() is not given one: the demo's
# 1.0 for SGD; for Adam(W) 0.05, 50x PyTorch's default, which suits these small networks
# and runs of a few hundred steps (the spiral and the moons reach >= 99% with it).
DEFAULT_LR = {"sgd": 1.0, "adam": 0.05, "adamw": 0.05}

def compile_pays(steps: int) -> bool:
    """Whether a run of ``steps`` should record its graph on the first step and replay
    it: from 2 steps on. Recording costs less than one eager build of the graph (measured
    on the moons graph, MLP(2, [64, 64, 1]) and MLP(2, [200, 200, 1]) over 100 points:
    0.72 to 0.96 builds; 0.89 on a 5,000-wide layer) and a replayed step a few percent
    of an eager one, so the second step already pays for the recording (the README's
    Speed table, row 11). A single step is built and run eagerly."""
    return steps >= 2


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite; ``result`` holds the run up to that step."""

    def __init__(self, message: str, result: "TrainResult") -> None:
        super().__init__(message)
        self.result = result


@dataclass
class TrainResult:
    """The loss and accuracy at every step (before its update), the final loss and
    accuracy on all the data after training, the wall time, whether the steps replayed
    a recording, and the number of classes."""

    losses: List[float] = field(default_factory=list)
    accuracies: List[float] = field(default_factory=list)
    final_loss: float = float("nan")
    final_accuracy: float = float("nan")
    seconds: float = 0.0
    compiled: bool = False
    classes: int = 2


def training_labels(y: Any, classes: int) -> NDArray[Any]:
    """Labels as the loss for a model with ``classes`` outputs needs them: -1.0/+1.0 for
    one output (from -1/+1 or 0/1), class indices 0..classes-1 for more. DataError (a
    ValueError) otherwise."""
    if classes == 1:
        return signed_labels(np.asarray(y, dtype=float))
    return class_indices(y, classes)[0]


def batch_loss(model: Any, X: NDArray[Any], y: NDArray[Any], alpha: float = 1e-4) -> Tuple[Any, float]:
    """(total loss, accuracy) of the model on rows X with labels y: the demo's
    ``loss()`` (hinge) for a one-output model, cross-entropy for a K-output one."""
    V = model.engine.Value
    inputs = [[V(x) for x in row] for row in np.asarray(X, dtype=float).tolist()]
    labels = training_labels(y, model.nouts[-1]).tolist()
    total, scores = _loss_graph(model, inputs, labels, alpha)
    return total, accuracy(scores, labels)


def _loss_graph(model: Any, inputs: List[Any], labels: List[Any], alpha: float) -> Tuple[Any, List[Any]]:
    """The loss over given input rows (Values) and labels (numbers or Values; for K
    classes, indices or one-hot rows), plus the L2 term."""
    scores = [model(x) for x in inputs]
    if model.nouts[-1] == 1:
        fit = hinge_loss(scores, labels)
    else:
        fit = cross_entropy_loss(scores, labels)
    return fit + l2_regularization(model.parameters(), alpha), scores


def _optimizer(choice: Union[str, Optimizer], params: List[Any], lr: Optional[float], steps: int) -> Optimizer:
    if isinstance(choice, Optimizer):
        if lr is not None:
            raise ValueError("lr is set on the optimizer you pass; drop train()'s lr")
        if len(choice.params) != len(params) or any(a is not b for a, b in zip(choice.params, params)):
            raise ValueError("the optimizer must optimize the model's parameters (model.parameters())")
        return choice
    if choice not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} or an optimizer, got {choice!r}")
    start = DEFAULT_LR[choice] if lr is None else lr
    return OPTIMIZERS[choice](params, lr=linear_decay(start, max(steps, 1)))


def train(model: Any, X: NDArray[Any], y: NDArray[Any], steps: int = 100, lr: Optional[float] = None,
          batch_size: Optional[int] = None, alpha: float = 1e-4, seed: Optional[int] = None,
          on_step: Optional[StepCallback] = None, compiled: Optional[bool] = None,
          optimizer: Union[str, Optimizer] = "sgd", progress: Union[bool, TextIO] = False) -> TrainResult:
    """Train ``model`` on (X, y) as micrograd's demo does; see the module docstring.

    ``optimizer`` is "sgd" (the demo's), "adam", "adamw" (started at ``lr``, default
    ``DEFAULT_LR``, decaying linearly to 10%), or an optimizer from ``cmicrograd.optim``
    over ``model.parameters()``. ``batch_size`` None uses all rows each step; otherwise
    each step takes a random subset of that size (numpy's default_rng(seed)), fed to one
    recorded graph whose inputs and labels are leaves. ``on_step(k, loss, accuracy)``
    is called after step k with the loss and accuracy it measured before its update.
    ``progress`` True draws a progress bar on stderr (a stream: there), ending with the
    final loss and accuracy. A NaN or infinite loss raises ``TrainingDiverged``.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != model.nin:
        raise ValueError(f"X must be a 2-D array of rows of {model.nin} features (the model's inputs), "
                         f"got shape {X.shape}")
    n = len(X)
    classes = model.nouts[-1]
    labels = training_labels(y, classes)
    if len(labels) != n:
        raise ValueError(f"{n} rows but {len(labels)} labels")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and {n} (the number of rows), got {batch_size}")
    full = batch_size is None or batch_size == n
    size = n if batch_size is None else batch_size
    rng = np.random.default_rng(seed)
    params = model.parameters()
    opt = _optimizer(optimizer, params, lr, steps)
    V = model.engine.Value
    zero_grad = model.engine.zero_grad
    one_hot = np.eye(classes) if classes > 1 else None

    def new_leaves() -> Tuple[List[Any], List[Any]]:
        # the inputs are leaves; in mini-batches the labels are leaves too (for K classes
        # one-hot rows), so that one recording serves every batch
        inputs = [[V(0.0) for _ in range(X.shape[1])] for _ in range(size)]
        if full:
            return inputs, labels.tolist()
        if classes == 1:
            return inputs, [V(0.0) for _ in range(size)]
        return inputs, [[V(0.0) for _ in range(classes)] for _ in range(size)]

    shown = Progress(steps, sys.stderr if progress is True else progress) if progress else None
    mode = compile_pays(steps) if compiled is None else compiled
    graph: Any = None
    result = TrainResult(classes=max(classes, 2))
    start = time.perf_counter()
    try:
        for k in range(steps):
            rows = slice(None) if full else rng.permutation(n)[:batch_size]
            if graph is None:  # fresh leaves for every graph built, as the demo makes them
                inputs, targets = new_leaves()
            assign(inputs, X[rows])
            if not full:
                assign(targets, labels[rows] if one_hot is None else one_hot[labels[rows]])
            if graph is None:  # eager: every step; compiled: the first one only
                loss, scores = _loss_graph(model, inputs, targets, alpha)
                value = loss.data
                if mode:
                    graph = compile(loss)
            else:
                value = graph.forward()
            if not math.isfinite(value):
                raise TrainingDiverged(f"the loss is {value} at step {k + 1}", result)
            acc = accuracy(scores, labels[rows].tolist())
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
            if shown is not None:
                shown.update(k, value, acc)
        final_loss, final_acc = batch_loss(model, X, labels, alpha)
        result.final_loss, result.final_accuracy = final_loss.data, final_acc
        result.compiled = graph is not None
        result.seconds = time.perf_counter() - start
        if not math.isfinite(result.final_loss):
            raise TrainingDiverged(f"the final loss is {result.final_loss}", result)
        if shown is not None:
            shown.update(steps, result.final_loss, result.final_accuracy)
    finally:
        if shown is not None:
            shown.close()
    return result


__all__ = ["train", "batch_loss", "training_labels", "compile_pays", "TrainResult", "TrainingDiverged"]
