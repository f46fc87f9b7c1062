# Fused weighted sums: b + w0*x0 + w1*x1 + ... kept as one DOT node.
#
# micrograd builds a neuron's sum as a chain of 2n nodes: m_j = w_j * x_j and
# s_j = s_{j-1} + m_j (with s_{-1} = b). Made and walked one object at a time, those
# nodes cost far more than their arithmetic, so weighted_sum keeps the chain inside one
# DOT node: the node is s_{n-1}, its operand a is b, and a buffer holds every term's
# operands and the data and grad of m_j and s_j.
#
# Nothing observable changes:
# * the topological sort emits a step (node, j) exactly where micrograd's DFS puts m_j
#   and s_j, and backward applies s_j's rule and then m_j's there, so every += lands in
#   the same order, and with the same bits, as on the expanded chain, whatever the graph;
# * the first time anyone looks inside (_prev, _backward, pickling, _topological_order,
#   a backward through custom callbacks), the node expands into the real chain with the
#   data and grads it holds, and is an ordinary ADD node from then on.
#
# The core (graph.pxi, node.pxi, value.pxi) knows a DOT node only as a composite node,
# through the composite_* functions of this file.

cdef struct DotBuffer:
    Py_ssize_t n
    Py_ssize_t n_const  # terms whose input is a constant (x[j] NULL)
    # per term j, each an array of n in the same allocation (struct of arrays: the sort
    # and the recorder read only w and x, so they stream 16 bytes a term, not 64)
    Node** w            # the weight operand (the buffer holds a reference for it)
    Node** x            # the input operand (likewise), or NULL for the constant c[j]
    double* c           # the constant input and its grad
    double* cgrad
    double* m           # m_j = w_j * x_j: data and grad
    double* mgrad
    double* s           # s_j: data and grad (the last term's are the node's own)
    double* sgrad


cdef inline DotBuffer* _dot_buffer(Node* node) noexcept nogil:
    return <DotBuffer*>node.b


cdef inline Node** _weights_of(DotBuffer* buf) noexcept nogil:
    """buf.w, found from buf's address alone (the arrays follow the header): a reader
    need not wait for the header to start loading the terms."""
    return <Node**>(<char*>buf + sizeof(DotBuffer))


cdef DotBuffer* _new_buffer(Py_ssize_t n) except NULL:
    cdef DotBuffer* buf = <DotBuffer*>PyMem_Malloc(
        sizeof(DotBuffer) + n * (2 * sizeof(Node*) + 6 * sizeof(double)))
    cdef double* d
    if buf == NULL:
        raise MemoryError()
    buf.n = n
    buf.n_const = 0
    buf.w = _weights_of(buf)
    buf.x = buf.w + n
    d = <double*>(buf.x + n)
    buf.c, buf.cgrad, buf.m, buf.mgrad, buf.s, buf.sgrad = d, d + n, d + 2 * n, d + 3 * n, d + 4 * n, d + 5 * n
    return buf


cdef object fused_sum(object ws, object xs, Value b, Py_ssize_t n):
    """The fused b + w0*x0 + ... for Value weights and Value-or-float inputs, or None if
    an operand is of another kind (the caller then builds the chain node by node).

    ws and xs are lists or tuples of length n; their items are read in place (no Python
    code runs here that could change them)."""
    cdef Py_ssize_t j
    cdef DotBuffer* buf
    cdef double s, xd
    cdef int err = 0                  # add and mul never fail
    cdef Value out
    cdef PyObject** wp = PySequence_Fast_ITEMS(ws)
    cdef PyObject** xp = PySequence_Fast_ITEMS(xs)
    if n >= (1 << 30):
        return None   # beyond what a step range can index (graph.pxi): build the chain
    for j in range(n):
        if (<PyObject*>wp[j]).ob_type != VALUE_TYPE or (
                (<PyObject*>xp[j]).ob_type != VALUE_TYPE and (<PyObject*>xp[j]).ob_type != &PyFloat_Type):
            return None
    buf = _new_buffer(n)
    s = b.n.data
    for j in range(n):
        _incref(wp[j])
        buf.w[j] = _node_of_item(wp[j])
        if (<PyObject*>xp[j]).ob_type == VALUE_TYPE:
            _incref(xp[j])
            buf.x[j] = _node_of_item(xp[j])
            xd = buf.x[j].data
            buf.c[j] = 0.0
        else:
            buf.x[j] = NULL
            xd = (<PyFloatObject*>xp[j]).ob_fval
            buf.c[j] = xd
            buf.n_const += 1
        buf.cgrad[j] = 0.0
        buf.m[j] = mul_forward(buf.w[j].data, xd, 0.0, &err)
        buf.mgrad[j] = 0.0
        s = add_forward(s, buf.m[j], 0.0, &err)    # s_j = s_{j-1} + m_j
        buf.s[j] = s
        buf.sgrad[j] = 0.0
    out = _new_node(s, DOT, b, 0.0)
    out.n.b = <Node*>buf
    return out


cdef inline void composite_backward_step(Node* node, Py_ssize_t j) noexcept:
    """Backward of a DOT node's step j: s_j's rule, then m_j's, as on the expanded chain."""
    cdef int err = 0
    cdef DotBuffer* buf = _dot_buffer(node)
    cdef double g = node.grad if j == buf.n - 1 else buf.sgrad[j]
    cdef double acc_data
    cdef double* acc_grad
    cdef double xd
    cdef double* xg
    if j == 0:
        acc_data = node.a.data
        acc_grad = &node.a.grad
    else:
        acc_data = buf.s[j - 1]
        acc_grad = &buf.sgrad[j - 1]
    add_backward(acc_data, buf.m[j], 0.0, buf.s[j], g, acc_grad, &buf.mgrad[j], &err)
    if buf.x[j] != NULL:
        xd = buf.x[j].data
        xg = &buf.x[j].grad
    else:
        xd = buf.c[j]
        xg = &buf.cgrad[j]
    mul_backward(buf.w[j].data, xd, 0.0, buf.m[j], buf.mgrad[j], &buf.w[j].grad, xg, &err)


cdef void composite_release(Node* node) noexcept:
    """Drop a dying DOT node's term operands and buffer (the bias is operand a)."""
    cdef DotBuffer* buf = _dot_buffer(node)
    cdef Py_ssize_t j
    node.b = NULL
    if buf == NULL:
        return
    for j in range(buf.n):
        release(buf.w[j])
        if buf.x[j] != NULL:
            release(buf.x[j])
    PyMem_Free(buf)


cdef Value _chain_node(int code, Value a, Value b, double data, double grad):
    """An ADD or MUL node with the given data and grad (nothing recomputed)."""
    cdef Value out = _new_value()
    out.n.code = code
    out.n.data = data
    out.n.grad = grad
    Py_INCREF(a)
    out.n.a = &a.n
    if b is not None:
        Py_INCREF(b)
        out.n.b = &b.n
    return out


cdef int composite_expand(Value node) except -1:
    """Turn a DOT node into micrograd's chain: the node becomes s_{n-1} = s_{n-2} + m_{n-1}."""
    cdef DotBuffer* buf
    cdef Py_ssize_t j, n
    cdef Value m, acc
    reveal_to_change(&node.n)  # a compiled graph may hold newer values for the buffer
    buf = _dot_buffer(&node.n)
    n = buf.n
    acc = _value(node.n.a)
    for j in range(n):
        if buf.x[j] != NULL:
            m = _chain_node(MUL, _value(buf.w[j]), _value(buf.x[j]), buf.m[j], buf.mgrad[j])
        else:
            m = _chain_node(MUL, _value(buf.w[j]), None, buf.m[j], buf.mgrad[j])
            m.n.flags = CONST_B
            m.n.k = buf.c[j]
            m.n.kgrad = buf.cgrad[j]
        if j < n - 1:
            acc = _chain_node(ADD, acc, m, buf.s[j], buf.sgrad[j])
    # the chain now holds its own references: rewire the node, then drop the buffer's
    Py_INCREF(acc)
    Py_INCREF(m)
    old_bias = node.n.a
    node.n.a = &acc.n
    node.n.b = &m.n
    node.n.code = ADD
    for j in range(n):
        Py_DECREF(<object>_obj(buf.w[j]))
        if buf.x[j] != NULL:
            Py_DECREF(<object>_obj(buf.x[j]))
    Py_DECREF(<object>_obj(old_bias))
    PyMem_Free(buf)
    return 0


cdef int composite_expand_all(Node* root) except -1:
    """Expand every DOT node reachable from root; returns how many there were."""
    cdef NodeArray topo
    cdef Py_ssize_t i
    cdef Node* node
    cdef list dots = []
    borrow_scratch(&topo)
    try:
        sorted_graph(root, &topo)
        for i in range(topo.n):
            if (<uintptr_t>topo.items[i]) & STEP_TAG:
                node = <Node*>((<uintptr_t>topo.items[i]) & ~TAG_MASK)
                if node.code == DOT:
                    dots.append(_value(node))
    finally:
        return_scratch(&topo)
    for v in dots:
        if (<Value>v).n.code == DOT:   # listed once per range of steps; expand once
            composite_expand(<Value>v)
    return len(dots)


cdef int composite_push_steps(NodeArray* arr, Node* node) except -1:
    """The sort's visit of a DOT node: push its operands and steps, last first, so that
    they come off the stack as micrograd's DFS meets the expanded chain: b, then for
    each term j: w_j, x_j, step j (where m_j and s_j go). Steps with nothing between
    them (their operands were visited already) go as one range."""
    cdef DotBuffer* buf = _dot_buffer(node)
    cdef Py_ssize_t j, hi = buf.n - 1
    cdef bint push_w, push_x
    for j in range(buf.n - 1, -1, -1):
        push_w = not (buf.w[j].flags & VISITED)
        push_x = buf.x[j] != NULL and not (buf.x[j].flags & VISITED)
        if push_w or push_x or j == 0:   # something may come before step j: end the range
            push_stack(arr, step_range(j, hi))
            push_stack(arr, <Node*>(<uintptr_t>node | STEP_TAG))
            if push_x:
                push_stack(arr, buf.x[j])
            if push_w:
                push_stack(arr, buf.w[j])
            hi = j - 1
    if not (node.a.flags & VISITED):
        push_stack(arr, node.a)
    return 0


cdef void composite_reveal_operands(Node* node) noexcept:
    """reveal_hidden for every operand of a DOT node (before it is shown or expanded)."""
    cdef DotBuffer* buf = _dot_buffer(node)
    cdef Py_ssize_t j
    reveal_hidden(node.a)
    for j in range(buf.n):
        reveal_hidden(buf.w[j])
        if buf.x[j] != NULL:
            reveal_hidden(buf.x[j])
