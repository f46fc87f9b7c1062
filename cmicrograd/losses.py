"""Losses and metrics: micrograd's demo losses (each building the graph the demo builds)
and, for more than two classes, softmax and cross-entropy.

They work on Values of either engine (and plain numbers as targets), so the compiled
and the pure engine produce the same graph and the same bits.

Softmax and cross-entropy subtract the max of the logits' data first, so that no exp
overflows. That max is a node of the graph (``Value.detached_max``, an op that passes no
gradient), so a compiled replay recomputes it from the current logits, exactly as a
fresh graph would.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Sequence

from ._engines import is_value
from ._numbers import is_number, to_float


def _pairs(scores: Sequence[Any], targets: Sequence[Any], who: str) -> None:
    if len(scores) != len(targets):
        raise ValueError(f"{who}: {len(scores)} predictions but {len(targets)} targets")
    if len(scores) == 0:
        raise ValueError(f"{who} of an empty batch is undefined")


def hinge_loss(scores: Sequence[Any], labels: Sequence[Any]) -> Any:
    """micrograd's SVM max-margin loss: ``mean((1 + -y*score).relu())``, labels in {-1, +1}.

    Built as the demo builds it: ``sum(losses) * (1.0 / len(losses))``.
    """
    _pairs(scores, labels, "hinge_loss")
    losses = [(1 + -_label(y) * s).relu() for y, s in zip(labels, scores)]
    return sum(losses) * (1.0 / len(losses))


def mse_loss(predictions: Sequence[Any], targets: Sequence[Any]) -> Any:
    """Mean squared error: ``sum((p - t)**2) * (1.0 / n)``."""
    _pairs(predictions, targets, "mse_loss")
    return sum((p - _label(t)) ** 2 for p, t in zip(predictions, targets)) * (1.0 / len(predictions))


def l2_regularization(parameters: Iterable[Any], alpha: float = 1e-4) -> Any:
    """``alpha * sum(p*p for p in parameters)``, as the demo's reg_loss."""
    alpha = to_float(alpha, "alpha")
    return alpha * sum(p * p for p in parameters)


def accuracy(scores: Sequence[Any], labels: Sequence[Any]) -> float:
    """The fraction of examples classified right. Each score is one of:

    - a Value or number (a one-output model): two classes, right when the score is on
      the label's side of 0 (labels in {-1, +1} or {0, 1});
    - a list of K logits (a K-output model): right when the largest logit (the first,
      on ties) is at the label's index (labels are class indices 0..K-1).
    """
    _pairs(scores, labels, "accuracy")
    if isinstance(scores[0], (list, tuple)):
        hits = [_argmax(s) == _class_index(y, len(s), "a label") for y, s in zip(labels, scores)]
    else:
        hits = [(_label(y) > 0) == (_data(s) > 0) for y, s in zip(labels, scores)]
    return float(sum(hits) / len(hits))


# ---- more than two classes -----------------------------------------------------------
def _shifted(logits: Any, who: str) -> List[Any]:
    """``z + (-m)`` for each logit z, m the largest logit's data as a node that passes no
    gradient (``z0.detached_max(z1).detached_max(z2)...``)."""
    if not isinstance(logits, (list, tuple)) or not logits:
        raise TypeError(f"{who} needs the logits as a non-empty list of Values (a model with K outputs "
                        f"returns one), not {type(logits).__name__}")
    for z in logits:
        if not is_value(z):
            raise TypeError(f"{who}: logits must be Values, not {type(z).__name__}")
    top = logits[0]
    for z in logits[1:]:
        top = top.detached_max(z)
    shift = -top
    return [z + shift for z in logits]


def softmax(logits: Sequence[Any]) -> List[Any]:
    """``exp(z_k) / sum_j exp(z_j)`` for one example's logits, as Values, computed
    from ``z - max(z.data)``."""
    exps = [s.exp() for s in _shifted(logits, "softmax")]
    total = sum(exps)
    return [e / total for e in exps]


def cross_entropy(logits: Sequence[Any], target: Any) -> Any:
    """``-log softmax(logits)[target]`` for one example: ``log(sum_j exp(s_j)) - s_target``
    with ``s = z - max(z.data)``.

    ``target`` is a class index (an int in 0..K-1), or K class probabilities (numbers or
    Values, e.g. one-hot), as PyTorch's cross_entropy takes; then the loss is
    ``sum_k p_k * (log(sum_j exp(s_j)) - s_k)``. For a one-hot target that is the same
    number as the index gives.
    """
    shifted = _shifted(logits, "cross_entropy")
    log_total = sum(s.exp() for s in shifted).log()
    if isinstance(target, (list, tuple)):
        if len(target) != len(shifted):
            raise ValueError(f"cross_entropy: {len(shifted)} logits but {len(target)} target probabilities")
        return sum(_label(p) * (log_total - s) for p, s in zip(target, shifted))
    return log_total - shifted[_class_index(target, len(shifted), "cross_entropy's target")]


def cross_entropy_loss(logits: Sequence[Sequence[Any]], targets: Sequence[Any]) -> Any:
    """The mean cross-entropy over a batch: ``sum(cross_entropy(z, t)) * (1.0 / n)``
    for each example's logits z and target t (as ``hinge_loss`` averages)."""
    _pairs(logits, targets, "cross_entropy_loss")
    losses = [cross_entropy(z, t) for z, t in zip(logits, targets)]
    return sum(losses) * (1.0 / len(losses))


def _class_index(y: Any, classes: int, what: str) -> int:
    """``y`` as a class index in 0..classes-1 (ints and numpy integers; integral floats,
    as labels read from a CSV are, too); TypeError / ValueError otherwise."""
    if isinstance(y, bool) or not is_number(y):
        raise TypeError(f"{what} must be a class index (an int), not {type(y).__name__}")
    if isinstance(y, int) or hasattr(y, "__index__"):
        k = int(y)
    else:
        x = to_float(y, what)
        if not x.is_integer():
            raise ValueError(f"{what} must be a whole class index, got {y!r}")
        k = int(x)
    if not 0 <= k < classes:
        raise ValueError(f"{what} {k} is not a class index 0..{classes - 1}")
    return k


def _argmax(scores: Sequence[Any]) -> int:
    best, best_k = _data(scores[0]), 0
    for k in range(1, len(scores)):
        x = _data(scores[k])
        if x > best:
            best, best_k = x, k
    return best_k


def _label(y: Any) -> Any:
    if type(y) is float or is_value(y):
        return y
    return to_float(y, "a target")


def _data(s: Any) -> float:
    return s.data if is_value(s) else to_float(s, "a score")


__all__ = ["hinge_loss", "mse_loss", "l2_regularization", "accuracy", "softmax", "cross_entropy",
           "cross_entropy_loss"]
