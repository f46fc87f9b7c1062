# The Value class and its ops, laid out as cmicrograd/reference/engine.py is.
#
# Each op has a method (or operator) that builds its node, a forward rule that computes
# the node's data from its operands' data, and a backward rule that adds its local
# derivative into its operands' grads. The rules are at the end of this file, forward
# and backward side by side, in the order of the op table (cmicrograd/_ops.py); each
# does exactly the float operations the reference's rule does, in the same order, so
# both engines give the same bits (setup.py turns off FMA contraction and pow rewriting).
#
# A number operand (x * 1.0) is kept inline in the node (k, kgrad) instead of as a
# second Value; _prev turns it into a real constant Value the first time someone asks,
# so users still see micrograd's graph.


@cython.final
cdef class Value:
    """A scalar and its gradient: one node of a computation graph.

    ``data`` and ``grad`` are always Python floats. Values hash and compare by
    identity. ``backward()`` accumulates into ``grad``: zero the grads between
    calls (``Module.zero_grad()``) unless you mean to sum two passes.
    """
    cdef Node n
    # The record slot (node.pxi): NULL, a _Record or a dict. Cython must never read or
    # write it by name (it would take NULL for an object): use record_of and friends.
    cdef object _record_slot

    # numpy defers to our reflected operators: np.float64(2) * v is a Value.
    __array_ufunc__ = None

    def __init__(self, data, _children=(), _op="", label=""):
        cdef double d = _to_float(data, "Value data")
        children = _distinct_children(_children)
        if type(_op) is not str:
            raise TypeError(f"_op must be a str, not {type(_op).__name__}")
        if type(label) is not str:
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        reveal_to_change(&self.n)
        _clear_operands(self)  # __init__ may run again on an existing Value
        self.n.data = d
        self.n.grad = 0.0
        self.n.k = 0.0
        self.n.kgrad = 0.0
        self.n.flags = 0
        self.n.tape = 0
        cdef _Record rec
        if children or _op:
            rec = _Record.__new__(_Record)
            rec.label = label
            rec.op = _op
            rec.children = children
            set_record(self, rec)
            self.n.code = CUSTOM
        else:
            self.n.code = LEAF
            if cm_gc_is_tracked(<PyObject*>self):
                PyObject_GC_UnTrack(<PyObject*>self)
            if label:
                _make_record(self).label = label

    # ---- the ops, in the order of the op table ---------------------------------------
    def __add__(self, other):
        if type(other) is Value:
            return _binary(ADD, self, <Value>other)
        return _with_constant(ADD, self, _operand(other, "+", self, False))

    def __mul__(self, other):
        if type(other) is Value:
            return _binary(MUL, self, <Value>other)
        return _with_constant(MUL, self, _operand(other, "*", self, False))

    def __pow__(self, other, modulo=None):
        if modulo is not None:
            raise TypeError("pow() with a modulus is not supported for Value")
        return _power(self, other)

    def relu(self):
        """max(0, x); its gradient at 0 is 0 (micrograd's ReLU)."""
        return _unary(RELU, self, 0.0)

    def tanh(self):
        """The hyperbolic tangent; saturates to +-1.0 for large inputs."""
        return _unary(TANH, self, 0.0)

    def exp(self):
        """e**x; OverflowError if the result is too large for a float."""
        return _unary(EXP, self, 0.0)

    def log(self):
        """The natural logarithm; ValueError for x <= 0."""
        return _unary(LOG, self, 0.0)

    def sigmoid(self):
        """1 / (1 + e**-x), computed without overflow for any x."""
        return _unary(SIGMOID, self, 0.0)

    def reciprocal(self):
        """1 / x; ZeroDivisionError for x == 0."""
        return _unary(RECIPROCAL, self, 0.0)

    def heaviside(self):
        """The unit step: 1.0 where x > 0, else 0.0 (at 0 and for nan too); passes no
        gradient back (relu's derivative is x.relu().heaviside())."""
        return _unary(HEAVISIDE, self, 0.0)

    def detached_max(self, other):
        """max(self.data, other.data) as a node that passes no gradient back (softmax
        subtracts it from the logits so that no exp overflows)."""
        if type(other) is Value:
            return _binary(DETACHED_MAX, self, <Value>other)
        return _with_constant(DETACHED_MAX, self, _operand(other, "detached_max", self, False))

    # ---- composites, built from the ops above exactly as micrograd builds them -------
    def __neg__(self):  # -self is self * -1
        return _with_constant(MUL, self, -1.0)

    def __radd__(self, other):  # other + self
        return _with_constant(ADD, self, _operand(other, "+", self, True))

    def __sub__(self, other):  # self - other is self + (-other)
        if type(other) is Value:
            return _binary(ADD, self, _with_constant(MUL, <Value>other, -1.0))
        return _with_constant(ADD, self, -_operand(other, "-", self, False))

    def __rsub__(self, other):  # other - self is (-self) + other
        cdef double c = _operand(other, "-", self, True)
        return _with_constant(ADD, _with_constant(MUL, self, -1.0), c)

    def __rmul__(self, other):  # other * self
        return _with_constant(MUL, self, _operand(other, "*", self, True))

    def __truediv__(self, other):  # self / other is self * other**-1
        cdef int err = 0
        cdef double c, inv
        if type(other) is Value:
            if (<Value>other).n.data == 0.0:
                raise _numbers.division_error()
            return _binary(MUL, self, _power(<Value>other, -1))
        c = _operand(other, "/", self, False)
        if c == 0.0:
            raise _numbers.division_error()
        inv = float_pow(c, -1.0, &err)
        if err:
            raise_math_error(err, c, -1.0)
        return _with_constant(MUL, self, inv)

    def __rtruediv__(self, other):  # other / self is self**-1 * other
        cdef double c = _operand(other, "/", self, True)
        if self.n.data == 0.0:
            raise _numbers.division_error()
        return _with_constant(MUL, _power(self, -1), c)

    def __rpow__(self, other, modulo=None):
        raise _numbers.operand_error("** or pow()", other, self)

    # ---- backward --------------------------------------------------------------------
    def backward(self):
        """Set this node's grad to 1.0 and accumulate gradients into the whole graph.

        Iterative (no recursion limit). Grads are *added to*: a second call adds the
        same gradients again, as in micrograd, so zero them between passes.
        """
        backward_from(&self.n)

    # ---- attributes ------------------------------------------------------------------
    @property
    def data(self):
        """The node's value (a float; ints, bools and numpy scalars are converted)."""
        return self.n.data

    @data.setter
    def data(self, value):
        self.n.data = _to_float(value, "Value data")

    @property
    def grad(self):
        """d(output)/d(this node), accumulated by ``backward()`` (a float)."""
        return self.n.grad

    @grad.setter
    def grad(self, value):
        self.n.grad = _to_float(value, "Value grad")

    @property
    def label(self):
        """A name for drawing and debugging (a str, '' by default)."""
        rec = record_of(self)
        return "" if rec is None else (<_Record>rec).label

    @label.setter
    def label(self, value):
        if type(value) is not str:
            raise TypeError(f"label must be a str, not {type(value).__name__}")
        if value or record_of(self) is not None:
            _make_record(self).label = value

    @property
    def __dict__(self):
        """The Value's own attributes (``v.m = 0.0`` sets one), as any Python object's."""
        return _make_record(self)

    @property
    def _op(self):
        """The op that made this node, as micrograd names it ('+', '*', '**2', 'ReLU')."""
        cdef int code = self.n.code
        rec = record_of(self)
        if code == CUSTOM:
            return (<_Record>rec).op if rec is not None else ""
        if code == POW:
            if rec is not None and (<_Record>rec).op is not None:
                return (<_Record>rec).op
            if self.n.flags & INT_EXP:
                return f"**{<long long>self.n.k}"
            return f"**{self.n.k!r}"
        return OP_SYMBOLS[code]

    @property
    def _prev(self):
        """The distinct children, in operand order (a tuple)."""
        cdef int code = self.n.code
        if code == LEAF:
            return ()
        reveal_children(&self.n)  # a compiled graph may hold newer values, or restructure
        if code == CUSTOM:
            rec = record_of(self)
            if rec is not None and (<_Record>rec).children is not None:
                return (<_Record>rec).children
            return ()
        if code == DOT:
            composite_expand(self)  # looking inside a fused sum expands it
            code = self.n.code
        a = _value(self.n.a)
        if binary_op(code):
            if self.n.flags & CONST_B:
                _materialize_constant(self)
            if self.n.b != self.n.a:
                return (a, _value(self.n.b))
        return (a,)

    @property
    def _backward(self):
        """This node's local backward step as a no-argument callable (micrograd's API).

        Assign a callable to give a node a custom backward (as the lecture does).
        """
        rec = record_of(self)
        if rec is not None and (<_Record>rec).backward is not None:
            return (<_Record>rec).backward
        step = _LocalBackward.__new__(_LocalBackward)
        (<_LocalBackward>step).node = self
        return step

    @_backward.setter
    def _backward(self, fn):
        if not callable(fn):
            raise TypeError(f"_backward must be callable, not {type(fn).__name__}")
        cdef _Record rec = _make_custom(self)
        rec.backward = fn

    def __repr__(self):
        return f"Value(data={self.n.data}, grad={self.n.grad})"

    def _repr_svg_(self):
        """This Value's graph as SVG, for Jupyter (None when it cannot be drawn, e.g. no
        Graphviz: Jupyter then shows the repr). See cmicrograd.viz.repr_svg."""
        from cmicrograd.viz import repr_svg
        return repr_svg(self)

    def __reduce__(self):
        return reduce_value(self)


@cython.final
cdef class _LocalBackward:
    """A node's built-in local backward step, callable as micrograd's ``_backward``."""
    cdef Value node

    def __call__(self):
        cdef int err
        if self.node.n.code == CUSTOM or self.node.n.code == LEAF:
            return  # nothing to propagate (a custom node's callable is returned as is)
        reveal_children(&self.node.n)
        if self.node.n.code == DOT:
            composite_expand(self.node)
        err = backward_step(&self.node.n)
        if err:
            raise_backward_error(err, &self.node.n)


cdef tuple OP_SYMBOLS = tuple([_ops.BY_CODE[c].symbol if c in _ops.BY_CODE else ""
                               for c in range(256)])   # every code a node can hold


# ---- numbers in ------------------------------------------------------------------------
cdef inline double _to_float(object x, str what) except? -1.0:
    """x as a C double under the shared number contract (cmicrograd._numbers)."""
    if type(x) is float:
        return PyFloat_AS_DOUBLE(x)
    if type(x) is int:
        return PyLong_AsDouble(x)  # OverflowError: int too large to convert to float
    return PyFloat_AS_DOUBLE(_numbers.to_float(x, what))


cdef inline double _operand(object other, str op, Value self, bint reflected) except? -1.0:
    """A number operand of ``op`` as a double, or the TypeError for ``self op other``."""
    if type(other) is float:
        return PyFloat_AS_DOUBLE(other)
    if type(other) is int:
        return PyLong_AsDouble(other)
    if not _numbers.is_number(other):
        if reflected:
            raise _numbers.operand_error(op, other, self)
        raise _numbers.operand_error(op, self, other)
    return PyFloat_AS_DOUBLE(_numbers.to_float(other, "operand"))


cdef tuple _distinct_children(object children):
    """``_children`` as a tuple of distinct Values in the given order."""
    if isinstance(children, (str, bytes)) or not hasattr(children, "__iter__"):
        raise TypeError(
            f"_children must be an iterable of Values, not {type(children).__name__}")
    out = []
    for c in children:
        if type(c) is not Value:
            raise TypeError(f"_children must contain only Values, not {type(c).__name__}")
        if not any(c is seen for seen in out):
            out.append(c)
    return tuple(out)


# ---- building nodes ------------------------------------------------------------------
cdef inline Value _binary(int code, Value a, Value b):
    """a <op> b for two Values (a binary op: ADD, MUL, ...)."""
    cdef int err = 0
    cdef double d = forward_rule(code, a.n.data, b.n.data, 0.0, &err)
    cdef Value out = _new_node(d, code, a, 0.0)
    Py_INCREF(b)
    out.n.b = &b.n
    return out


cdef inline Value _with_constant(int code, Value a, double c):
    """a <op> c for a number c (a binary op), c kept inline as the constant operand."""
    cdef int err = 0
    cdef Value out = _new_node(forward_rule(code, a.n.data, c, 0.0, &err), code, a, c)
    out.n.flags = CONST_B
    return out


cdef Value _unary(int code, Value a, double k):
    cdef int err = 0
    cdef double d = forward_rule(code, a.n.data, 0.0, k, &err)
    if err:
        raise_math_error(err, a.n.data, k)
    return _new_node(d, code, a, k)


cdef Value _power(Value a, object exponent):
    """a ** exponent; the exponent must be an int or float (numpy scalars included)."""
    cdef double k
    cdef Value out
    if type(exponent) is int:
        k = PyLong_AsDouble(exponent)
    elif type(exponent) is float:
        k = PyFloat_AS_DOUBLE(exponent)
    elif _numbers.is_number(exponent):
        k = PyFloat_AS_DOUBLE(_numbers.to_float(exponent, "the exponent"))
    else:
        raise _numbers.exponent_error(exponent)
    out = _unary(POW, a, k)
    if type(exponent) is int and -9007199254740992.0 <= k <= 9007199254740992.0:
        out.n.flags = INT_EXP
    elif type(exponent) is not float:  # keep micrograd's f'**{other}' spelling
        _make_record(out).op = f"**{exponent}"
    return out


cdef int _materialize_constant(Value v) except -1:
    """Turn v's inline constant operand into a real leaf Value (for ``_prev``)."""
    reveal_to_change(&v.n)
    cdef Value c = _new_value()
    c.n.data = v.n.k
    c.n.grad = v.n.kgrad
    Py_INCREF(c)
    v.n.b = &c.n
    v.n.flags &= ~CONST_B
    v.n.k = 0.0
    v.n.kgrad = 0.0
    return 0


cdef _Record _make_custom(Value v):
    """Turn v into a CUSTOM node (same children, same op string), for a user backward."""
    if v.n.code == CUSTOM:
        return _make_record(v)
    children = v._prev
    op = v._op
    cdef _Record rec = _make_record(v)
    rec.children = children
    rec.op = op
    v.n.code = CUSTOM
    return rec


# ---- the rules, forward next to backward, one op after the other ---------------------
# forward:  out.data from the operands' data a, b (k: POW's exponent); errors in *err
# backward: add out's local derivative times its grad g into the operands' grads
#           (ga, gb: the same address for a + a and a * a); out is the node's data
cdef inline double add_forward(double a, double b, double k, int* err) noexcept nogil:
    return a + b

cdef inline void add_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += g
    gb[0] += g


cdef inline double mul_forward(double a, double b, double k, int* err) noexcept nogil:
    return a * b

cdef inline void mul_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += b * g
    gb[0] += a * g


cdef inline double pow_forward(double a, double b, double k, int* err) noexcept nogil:
    return float_pow(a, k, err)

cdef inline void pow_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    cdef double p = float_pow(a, k - 1.0, err)
    if err[0] == 0:
        ga[0] += (k * p) * g


cdef inline double relu_forward(double a, double b, double k, int* err) noexcept nogil:
    return 0.0 if a < 0 else a

cdef inline void relu_backward(double a, double b, double k, double out, double g,
                               double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += (<double>(out > 0)) * g


cdef inline double tanh_forward(double a, double b, double k, int* err) noexcept nogil:
    return c_tanh(a)                     # saturates to +-1.0 instead of overflowing

cdef inline void tanh_backward(double a, double b, double k, double out, double g,
                               double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += (1.0 - float_pow(out, 2.0, err)) * g   # the lecture's (1 - t**2) * grad


cdef inline double exp_forward(double a, double b, double k, int* err) noexcept nogil:
    cdef double r = c_exp(a)
    if isinf(r) and isfinite(a):
        err[0] = ERR_EXP_RANGE
    return r

cdef inline void exp_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += out * g


cdef inline double log_forward(double a, double b, double k, int* err) noexcept nogil:
    if isnan(a):
        return a                         # as math.log: nan in, the same nan out
    if a > 0:
        return c_log(a)
    err[0] = ERR_LOG_DOMAIN
    return -1.0

cdef inline void log_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    if a == 0.0:
        err[0] = ERR_ZERO_DIV
        return
    ga[0] += (1.0 / a) * g                # Karpathy's engines: (1/x) * grad


cdef inline double sigmoid_forward(double a, double b, double k, int* err) noexcept nogil:
    cdef double e
    if a >= 0:                           # split at 0 so exp never overflows
        return 1.0 / (1.0 + c_exp(-a))
    e = c_exp(a)
    return e / (1.0 + e)

cdef inline void sigmoid_backward(double a, double b, double k, double out, double g,
                                  double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += (out * (1.0 - out)) * g


cdef inline double detached_max_forward(double a, double b, double k, int* err) noexcept nogil:
    return b if b > a else a             # as Python's max(a, b)

cdef inline void detached_max_backward(double a, double b, double k, double out, double g,
                                       double* ga, double* gb, int* err) noexcept nogil:
    pass                                 # no gradient passes


cdef inline double reciprocal_forward(double a, double b, double k, int* err) noexcept nogil:
    if a == 0.0:
        err[0] = ERR_ZERO_DIV
        return 0.0
    return 1.0 / a

cdef inline void reciprocal_backward(double a, double b, double k, double out, double g,
                                     double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += (-(out * out)) * g          # d(1/x)/dx = -(1/x)**2


cdef inline double heaviside_forward(double a, double b, double k, int* err) noexcept nogil:
    return 1.0 if a > 0 else 0.0         # relu's (out > 0)

cdef inline void heaviside_backward(double a, double b, double k, double out, double g,
                                    double* ga, double* gb, int* err) noexcept nogil:
    pass                                 # zero wherever it exists: no gradient passes


def _forward_rule(int code, double a, double b, double k):
    """The forward rule of op ``code`` (for the op-table tests)."""
    cdef int err = 0
    cdef double r = forward_rule(code, a, b, k, &err)
    if err:
        raise_math_error(err, a, k)
    return r


def _backward_rule(int code, double a, double b, double k, double out, double g):
    """The backward rule of op ``code`` from zero grads: (grad a, grad b)."""
    cdef int err = 0
    cdef double ga = 0.0, gb = 0.0
    backward_rule(code, a, b, k, out, g, &ga, &gb, &err)
    if err:
        raise_math_error(err, a, g)
    return ga, gb
