# The topological sort and backward: micrograd's build_topo and backward(), in C.
#
# The sort uses an explicit stack and the VISITED bit in each node (cleared before
# control returns to Python), so depth is unlimited and no Python set is made. It
# yields exactly the order micrograd's recursive build_topo yields when children are
# visited in _prev order, and backward applies each node's rule in reverse of it, so
# every += lands in the same order as in the reference.
#
# This is the core's only contact with the parts built on it (see _engine.pyx):
#   composite_push_steps, composite_backward_step  -- fused sums, in fused.pxi
#   any_recorded, reveal, reveal_hidden, reveal_hidden_in, reveal_to_change
#                                                   -- compiled graphs, in replay.pxi

# ---- tags on entries of the sort's stack and order -------------------------------------
# A Node* is 8-byte aligned, which leaves three low bits. On the stack, CHILDREN_DONE
# marks a node whose children are all done. A composite node's steps lo..hi (consecutive
# in the order: nothing comes between them) take two entries, step_range(lo, hi) and then
# (node | STEP_TAG), on the stack and in the order alike.
cdef enum:
    CHILDREN_DONE = 1
    STEP_TAG = 2
    INDEX_TAG = 4
    TAG_MASK = 7

cdef extern from *:
    """
    #include <stdint.h>
    #if UINTPTR_MAX < 0xFFFFFFFFFFFFFFFFu
    #error "cmicrograd needs a 64-bit platform (a step range packs two indices in a pointer)"
    #endif
    """

cdef inline Node* step_range(Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """The entry for steps lo..hi of a composite node (each below 2**30)."""
    return <Node*>((<uintptr_t>lo << 3) | (<uintptr_t>hi << 33) | INDEX_TAG)

cdef inline Py_ssize_t step_lo(Node* entry) noexcept nogil:
    return <Py_ssize_t>((<uintptr_t>entry >> 3) & 0x3FFFFFFF)

cdef inline Py_ssize_t step_hi(Node* entry) noexcept nogil:
    return <Py_ssize_t>(<uintptr_t>entry >> 33)

# what a sort met, besides plain nodes
cdef enum:
    FOUND_CUSTOM = 1
    FOUND_HIDDEN = 2


cdef struct NodeArray:
    Node** items
    Py_ssize_t n
    Py_ssize_t cap
    Node** stack       # scratch for the sort: tagged pointers
    Py_ssize_t stack_n
    Py_ssize_t stack_cap

# One spare pair of buffers, reused by each sort unless a sort is already using it
# (a custom backward that calls backward() again gets fresh buffers).
cdef NodeArray _spare
cdef bint _spare_busy = False


cdef void borrow_scratch(NodeArray* arr) noexcept:
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


cdef void return_scratch(NodeArray* arr) noexcept:
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


cdef inline int push_stack(NodeArray* arr, Node* p) except -1:
    if arr.stack_n == arr.stack_cap:
        _grow(&arr.stack, &arr.stack_cap)
    arr.stack[arr.stack_n] = p
    arr.stack_n += 1
    return 0


cdef inline int push_topo(NodeArray* arr, Node* p) except -1:
    if arr.n == arr.cap:
        _grow(&arr.items, &arr.cap)
    arr.items[arr.n] = p
    arr.n += 1
    return 0


cdef int topological_sort(Node* root, NodeArray* arr) except -1:
    """Put the nodes reachable from root in arr.items, children before parents.

    Every listed node is left with its VISITED bit set: the caller clears it
    (clear_visited). Returns a bit set: FOUND_CUSTOM if a CUSTOM node was met,
    FOUND_HIDDEN if a node hidden in a compiled graph was. (record.pxi walks a graph
    the same way.)
    """
    cdef Node* node
    cdef Node* child
    cdef uintptr_t p
    cdef Py_ssize_t i
    cdef int found = 0
    cdef PyObject* children
    arr.n = 0
    arr.stack_n = 0
    p = 0
    try:
        push_stack(arr, root)
        while arr.stack_n:
            arr.stack_n -= 1
            p = <uintptr_t>arr.stack[arr.stack_n]
            if p & CHILDREN_DONE:
                push_topo(arr, <Node*>(p ^ CHILDREN_DONE))
                continue
            if p & STEP_TAG:  # a composite node's step: its operands are done
                arr.stack_n -= 1
                push_topo(arr, arr.stack[arr.stack_n])
                push_topo(arr, <Node*>p)
                continue
            node = <Node*>p
            if node.flags & VISITED:
                continue
            node.flags |= VISITED
            if node.flags & HIDDEN:
                found |= FOUND_HIDDEN
            if node.code == LEAF:
                push_topo(arr, node)
                continue
            if node.code == DOT:
                composite_push_steps(arr, node)
                continue
            push_stack(arr, <Node*>(p | CHILDREN_DONE))
            # push the children last-first so the first is visited first
            if node.code == CUSTOM:
                found |= FOUND_CUSTOM
                children = custom_children(node)
                for i in range(PyTuple_GET_SIZE(<object>children) - 1, -1, -1):
                    child = _node_of_item(PyTuple_GET_ITEM(<object>children, i))
                    if not (child.flags & VISITED):
                        push_stack(arr, child)
            else:
                child = node.b
                if child != NULL and child != node.a and not (child.flags & VISITED):
                    push_stack(arr, child)
                if not (node.a.flags & VISITED):
                    push_stack(arr, node.a)
    except BaseException:
        # out of memory: clear every mark, including the one on the entry just popped,
        # which is in neither array
        clear_visited(arr.items, arr.n)
        clear_visited(arr.stack, arr.stack_n)
        if p:
            clear_visited(<Node**>&p, 1)
        raise
    return found


cdef inline void clear_visited(Node** items, Py_ssize_t n) noexcept nogil:
    """Clear the VISITED bit of every node listed (tagged entries included)."""
    cdef Py_ssize_t i
    cdef uintptr_t p
    for i in range(n):
        p = <uintptr_t>items[i]
        if not (p & INDEX_TAG):
            (<Node*>(p & ~(<uintptr_t>TAG_MASK))).flags &= ~VISITED


cdef tuple _EMPTY = ()


cdef PyObject* custom_children(Node* node) noexcept:
    """A CUSTOM node's children tuple (borrowed; the empty tuple if it has none)."""
    cdef PyObject* slot = record_slot(<Value>_obj(node))
    if slot != NULL and (<object>slot).__class__ is _Record and (<_Record>slot).children is not None:
        return <PyObject*>(<_Record>slot).children
    return <PyObject*>_EMPTY


cdef int sorted_graph(Node* root, NodeArray* arr) except -1:
    """topological_sort with the marks cleared at once (for callers that only read the
    order); the caller still returns the scratch. Returns what the sort met."""
    cdef int found = topological_sort(root, arr)
    clear_visited(arr.items, arr.n)
    return found


# ---- before Python sees a graph ------------------------------------------------------
cdef int reveal_graph(Node* root) except -1:
    """Bring hidden nodes under root up to date before handing them to Python."""
    cdef NodeArray topo
    if not any_recorded():
        return 0
    borrow_scratch(&topo)
    try:
        if sorted_graph(root, &topo) & FOUND_HIDDEN:
            reveal_hidden_in(&topo)
    finally:
        return_scratch(&topo)
    return 0


cdef void reveal_children(Node* node) noexcept:
    """Before handing node's children to Python (or restructuring node): a compiled
    graph that recorded them may hold newer values."""
    cdef Py_ssize_t j
    cdef PyObject* children
    if not any_recorded():
        return
    reveal(node)
    if node.code == DOT:
        composite_reveal_operands(node)
    elif node.code == CUSTOM:
        children = custom_children(node)
        for j in range(PyTuple_GET_SIZE(<object>children)):
            reveal_hidden(_node_of_item(PyTuple_GET_ITEM(<object>children, j)))
    elif node.code != LEAF:
        reveal_hidden(node.a)
        if node.b != NULL and not (node.flags & CONST_B):
            reveal_hidden(node.b)


cdef int _materialize_all(Node* root) except -1:
    """Make every inline constant reachable from root a leaf Value."""
    cdef NodeArray topo
    cdef Py_ssize_t i
    cdef list owners = []
    borrow_scratch(&topo)
    try:
        sorted_graph(root, &topo)
        for i in range(topo.n):
            if not ((<uintptr_t>topo.items[i]) & TAG_MASK) and topo.items[i].flags & CONST_B:
                owners.append(_value(topo.items[i]))
    finally:
        return_scratch(&topo)
    for v in owners:
        _materialize_constant(<Value>v)
    return 0


def _topological_order(Value root):
    """The nodes reachable from root, children first (a list; for tests and tools).

    Fused sums are expanded and inline constants made Values first, so the list is
    micrograd's graph, constants included."""
    cdef NodeArray topo
    cdef Py_ssize_t i
    composite_expand_all(&root.n)
    _materialize_all(&root.n)
    reveal_graph(&root.n)
    borrow_scratch(&topo)
    try:
        sorted_graph(&root.n, &topo)
        return [_value(topo.items[i]) for i in range(topo.n)]
    finally:
        return_scratch(&topo)


def _node_parts(Value v):
    """(op code, operands, k) of node v, its operands as Values (an inline constant as a
    number), a fused sum expanded first: what grad() differentiates (autograd.py)."""
    cdef int code = v.n.code
    if code == LEAF:
        return (LEAF, (), 0.0)
    if code == CUSTOM:
        return (CUSTOM, v._prev, 0.0)
    reveal_children(&v.n)
    if code == DOT:
        composite_expand(v)
        code = v.n.code
    a = _value(v.n.a)
    if binary_op(code):
        b = v.n.k if v.n.flags & CONST_B else _value(v.n.b)
        return (code, (a, b), v.n.k)
    return (code, (a,), v.n.k)


# ---- backward ------------------------------------------------------------------------
cdef int backward_from(Node* root) except -1:
    """Value.backward(): seed root's grad with 1.0 and apply every rule in reverse
    topological order."""
    cdef NodeArray topo
    cdef bint custom
    cdef int found
    borrow_scratch(&topo)
    try:
        found = topological_sort(root, &topo)
        if found & FOUND_HIDDEN:
            reveal_hidden_in(&topo)  # hidden nodes of a compiled graph: bring them up to date
        custom = found & FOUND_CUSTOM
        if custom:
            # Python callbacks may look inside fused sums: expand them all first
            clear_visited(topo.items, topo.n)
            return_scratch(&topo)
            composite_expand_all(root)
            borrow_scratch(&topo)
            topological_sort(root, &topo)
        root.grad = 1.0
        if custom:
            _backward_with_callbacks(&topo)
        else:
            _backward_nodes(&topo)
    finally:
        return_scratch(&topo)
    return 0


cdef inline int backward_step(Node* out) noexcept:
    """Apply out's backward rule; returns an ERR_* code (0: fine).

    out must be a built-in op node (not LEAF, CUSTOM or a composite)."""
    cdef int err = 0
    cdef Node* a = out.a
    cdef double b = 0.0
    cdef double* gb = NULL
    if binary_op(out.code):
        if out.flags & CONST_B:
            b = out.k
            gb = &out.kgrad
        else:
            b = out.b.data
            gb = &out.b.grad
    backward_rule(out.code, a.data, b, out.k, out.data, out.grad, &a.grad, gb, &err)
    return err


cdef int raise_backward_error(int err, Node* out) except -1:
    if out.code == POW:
        return raise_math_error(err, out.a.data, out.k - 1.0)
    return raise_math_error(err, out.a.data, out.grad)


cdef int _backward_nodes(NodeArray* topo) except -1:
    """Backward over a graph with built-in ops only: no Python runs in the loop."""
    cdef Py_ssize_t i = topo.n - 1, j
    cdef Node* node
    cdef uintptr_t p
    cdef int err
    while i >= 0:
        p = <uintptr_t>topo.items[i]
        if p & STEP_TAG:  # steps of a composite node; their range is in the entry below
            node = <Node*>(p ^ STEP_TAG)
            node.flags &= ~VISITED
            for j in range(step_hi(topo.items[i - 1]), step_lo(topo.items[i - 1]) - 1, -1):
                composite_backward_step(node, j)
            i -= 2
            continue
        node = <Node*>p
        node.flags &= ~VISITED
        if node.code != LEAF:
            err = backward_step(node)
            if err:
                clear_visited(topo.items, i)
                return raise_backward_error(err, node)
        i -= 1
    return 0


cdef int _backward_with_callbacks(NodeArray* topo) except -1:
    """Backward over a graph with custom nodes, whose Python callbacks may do anything
    (even run another backward): clear the marks and hold every node first."""
    cdef Py_ssize_t i
    cdef Node* node
    cdef int err
    clear_visited(topo.items, topo.n)
    for i in range(topo.n):
        Py_INCREF(<object>_obj(topo.items[i]))
    try:
        for i in range(topo.n - 1, -1, -1):
            node = topo.items[i]
            if node.code == CUSTOM:
                rec = record_of(<Value>_obj(node))
                if rec is not None and (<_Record>rec).backward is not None:
                    (<_Record>rec).backward()
            elif node.code != LEAF:
                err = backward_step(node)
                if err:
                    raise_backward_error(err, node)
    finally:
        for i in range(topo.n):
            Py_DECREF(<object>_obj(topo.items[i]))
    return 0
