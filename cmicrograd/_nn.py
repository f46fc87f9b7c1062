"""Module, Neuron, Layer and MLP, written once for both engines.

``cmicrograd.nn`` and ``cmicrograd.reference.nn`` subclass these with ``engine`` set to
their engine module, which provides ``Value`` and the C-backed (or pure) helpers
``weighted_sum``, ``zero_grad`` and ``sgd_update``.

Behaviour is micrograd's (weights from Python's global ``random.uniform(-1, 1)`` in
micrograd's order, bias 0.0, parameters in layer -> neuron -> (w..., b) order, the same
reprs, a neuron sums as ``b + w0*x0 + w1*x1 + ...``) with its bugs fixed: an MLP with a
one-neuron hidden layer works, inputs of the wrong length raise ValueError instead of
being truncated by ``zip``, and bad sizes are refused.
"""

from __future__ import annotations

import json
import math
import os
import random
from typing import Any, ClassVar, Dict, List, Sequence, Union

from ._numbers import is_number

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
_NEURON_NAMES = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "linear": "Linear"}
MODEL_FORMAT = "cmicrograd.MLP"
MODEL_VERSION = 1


def _check_size(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        if hasattr(n, "__index__") and not isinstance(n, bool):
            n = n.__index__()
        else:
            raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{what} must be at least 1, got {n}")
    return int(n)


def _check_activation(activation: Any, what: str = "activation") -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"{what} must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    return str(activation)


class Module:
    """Something with parameters (micrograd's Module)."""

    engine: Any = None  # the engine module; set by cmicrograd.nn / reference.nn

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0.0."""
        self.engine.zero_grad(self.parameters())

    def parameters(self) -> List[Any]:
        """The trainable Values, in micrograd's order."""
        return []


class Neuron(Module):
    """``activation(b + w0*x0 + w1*x1 + ...)``; relu by default, linear if ``nonlin`` is
    False (micrograd's Neuron), or the ``activation`` named: relu, tanh, sigmoid, linear."""

    def __init__(self, nin: int, nonlin: bool = True, activation: str | None = None) -> None:
        nin = _check_size(nin, "nin (the number of inputs)")
        if activation is None:
            activation = "relu" if nonlin else "linear"
        self.activation = _check_activation(activation)
        V = self.engine.Value
        self.w = [V(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = V(0.0)

    @property
    def nonlin(self) -> bool:
        """True unless the neuron is linear (micrograd's flag)."""
        return self.activation != "linear"

    def __call__(self, x: Any) -> Any:
        return self._forward(_inputs(x, len(self.w), self.engine.Value, "Neuron"))

    def _forward(self, x: Sequence[Any]) -> Any:
        act = self.engine.weighted_sum(self.w, x, self.b)
        return act if self.activation == "linear" else getattr(act, self.activation)()

    def parameters(self) -> List[Any]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"{_NEURON_NAMES[self.activation]}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` neurons over the same inputs (micrograd's Layer). Called on an input,
    returns the list of outputs, or the single Value when ``nout`` is 1."""

    neuron_class: ClassVar[type] = Neuron

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        nin = _check_size(nin, "nin (the number of inputs)")
        nout = _check_size(nout, "nout (the number of neurons)")
        self.neurons = [self.neuron_class(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Any) -> Any:
        out = self._forward(_inputs(x, len(self.neurons[0].w), self.engine.Value, "Layer"))
        return out[0] if len(out) == 1 else out

    def _forward(self, x: Sequence[Any]) -> List[Any]:
        out: List[Any] = self.engine.layer_forward(self.neurons, x)  # C in the compiled engine
        return out

    def parameters(self) -> List[Any]:
        out: List[Any] = []
        for n in self.neurons:
            out += n.parameters()  # extending, not a nested comprehension: twice as fast
        return out

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron (micrograd's MLP): ``activation`` on every layer but the
    last, ``output_activation`` (linear by default) on the last.

    Call it on one input (a sequence of numbers or Values, or a 1-D numpy array) for a
    Value, or a list of Values when the last layer is wider than 1; on a 2-D numpy
    array for one such result per row.
    """

    layer_class: ClassVar[type] = Layer

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "relu",
                 output_activation: str = "linear") -> None:
        nin = _check_size(nin, "nin (the number of inputs)")
        if isinstance(nouts, (str, bytes)) or not hasattr(nouts, "__len__"):
            raise TypeError(f"nouts must be a list of layer sizes, not {type(nouts).__name__}")
        if len(nouts) == 0:
            raise ValueError("nouts must name at least one layer")
        sizes = [nin] + [_check_size(n, "a layer size") for n in nouts]
        _check_activation(activation)
        _check_activation(output_activation, "output_activation")
        last = len(nouts) - 1
        self.layers = [
            self.layer_class(sizes[i], sizes[i + 1],
                             activation=output_activation if i == last else activation)
            for i in range(len(nouts))
        ]

    @property
    def nin(self) -> int:
        return len(self.layers[0].neurons[0].w)

    @property
    def nouts(self) -> List[int]:
        return [len(layer.neurons) for layer in self.layers]

    @property
    def activation(self) -> str:
        return self.layers[0].neurons[0].activation if len(self.layers) > 1 else "relu"

    @property
    def output_activation(self) -> str:
        return str(self.layers[-1].neurons[0].activation)

    def __call__(self, x: Any) -> Any:
        if _is_2d_array(x):
            return [self(row) for row in x]
        out = _inputs(x, self.nin, self.engine.Value, "MLP")
        for layer in self.layers:
            out = layer._forward(out)
        return out[0] if len(out) == 1 else out

    def parameters(self) -> List[Any]:
        out: List[Any] = []
        for layer in self.layers:
            out += layer.parameters()
        return out

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"

    # ---- saving and loading: JSON, never pickle, for files a user may be handed ----
    def to_dict(self) -> Dict[str, Any]:
        """Architecture and weights as JSON-ready data (weights in parameters() order)."""
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "nin": self.nin,
            "nouts": self.nouts,
            "activation": self.activation,
            "output_activation": self.output_activation,
            "parameters": [p.data for p in self.parameters()],
        }

    @classmethod
    def from_dict(cls, spec: Any) -> MLP:
        """The MLP ``to_dict`` described; ValueError naming what is wrong otherwise."""
        if not isinstance(spec, dict):
            raise ValueError(f"a model must be a JSON object, not {type(spec).__name__}")
        if spec.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a cmicrograd model (format is {spec.get('format')!r}, expected {MODEL_FORMAT!r})")
        if spec.get("version") != MODEL_VERSION:
            raise ValueError(f"unsupported model version {spec.get('version')!r} (this cmicrograd reads {MODEL_VERSION})")
        for key in ("nin", "nouts", "parameters"):
            if key not in spec:
                raise ValueError(f"the model has no {key!r}")
        nin, nouts, weights = spec["nin"], spec["nouts"], spec["parameters"]
        if isinstance(nin, bool) or not isinstance(nin, int):
            raise ValueError(f"the model's nin must be an int, not {nin!r}")
        if not isinstance(nouts, list) or any(isinstance(n, bool) or not isinstance(n, int) for n in nouts):
            raise ValueError(f"the model's nouts must be a list of ints, not {nouts!r}")
        if not isinstance(weights, list) or any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in weights):
            raise ValueError("the model's parameters must be a list of numbers")
        sizes = [nin] + nouts
        if any(n < 1 for n in sizes) or sum(sizes[i + 1] * (sizes[i] + 1) for i in range(len(nouts))) > 10**8:
            raise ValueError(f"the model's layer sizes are invalid: {sizes}")
        try:
            model = cls(nin, nouts, spec.get("activation", "relu"), spec.get("output_activation", "linear"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid model: {exc}") from None
        params = model.parameters()
        if len(weights) != len(params):
            raise ValueError(f"the model needs {len(params)} parameters, the file has {len(weights)}")
        for p, w in zip(params, weights):
            p.data = float(w)
        return model

    def save(self, path: Union[str, "os.PathLike[str]"], optimizer: Any = None) -> None:
        """Write the model as JSON (see ``to_dict``); with ``optimizer`` (one from
        ``cmicrograd.optim`` over this model's parameters) its state too, under
        ``"optimizer"``, so that ``MLP.load(path)`` then ``opt.load(path)`` resumes the run."""
        spec = self.to_dict()
        if optimizer is not None:
            params = self.parameters()
            theirs = getattr(optimizer, "params", None)
            if not hasattr(optimizer, "state_dict") or not isinstance(theirs, list):
                raise TypeError(f"optimizer must be a cmicrograd.optim optimizer, not {type(optimizer).__name__}")
            if len(theirs) != len(params) or any(a is not b for a, b in zip(theirs, params)):
                raise ValueError("the optimizer does not optimize this model's parameters (in parameters() order)")
            spec["optimizer"] = optimizer.state_dict()
        with open(path, "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1, allow_nan=True)
            f.write("\n")

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> MLP:
        """Read a model saved by ``save`` (an optimizer state in the file is left for
        ``opt.load(path)``). The file is parsed as data, never executed: ValueError
        naming the file and the problem if it is not a valid model, OSError if it
        cannot be read."""
        name = os.fspath(path)
        with open(path, "r", encoding="utf-8") as f:
            try:
                spec = json.load(f, parse_constant=_json_constant)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise ValueError(f"{name}: not valid JSON: {exc}") from None
        try:
            return cls.from_dict(spec)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


def _json_constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def _is_2d_array(x: Any) -> bool:
    return getattr(x, "ndim", None) == 2


def _inputs(x: Any, n: int, V: type, who: str) -> Sequence[Any]:
    """x as a list of n numbers or Values, or a clear TypeError / ValueError."""
    if hasattr(x, "ndim") and hasattr(x, "tolist"):  # a numpy array (or scalar)
        if x.ndim != 1:
            raise ValueError(f"{who} expects a 1-D input of {n} values, got an array of shape {x.shape}")
        x = x.tolist()
    elif type(x) is not list and type(x) is not tuple:
        if isinstance(x, (str, bytes)) or not hasattr(x, "__len__") or not hasattr(x, "__getitem__"):
            raise TypeError(
                f"{who} expects a sequence of {n} inputs (a list, tuple or 1-D array), "
                f"not {type(x).__name__}"
            )
        x = list(x)
    if len(x) != n:
        raise ValueError(f"{who} expects {n} inputs, got {len(x)}")
    for xi in x:
        if type(xi) is not float and type(xi) is not V and not is_number(xi):
            raise TypeError(f"{who} inputs must be numbers or Values, not {type(xi).__name__}")
    checked: Sequence[Any] = x
    return checked
