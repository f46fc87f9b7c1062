"""Losses and metrics, each building the graph micrograd's demo builds.

They work on Values of either engine (and plain numbers as targets), so the compiled
and the pure engine produce the same graph and the same bits.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ._numbers import to_float


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
    """The fraction of scores on the label's side of 0 (labels in {-1, +1} or {0, 1})."""
    _pairs(scores, labels, "accuracy")
    hits = [(_label(y) > 0) == (_data(s) > 0) for y, s in zip(labels, scores)]
    return float(sum(hits) / len(hits))


def _label(y: Any) -> Any:
    if type(y) is float or type(y).__name__ == "Value":
        return y
    return to_float(y, "a target")


def _data(s: Any) -> float:
    return s.data if type(s).__name__ == "Value" else to_float(s, "a score")


__all__ = ["hinge_loss", "mse_loss", "l2_regularization", "accuracy"]
