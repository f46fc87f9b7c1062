"""Numerical gradient checking, as the lecture teaches: nudge each input by h and
compare the slope with the gradient ``backward()`` gives."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, List, Sequence

from ._engines import engine_of_all
from ._numbers import to_float


@dataclass
class GradcheckResult:
    """What ``gradcheck`` measured. ``analytic[i]`` is input i's grad from backward,
    ``numeric[i]`` the central difference ``(f(x+h) - f(x-h)) / 2h``; ``errors[i]`` their
    relative difference; ``max_error`` the worst, at input ``worst``."""

    analytic: List[float]
    numeric: List[float]
    errors: List[float]
    max_error: float
    worst: int
    tolerance: float

    @property
    def ok(self) -> bool:
        """True if every relative error is within ``tolerance``."""
        return self.max_error <= self.tolerance

    def __bool__(self) -> bool:
        return self.ok


def gradcheck(f: Callable[..., Any], inputs: Sequence[Any], h: float = 1e-6, tol: float = 1e-5) -> GradcheckResult:
    """Check ``f``'s gradients with respect to ``inputs`` (leaf Values) numerically.

    ``f(*inputs)`` must build and return a Value. The inputs' grads are reset, then
    left holding the analytic gradient; their data is restored exactly.
    """
    inputs = list(inputs)
    engine_of_all(inputs, "gradcheck's inputs")
    h = to_float(h, "h")
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"h must be a positive finite number, got {h!r}")
    tol = to_float(tol, "tol")

    def evaluate() -> Any:
        out = f(*inputs)
        if type(out).__name__ != "Value":
            raise TypeError(f"f must return a Value, not {type(out).__name__}")
        return out

    for x in inputs:
        x.grad = 0.0
    out = evaluate()  # a fresh graph: only the inputs' grads needed resetting
    out.backward()
    analytic = [x.grad for x in inputs]
    numeric = []
    for x in inputs:
        x0 = x.data
        try:
            x.data = x0 + h
            up = evaluate().data
            x.data = x0 - h
            down = evaluate().data
        finally:
            x.data = x0
        numeric.append((up - down) / (2 * h))
    errors = [_relative_error(a, n) for a, n in zip(analytic, numeric)]
    worst = max(range(len(errors)), key=errors.__getitem__) if errors else 0
    return GradcheckResult(analytic, numeric, errors, errors[worst] if errors else 0.0, worst, tol)


def _relative_error(a: float, n: float) -> float:
    if a == n:
        return 0.0
    scale = max(abs(a), abs(n), 1e-8)
    return abs(a - n) / scale


__all__ = ["gradcheck", "GradcheckResult"]
