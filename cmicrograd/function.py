"""New ops with a Python forward and backward, as PyTorch's ``autograd.Function``.

    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_values
            return 3 * x**2 * grad

    y = Cube.apply(v)   # a Value in v's graph (either engine); y.backward() works

``forward`` gets the inputs' data as floats and returns a number; ``backward`` gets the
output's grad and returns one gradient per input (a number, None for no gradient, or a
tuple of them), which is added to the inputs' grads.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from ._engines import engine_of
from ._numbers import is_number, to_float


class Context:
    """Per-call storage shared by ``forward`` and ``backward``."""

    saved_values: Tuple[Any, ...] = ()

    def save_for_backward(self, *values: Any) -> None:
        """Keep values for ``backward`` (as ``ctx.saved_values``)."""
        self.saved_values = values


class Function:
    """Subclass it with static ``forward(ctx, *xs)`` and ``backward(ctx, grad)``;
    call ``apply(*inputs)`` to add a node to the graph."""

    @staticmethod
    def forward(ctx: Context, *xs: float) -> float:
        raise NotImplementedError("a Function subclass must define forward(ctx, *xs)")

    @staticmethod
    def backward(ctx: Context, grad: float) -> Any:
        raise NotImplementedError("a Function subclass must define backward(ctx, grad)")

    @classmethod
    def apply(cls, *inputs: Any) -> Any:
        """The new node: ``forward`` of the inputs' data, with ``backward`` as its
        local derivative. Inputs are Values of one engine, or numbers (constants)."""
        engine: Any = None
        for x in inputs:
            if not is_number(x):
                e = engine_of(x)
                if engine is not None and e is not engine:
                    raise TypeError(f"{cls.__name__}.apply mixes Values of two engines")
                engine = e
        if engine is None:
            from ._engines import PICKED

            engine = PICKED
        V = engine.Value
        values = [x if type(x) is V else V(x) for x in inputs]
        ctx = Context()
        result = cls.forward(ctx, *[v.data for v in values])
        if not is_number(result):
            raise TypeError(f"{cls.__name__}.forward must return a number, not {type(result).__name__}")
        out = V(result, values, cls.__name__)
        out._backward = FunctionBackward(cls, ctx, values, out)
        return out


class FunctionBackward:
    """A Function node's ``_backward``: calls ``backward`` and accumulates the grads.

    It also keeps what a replay (``cmicrograd.compile``) needs to run ``forward`` again.
    """

    __slots__ = ("function", "ctx", "inputs", "out")

    def __init__(self, function: Any, ctx: Context, inputs: List[Any], out: Any) -> None:
        self.function = function
        self.ctx = ctx
        self.inputs = inputs
        self.out = out

    def __call__(self) -> None:
        grads = self.function.backward(self.ctx, self.out.grad)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        if len(grads) != len(self.inputs):
            raise ValueError(
                f"{self.function.__name__}.backward returned {len(grads)} gradients "
                f"for {len(self.inputs)} inputs"
            )
        for v, g in zip(self.inputs, grads):
            if g is not None:
                v.grad += to_float(g, f"a gradient from {self.function.__name__}.backward")

    def recompute(self) -> float:
        """Run ``forward`` again on the inputs' current data (for a replay)."""
        result = self.function.forward(self.ctx, *[v.data for v in self.inputs])
        return to_float(result, f"{self.function.__name__}.forward's result")


__all__ = ["Function", "Context"]
