"""Optimizers: SGD with momentum and a learning-rate schedule."""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Union

from ._engines import engine_of_all
from ._numbers import to_float

Schedule = Union[float, int, Callable[[int], float]]


def linear_decay(lr: float = 1.0, steps: int = 100, final_fraction: float = 0.1) -> Callable[[int], float]:
    """The demo's schedule, ``lr * (1.0 - (1.0 - final_fraction) * k / steps)`` at step k;
    with the defaults exactly micrograd's ``1.0 - 0.9*k/100``."""
    lr = to_float(lr, "lr")
    fraction = to_float(final_fraction, "final_fraction")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    drop = 1.0 - fraction

    def schedule(k: int) -> float:
        return lr * (1.0 - drop * k / steps)

    return schedule


class SGD:
    """Stochastic gradient descent: ``p.data -= lr * p.grad`` for every parameter.

    ``lr`` is a number or a schedule, a function of the step number (0, 1, ...).
    With ``momentum`` m > 0 the update is PyTorch's: ``v = m*v + p.grad``,
    ``p.data -= lr * v``.
    """

    def __init__(self, params: Iterable[Any], lr: Schedule = 0.1, momentum: float = 0.0) -> None:
        self.params: List[Any] = list(params)
        self._engine = engine_of_all(self.params, "SGD's parameters")
        if not callable(lr):
            lr = to_float(lr, "lr")
        self.lr = lr
        self.momentum = to_float(momentum, "momentum")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.steps = 0
        self._velocity: List[float] = []

    def current_lr(self) -> float:
        """The learning rate the next ``step()`` will use."""
        lr = self.lr(self.steps) if callable(self.lr) else self.lr
        return to_float(lr, "the scheduled learning rate")

    def step(self) -> None:
        """Update every parameter from its grad, then advance the schedule."""
        lr = self.current_lr()
        if self.momentum == 0.0:
            self._engine.sgd_update(self.params, lr)
        else:
            if not self._velocity:
                self._velocity = [p.grad for p in self.params]
            else:
                m = self.momentum
                self._velocity = [m * v + p.grad for v, p in zip(self._velocity, self.params)]
            for p, v in zip(self.params, self._velocity):
                p.data -= lr * v
        self.steps += 1

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0.0."""
        self._engine.zero_grad(self.params)


__all__ = ["SGD", "linear_decay"]
