"""The pure-Python engine: micrograd's ``Value``, the parity baseline and the fallback.

Every op is built as micrograd builds it (``a - b`` is ``a + (-b)``, ``a / b`` is
``a * b**-1``, ``-a`` is ``a * -1``, a number operand becomes a constant leaf on the
right), so graphs have micrograd's nodes. Unlike micrograd, ``_prev`` is a tuple of the
distinct children in operand order and backward visits them in that order, so the
gradient summation order depends on the graph alone, and ``data`` is always a float.

Layout (the compiled engine, ``src/value.pxi`` and ``src/graph.pxi``, follows the same
order and names): op codes from the op table (``cmicrograd/_ops.py``); each op's
forward rule (a node's value from its operands' data) next to its backward rule (its
local derivative, accumulated into its operands' grads); the ``Value`` class; the
topological sort and ``backward``; the nn helpers; compile and replay; pickling.
"""

from __future__ import annotations

import math
import threading
from array import array
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .. import _ops
from .._numbers import (
    ERR_EXP_RANGE,
    ERR_LOG_DOMAIN,
    ERR_ZERO_DIV,
    division_error,
    exponent_error,
    float_pow,
    math_error,
    operand_error,
    to_float,
)

__all__ = ["Value", "weighted_sum", "layer_forward", "zero_grad", "sgd_update", "set_data",
           "compile", "CompiledGraph"]

# ---- op codes, from the op table (cmicrograd/_ops.py) --------------------------------
LEAF, ADD, MUL, POW, RELU, TANH, EXP, LOG, SIGMOID, CUSTOM, DETACHED_MAX, RECIPROCAL, HEAVISIDE = (
    _ops.BY_NAME[name].code
    for name in ("leaf", "add", "mul", "pow", "relu", "tanh", "exp", "log", "sigmoid", "custom",
                 "detached_max", "reciprocal", "heaviside")
)
BINARY = frozenset(op.code for op in _ops.BUILTIN if op.arity == 2)


# ---- the rules, forward next to backward, one op after the other ---------------------
# forward:  out.data from the operands' data a, b (k: the exponent of POW)
# backward: add out's local derivative times out.grad into its operands' grads
def add_forward(a: float, b: float, k: float) -> float:
    return a + b


def add_backward(out: Value) -> None:
    a, b = out._a, out._b
    a._grad += out._grad
    b._grad += out._grad


def mul_forward(a: float, b: float, k: float) -> float:
    return a * b


def mul_backward(out: Value) -> None:
    a, b = out._a, out._b
    a._grad += b._data * out._grad
    b._grad += a._data * out._grad


def pow_forward(a: float, b: float, k: float) -> float:
    return float_pow(a, k)


def pow_backward(out: Value) -> None:
    a, k = out._a, out._k
    a._grad += (k * float_pow(a._data, k - 1.0)) * out._grad


def relu_forward(a: float, b: float, k: float) -> float:
    return 0.0 if a < 0 else a


def relu_backward(out: Value) -> None:
    out._a._grad += float(out._data > 0) * out._grad


def tanh_forward(a: float, b: float, k: float) -> float:
    return math.tanh(a)  # saturates to +-1.0 instead of overflowing


def tanh_backward(out: Value) -> None:
    t = out._data
    out._a._grad += (1.0 - float_pow(t, 2.0)) * out._grad  # the lecture's (1 - t**2) * grad


def exp_forward(a: float, b: float, k: float) -> float:
    try:
        return math.exp(a)
    except OverflowError:
        raise math_error(ERR_EXP_RANGE, a) from None


def exp_backward(out: Value) -> None:
    out._a._grad += out._data * out._grad


def log_forward(a: float, b: float, k: float) -> float:
    if a > 0 or a != a:  # positive, +inf or nan
        return math.log(a)
    raise math_error(ERR_LOG_DOMAIN, a)


def log_backward(out: Value) -> None:
    a = out._a
    if a._data == 0.0:
        raise math_error(ERR_ZERO_DIV, a._data, out._grad)
    a._grad += (1.0 / a._data) * out._grad  # Karpathy's engines: (1/x) * grad


def sigmoid_forward(a: float, b: float, k: float) -> float:
    if a >= 0:  # split at 0 so exp never overflows
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def sigmoid_backward(out: Value) -> None:
    s = out._data
    out._a._grad += (s * (1.0 - s)) * out._grad


def reciprocal_forward(a: float, b: float, k: float) -> float:
    if a == 0.0:
        raise division_error()
    return 1.0 / a


def reciprocal_backward(out: Value) -> None:
    r = out._data
    out._a._grad += (-(r * r)) * out._grad  # d(1/x)/dx = -(1/x)**2


def detached_max_forward(a: float, b: float, k: float) -> float:
    return b if b > a else a  # as Python's max(a, b)


def detached_max_backward(out: Value) -> None:
    pass  # no gradient passes


def heaviside_forward(a: float, b: float, k: float) -> float:
    return 1.0 if a > 0 else 0.0  # relu's (out > 0)


def heaviside_backward(out: Value) -> None:
    pass  # zero wherever it exists: no gradient passes


_N_CODES = 1 + max(op.code for op in _ops.OPS if op.kind != "internal")


def _rule_table(kind: str) -> Tuple[Any, ...]:
    """The ``{op}_{kind}`` rules above, indexed by op code (None for leaves, custom)."""
    table: List[Any] = [None] * _N_CODES
    for op in _ops.BUILTIN:
        rule = globals().get(f"{op.name}_{kind}")
        if rule is None:
            raise ImportError(f"op {op.name} of cmicrograd/_ops.py has no {op.name}_{kind} rule "
                              "in cmicrograd/reference/engine.py")
        table[op.code] = rule
    return tuple(table)


FORWARD: Tuple[Optional[Callable[[float, float, float], float]], ...] = _rule_table("forward")
BACKWARD: Tuple[Optional[Callable[[Value], None]], ...] = _rule_table("backward")
OP_SYMBOLS = tuple(_ops.BY_CODE[c].symbol if c in _ops.BY_CODE else "" for c in range(_N_CODES))

Number = Union[int, float]
Operand = Union["Value", int, float]


def _noop() -> None:
    """The local backward step of a leaf: nothing to propagate."""


class Value:
    """A scalar and its gradient: one node of a computation graph.

    ``data`` and ``grad`` are always Python floats. Values hash and compare by
    identity. ``backward()`` accumulates into ``grad``: zero the grads between
    calls (``Module.zero_grad()``) unless you mean to sum two passes.
    """

    # __dict__: the user's own attributes (p.m = 0.0, a colour for drawing), as on
    # micrograd's plain class; made on first use
    __slots__ = ("_data", "_grad", "_a", "_b", "_k", "_code", "_opname", "_kids", "_label", "_user",
                 "__dict__")
    _data: float
    _grad: float
    _a: Any  # the first operand (a Value), None for leaves
    _b: Any  # the second operand, None for unary ops and leaves
    _k: float
    _code: int
    _opname: str
    _kids: Tuple[Value, ...]
    _label: str
    _user: Any  # a custom backward callable, or None

    # numpy defers to our reflected operators: np.float64(2) * v is a Value.
    __array_ufunc__ = None

    def __init__(
        self,
        data: Number,
        _children: Iterable[Value] = (),
        _op: str = "",
        label: str = "",
    ) -> None:
        self._data = to_float(data, "Value data")
        self._grad = 0.0
        children = _distinct_children(_children, Value)
        if type(_op) is not str:
            raise TypeError(f"_op must be a str, not {type(_op).__name__}")
        if type(label) is not str:
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        self._a = self._b = None
        self._k = 0.0
        self._code = CUSTOM if (children or _op) else LEAF
        self._opname = _op
        self._kids = children
        self._label = label
        self._user = None

    # -- building nodes --------------------------------------------------------------
    @staticmethod
    def _node(data: float, code: int, a: Value, b: Optional[Value], k: float,
              op: Optional[str] = None) -> Value:
        out = _new(Value)
        out._data = data
        out._grad = 0.0
        out._a = a
        out._b = b
        out._k = k
        out._code = code
        out._opname = OP_SYMBOLS[code] if op is None else op
        out._kids = (a,) if (b is None or b is a) else (a, b)
        out._label = ""
        out._user = None
        return out

    def _operand(self, other: object, op: str, reflected: bool) -> Value:
        """``other`` as a Value: a number becomes a new constant leaf."""
        if type(other) is Value:
            return other
        if type(other) is float:
            return _leaf(other)
        try:
            return _leaf(to_float(other, "operand"))
        except TypeError:
            if reflected:
                raise operand_error(op, other, self) from None
            raise operand_error(op, self, other) from None

    # ---- the ops, in the order of the op table ---------------------------------------
    def __add__(self, other: Operand) -> Value:
        other = self._operand(other, "+", False)
        return Value._node(add_forward(self._data, other._data, 0.0), ADD, self, other, 0.0)

    def __mul__(self, other: Operand) -> Value:
        other = self._operand(other, "*", False)
        return Value._node(mul_forward(self._data, other._data, 0.0), MUL, self, other, 0.0)

    def __pow__(self, other: Number, modulo: None = None) -> Value:
        if modulo is not None:
            raise TypeError("pow() with a modulus is not supported for Value")
        kind: type = type(other)
        if kind is Value:
            raise exponent_error(other)
        try:
            k = to_float(other, "the exponent")
        except TypeError:
            raise exponent_error(other) from None
        return Value._node(pow_forward(self._data, 0.0, k), POW, self, None, k, f"**{other}")

    def relu(self) -> Value:
        """max(0, x); its gradient at 0 is 0 (micrograd's ReLU)."""
        return Value._node(relu_forward(self._data, 0.0, 0.0), RELU, self, None, 0.0)

    def tanh(self) -> Value:
        """The hyperbolic tangent; saturates to +-1.0 for large inputs."""
        return Value._node(tanh_forward(self._data, 0.0, 0.0), TANH, self, None, 0.0)

    def exp(self) -> Value:
        """e**x; OverflowError if the result is too large for a float."""
        return Value._node(exp_forward(self._data, 0.0, 0.0), EXP, self, None, 0.0)

    def log(self) -> Value:
        """The natural logarithm; ValueError for x <= 0."""
        return Value._node(log_forward(self._data, 0.0, 0.0), LOG, self, None, 0.0)

    def sigmoid(self) -> Value:
        """1 / (1 + e**-x), computed without overflow for any x."""
        return Value._node(
            sigmoid_forward(self._data, 0.0, 0.0), SIGMOID, self, None, 0.0
        )

    def reciprocal(self) -> Value:
        """1 / x; ZeroDivisionError for x == 0."""
        return Value._node(reciprocal_forward(self._data, 0.0, 0.0), RECIPROCAL, self, None, 0.0)

    def heaviside(self) -> Value:
        """The unit step: 1.0 where x > 0, else 0.0 (at 0 and for nan too); passes no
        gradient back (relu's derivative is x.relu().heaviside())."""
        return Value._node(heaviside_forward(self._data, 0.0, 0.0), HEAVISIDE, self, None, 0.0)

    def detached_max(self, other: Operand) -> Value:
        """max(self.data, other.data) as a node that passes no gradient back (softmax
        subtracts it from the logits so that no exp overflows)."""
        other = self._operand(other, "detached_max", False)
        return Value._node(detached_max_forward(self._data, other._data, 0.0), DETACHED_MAX, self, other, 0.0)

    # ---- composites, built from the ops above exactly as micrograd builds them -------
    def __neg__(self) -> Value:  # -self
        return self * -1

    def __radd__(self, other: Operand) -> Value:  # other + self
        return self + self._operand(other, "+", True)

    def __sub__(self, other: Operand) -> Value:  # self - other
        if type(other) is Value:
            return self + (-other)
        c = self._operand(other, "-", False)._data
        return self + (-c)

    def __rsub__(self, other: Operand) -> Value:  # other - self
        c = self._operand(other, "-", True)
        return (-self) + c

    def __rmul__(self, other: Operand) -> Value:  # other * self
        return self * self._operand(other, "*", True)

    def __truediv__(self, other: Operand) -> Value:  # self / other
        if type(other) is Value:
            if other._data == 0.0:
                raise division_error()
            return self * other**-1
        c = self._operand(other, "/", False)._data
        if c == 0.0:
            raise division_error()
        return self * float_pow(c, -1.0)

    def __rtruediv__(self, other: Operand) -> Value:  # other / self
        c = self._operand(other, "/", True)
        if self._data == 0.0:
            raise division_error()
        return self**-1 * c

    def __rpow__(self, other: object) -> Value:
        raise operand_error("** or pow()", other, self)

    # ---- backward --------------------------------------------------------------------
    def backward(self) -> None:
        """Set this node's grad to 1.0 and accumulate gradients into the whole graph.

        Iterative (no recursion limit). Grads are *added to*: a second call adds the
        same gradients again, as in micrograd, so zero them between passes.
        """
        _backward_through(self, _topological_order(self))

    # ---- attributes ------------------------------------------------------------------
    @property
    def data(self) -> float:
        """The node's value (a float; ints, bools and numpy scalars are converted)."""
        return self._data

    @data.setter
    def data(self, value: Number) -> None:
        self._data = to_float(value, "Value data")

    @property
    def grad(self) -> float:
        """d(output)/d(this node), accumulated by ``backward()`` (a float)."""
        return self._grad

    @grad.setter
    def grad(self, value: Number) -> None:
        self._grad = to_float(value, "Value grad")

    @property
    def label(self) -> str:
        """A name for drawing and debugging (a str, '' by default)."""
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        if type(value) is not str:
            raise TypeError(f"label must be a str, not {type(value).__name__}")
        self._label = value

    @property
    def _op(self) -> str:
        """The op that made this node, as micrograd names it ('+', '*', '**2', 'ReLU')."""
        return self._opname

    @property
    def _prev(self) -> Tuple[Value, ...]:
        """The distinct children, in operand order (a tuple)."""
        return self._kids

    @property
    def _backward(self) -> Callable[[], None]:
        """This node's local backward step as a no-argument callable (micrograd's API).

        Assign a callable to give a node a custom backward (as the lecture does).
        """
        if self._user is not None:
            return self._user  # type: ignore[no-any-return]
        rule = BACKWARD[self._code]
        return _noop if rule is None else partial(rule, self)

    @_backward.setter
    def _backward(self, fn: Callable[[], None]) -> None:
        if not callable(fn):
            raise TypeError(f"_backward must be callable, not {type(fn).__name__}")
        self._user = fn
        self._code = CUSTOM

    def __repr__(self) -> str:
        return f"Value(data={self._data}, grad={self._grad})"

    def _repr_svg_(self) -> Optional[str]:
        """This Value's graph as SVG, for Jupyter (None when it cannot be drawn, e.g. no
        Graphviz: Jupyter then shows the repr). See cmicrograd.viz.repr_svg."""
        from ..viz import repr_svg

        return repr_svg(self)

    def __reduce__(self) -> Tuple[Any, ...]:
        if self._code == LEAF:
            attrs = self.__dict__
            return (_rebuild_leaf, (self._data, self._grad, self._label) + ((dict(attrs),) if attrs else ()))
        return (_rebuild, _flatten(self))


_new = object.__new__


def _leaf(data: float) -> Value:
    out = _new(Value)
    out._data = data
    out._grad = 0.0
    out._a = out._b = None
    out._k = 0.0
    out._code = LEAF
    out._opname = ""
    out._kids = ()
    out._label = ""
    out._user = None
    return out


def _backward_through(root: Value, topo: List[Value]) -> None:
    """Seed root's grad with 1.0 and apply every node's backward rule, in reverse
    topological order (``topo`` lists the graph under root, children first)."""
    root._grad = 1.0
    for v in reversed(topo):
        if v._user is not None:
            v._user()
        else:
            rule = BACKWARD[v._code]
            if rule is not None:
                rule(v)


def _distinct_children(children: Iterable[Any], cls: type) -> Tuple[Any, ...]:
    """``_children`` as a tuple of distinct Values in the given order."""
    if isinstance(children, (str, bytes)) or not hasattr(children, "__iter__"):
        raise TypeError(
            f"_children must be an iterable of Values, not {type(children).__name__}"
        )
    out: List[Any] = []
    for c in children:
        if type(c) is not cls:
            raise TypeError(f"_children must contain only Values, not {type(c).__name__}")
        if not any(c is seen for seen in out):
            out.append(c)
    return tuple(out)


def _topological_order(root: Value) -> List[Value]:
    """Nodes reachable from ``root``, children before parents.

    The exact order micrograd's recursive ``build_topo`` yields when children are
    visited in ``_prev`` order, computed with an explicit stack.
    """
    topo: List[Value] = []
    visited = {root}
    stack = [(root, iter(root._kids))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if child not in visited:
                visited.add(child)
                stack.append((child, iter(child._kids)))
                break
        else:
            stack.pop()
            topo.append(node)
    return topo


def _node_parts(v: Value) -> Tuple[int, Tuple[Any, ...], float]:
    """(op code, operands, k) of node v: what grad() differentiates (autograd.py)."""
    if v._code == LEAF:
        return (LEAF, (), 0.0)
    if v._code == CUSTOM:
        return (CUSTOM, v._kids, 0.0)
    if v._code in BINARY:
        return (v._code, (v._a, v._b), v._k)
    return (v._code, (v._a,), v._k)


# ---- helpers for the nn library (the compiled engine runs them as C loops) ----------
def weighted_sum(w: Sequence[Any], x: Sequence[Any], b: Any) -> Any:
    """``b + w[0]*x[0] + w[1]*x[1] + ...``, built exactly as micrograd's Neuron builds it
    (``sum((wi*xi for wi, xi in zip(w, x)), b)``), but w and x must have equal lengths."""
    if len(w) != len(x):
        raise ValueError(f"weighted_sum needs as many inputs as weights: {len(w)} weights, {len(x)} inputs")
    act = b
    for wi, xi in zip(w, x):
        act = act + wi * xi
    return act


def layer_forward(neurons: Sequence[Any], x: Sequence[Any]) -> List[Any]:
    """Every neuron's output on input x: ``activation(weighted_sum(n.w, x, n.b))``,
    neuron by neuron (what ``Layer`` computes; the activation is a method name, or
    'linear' for none)."""
    out = []
    for n in neurons:
        act = weighted_sum(n.w, x, n.b)
        out.append(act if n.activation == "linear" else getattr(act, n.activation)())
    return out


def zero_grad(values: Iterable[Value]) -> None:
    """Set every value's grad to 0.0."""
    for v in values:
        v.grad = 0.0


def sgd_update(values: Iterable[Value], lr: float) -> None:
    """``v.data -= lr * v.grad`` for every value (plain SGD)."""
    lr = to_float(lr, "the learning rate")
    for v in values:
        if type(v) is not Value:
            raise TypeError(f"sgd_update needs Values, not {type(v).__name__}")
        v._data -= lr * v._grad


def set_data(values: Sequence[Value], data: Sequence[float]) -> None:
    """``values[i].data = data[i]`` for every i (equal lengths)."""
    if len(values) != len(data):
        raise ValueError(f"set_data needs as many numbers as Values: {len(values)} Values, {len(data)} numbers")
    for v, x in zip(values, data):
        if type(v) is not Value:
            raise TypeError(f"set_data needs Values, not {type(v).__name__}")
        v._data = to_float(x, "Value data")


# ---- compile once, replay many: the same API as the compiled engine's tape ---------
class CompiledGraph:
    """A recorded graph, replayed in C: ``forward()`` recomputes every non-leaf node from
    the leaves' current data, ``backward()`` does what ``output.backward()`` would.

    Make one with ``cmicrograd.compile(output)``. Python control flow that ran while the
    graph was built (an ``if`` on ``.data``) is frozen into it, as with torch.jit.trace;
    relu and the other ops are evaluated anew at every replay. Compiled with an
    optimizer, calling it runs a whole training step.

    A batch of identical examples (a loss that sums one small graph per example) is
    replayed one example per SIMD lane, and on ``threads`` threads; ``lanes`` is how many
    examples run side by side (0: the graph is not such a batch, or ``lanes=False``).
    Every choice gives the same bits.

    One call at a time: calling it while another thread replays or records it raises
    RuntimeError (threads each replaying their own graph run at once).
    """

    def __init__(self, output: Value, optimizer: Any = None, *, threads: int = 1,
                 lanes: bool = True) -> None:
        if type(output) is not Value:
            raise TypeError(f"compile() needs a Value, not {type(output).__name__}")
        from .._engines import check_lanes, check_optimizer, check_threads

        self.output = output
        self.optimizer = check_optimizer(optimizer, Value)
        self._threads = check_threads(threads)
        check_lanes(lanes)  # the pure engine replays node by node: it has no lanes
        self._topo = _topological_order(output)
        self._ops = [v for v in self._topo if v._code != LEAF and (v._code != CUSTOM or v._kids)]
        for v in self._ops:
            if v._code == CUSTOM and not hasattr(v._user, "recompute"):
                raise TypeError(
                    f"cannot compile a node with op {v._opname!r}: it has a hand-written "
                    "_backward and no forward rule to replay; define it as a "
                    "cmicrograd.function.Function instead")
        self._forward_failed = False
        self.recordings = 1  # this engine never needs to record again
        # one call at a time, as the compiled engine's replay (which releases the GIL):
        # a call while another thread replays raises instead of mixing the two
        self._busy = threading.Lock()

    def _enter(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this compiled graph is being replayed in another thread")

    def forward(self) -> float:
        """Recompute every non-leaf node from the leaves' current data, reset the
        non-leaf grads to 0.0, and return the output's data."""
        self._enter()
        try:
            self._forward_failed = True
            for v in self._ops:
                if v._code == CUSTOM:
                    v._data = v._user.recompute()
                else:
                    rule = FORWARD[v._code]
                    assert rule is not None  # every non-leaf, non-custom op has a forward rule
                    v._data = rule(v._a._data, 0.0 if v._b is None else v._b._data, v._k)
                v._grad = 0.0
            self._forward_failed = False
        finally:
            self._busy.release()
        return self.output._data

    def backward(self) -> None:
        """What ``output.backward()`` would do on the graph as the last forward built
        it: set the output's grad to 1.0 and accumulate into every recorded node."""
        self._enter()
        try:
            if self._forward_failed:
                raise RuntimeError("the last forward() failed: call forward() again first")
            _backward_through(self.output, self._topo)
        finally:
            self._busy.release()

    def __call__(self) -> float:
        """One training step: ``forward()``, the optimizer's ``zero_grad()``,
        ``backward()``, the optimizer's ``step()``. Returns the loss (the output's data
        before the update)."""
        if self.optimizer is None:
            raise TypeError("this compiled graph has no optimizer: compile(loss, optimizer=opt) "
                            "to call it as a training step, or call forward() and backward()")
        value = self.forward()
        self.optimizer.zero_grad()
        self.backward()
        self.optimizer.step()
        return value

    @property
    def threads(self) -> int:
        """How many threads a replay uses (settable). The lanes are split between them;
        the result is the same bits for any number."""
        return self._threads

    @threads.setter
    def threads(self, value: int) -> None:
        from .._engines import check_threads

        self._threads = check_threads(value)

    @property
    def lanes(self) -> int:
        """How many examples a replay runs side by side, one per SIMD lane (0: none)."""
        return 0

    @property
    def num_nodes(self) -> int:
        """How many recorded nodes and constants (slots) a replay walks."""
        return len(self._topo)

    def __repr__(self) -> str:
        return f"<cmicrograd CompiledGraph: {len(self._topo)} nodes, output={self.output!r}>"


def compile(output: Value, optimizer: Any = None, *, threads: int = 1,
            lanes: bool = True) -> CompiledGraph:
    """Record the graph that produced ``output`` for fast replay (see CompiledGraph)."""
    return CompiledGraph(output, optimizer, threads=threads, lanes=lanes)


# ---- pickling: a graph as packed arrays, so deep graphs never recurse ---------------
# The same layout as the compiled engine's (version 1): the node count; per node four
# doubles (data, grad, k, kgrad), two bytes (op code, flags) and two int64 operand
# indices; the leaves other than the root as objects, so parameters keep their identity
# within one pickle; and the rare parts in a dict {index: (label, op string, custom
# backward, CUSTOM children)}. Bytes are immutable, so deepcopy copies only the leaves.
PICKLE_FORMAT = 1
STORED_CODES = frozenset(op.code for op in _ops.OPS if op.kind != "internal")


def _flatten(root: Value) -> Tuple[Any, ...]:
    topo = _topological_order(root)
    index = {id(v): i for i, v in enumerate(topo)}
    nums = array("d")
    meta = array("B")
    kids = array("q")
    leaves: List[Tuple[int, Value]] = []
    extras: Dict[int, Any] = {}
    for i, v in enumerate(topo):
        nums.extend((v._data, v._grad, v._k, 0.0))
        meta.extend((v._code, 0))
        if v._code == LEAF or v._code == CUSTOM:
            kids.extend((-1, -1))
        else:
            kids.extend((index[id(v._a)], -1 if v._b is None else index[id(v._b)]))
        if v._code == LEAF and v is not root:
            leaves.append((i, v))
        elif v._label or v._code in (POW, CUSTOM) or v._user is not None or v.__dict__:
            children = tuple(index[id(c)] for c in v._kids) if v._code == CUSTOM else None
            attrs = (dict(v.__dict__),) if v.__dict__ else ()
            extras[i] = (v._label, v._opname if v._code in (POW, CUSTOM) else None, v._user, children) + attrs
    return (PICKLE_FORMAT, len(topo), nums.tobytes(), meta.tobytes(), kids.tobytes(), leaves, extras)


def _rebuild_leaf(data: float, grad: float, label: str, attrs: Optional[Dict[str, Any]] = None) -> Value:
    v = Value(data, (), "", label)
    v._grad = to_float(grad, "Value grad")
    if attrs:
        v.__dict__.update(attrs)
    return v


def _rebuild(version: int, n: int, nums_b: bytes, meta_b: bytes, kids_b: bytes,
             leaves: List[Tuple[int, Value]], extras: Dict[int, Any]) -> Value:
    """The graph ``_flatten`` described; returns its root."""
    nums, meta, kids = array("d"), array("B"), array("q")
    nums.frombytes(nums_b)
    meta.frombytes(meta_b)
    kids.frombytes(kids_b)
    if version != PICKLE_FORMAT or n < 1 or (len(nums), len(meta), len(kids)) != (4 * n, 2 * n, 2 * n):
        raise ValueError("not a cmicrograd graph pickle (or one from another version)")
    nodes: List[Any] = [None] * n
    for i, leaf in leaves:
        if type(leaf) is not Value or not 0 <= i < n or nodes[i] is not None:
            raise ValueError("a graph pickle's leaves must be distinct Values at valid positions")
        nodes[i] = leaf
    for i in range(n):
        if nodes[i] is not None:
            continue
        code = meta[2 * i]
        if code not in STORED_CODES:
            raise ValueError(f"bad op code {code} in a graph pickle")
        extra = extras.get(i, ("", None, None, None))
        if type(extra) is not tuple or len(extra) not in (4, 5):
            raise ValueError("a graph pickle's node extras must be tuples of 4 or 5 items")
        label, op, user, children = extra[:4]
        attrs = extra[4] if len(extra) == 5 else None
        if code == LEAF or code == CUSTOM:
            v = Value(0.0, [nodes[j] for j in children] if children else (), op or "", label)
        else:
            a, b = kids[2 * i], kids[2 * i + 1]
            if not 0 <= a < i or b >= i or (code in BINARY and b < 0):
                raise ValueError("a graph pickle's operands must come before their node")
            v = Value._node(0.0, code, nodes[a], nodes[b] if b >= 0 else None, nums[4 * i + 2],
                            op if op is not None else OP_SYMBOLS[code])
            v._label = label
        v._data = nums[4 * i]
        v._grad = nums[4 * i + 1]
        if user is not None:
            v._backward = user
        if attrs:
            v.__dict__.update(attrs)
        nodes[i] = v
    root: Value = nodes[n - 1]
    return root
