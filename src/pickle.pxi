# Pickling: a graph as packed arrays, so deep graphs never recurse.
#
# The format (version 1), shared in spirit with the reference engine:
#   n       the number of nodes, in topological order (the root last)
#   nums    n * 4 doubles: data, grad, k, kgrad
#   meta    n * 2 bytes: op code, flags (CONST_B | INT_EXP; never VISITED)
#   kids    n * 2 int64: operand indices (-1: none)
#   leaves  [(index, Value)]: leaves other than the root, kept as objects so that
#           parameters keep their identity within one pickle
#   extras  {index: (label, op string or None, custom backward or None,
#                    CUSTOM children indices or None[, the user's attributes])}
# (the attributes, a dict, only when there are some: such pickles are otherwise what
# earlier versions wrote, and earlier pickles load unchanged)
# Bytes are immutable, so copy.deepcopy of a huge graph copies nothing but the leaves.
PICKLE_FORMAT = 1
STORED_CODES = frozenset([op.code for op in _ops.OPS if op.kind != "internal"])


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
    composite_expand_all(&root.n)
    reveal_graph(&root.n)
    borrow_scratch(&topo)
    try:
        sorted_graph(&root.n, &topo)
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
            if record_slot(<Value>v) == NULL:
                continue
            rec = _make_record(<Value>v)
            children = None
            if node.code == CUSTOM and rec.children is not None:
                children = tuple([index[<Py_ssize_t>&(<Value>c).n] for c in rec.children])
            extras[i] = (rec.label, rec.op, rec.backward, children) + ((dict(rec),) if rec else ())
    finally:
        return_scratch(&topo)
    return (PICKLE_FORMAT, n, bytes(nums_b), bytes(meta_b), bytes(kids_b), leaves, extras)


cdef tuple reduce_value(Value v):
    """Value.__reduce__: a leaf by its fields, any other node as its flattened graph."""
    cdef PyObject* slot
    if v.n.code == LEAF:
        slot = record_slot(v)
        attrs = (dict(<object>slot),) if slot != NULL and len(<object>slot) else ()
        return (_rebuild_leaf, (v.n.data, v.n.grad, v.label) + attrs)
    return (_rebuild, _flatten(v))


def _rebuild_leaf(data, grad, label, attrs=None):
    v = Value(data, (), "", label)
    v.grad = grad
    if attrs:
        _make_record(v).update(attrs)
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
        if meta[2 * i] not in STORED_CODES:
            raise ValueError(f"bad op code {meta[2 * i]} in a graph pickle")
        extra = extras.get(i, ("", None, None, None))
        if type(extra) is not tuple or len(extra) not in (4, 5):
            raise ValueError("a graph pickle's node extras must be tuples of 4 or 5 items")
        label, op, backward, children = extra[:4]
        attrs = extra[4] if len(extra) == 5 else None
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
            if v.n.a == NULL or (binary_op(v.n.code) and v.n.b == NULL and not (v.n.flags & CONST_B)):
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
        if attrs:
            _make_record(v).update(attrs)
        nodes[i] = v
    return nodes[n - 1]
