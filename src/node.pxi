# Node storage: what a graph node is, where it lives, and how graphs of any depth die.
#
# A node is a C struct inside its Value object: data, grad, pointers to its operands,
# an op code (cmicrograd/_ops.py) and flags. Values live in the engine's own chunks
# (value_alloc.h), so nodes made one after the other sit one after the other.
#
# Nodes are not tracked by the cyclic GC: their operands are fixed at creation and
# nothing a user can set points back. Only a node holding Python objects that could
# (a custom _backward, a Function, user attributes) is tracked: see set_record.
#
# What a node rarely needs (a label, a custom node's children and callables, the user's
# own attributes: p.m = 0.0) sits in one pointer, the record slot, which is NULL for
# almost every node: the type's tp_dictoffset points at it, so Python finds a user's
# attributes there the usual way (the record is a dict subclass). A Value costs nothing
# more until one of these is set.

# ---- the node ----------------------------------------------------------------------
cdef struct Node:
    uint8_t code   # first: with a and b, what a topological sort reads, in one cache line
    uint8_t flags
    uint16_t tape     # the compiled graph that recorded it (replay.pxi); 0: none
    uint32_t scratch  # its slot while a graph is being recorded (record.pxi)
    Node* a        # first operand; its Value holds one reference per pointer
    Node* b        # second operand (== a for a + a); NULL if unary or CONST_B
    double data
    double grad
    double k       # POW: the exponent; CONST_B: the constant operand's value
    double kgrad   # CONST_B: the constant operand's grad

cdef enum:
    VISITED = 1   # set by a topological sort; cleared before control returns to Python
    CONST_B = 2   # operand b is the inline constant (k, kgrad), not a Value
    INT_EXP = 4   # POW: the exponent was a Python int; _op prints it as one
    HIDDEN = 8    # its current data lives in a compiled graph's arrays (see replay.pxi)
    RECORDED = 16 # recorded by a compiled graph, hidden or not

# Where a Value's Node and its record field sit inside the object (set at import by
# init_value_type), to go between a Node* and its Value without reference counting.
cdef Py_ssize_t NODE_OFFSET = 0
cdef Py_ssize_t RECORD_OFFSET = 0
cdef PyTypeObject* VALUE_TYPE = NULL


cdef inline PyObject* _obj(Node* p) noexcept nogil:
    return <PyObject*>(<char*>p - NODE_OFFSET)

cdef inline Node* _node_of_item(PyObject* item) noexcept nogil:
    return <Node*>(<char*>item + NODE_OFFSET)

cdef inline Value _value(Node* p):
    """The Value that owns node ``p`` (a new reference)."""
    return <Value>_obj(p)


# ---- what a node rarely needs ----------------------------------------------------------
@cython.final
cdef class _Record(dict):
    """What a node rarely needs: its label, a custom node's children, op string and
    callables; as a dict, the user's own attributes (the Value's __dict__). Its fields
    are read-only from Python (``vars(v)`` is this record): the engine trusts them, and
    the Value's own attributes (``label``, ``_backward``) set them with checks."""
    cdef readonly str label
    cdef readonly object op        # str, or None to derive it from the op code
    cdef readonly tuple children   # CUSTOM: the distinct children, in order
    cdef readonly object backward  # a user's no-argument backward callable, or None

    def __cinit__(self):
        self.label = ""


cdef inline PyObject* record_slot(Value v) noexcept:
    """v's record slot, borrowed: NULL, a _Record, or a plain dict of attributes (made
    by Python's generic setattr if something bypassed the type's own)."""
    return (<PyObject**>(<char*><PyObject*>v + RECORD_OFFSET))[0]


cdef inline _Record record_of(Value v):
    """v's record, or None."""
    cdef PyObject* slot = record_slot(v)
    if slot != NULL and (<object>slot).__class__ is _Record:
        return <_Record>slot
    return None


cdef void _set_slot(Value v, object new) noexcept:
    """Put new (or NULL for None) in v's record slot, releasing what was there."""
    cdef PyObject** slot = <PyObject**>(<char*><PyObject*>v + RECORD_OFFSET)
    cdef PyObject* old = slot[0]
    if new is None:
        slot[0] = NULL
    else:
        Py_INCREF(new)
        slot[0] = <PyObject*>new
    if old != NULL:
        Py_DECREF(<object>old)


cdef _Record _make_record(Value v):
    """v's record, creating it (and keeping attributes already set) if it has none."""
    cdef PyObject* slot = record_slot(v)
    if slot != NULL and (<object>slot).__class__ is _Record:
        return <_Record>slot
    rec = _Record.__new__(_Record)
    if slot != NULL:
        rec.update(<object>slot)
    set_record(v, rec)
    return rec


cdef inline void set_record(Value v, _Record rec) except *:
    _set_slot(v, rec)
    # a record may hold a callable, or an attribute, that refers back to v: let the GC
    # see the cycle
    if not cm_gc_is_tracked(<PyObject*>v):
        PyObject_GC_Track(<PyObject*>v)


cdef int _value_setattro(PyObject* o, PyObject* name, PyObject* value) except -1:
    """The Value type's tp_setattro: data, grad, label, _backward as usual; any other
    name is the user's own attribute, kept in the record (created on first use)."""
    cdef PyObject* descr = _PyType_Lookup(Py_TYPE(o), name)
    cdef Value v
    if (descr != NULL and Py_TYPE(descr).tp_descr_set != NULL) or not PyUnicode_Check(name):
        return PyObject_GenericSetAttr(o, name, value)
    v = <Value>o
    if value == NULL:
        rec = record_of(v)
        if rec is None and record_slot(v) == NULL:
            raise AttributeError(f"'Value' object has no attribute '{<object>name}'")
        attrs = rec if rec is not None else <object>record_slot(v)
        try:
            del attrs[<object>name]
        except KeyError:
            raise AttributeError(f"'Value' object has no attribute '{<object>name}'") from None
        return 0
    rec = _make_record(v)
    PyDict_SetItem(rec, <object>name, <object>value)
    return 0


cdef int _value_clear(PyObject* o) noexcept:
    """The Value type's tp_clear (the GC breaking a cycle): drop the record."""
    _set_slot(<Value>o, None)
    return 0


# ---- allocating Values -------------------------------------------------------------------
cdef extern from "value_alloc.h":
    int cm_alloc_init(Py_ssize_t basicsize)
    bint cm_is_tracked(PyObject* o) noexcept
    void cm_value_free(void* op)
    Py_ssize_t cm_trim()
    Py_ssize_t cm_bytes_held()

cdef extern from "Python.h":
    PyObject* _PyType_Lookup(PyTypeObject*, PyObject*)
    int PyObject_GenericSetAttr(PyObject*, PyObject*, PyObject*) except -1
    bint PyUnicode_Check(PyObject*)
    PyTypeObject* Py_TYPE(PyObject*)
    int PyDict_SetItem(object, object, object) except -1

cdef extern from "node.h":
    void cm_install_allocator(PyTypeObject*, destructor)
    void cm_install_value_slots(PyTypeObject*, void*, void*)
    Py_ssize_t cm_node_offset, cm_record_offset
    bint cm_gc_is_tracked(PyObject*) noexcept
    Value cm_new_value(PyTypeObject*, Py_ssize_t, Py_ssize_t)
    Value cm_new_value_unset(PyTypeObject*, Py_ssize_t)


cdef inline Value _new_value():
    """A new, untracked Value with a zeroed node."""
    return cm_new_value(VALUE_TYPE, NODE_OFFSET, RECORD_OFFSET)


cdef inline Value _new_node(double data, int code, Value a, double k):
    """A new node of op ``code`` on operand ``a``: every field set here (the hot path
    skips zeroing the memory first)."""
    cdef Value out = cm_new_value_unset(VALUE_TYPE, RECORD_OFFSET)
    out.n.code = code
    out.n.flags = 0
    out.n.tape = 0
    Py_INCREF(a)
    out.n.a = &a.n
    out.n.b = NULL
    out.n.data = data
    out.n.grad = 0.0
    out.n.k = k
    out.n.kgrad = 0.0
    return out


# ---- freeing graphs of any depth -----------------------------------------------------
# Releasing a node's operands can free them, which releases theirs, and so on: a chain
# of 10^6 nodes would recurse 10^6 deep in C. Instead, a dying node's last references
# to its operands go on a stack, and the outermost dealloc frees them one by one.
cdef PyObject** _pending = NULL
cdef Py_ssize_t _n_pending = 0
cdef Py_ssize_t _cap_pending = 0
cdef bint _draining = False


cdef inline void release(Node* p) noexcept:
    """Drop one reference to p's Value, deferring the free if it is the last one."""
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


cdef void _value_dealloc(PyObject* o) noexcept:
    """The Value type's tp_dealloc: release operands and record without recursion,
    then give the slot back."""
    global _draining
    cdef bint outermost = not _draining
    cdef PyObject** record_slot = <PyObject**>(<char*>o + RECORD_OFFSET)
    cdef PyObject* record = record_slot[0]
    if cm_is_tracked(o):
        PyObject_GC_UnTrack(o)  # before any release can run the GC
    record_slot[0] = NULL
    _draining = True
    if record != NULL:
        if _refcount(record) > 1 or not _push_pending(record):
            Py_DECREF(<object>record)
    release_operands(_node_of_item(o), outermost)
    cm_value_free(o)


cdef void release_operands(Node* n, bint outermost=True) noexcept:
    """Drop n's operands; the outermost call also frees everything that became garbage."""
    global _draining, _n_pending, _pending, _cap_pending
    cdef PyObject* o
    _draining = True
    if n.code == DOT:
        composite_release(n)
    if n.a != NULL:
        release(n.a)
    if n.b != NULL:
        release(n.b)
    n.a = NULL
    n.b = NULL
    if outermost:
        _drain_pending()


cdef void _drain_pending() noexcept:
    """Free everything on the deferred-free stack (an outermost free: _draining is set)."""
    global _draining, _n_pending, _pending, _cap_pending
    cdef PyObject* o
    while _n_pending:
        _n_pending -= 1
        o = _pending[_n_pending]
        Py_DECREF(<object>o)
    _draining = False
    if _cap_pending > 65536:  # don't keep a big stack around after a deep free
        free(_pending)
        _pending = NULL
        _cap_pending = 0


cdef void release_all(Node** nodes, Py_ssize_t n, Py_ssize_t skip) noexcept:
    """Release the non-NULL nodes[i] for i != skip, from outside any dealloc (a compiled
    graph letting go of its nodes): what that frees, at any depth, is freed here."""
    global _draining
    cdef bint outermost = not _draining
    cdef Py_ssize_t i
    _draining = True
    for i in range(n):
        if i != skip and nodes[i] != NULL:
            release(nodes[i])
    if outermost:
        _drain_pending()


cdef void _clear_operands(Value v) noexcept:
    """Drop v's operands and record (for __init__ on an existing Value)."""
    if v.n.a != NULL or v.n.b != NULL:
        release_operands(&v.n, not _draining)
    _set_slot(v, None)


def _trim_memory():
    """Free the empty chunks kept for reuse; returns the bytes still held by Values."""
    cm_trim()
    return cm_bytes_held()


def _sizeof_node():
    """Bytes in a Value object, excluding the GC header (for the memory tests)."""
    return sizeof(Node) + sizeof(PyObject*) + NODE_OFFSET


cdef init_value_type():
    """Install the allocator, the deallocator and the attribute slots, and find the
    field offsets."""
    global NODE_OFFSET, RECORD_OFFSET, VALUE_TYPE, cm_node_offset, cm_record_offset
    VALUE_TYPE = <PyTypeObject*>Value
    if cm_alloc_init(VALUE_TYPE.tp_basicsize) != 0:
        raise ImportError("cmicrograd._engine: Value is too large for its allocator")
    cm_install_allocator(VALUE_TYPE, <destructor>_value_dealloc)
    cdef Value probe = Value.__new__(Value)   # Cython's own tp_new: the slot holds None
    NODE_OFFSET = <char*>&probe.n - <char*><PyObject*>probe
    RECORD_OFFSET = NODE_OFFSET + sizeof(Node)
    sentinel = object()
    probe._record_slot = sentinel
    if (<PyObject**>(<char*><PyObject*>probe + RECORD_OFFSET))[0] != <PyObject*>sentinel:
        raise ImportError("cmicrograd._engine: unexpected Value layout")
    probe._record_slot = None
    cm_node_offset, cm_record_offset = NODE_OFFSET, RECORD_OFFSET
    cm_install_value_slots(VALUE_TYPE, <void*>_value_setattro, <void*>_value_clear)


def _pending_frees():
    """(Values waiting on the deferred-free stack, whether a free is in progress): both
    are (0, False) whenever control is back in Python (for the memory tests)."""
    return _n_pending, _draining
