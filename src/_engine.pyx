# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True, auto_pickle=False
"""The compiled engine: micrograd's ``Value`` with its graph kept in C.

Same API, same graphs and the same bits as ``cmicrograd.reference.engine`` (the pure
twin, laid out in the same order). What differs is representation:

* A node is a C ``Node`` struct inside the ``Value`` object: data, grad, pointers to
  its operands, an op code and flags. Backward is a switch over op codes (rules.pxi),
  not a Python closure per node.
* A number operand (``x * 1.0``) is stored inline in the node (``k``/``kgrad``) rather
  than as a second object; ``_prev`` turns it into a real constant ``Value`` the first
  time someone asks for it, so users still see micrograd's graph.
* Nodes are not tracked by the cyclic GC: their operands are fixed at creation and
  nothing can point back. Only a node holding a user callable (a custom ``_backward``,
  a ``Function``) is tracked, because a closure can refer to the node itself.
* The topological sort uses an explicit stack and a visited bit in each node, and
  freeing a graph is iterative (a deferred-release stack), so depth is unlimited.
"""

cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cpython.long cimport PyLong_AsDouble
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.object cimport PyTypeObject, destructor
from libc.stdint cimport uint8_t, uintptr_t, int32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset

cdef extern from "Python.h":
    PyTypeObject PyFloat_Type
    void _incref "Py_INCREF" (PyObject*)
    ctypedef struct PyFloatObject:
        double ob_fval
    Py_ssize_t _refcount "Py_REFCNT" (PyObject*)
    void PyObject_GC_Track(void*)
    void PyObject_GC_UnTrack(void*)
    void PyObject_GC_Del(void*)
    PyObject* PyObject_Init(PyObject*, PyTypeObject*)

from cmicrograd import _numbers

__all__ = ["Value", "weighted_sum", "layer_forward", "zero_grad", "sgd_update", "set_data",
           "compile", "CompiledGraph"]

# ---- op codes (the same numbers in cmicrograd/reference/engine.py) ----------------
cdef enum:
    LEAF = 0
    ADD = 1
    MUL = 2
    POW = 3
    RELU = 4
    TANH = 5
    EXP = 6
    LOG = 7
    SIGMOID = 8
    CUSTOM = 9
    DOT = 10      # internal: a fused weighted sum (dot.pxi); looks like '+' from Python

OP_NAMES = ("", "+", "*", "**", "ReLU", "tanh", "exp", "log", "sigmoid", "")

# ---- node flags --------------------------------------------------------------------
cdef enum:
    VISITED = 1   # set by a topological sort; cleared before control returns to Python
    CONST_B = 2   # operand b is the inline constant (k, kgrad), not a Value
    INT_EXP = 4   # POW: the exponent was a Python int; _op prints it as one
    TAPED = 8     # recorded by a CompiledGraph and hidden there: its Value may be stale
    RECORDED = 16 # recorded by a CompiledGraph (hidden or not), see tape.pxi

# ---- tags on entries of the sort's stack and topological order ------------------------
# A Node* is 8-byte aligned, which leaves three low bits. In the stack, CHILDREN_DONE
# marks a node whose children are all done. A DOT node's step j takes two entries,
# (j << 3 | INDEX_TAG) and then (node | STEP_TAG), on the stack and in the order alike.
cdef enum:
    CHILDREN_DONE = 1
    STEP_TAG = 2
    INDEX_TAG = 4
    TAG_MASK = 7

# what _topological_sort met
cdef enum:
    FOUND_CUSTOM = 1
    FOUND_TAPED = 2

include "rules.pxi"


# ---- the node ----------------------------------------------------------------------
cdef struct Node:
    uint8_t code   # first: with a and b, what a topological sort reads, in one cache line
    uint8_t flags
    Node* a        # first operand; its Value holds one reference per pointer
    Node* b        # second operand (== a for a + a); NULL if unary or CONST_B
    double data
    double grad
    double k       # POW: the exponent; CONST_B: the constant operand's value
    double kgrad   # CONST_B: the constant operand's grad

# Where a Value's Node sits inside the object (set at import), to go from a Node* back
# to its Value without reference counting on the hot paths.
cdef Py_ssize_t NODE_OFFSET = 0

cdef inline PyObject* _obj(Node* p) noexcept nogil:
    return <PyObject*>(<char*>p - NODE_OFFSET)

cdef inline Node* _node_of_item(PyObject* item) noexcept nogil:
    return <Node*>(<char*>item + NODE_OFFSET)

cdef inline Value _value(Node* p):
    """The Value that owns node ``p`` (a new reference)."""
    return <Value>_obj(p)


@cython.final
cdef class _Record:
    """What a node rarely needs: a custom node's children, op string and callables."""
    cdef public str label
    cdef public object op          # str, or None to derive it from the op code
    cdef public tuple children     # CUSTOM: the distinct children, in order
    cdef public object backward    # a user's no-argument backward callable, or None
    cdef public object function    # (Function subclass, ctx) for Function nodes, or None


@cython.final
cdef class Value:
    """A scalar and its gradient: one node of a computation graph.

    ``data`` and ``grad`` are always Python floats. Values hash and compare by
    identity. ``backward()`` accumulates into ``grad``: zero the grads between
    calls (``Module.zero_grad()``) unless you mean to sum two passes.
    """
    cdef Node n
    cdef object _extra   # None, a str label, or a _Record

    # numpy defers to our reflected operators: np.float64(2) * v is a Value.
    __array_ufunc__ = None

    def __init__(self, data, _children=(), _op="", label=""):
        cdef double d = _to_float(data, "Value data")
        children = _distinct_children(_children)
        if type(_op) is not str:
            raise TypeError(f"_op must be a str, not {type(_op).__name__}")
        if type(label) is not str:
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        _touch(&self.n)
        _clear_operands(self)  # __init__ may run again on an existing Value
        self.n.data = d
        self.n.grad = 0.0
        self.n.k = 0.0
        self.n.kgrad = 0.0
        self.n.flags = 0
        if children or _op:
            rec = _Record.__new__(_Record)
            rec.label = label
            rec.op = _op
            rec.children = children
            _set_record(self, rec)
            self.n.code = CUSTOM
        else:
            self._extra = label if label else None
            self.n.code = LEAF
            PyObject_GC_UnTrack(<PyObject*>self)

    # ---- forward rules, one per op (same order as rules.pxi) ------------------------
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
            return _binary(MUL, self, _power(<Value>other, -1))
        c = _operand(other, "/", self, False)
        inv = float_pow(c, -1.0, &err)
        if err:
            raise_math_error(err, c, -1.0)
        return _with_constant(MUL, self, inv)

    def __rtruediv__(self, other):  # other / self is self**-1 * other
        cdef double c = _operand(other, "/", self, True)
        return _with_constant(MUL, _power(self, -1), c)

    def __rpow__(self, other, modulo=None):
        raise _numbers.operand_error("** or pow()", other, self)

    # ---- backward --------------------------------------------------------------------
    def backward(self):
        """Set this node's grad to 1.0 and accumulate gradients into the whole graph.

        Iterative (no recursion limit). Grads are *added to*: a second call adds the
        same gradients again, as in micrograd, so zero them between passes.
        """
        cdef NodeArray topo
        cdef bint custom
        cdef int found
        _borrow_scratch(&topo)
        try:
            found = _topological_sort(&self.n, &topo)
            if found & FOUND_TAPED:
                _detach_tapes()  # hidden nodes of a compiled graph: bring their Values up to date
            custom = found & FOUND_CUSTOM
            if custom:
                # Python callbacks may look inside fused sums: expand them all first
                _clear_visited(topo.items, topo.n)
                _return_scratch(&topo)
                _expand_all(&self.n)
                _borrow_scratch(&topo)
                _topological_sort(&self.n, &topo)
            self.n.grad = 1.0
            if custom:
                _backward_with_callbacks(&topo)
            else:
                _backward_nodes(&topo)
        finally:
            _return_scratch(&topo)

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
        e = self._extra
        if e is None:
            return ""
        if type(e) is str:
            return e
        return (<_Record>e).label

    @label.setter
    def label(self, value):
        if type(value) is not str:
            raise TypeError(f"label must be a str, not {type(value).__name__}")
        if type(self._extra) is _Record:
            (<_Record>self._extra).label = value
        else:
            self._extra = value if value else None

    @property
    def _op(self):
        """The op that made this node, as micrograd names it ('+', '*', '**2', 'ReLU')."""
        cdef int code = self.n.code
        rec = self._extra if type(self._extra) is _Record else None
        if code == CUSTOM:
            return (<_Record>rec).op if rec is not None else ""
        if code == DOT:
            return "+"
        if code == POW:
            if rec is not None and (<_Record>rec).op is not None:
                return (<_Record>rec).op
            if self.n.flags & INT_EXP:
                return f"**{<long long>self.n.k}"
            return f"**{self.n.k!r}"
        return OP_NAMES[code]

    @property
    def _prev(self):
        """The distinct children, in operand order (a tuple)."""
        cdef int code = self.n.code
        if code == LEAF:
            return ()
        _reveal_children(&self.n)  # a compiled graph may hold newer values, or restructure
        if code == CUSTOM:
            if type(self._extra) is _Record:
                return (<_Record>self._extra).children
            return ()
        if code == DOT:
            _expand_dot(self)  # looking inside a fused sum expands it (dot.pxi)
            code = self.n.code
        a = _value(self.n.a)
        if code == ADD or code == MUL:
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
        if type(self._extra) is _Record and (<_Record>self._extra).backward is not None:
            return (<_Record>self._extra).backward
        step = _LocalBackward.__new__(_LocalBackward)
        (<_LocalBackward>step).node = self
        return step

    @_backward.setter
    def _backward(self, fn):
        if not callable(fn):
            raise TypeError(f"_backward must be callable, not {type(fn).__name__}")
        rec = _make_custom(self)
        rec.backward = fn

    def __repr__(self):
        return f"Value(data={self.n.data}, grad={self.n.grad})"

    def __reduce__(self):
        if self.n.code == LEAF:
            return (_rebuild_leaf, (self.n.data, self.n.grad, self.label))
        return (_rebuild, _flatten(self))


@cython.final
cdef class _LocalBackward:
    """A node's built-in local backward step, callable as micrograd's ``_backward``."""
    cdef Value node

    def __call__(self):
        cdef int err
        if self.node.n.code == CUSTOM or self.node.n.code == LEAF:
            return  # nothing to propagate (a custom node's callable is returned as is)
        _reveal_children(&self.node.n)
        if self.node.n.code == DOT:
            _expand_dot(self.node)
        err = _backward_step(&self.node.n)
        if err:
            _raise_backward_error(err, &self.node.n)


# ---- numbers in, numbers out ---------------------------------------------------------
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
cdef inline Value _new_node(double data, int code, Value a, double k):
    """A new node: every field set here (the hot path skips zeroing the memory first)."""
    cdef Value out = __cm_new_value_unset(VALUE_TYPE, EXTRA_OFFSET)
    out.n.code = code
    out.n.flags = 0
    Py_INCREF(a)
    out.n.a = &a.n
    out.n.b = NULL
    out.n.data = data
    out.n.grad = 0.0
    out.n.k = k
    out.n.kgrad = 0.0
    return out


cdef inline Value _binary(int code, Value a, Value b):
    """a <op> b for two Values (ADD or MUL)."""
    cdef int err = 0
    cdef double d = forward_rule(code, a.n.data, b.n.data, 0.0, &err)
    cdef Value out = _new_node(d, code, a, 0.0)
    Py_INCREF(b)
    out.n.b = &b.n
    return out


cdef inline Value _with_constant(int code, Value a, double c):
    """a <op> c for a number c (ADD or MUL), c kept inline as the constant operand."""
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
        rec = _make_record(out)
        rec.op = f"**{exponent}"
    return out


cdef void _materialize_constant(Value v) except *:
    """Turn v's inline constant operand into a real leaf Value (for ``_prev``)."""
    _touch(&v.n)
    cdef Value c = _new_value()
    c.n.data = v.n.k
    c.n.grad = v.n.kgrad
    Py_INCREF(c)
    v.n.b = &c.n
    v.n.flags &= ~CONST_B
    v.n.k = 0.0
    v.n.kgrad = 0.0


cdef _Record _make_record(Value v):
    """v's record, creating it (and keeping v's label) if it has none."""
    if type(v._extra) is _Record:
        return <_Record>v._extra
    rec = _Record.__new__(_Record)
    rec.label = v._extra if v._extra is not None else ""
    _set_record(v, rec)
    return rec


cdef inline void _set_record(Value v, _Record rec) except *:
    v._extra = rec
    # a record may hold a callable that refers back to v: let the GC see the cycle
    if not _gc_is_tracked(<PyObject*>v):
        PyObject_GC_Track(<PyObject*>v)


cdef extern from *:
    """
    static int __cm_gc_is_tracked(PyObject *o) { return PyObject_GC_IsTracked(o); }
    """
    bint _gc_is_tracked "__cm_gc_is_tracked" (PyObject*) noexcept


cdef _Record _make_custom(Value v):
    """Turn v into a CUSTOM node (same children, same op string), for a user backward."""
    if v.n.code == CUSTOM:
        return _make_record(v)
    children = v._prev
    op = v._op
    rec = _make_record(v)
    rec.children = children
    rec.op = op
    v.n.code = CUSTOM
    return rec


# ---- freeing graphs of any depth -----------------------------------------------------
# Releasing a node's operands can free them, which releases theirs, and so on: a chain
# of 10^6 nodes would recurse 10^6 deep in C. Instead, a dying node's last references
# to its operands go on a stack, and the outermost __dealloc__ frees them one by one.
cdef PyObject** _pending = NULL
cdef Py_ssize_t _n_pending = 0
cdef Py_ssize_t _cap_pending = 0
cdef bint _draining = False


cdef inline void _release(Node* p) noexcept:
    cdef PyObject* o = _obj(p)
    if _refcount(o) > 1 or not _push_pending(o):
        Py_DECREF(<object>o)  # not the last reference (or out of memory): free now


cdef bint _push_pending(PyObject* o) noexcept:
    """Hand our reference to o to the pending stack; False if out of memory."""
    global _pending, _n_pending, _cap_pending
    cdef PyObject** grown
    if _n_pending == _cap_pending:
        grown = <PyObject**>realloc(_pending, (2 * _cap_pending + 64) * sizeof(PyObject*))
        if grown == NULL:
            return False
        _pending = grown
        _cap_pending = 2 * _cap_pending + 64
    _pending[_n_pending] = o
    _n_pending += 1
    return True


# ---- allocating and freeing Values ----------------------------------------------------
# Values live in chunks laid out by value_alloc.h (tp_alloc/tp_free), which keeps nodes
# made one after the other next to each other in memory; see that file for why.
cdef extern from "value_alloc.h":
    int cm_alloc_init(Py_ssize_t basicsize)
    PyObject* cm_value_alloc(PyTypeObject* type, Py_ssize_t nitems)
    bint cm_is_tracked(PyObject* o) noexcept
    void cm_value_free(void* op)
    Py_ssize_t cm_trim()
    Py_ssize_t cm_bytes_held()

cdef extern from *:
    """
    static void __cm_install_allocator(PyTypeObject *t) {
        t->tp_alloc = cm_value_alloc;
        t->tp_free = cm_value_free;
    }
    """
    void __cm_install_allocator(PyTypeObject*)

cdef Py_ssize_t EXTRA_OFFSET = 0    # where the _extra field sits (set at import)
cdef PyTypeObject* VALUE_TYPE = NULL


cdef extern from *:
    """
    /* A new Value (a new reference, as Cython expects of an extern returning an
       object): untracked, its _extra field None, its node left unset (the hot path:
       the caller sets every field). */
    static PyObject *__cm_new_value_unset(PyTypeObject *type, Py_ssize_t extra_offset) {
        PyObject *o = cm_value_alloc_raw(type);
        if (o == NULL) return NULL;
        Py_INCREF(Py_None);
        *(PyObject **)((char *)o + extra_offset) = Py_None;
        return o;
    }

    /* The same with its node zeroed. */
    static PyObject *__cm_new_value(PyTypeObject *type, Py_ssize_t node_offset,
                                    Py_ssize_t extra_offset) {
        PyObject *o = __cm_new_value_unset(type, extra_offset);
        if (o == NULL) return NULL;
        memset((char *)o + node_offset, 0, (size_t)(extra_offset - node_offset));
        return o;
    }
    """
    Value __cm_new_value(PyTypeObject*, Py_ssize_t, Py_ssize_t)
    Value __cm_new_value_unset(PyTypeObject*, Py_ssize_t)


cdef inline Value _new_value():
    """A new, untracked Value with a zeroed node."""
    return __cm_new_value(VALUE_TYPE, NODE_OFFSET, EXTRA_OFFSET)


cdef void _value_dealloc(PyObject* o) noexcept:
    """The Value type's tp_dealloc: release operands and record without recursion,
    then give the slot back."""
    global _draining
    cdef bint outermost = not _draining
    cdef PyObject** extra_slot = <PyObject**>(<char*>o + EXTRA_OFFSET)
    cdef PyObject* extra = extra_slot[0]
    if cm_is_tracked(o):
        PyObject_GC_UnTrack(o)  # before any release can run the GC
    extra_slot[0] = NULL
    _draining = True
    if extra != NULL:
        if _refcount(extra) > 1 or <object>extra is None or not _push_pending(extra):
            Py_DECREF(<object>extra)
    _release_operands(_node_of_item(o), outermost)
    cm_value_free(o)


def _trim_memory():
    """Free the empty chunks kept for reuse; returns the bytes still held by Values."""
    cm_trim()
    return cm_bytes_held()


cdef void _release_operands(Node* n, bint outermost=True) noexcept:
    global _draining, _n_pending, _pending, _cap_pending
    cdef PyObject* o
    _draining = True
    if n.code == DOT:
        _dot_release(n)
    if n.a != NULL:
        _release(n.a)
    if n.b != NULL:
        _release(n.b)
    n.a = NULL
    n.b = NULL
    if outermost:
        while _n_pending:
            _n_pending -= 1
            o = _pending[_n_pending]
            Py_DECREF(<object>o)
        _draining = False
        if _cap_pending > 65536:  # don't keep a big stack around after a deep free
            free(_pending)
            _pending = NULL
            _cap_pending = 0


cdef void _clear_operands(Value v) noexcept:
    """Drop v's operands and record (for __init__ on an existing Value)."""
    if v.n.a != NULL or v.n.b != NULL:
        _release_operands(&v.n, not _draining)
    v._extra = None


# ---- topological order ---------------------------------------------------------------
cdef struct NodeArray:
    Node** items
    Py_ssize_t n
    Py_ssize_t cap
    Node** stack       # scratch for the sort: tagged pointers (low bit: children pushed)
    Py_ssize_t stack_n
    Py_ssize_t stack_cap

# One spare pair of buffers, reused by each sort unless a sort is already using it
# (a custom backward that calls backward() again gets fresh buffers).
cdef NodeArray _spare
cdef bint _spare_busy = False


cdef void _borrow_scratch(NodeArray* arr) noexcept:
    global _spare_busy
    if not _spare_busy:
        _spare_busy = True
        arr[0] = _spare
    else:
        arr.items = NULL
        arr.cap = 0
        arr.stack = NULL
        arr.stack_cap = 0
    arr.n = 0
    arr.stack_n = 0


cdef void _return_scratch(NodeArray* arr) noexcept:
    global _spare_busy, _spare
    if _spare_busy and arr.items == _spare.items and arr.stack == _spare.stack:
        if arr.cap > 1 << 20:  # keep at most 8 MB of pointers around between calls
            free(arr.items)
            arr.items = NULL
            arr.cap = 0
        if arr.stack_cap > 1 << 20:
            free(arr.stack)
            arr.stack = NULL
            arr.stack_cap = 0
        _spare = arr[0]
        _spare_busy = False
    else:
        free(arr.items)
        free(arr.stack)


cdef int _grow(Node*** items, Py_ssize_t* cap) except -1:
    cdef Py_ssize_t new_cap = 2 * cap[0] + 256
    cdef Node** grown = <Node**>realloc(items[0], new_cap * sizeof(Node*))
    if grown == NULL:
        raise MemoryError("not enough memory to sort the graph")
    items[0] = grown
    cap[0] = new_cap
    return 0


cdef inline int _push_stack(NodeArray* arr, Node* p) except -1:
    if arr.stack_n == arr.stack_cap:
        _grow(&arr.stack, &arr.stack_cap)
    arr.stack[arr.stack_n] = p
    arr.stack_n += 1
    return 0


cdef inline int _push_topo(NodeArray* arr, Node* p) except -1:
    if arr.n == arr.cap:
        _grow(&arr.items, &arr.cap)
    arr.items[arr.n] = p
    arr.n += 1
    return 0


cdef int _topological_sort(Node* root, NodeArray* arr) except -1:
    """Put the nodes reachable from root in arr.items, children before parents.

    The order micrograd's recursive build_topo yields when children are visited in
    _prev order, computed with an explicit stack. Every listed node is left with its
    VISITED bit set: the caller clears it. Returns a bit set: FOUND_CUSTOM if a CUSTOM
    node was met, FOUND_TAPED if a node hidden in a compiled graph was.
    """
    cdef Node* node
    cdef Node* child
    cdef uintptr_t p
    cdef Py_ssize_t i
    cdef int custom = 0
    cdef PyObject* children
    arr.n = 0
    arr.stack_n = 0
    p = 0
    try:
        _push_stack(arr, root)
        while arr.stack_n:
            arr.stack_n -= 1
            p = <uintptr_t>arr.stack[arr.stack_n]
            if p & 1:  # all its children are done
                _push_topo(arr, <Node*>(p ^ 1))
                continue
            if p & STEP_TAG:  # a DOT node's step: its term's operands are done
                arr.stack_n -= 1
                _push_topo(arr, arr.stack[arr.stack_n])
                _push_topo(arr, <Node*>p)
                continue
            node = <Node*>p
            if node.flags & VISITED:
                continue
            node.flags |= VISITED
            if node.flags & TAPED:
                custom |= FOUND_TAPED
            if node.code == LEAF:
                _push_topo(arr, node)
                continue
            if node.code == DOT:
                _push_dot(arr, node)
                continue
            _push_stack(arr, <Node*>(p | 1))
            # push the children last-first so the first is visited first
            if node.code == CUSTOM:
                custom |= FOUND_CUSTOM
                children = _custom_children(node)
                for i in range(PyTuple_GET_SIZE(<object>children) - 1, -1, -1):
                    child = _node_of_item(PyTuple_GET_ITEM(<object>children, i))
                    if not (child.flags & VISITED):
                        _push_stack(arr, child)
            else:
                child = node.b
                if child != NULL and child != node.a and not (child.flags & VISITED):
                    _push_stack(arr, child)
                if not (node.a.flags & VISITED):
                    _push_stack(arr, node.a)
    except BaseException:
        # out of memory: clear every mark, including the one on the entry just popped,
        # which is in neither array
        _clear_visited(arr.items, arr.n)
        _clear_visited(arr.stack, arr.stack_n)
        if p:
            _clear_visited(<Node**>&p, 1)
        raise
    return custom


cdef int _push_dot(NodeArray* arr, Node* node) except -1:
    """Push a DOT node's operands and steps, last first, so that they come off the
    stack as micrograd's DFS meets the expanded chain: b, then for each term j:
    w_j, x_j, step j (where m_j and s_j go)."""
    cdef DotBuffer* buf = _dot_buffer(node)
    cdef Py_ssize_t j
    cdef DotTerm* t
    for j in range(buf.n - 1, -1, -1):
        t = &buf.terms[j]
        _push_stack(arr, <Node*>((<uintptr_t>j << 3) | INDEX_TAG))
        _push_stack(arr, <Node*>(<uintptr_t>node | STEP_TAG))
        if t.x != NULL and not (t.x.flags & VISITED):
            _push_stack(arr, t.x)
        if not (t.w.flags & VISITED):
            _push_stack(arr, t.w)
    if not (node.a.flags & VISITED):
        _push_stack(arr, node.a)
    return 0


cdef inline void _clear_visited(Node** items, Py_ssize_t n) noexcept nogil:
    """Clear the VISITED bit of every node listed (tagged entries included)."""
    cdef Py_ssize_t i
    cdef uintptr_t p
    for i in range(n):
        p = <uintptr_t>items[i]
        if not (p & INDEX_TAG):
            (<Node*>(p & ~(<uintptr_t>TAG_MASK))).flags &= ~VISITED


cdef PyObject* _custom_children(Node* node) noexcept:
    """A CUSTOM node's children tuple (borrowed; the empty tuple if it has none)."""
    cdef object extra = (<Value>_obj(node))._extra
    if type(extra) is _Record and (<_Record>extra).children is not None:
        return <PyObject*>(<_Record>extra).children
    return <PyObject*>_EMPTY


cdef tuple _EMPTY = ()


cdef int _reveal_graph(Node* root) except -1:
    """Bring hidden nodes under root up to date before handing them to Python."""
    cdef NodeArray topo
    cdef int found
    if _n_recorded == 0:
        return 0
    _borrow_scratch(&topo)
    try:
        found = _topological_sort(root, &topo)
        _clear_visited(topo.items, topo.n)
    finally:
        _return_scratch(&topo)
    if found & FOUND_TAPED:
        _detach_tapes()
    return 0


cdef void _reveal_children(Node* node) noexcept:
    """Before handing node's children to Python (or restructuring node): a compiled
    graph that recorded them may hold newer values (see tape.pxi)."""
    cdef DotBuffer* buf
    cdef Py_ssize_t j
    cdef PyObject* children
    cdef bint hidden = False
    if _n_recorded == 0:
        return
    if node.flags & (TAPED | RECORDED):
        hidden = True
    elif node.code == DOT:
        buf = _dot_buffer(node)
        hidden = (node.a.flags & TAPED) != 0
        for j in range(buf.n):
            hidden |= (buf.terms[j].w.flags & TAPED) != 0
            hidden |= buf.terms[j].x != NULL and (buf.terms[j].x.flags & TAPED) != 0
    elif node.code == CUSTOM:
        children = _custom_children(node)
        for j in range(PyTuple_GET_SIZE(<object>children)):
            hidden |= (_node_of_item(PyTuple_GET_ITEM(<object>children, j)).flags & TAPED) != 0
    elif node.code != LEAF:
        hidden = (node.a.flags & TAPED) != 0 or (node.b != NULL and (node.b.flags & TAPED) != 0)
    if hidden:
        _detach_tapes()


cdef int _materialize_all(Node* root) except -1:
    """Make every inline constant reachable from root a leaf Value."""
    cdef NodeArray topo
    cdef Py_ssize_t i
    cdef list owners = []
    _borrow_scratch(&topo)
    try:
        _topological_sort(root, &topo)
        _clear_visited(topo.items, topo.n)
        for i in range(topo.n):
            if not ((<uintptr_t>topo.items[i]) & TAG_MASK) and topo.items[i].flags & CONST_B:
                owners.append(_value(topo.items[i]))
    finally:
        _return_scratch(&topo)
    for v in owners:
        _materialize_constant(<Value>v)
    return 0


def _topological_order(Value root):
    """The nodes reachable from root, children first (a list; for tests and tools).

    Fused sums are expanded and inline constants made Values first, so the list is
    micrograd's graph, constants included."""
    cdef NodeArray topo
    cdef Py_ssize_t i
    _expand_all(&root.n)
    _materialize_all(&root.n)
    _reveal_graph(&root.n)
    _borrow_scratch(&topo)
    try:
        _topological_sort(&root.n, &topo)
        _clear_visited(topo.items, topo.n)
        return [_value(topo.items[i]) for i in range(topo.n)]
    finally:
        _return_scratch(&topo)


include "dot.pxi"


# ---- backward ------------------------------------------------------------------------
cdef inline int _backward_step(Node* out) noexcept:
    """Apply out's backward rule; returns an ERR_* code (0: fine).

    out must be a built-in op node (not LEAF, not CUSTOM)."""
    cdef int err = 0
    cdef Node* a = out.a
    cdef double b = 0.0
    cdef double* gb = NULL
    if out.code <= MUL:
        if out.flags & CONST_B:
            b = out.k
            gb = &out.kgrad
        else:
            b = out.b.data
            gb = &out.b.grad
    backward_rule(out.code, a.data, b, out.k, out.data, out.grad, &a.grad, gb, &err)
    return err


cdef int _raise_backward_error(int err, Node* out) except -1:
    if out.code == POW:
        return raise_math_error(err, out.a.data, out.k - 1.0)
    return raise_math_error(err, out.a.data, out.grad)


cdef int _backward_nodes(NodeArray* topo) except -1:
    """Backward over a graph with built-in ops only: no Python runs in the loop."""
    cdef Py_ssize_t i = topo.n - 1
    cdef Node* node
    cdef uintptr_t p
    cdef int err
    while i >= 0:
        p = <uintptr_t>topo.items[i]
        if p & STEP_TAG:  # step j of a fused sum (dot.pxi); j is in the entry below
            node = <Node*>(p ^ STEP_TAG)
            node.flags &= ~VISITED
            _dot_step(node, <Py_ssize_t>((<uintptr_t>topo.items[i - 1]) >> 3))
            i -= 2
            continue
        node = <Node*>p
        node.flags &= ~VISITED
        if node.code != LEAF:
            err = _backward_step(node)
            if err:
                _clear_visited(topo.items, i)
                return _raise_backward_error(err, node)
        i -= 1
    return 0


cdef int _backward_with_callbacks(NodeArray* topo) except -1:
    """Backward over a graph with custom nodes, whose Python callbacks may do anything
    (even run another backward): clear the marks and hold every node first."""
    cdef Py_ssize_t i
    cdef Node* node
    cdef int err
    _clear_visited(topo.items, topo.n)
    for i in range(topo.n):
        Py_INCREF(<object>_obj(topo.items[i]))
    try:
        for i in range(topo.n - 1, -1, -1):
            node = topo.items[i]
            if node.code == CUSTOM:
                extra = (<Value>_obj(node))._extra
                if type(extra) is _Record and (<_Record>extra).backward is not None:
                    (<_Record>extra).backward()
            elif node.code != LEAF:
                err = _backward_step(node)
                if err:
                    _raise_backward_error(err, node)
    finally:
        for i in range(topo.n):
            Py_DECREF(<object>_obj(topo.items[i]))
    return 0


# ---- helpers for the nn library: micrograd's loops, run in C --------------------------
def weighted_sum(w, x, b):
    """``b + w[0]*x[0] + w[1]*x[1] + ...``, built exactly as micrograd's Neuron builds it
    (``sum((wi*xi for wi, xi in zip(w, x)), b)``), but w and x must have equal lengths."""
    ws = w if type(w) is list or type(w) is tuple else list(w)
    xs = x if type(x) is list or type(x) is tuple else list(x)
    return _weighted_sum(ws, xs, b)


cdef object _weighted_sum(object ws, object xs, object b):
    cdef Py_ssize_t i, n = len(ws)
    if len(xs) != n:
        raise ValueError(
            f"weighted_sum needs as many inputs as weights: {n} weights, {len(xs)} inputs")
    if n and type(b) is Value:
        fused = _dot(ws, xs, <Value>b, n)
        if fused is not None:
            return fused
    act = b
    for i in range(n):
        wi = ws[i]
        xi = xs[i]
        if type(wi) is Value and type(xi) is Value:
            p = _binary(MUL, <Value>wi, <Value>xi)
        elif type(wi) is Value and type(xi) is float:
            p = _with_constant(MUL, <Value>wi, PyFloat_AS_DOUBLE(xi))
        else:
            p = wi * xi
        if type(act) is Value and type(p) is Value:
            act = _binary(ADD, <Value>act, <Value>p)
        else:
            act = act + p
    return act


def layer_forward(neurons, x):
    """Every neuron's output on input x: ``activation(weighted_sum(n.w, x, n.b))``,
    neuron by neuron (what ``Layer`` computes; the activation is a method name, or
    'linear' for none)."""
    cdef list out = []
    xs = x if type(x) is list or type(x) is tuple else list(x)
    for neuron in neurons:
        w = neuron.w
        act = _weighted_sum(w if type(w) is list or type(w) is tuple else list(w), xs, neuron.b)
        activation = neuron.activation
        if type(act) is Value and activation == "relu":
            act = _unary(RELU, <Value>act, 0.0)
        elif type(act) is Value and activation == "tanh":
            act = _unary(TANH, <Value>act, 0.0)
        elif activation != "linear":
            act = getattr(act, activation)()
        out.append(act)
    return out


def zero_grad(values):
    """Set every value's grad to 0.0."""
    for v in values:
        if type(v) is Value:
            (<Value>v).n.grad = 0.0
        else:
            v.grad = 0.0


def set_data(values, data):
    """``values[i].data = data[i]`` for every i (equal lengths)."""
    cdef Py_ssize_t i, n = len(values)
    if len(data) != n:
        raise ValueError(f"set_data needs as many numbers as Values: {n} Values, {len(data)} numbers")
    for i in range(n):
        v = values[i]
        if type(v) is not Value:
            raise TypeError(f"set_data needs Values, not {type(v).__name__}")
        (<Value>v).n.data = _to_float(data[i], "Value data")


def sgd_update(values, lr):
    """``v.data -= lr * v.grad`` for every value (plain SGD)."""
    cdef double rate = _to_float(lr, "the learning rate")
    cdef Node* node
    for v in values:
        if type(v) is not Value:
            raise TypeError(f"sgd_update needs Values, not {type(v).__name__}")
        node = &(<Value>v).n
        node.data = node.data - rate * node.grad


# ---- pickling: a graph as packed arrays, so deep graphs never recurse ----------------
# The format (version 1), shared in spirit with the reference engine:
#   n       the number of nodes, in topological order (the root last)
#   nums    n * 4 doubles: data, grad, k, kgrad
#   meta    n * 2 bytes: op code, flags (CONST_B | INT_EXP; never VISITED)
#   kids    n * 2 int64: operand indices (-1: none)
#   leaves  [(index, Value)]: leaves other than the root, kept as objects so that
#           parameters keep their identity within one pickle
#   extras  {index: (label, op string or None, custom backward or None,
#                    CUSTOM children indices or None)}
# Bytes are immutable, so copy.deepcopy of a huge graph copies nothing but the leaves.
PICKLE_FORMAT = 1


cdef tuple _flatten(Value root):
    cdef NodeArray topo
    cdef Py_ssize_t i, n
    cdef Node* node
    cdef double* nums
    cdef unsigned char* meta
    cdef long long* kids
    cdef dict index = {}
    cdef list leaves = []
    cdef dict extras = {}
    _expand_all(&root.n)
    _reveal_graph(&root.n)
    _borrow_scratch(&topo)
    try:
        _topological_sort(&root.n, &topo)
        _clear_visited(topo.items, topo.n)
        n = topo.n
        nums_b = bytearray(n * 4 * sizeof(double))
        meta_b = bytearray(n * 2)
        kids_b = bytearray(n * 2 * sizeof(long long))
        nums = <double*><char*>nums_b
        meta = <unsigned char*><char*>meta_b
        kids = <long long*><char*>kids_b
        for i in range(n):
            index[<Py_ssize_t>topo.items[i]] = i
        for i in range(n):
            node = topo.items[i]
            nums[4 * i] = node.data
            nums[4 * i + 1] = node.grad
            nums[4 * i + 2] = node.k
            nums[4 * i + 3] = node.kgrad
            meta[2 * i] = node.code
            meta[2 * i + 1] = node.flags & (CONST_B | INT_EXP)
            kids[2 * i] = index[<Py_ssize_t>node.a] if node.a != NULL and node.code != CUSTOM else -1
            kids[2 * i + 1] = index[<Py_ssize_t>node.b] if node.b != NULL and node.code != CUSTOM else -1
            v = _value(node)
            if node.code == LEAF and node != &root.n:
                leaves.append((i, v))
                continue
            extra = (<Value>v)._extra
            if extra is None:
                continue
            if type(extra) is str:
                extras[i] = (extra, None, None, None)
                continue
            rec = <_Record>extra
            children = None
            if node.code == CUSTOM and rec.children is not None:
                children = tuple([index[<Py_ssize_t>&(<Value>c).n] for c in rec.children])
            extras[i] = (rec.label, rec.op, rec.backward, children)
    finally:
        _return_scratch(&topo)
    return (PICKLE_FORMAT, n, bytes(nums_b), bytes(meta_b), bytes(kids_b), leaves, extras)


def _rebuild_leaf(data, grad, label):
    v = Value(data, (), "", label)
    v.grad = grad
    return v


def _rebuild(int version, Py_ssize_t n, bytes nums_b, bytes meta_b, bytes kids_b,
             list leaves, dict extras):
    """The graph ``_flatten`` described; returns its root."""
    cdef const double* nums
    cdef const unsigned char* meta
    cdef const long long* kids
    cdef Py_ssize_t i, j
    cdef Value v
    # n > len(meta_b) first: it bounds n, so the products below cannot overflow
    if (version != PICKLE_FORMAT or n < 1 or n > len(meta_b)
            or len(nums_b) != n * 4 * <Py_ssize_t>sizeof(double)
            or len(meta_b) != n * 2 or len(kids_b) != n * 2 * <Py_ssize_t>sizeof(long long)):
        raise ValueError("not a cmicrograd graph pickle (or one from another version)")
    nums = <const double*><const char*>nums_b
    meta = <const unsigned char*><const char*>meta_b
    kids = <const long long*><const char*>kids_b
    cdef list nodes = [None] * n
    for i, leaf in leaves:
        if type(leaf) is not Value or not 0 <= i < n or nodes[i] is not None:
            raise ValueError("a graph pickle's leaves must be distinct Values at valid positions")
        nodes[i] = leaf
    for i in range(n):
        if nodes[i] is not None:
            continue
        if meta[2 * i] > CUSTOM:
            raise ValueError(f"bad op code {meta[2 * i]} in a graph pickle")
        label, op, backward, children = extras.get(i, ("", None, None, None))
        if meta[2 * i] == LEAF or meta[2 * i] == CUSTOM:
            v = Value(0.0, [nodes[j] for j in children] if children else (),
                      op if op is not None else "", label)
        else:
            v = _new_value()
            v.n.code = meta[2 * i]
            v.n.flags = meta[2 * i + 1] & (CONST_B | INT_EXP)
            for j in range(2):
                if kids[2 * i + j] >= 0:
                    if kids[2 * i + j] >= i:
                        raise ValueError("a graph pickle's operands must come before their node")
                    child = nodes[kids[2 * i + j]]  # a Value: leaves were checked above
                    Py_INCREF(child)
                    if j == 0:
                        v.n.a = &(<Value>child).n
                    else:
                        v.n.b = &(<Value>child).n
            if v.n.a == NULL or (v.n.code <= MUL and v.n.b == NULL and not (v.n.flags & CONST_B)):
                raise ValueError("a graph pickle's op node lacks an operand")
            if op is not None:
                _make_record(v).op = op
            if label:
                v.label = label
        v.n.data = nums[4 * i]
        v.n.grad = nums[4 * i + 1]
        v.n.k = nums[4 * i + 2]
        v.n.kgrad = nums[4 * i + 3]
        if backward is not None:
            v._backward = backward
        nodes[i] = v
    return nodes[n - 1]


include "tape.pxi"


# ---- testing hooks -------------------------------------------------------------------
def _float_pow(double x, double y):
    """x ** y by the engine's C float_pow (tests compare it with Python's **)."""
    cdef int err = 0
    cdef double r = float_pow(x, y, &err)
    if err:
        raise_math_error(err, x, y)
    return r


def _sizeof_node():
    """Bytes in a Value object, excluding the GC header (for the memory tests)."""
    return sizeof(Node) + sizeof(PyObject*) + NODE_OFFSET


cdef _init_type():
    global NODE_OFFSET, EXTRA_OFFSET, VALUE_TYPE
    VALUE_TYPE = <PyTypeObject*>Value
    if cm_alloc_init(VALUE_TYPE.tp_basicsize) != 0:
        raise ImportError("cmicrograd._engine: Value is too large for its allocator")
    __cm_install_allocator(VALUE_TYPE)
    VALUE_TYPE.tp_dealloc = <destructor>_value_dealloc
    cdef Value probe = Value.__new__(Value)
    NODE_OFFSET = <char*>&probe.n - <char*><PyObject*>probe
    EXTRA_OFFSET = NODE_OFFSET + sizeof(Node)
    sentinel = object()
    probe._extra = sentinel
    if (<PyObject**>(<char*><PyObject*>probe + EXTRA_OFFSET))[0] != <PyObject*>sentinel:
        raise ImportError("cmicrograd._engine: unexpected Value layout")
    probe._extra = None

_init_type()

import atexit
atexit.register(_trim_memory)
