"""Optimizers: SGD (momentum, dampening, Nesterov, weight decay), Adam and AdamW, with
PyTorch's update rules and defaults, and learning-rate schedules.

Updates are plain float arithmetic over ``p.data`` and ``p.grad``, so both engines give
the same bits. Each optimizer's per-parameter update is one kernel function
(``_sgd_kernel``, ``_adam_kernel``) with a documented, fixed order of float operations
over per-parameter state kept in ``array('d')`` buffers; ``step()`` computes the
per-step scalars (learning rate, bias corrections) and calls the kernel. The compiled
engine has C versions of these kernels (``sgd_kernel``, ``adam_kernel`` in
src/nn_helpers.pxi) with the same signatures and the same operations, so a step on its
Values makes no Python call per parameter. A graph compiled with an SGD, Adam or AdamW
(``cmicrograd.compile(loss, optimizer=opt)``) goes further: calling it runs
``zero_grad`` and ``step()`` in C too (src/train_step.pxi), reading the same attributes
``step()`` reads, at every step; a subclass keeps its own ``step()``. Keep the two in
step: a change to ``step()`` here needs the same change in ``plan_update`` there
(tests/test_train_step.py compares them).

State survives saving: ``state_dict()`` / ``load_state_dict()`` are JSON-ready (floats
round-trip exactly), ``save(path)`` / ``load(path)`` write and read them, and
``MLP.save(path, optimizer=opt)`` keeps the model and its optimizer in one file that
``opt.load(path)`` also reads. A resumed run equals an uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import math
import os
from array import array
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Sequence, Tuple, Union

from ._engines import engine_of, is_value
from ._nn import MODEL_FORMAT
from ._numbers import to_float

Schedule = Union[float, int, Callable[[int], float]]
PathLike = Union[str, "os.PathLike[str]"]
STATE_FORMAT = "cmicrograd.optim"
STATE_VERSION = 1


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


# ---- kernels: one per update rule, the float operations in a fixed order -------------
def _sgd_kernel(params: Sequence[Any], buf: "array[float]", lr: float, momentum: float,
                dampening: float, weight_decay: float, nesterov: bool, first: bool) -> None:
    """One SGD step (PyTorch's ``_single_tensor_sgd``), parameter by parameter, in order:

        g = p.grad
        if weight_decay != 0:  g = g + weight_decay * p.data
        if momentum != 0:
            b = g                                      on the first step
            b = momentum * b + (1.0 - dampening) * g   afterwards
            g = g + momentum * b  if nesterov  else  b
        p.data = p.data - lr * g
    """
    keep = 1.0 - dampening
    for i, p in enumerate(params):
        g = p.grad
        if weight_decay != 0.0:
            g = g + weight_decay * p.data
        if momentum != 0.0:
            b = g if first else momentum * buf[i] + keep * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        p.data = p.data - lr * g


def _adam_kernel(params: Sequence[Any], exp_avg: "array[float]", exp_avg_sq: "array[float]",
                 beta1: float, beta2: float, eps: float, step_size: float, bc2_sqrt: float,
                 grad_decay: float, param_scale: float) -> None:
    """One Adam / AdamW step (PyTorch's ``_single_tensor_adam``), parameter by parameter:

        d = p.data
        if param_scale != 1:  d = d * param_scale        AdamW: 1 - lr * weight_decay
        g = p.grad
        if grad_decay != 0:   g = g + grad_decay * d      Adam: weight_decay
        m = m + (1 - beta1) * (g - m)                     PyTorch's lerp
        v = beta2 * v + (1 - beta2) * g * g
        p.data = d - step_size * m / (sqrt(v) / bc2_sqrt + eps)

    ``step_size`` is ``lr / (1 - beta1**t)`` and ``bc2_sqrt`` ``(1 - beta2**t) ** 0.5``
    at step t (from 1), computed once per step by the caller.
    """
    w1 = 1.0 - beta1
    w2 = 1.0 - beta2
    sqrt = math.sqrt
    for i, p in enumerate(params):
        d = p.data
        if param_scale != 1.0:
            d = d * param_scale
        g = p.grad
        if grad_decay != 0.0:
            g = g + grad_decay * d
        m = exp_avg[i]
        m = m + w1 * (g - m)
        v = beta2 * exp_avg_sq[i] + w2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        p.data = d - step_size * m / (sqrt(v) / bc2_sqrt + eps)


# ---- argument checks: each raises before anything changes ----------------------------
def _check_params(params: Any, who: str) -> Tuple[List[Any], Any]:
    """The parameters as a list, and their engine; TypeError/ValueError saying what is wrong."""
    if is_value(params) or not hasattr(params, "__iter__"):
        raise TypeError(f"{who}'s params must be an iterable of Values (e.g. model.parameters()), "
                        f"not {type(params).__name__}")
    items = list(params)
    if not items:
        raise ValueError(f"{who} needs at least one Value to optimize; the parameter list is empty")
    engine = None
    seen: Dict[int, int] = {}
    for i, p in enumerate(items):
        try:
            e = engine_of(p)
        except TypeError:
            raise TypeError(f"{who}'s parameters: item {i}: expected a cmicrograd Value, "
                            f"not {type(p).__name__}") from None
        if engine is None:
            engine = e
        elif e is not engine:
            raise TypeError(f"{who}'s parameters: the list mixes Values of the compiled and the "
                            "pure-Python engine")
        if id(p) in seen:
            raise ValueError(f"{who}'s parameters: items {seen[id(p)]} and {i} are the same Value "
                             "(it would be updated twice per step)")
        seen[id(p)] = i
    return items, engine


def _check_lr(lr: Any, what: str = "lr") -> float:
    value = to_float(lr, what)
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{what} must be a finite number >= 0, got {lr!r}")
    return value


def _check_fraction(x: Any, what: str, closed: bool = False) -> float:
    value = to_float(x, what)
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise ValueError(f"{what} must be in [0, 1{']' if closed else ')'}, got {x!r}")
    return value


def _check_nonnegative(x: Any, what: str) -> float:
    value = to_float(x, what)
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{what} must be a finite number >= 0, got {x!r}")
    return value


def _check_eps(x: Any) -> float:
    value = to_float(x, "eps")
    if not 0.0 < value < math.inf:
        raise ValueError(f"eps must be a finite number > 0, got {x!r}")
    return value


def _check_betas(betas: Any) -> Tuple[float, float]:
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas must be a pair of numbers such as (0.9, 0.999), not {betas!r}")
    return (_check_fraction(betas[0], "betas[0]"), _check_fraction(betas[1], "betas[1]"))


def _check_bool(x: Any, what: str) -> bool:
    if not isinstance(x, bool):
        raise TypeError(f"{what} must be True or False, not {type(x).__name__}")
    return x


class Optimizer:
    """What every optimizer shares: ``params``, ``lr`` (a number, or a schedule: a
    function of the step number 0, 1, ...), ``steps`` taken, ``zero_grad()``, and the
    state: ``state_dict()``, ``load_state_dict()``, ``save(path)``, ``load(path)``."""

    # per-parameter buffers (array('d'), one number per parameter) and hyperparameters,
    # by name: what state_dict() saves
    buffer_names: ClassVar[Tuple[str, ...]] = ()
    hyperparameter_names: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, params: Iterable[Any], lr: Schedule) -> None:
        self.params, self._engine = _check_params(params, type(self).__name__)
        self.lr: Schedule = lr if callable(lr) else _check_lr(lr)
        self.steps = 0
        self._buffers = {name: array("d", bytes(8 * len(self.params))) for name in self.buffer_names}

    def current_lr(self) -> float:
        """The learning rate the next ``step()`` will use (ValueError if a schedule
        gives a negative or non-finite one, before anything is updated)."""
        if not callable(self.lr):
            return _check_lr(self.lr)  # it may have been set since the constructor checked it
        lr = to_float(self.lr(self.steps), "the scheduled learning rate")
        if not 0.0 <= lr < math.inf:
            raise ValueError(f"the learning-rate schedule gave {lr!r} at step {self.steps}; "
                             "it must be a finite number >= 0")
        return lr

    def step(self) -> None:
        """Update every parameter from its grad, then advance the step count."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0.0."""
        self._engine.zero_grad(self.params)

    # ---- state ------------------------------------------------------------------------
    def _hyperparameters(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.hyperparameter_names}

    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumed run needs, as JSON-ready data: the step count, the
        hyperparameters (``lr`` is None when it is a schedule, which is code and is not
        saved) and the per-parameter buffers."""
        hyper = self._hyperparameters()
        hyper["lr"] = None if callable(self.lr) else self.lr
        if "betas" in hyper:
            hyper["betas"] = list(hyper["betas"])
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "optimizer": type(self).__name__,
            "parameters": len(self.params),
            "steps": self.steps,
            "hyperparameters": hyper,
            "state": {name: buf.tolist() for name, buf in self._buffers.items()},
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore what ``state_dict()`` saved (hyperparameters too, as PyTorch does; a
        schedule, which is not saved, must be given to the constructor again).
        ValueError naming the problem if ``state`` does not fit this optimizer; the
        optimizer is then unchanged."""
        name = type(self).__name__
        if not isinstance(state, dict):
            raise ValueError(f"an optimizer state must be a JSON object / dict, not {type(state).__name__}")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a cmicrograd optimizer state (format is {state.get('format')!r}, "
                             f"expected {STATE_FORMAT!r})")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported optimizer state version {state.get('version')!r} "
                             f"(this cmicrograd reads {STATE_VERSION})")
        if state.get("optimizer") != name:
            raise ValueError(f"the state is for {state.get('optimizer')!r}, not {name}")
        if state.get("parameters") != len(self.params):
            raise ValueError(f"the state is for {state.get('parameters')!r} parameters; "
                             f"this {name} has {len(self.params)}")
        steps = state.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"the state's steps must be an int >= 0, not {steps!r}")
        hyper = state.get("hyperparameters")
        if not isinstance(hyper, dict) or set(hyper) != set(self.hyperparameter_names):
            raise ValueError(f"the state's hyperparameters must be an object with exactly "
                             f"{', '.join(self.hyperparameter_names)}")
        if hyper["lr"] is None and not callable(self.lr):
            raise ValueError("the state was saved with a learning-rate schedule, which is not saved: "
                             f"create the {name} with that schedule, then load the state")
        lr = self.lr if hyper["lr"] is None else hyper["lr"]
        try:
            checked = self._check_hyperparameters(dict(hyper, lr=lr))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the state's hyperparameters are invalid: {exc}") from None
        saved = state.get("state")
        if not isinstance(saved, dict) or set(saved) != set(self.buffer_names):
            raise ValueError(f"the state's buffers must be an object with exactly {', '.join(self.buffer_names)}")
        buffers = {}
        for key in self.buffer_names:
            numbers = saved[key]
            if (not isinstance(numbers, list) or len(numbers) != len(self.params)
                    or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in numbers)):
                raise ValueError(f"the state's {key} must be a list of {len(self.params)} numbers")
            buffers[key] = array("d", numbers)
        # everything checked: now change the optimizer
        for key, value in checked.items():
            setattr(self, key, value)
        self.steps = steps
        self._buffers = buffers

    def _check_hyperparameters(self, hyper: Dict[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError

    def save(self, path: PathLike) -> None:
        """Write ``state_dict()`` as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.state_dict(), f, allow_nan=True)
            f.write("\n")

    def load(self, path: PathLike) -> None:
        """Load the state from a file written by ``save`` or by
        ``MLP.save(path, optimizer=...)``. OSError if unreadable, ValueError naming the
        file if it holds no usable state (the optimizer is then unchanged)."""
        name = os.fspath(path)
        with open(path, "r", encoding="utf-8") as f:
            try:
                spec = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise ValueError(f"{name}: not valid JSON: {exc}") from None
        if isinstance(spec, dict) and spec.get("format") == MODEL_FORMAT:  # MLP.save(path, optimizer=)
            if "optimizer" not in spec:
                raise ValueError(f"{name}: the model was saved without an optimizer state")
            spec = spec["optimizer"]
        try:
            self.load_state_dict(spec)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's ``torch.optim.SGD``: without momentum
    ``p.data -= lr * p.grad``; with ``momentum`` m, ``dampening``, ``nesterov`` and
    ``weight_decay`` as PyTorch applies them (see ``_sgd_kernel``).

    ``lr`` is a number or a schedule, a function of the step number (0, 1, ...).
    """

    buffer_names = ("momentum_buffer",)
    hyperparameter_names = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params: Iterable[Any], lr: Schedule = 0.1, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> None:
        checked = self._check_hyperparameters(dict(lr=lr, momentum=momentum, dampening=dampening,
                                                   weight_decay=weight_decay, nesterov=nesterov))
        super().__init__(params, checked["lr"])
        self.momentum: float = checked["momentum"]
        self.dampening: float = checked["dampening"]
        self.weight_decay: float = checked["weight_decay"]
        self.nesterov: bool = checked["nesterov"]

    def _check_hyperparameters(self, hyper: Dict[str, Any]) -> Dict[str, Any]:
        lr = hyper["lr"]
        out = dict(
            lr=lr if callable(lr) else _check_lr(lr),
            momentum=_check_fraction(hyper["momentum"], "momentum"),
            dampening=_check_fraction(hyper["dampening"], "dampening", closed=True),
            weight_decay=_check_nonnegative(hyper["weight_decay"], "weight_decay"),
            nesterov=_check_bool(hyper["nesterov"], "nesterov"),
        )
        if out["nesterov"] and (out["momentum"] == 0.0 or out["dampening"] != 0.0):
            raise ValueError("nesterov needs a momentum > 0 and dampening 0 (as PyTorch)")
        return out

    def step(self) -> None:
        """Update every parameter from its grad, then advance the schedule."""
        lr = self.current_lr()
        if self.momentum == 0.0 and self.weight_decay == 0.0:
            self._engine.sgd_update(self.params, lr)  # C in the compiled engine: the same ops
        else:
            kernel = getattr(self._engine, "sgd_kernel", _sgd_kernel)   # C in the compiled engine
            kernel(self.params, self._buffers["momentum_buffer"], lr, self.momentum,
                   self.dampening, self.weight_decay, self.nesterov, self.steps == 0)
        self.steps += 1


class Adam(Optimizer):
    """Adam, PyTorch's ``torch.optim.Adam``: bias-corrected moment estimates;
    ``weight_decay`` adds ``weight_decay * p.data`` to the grad (L2). Defaults are
    PyTorch's. See ``_adam_kernel`` for the exact operations."""

    buffer_names = ("exp_avg", "exp_avg_sq")
    hyperparameter_names = ("lr", "betas", "eps", "weight_decay")
    decoupled: ClassVar[bool] = False  # AdamW decays the parameters instead of the grads

    def __init__(self, params: Iterable[Any], lr: Schedule = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        checked = self._check_hyperparameters(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        super().__init__(params, checked["lr"])
        self.betas: Tuple[float, float] = checked["betas"]
        self.eps: float = checked["eps"]
        self.weight_decay: float = checked["weight_decay"]

    def _check_hyperparameters(self, hyper: Dict[str, Any]) -> Dict[str, Any]:
        lr = hyper["lr"]
        return dict(
            lr=lr if callable(lr) else _check_lr(lr),
            betas=_check_betas(hyper["betas"]),
            eps=_check_eps(hyper["eps"]),
            weight_decay=_check_nonnegative(hyper["weight_decay"], "weight_decay"),
        )

    def step(self) -> None:
        """Update every parameter from its grad, then advance the step count."""
        lr = self.current_lr()
        beta1, beta2 = self.betas
        t = self.steps + 1
        step_size = lr / (1.0 - beta1**t)
        bc2_sqrt = (1.0 - beta2**t) ** 0.5
        wd = self.weight_decay
        grad_decay, param_scale = (0.0, 1.0 - lr * wd) if self.decoupled else (wd, 1.0)
        kernel = getattr(self._engine, "adam_kernel", _adam_kernel)   # C in the compiled engine
        kernel(self.params, self._buffers["exp_avg"], self._buffers["exp_avg_sq"],
               beta1, beta2, self.eps, step_size, bc2_sqrt, grad_decay, param_scale)
        self.steps += 1


class AdamW(Adam):
    """AdamW, PyTorch's ``torch.optim.AdamW``: Adam whose ``weight_decay`` (default
    1e-2) scales the parameters by ``1 - lr * weight_decay`` before the update instead
    of adding to the grads."""

    decoupled = True

    def __init__(self, params: Iterable[Any], lr: Schedule = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "OPTIMIZERS", "linear_decay"]
