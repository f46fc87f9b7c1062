# Recording a graph for replay: the graph under an output, as flat arrays (a Tape).
#
# Every node gets a slot: its data and grad sit at the same index of two arrays (D, G),
# and an inline constant gets a slot of its own. The ops become entries in topological
# order; the backward program lists them in the order micrograd's backward visits them,
# a fused sum keeping its per-term steps (fused.pxi). replay.pxi's CompiledGraph owns a
# Tape and replays it.
#
# Recording is three passes, all in C:
#   1. with the GIL (it reads nodes): one walk in topological order that gives every
#      node a slot (kept for a moment in the node's `scratch` field, so that operands are
#      found without a hash lookup) and emits the entries and the backward steps (a
#      relu/tanh/sigmoid right after a fused sum folded into the sum's entry); then
#      decide which nodes Python still holds (shown) and which live only in the tape
#      (hidden);
#   2. without the GIL (arrays only): find a batch of identical examples and lay it out
#      for the lane replay (lanes.pxi), or else renumber slots so that each fused sum's
#      weights, and its inputs, are consecutive (the array kernels of kernels.h then
#      apply); group independent sums;
#   3. with the GIL (replay.pxi): mark the recorded nodes and take a reference to each.
#
# A recording costs less than one eager build of its graph: each node and each term is
# read once, and the arrays of the last freed tape are reused (no fresh pages to fault
# in, no copies while they grow), as the sort reuses its scratch buffers.

cdef struct LanePlan       # lanes.pxi

cdef struct Entry:
    int32_t out      # the node's slot
    int32_t a        # operand slots (DOT: a is the bias, b the first term)
    int32_t b
    int32_t n        # DOT: number of terms
    int32_t act_out  # DOT with a fused activation: the activation node's slot
    int32_t wbase    # DOT: slot of w_0 if the weights are consecutive slots, else -1
    int32_t xbase    # DOT: likewise for the inputs
    double k         # POW: the exponent
    uint8_t code
    uint8_t act      # DOT: the op code of the activation applied to it (0: none)
    uint8_t group    # DOT: consecutive independent DOTs run side by side (1, 2 or 4)

cdef struct BwItem:
    int32_t entry    # (while recording: a fused sum's slot, until its entry exists)
    int32_t hi       # DOT: steps hi down to lo; plain nodes: -1
    int32_t lo

cdef struct Tape:
    Py_ssize_t n_slots, n_entries, n_terms, n_program, n_leaves, n_shown
    # per slot
    double* D                # data
    double* G                # grad
    Node** node_of_slot      # the node (NULL for an inline constant)
    uint8_t* hidden          # 1 if the node lives only here
    int32_t* work            # recording's scratch (a fused sum's first term, new slots, ...)
    int32_t* refs            # recording: an op node's references not (yet) matched by an
                             # operand link of the graph (_find_hidden)
    # per entry
    Entry* entries
    double* dot_g1           # a fused sum's grad at the first backward
    Node** shown_nodes       # the recorded non-leaf nodes Python holds: written back
    int32_t* shown_slots
    # per term
    int32_t* tw              # the weight's and the input's slots
    int32_t* tx
    double* sgrad            # s_j's and m_j's grads in full mode (replay.pxi; NULL
    double* mgrad            # until a replay needs them)
    # the rest
    BwItem* program
    Node** leaf_nodes        # leaves: read at every call, their grads added to in place
    int32_t* leaf_slots
    int32_t out_slot
    bint raises              # a backward rule can raise (POW, LOG)
    bint has_custom          # Function nodes: the replay calls into Python
    LanePlan* lanes          # a batch of identical examples, replayed side by side (lanes.pxi)
    Py_ssize_t cap_slots, cap_entries, cap_terms, cap_program, cap_leaves


cdef extern from "kernels.h":
    void* cm_malloc_lines(size_t n) noexcept nogil
    bint cm_same_slots(const int32_t* s, const int32_t* s1, Py_ssize_t n, int32_t delta,
                       int32_t lo, int32_t hi) noexcept nogil
    void cm_shifted(int32_t* out, const int32_t* src, Py_ssize_t n, int32_t shift,
                    int32_t lanes_end) noexcept nogil


cdef void _free_arrays(Tape* t) noexcept nogil:
    lanes_free(t.lanes)
    free(t.D); free(t.G); free(t.node_of_slot); free(t.hidden); free(t.work); free(t.refs)
    free(t.entries); free(t.dot_g1); free(t.shown_nodes); free(t.shown_slots)
    free(t.tw); free(t.tx); free(t.sgrad); free(t.mgrad)
    free(t.program); free(t.leaf_nodes); free(t.leaf_slots)
    memset(t, 0, sizeof(Tape))


# The arrays of the last freed tape, for the next recording (at most this many bytes).
cdef Tape _spare_tape
cdef bint _have_spare_tape = False
cdef Py_ssize_t SPARE_TAPE_BYTES = 64 << 20


cdef void tape_free(Tape* t) noexcept:
    """Free a tape's arrays, or keep them for the next recording."""
    global _have_spare_tape, _spare_tape
    cdef Py_ssize_t size = (t.cap_slots * (2 * sizeof(double) + sizeof(Node*) + 9)
                            + t.cap_entries * (sizeof(Entry) + sizeof(double) + sizeof(Node*) + 4)
                            + t.cap_terms * 8 + t.cap_program * sizeof(BwItem)
                            + t.cap_leaves * (sizeof(Node*) + 4))
    free(t.sgrad); free(t.mgrad)       # exact-sized, allocated by replays
    t.sgrad = t.mgrad = NULL
    lanes_free(t.lanes)
    t.lanes = NULL
    if not _have_spare_tape and 0 < size <= SPARE_TAPE_BYTES:
        _spare_tape = t[0]
        _have_spare_tape = True
        memset(t, 0, sizeof(Tape))
    else:
        _free_arrays(t)


cdef void _adopt_spare_tape(Tape* t) noexcept:
    """Start a tape afresh: on the spare arrays if it has none and there are some."""
    global _have_spare_tape, _spare_tape
    if _have_spare_tape and t.cap_slots == 0 and t.cap_entries == 0 and t.cap_terms == 0 \
            and t.cap_program == 0 and t.cap_leaves == 0:
        t[0] = _spare_tape
        _have_spare_tape = False
        memset(&_spare_tape, 0, sizeof(Tape))
    t.n_slots = t.n_entries = t.n_terms = t.n_program = t.n_leaves = t.n_shown = 0
    t.out_slot = 0
    t.raises = t.has_custom = False


cdef inline Py_ssize_t _capacity(Py_ssize_t cap, Py_ssize_t need) noexcept:
    """The capacity to grow to from cap, to hold need items (0 if cap does)."""
    return 0 if need <= cap else max(need, 2 * cap + 1024)


cdef int _resize(void** array, Py_ssize_t n, size_t size) except -1:
    """realloc array to n items of size bytes."""
    cdef void* grown = realloc(array[0], n * size)
    if grown == NULL:
        raise MemoryError("not enough memory to compile the graph")
    array[0] = grown
    return 0


# The walk adds a slot per node, an entry per op and a step per item: each adder is an
# inline store, and growing the arrays a call apart (a reused tape has room already).
cdef inline int32_t _new_slot(Tape* t, Node* node, double data, double grad) except -1:
    """The next slot, for node (NULL: an inline constant)."""
    cdef Py_ssize_t s = t.n_slots
    if s == t.cap_slots:
        _grow_slots(t)
    t.D[s] = data
    t.G[s] = grad
    t.node_of_slot[s] = node
    t.n_slots = s + 1
    return <int32_t>s


cdef int _grow_slots(Tape* t) except -1:
    cdef Py_ssize_t cap = _capacity(t.cap_slots, t.n_slots + 1)
    if t.n_slots >= 0x7ffffff0:
        raise MemoryError("the graph is too large to compile (2^31 slots)")
    _resize(<void**>&t.D, cap, sizeof(double))
    _resize(<void**>&t.G, cap, sizeof(double))
    _resize(<void**>&t.node_of_slot, cap, sizeof(Node*))
    _resize(<void**>&t.hidden, cap, 1)
    _resize(<void**>&t.work, cap, sizeof(int32_t))
    _resize(<void**>&t.refs, cap, sizeof(int32_t))
    t.cap_slots = cap
    return 0


cdef inline Entry* _new_entry(Tape* t, int code, int32_t out) except NULL:
    cdef Entry* en
    if t.n_entries == t.cap_entries:
        _grow_entries(t, t.n_entries + 1)
    en = &t.entries[t.n_entries]
    t.n_entries += 1
    en.out = out
    en.a = en.b = en.n = 0
    en.act_out = en.wbase = en.xbase = -1
    en.k = 0.0
    en.code = code
    en.act = 0
    en.group = 1
    return en


cdef int _grow_entries(Tape* t, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = _capacity(t.cap_entries, need)
    _resize(<void**>&t.entries, cap, sizeof(Entry))
    _resize(<void**>&t.dot_g1, cap, sizeof(double))
    _resize(<void**>&t.shown_nodes, cap, sizeof(Node*))
    _resize(<void**>&t.shown_slots, cap, sizeof(int32_t))
    t.cap_entries = cap
    return 0


cdef inline int _new_step(Tape* t, int32_t of, int32_t hi, int32_t lo) except -1:
    """A backward step, in topological order (the program reverses them at the end)."""
    cdef BwItem* step
    cdef Py_ssize_t cap
    if t.n_program == t.cap_program:
        cap = _capacity(t.cap_program, t.n_program + 1)
        _resize(<void**>&t.program, cap, sizeof(BwItem))
        t.cap_program = cap
    step = &t.program[t.n_program]
    step.entry = of
    step.hi = hi
    step.lo = lo
    t.n_program += 1
    return 0


# ---- pass 1: one walk over the graph (with the GIL) -------------------------------------
# The walk is the topological sort of graph.pxi (the same stack discipline, so the same
# order) emitting entries and steps as it goes instead of listing nodes: each node and
# each fused-sum term is read once. A term whose operand is not yet visited when its sum
# is visited is filled in when its steps come off the stack (the operand is done then).
cdef int record_tape(Tape* t, Node* root, list functions, bint lanes) except -1:
    """Record the graph under root into t (empty on entry; tape_free it on error).

    ``functions`` receives (entry index, FunctionBackward) for every Function node.
    With ``lanes``, a batch of identical examples is laid out for the lane replay."""
    cdef NodeArray stack
    cdef bint has_functions
    cdef Node* hidden
    _adopt_spare_tape(t)
    borrow_scratch(&stack)
    try:
        while True:
            hidden = _walk(t, root, &stack, functions)
            if hidden == NULL:
                break
            # another compiled graph holds this node: bring it up to date, start again
            _unmark(t)
            _detach_owner(hidden.tape)
            forget_stale_marks(hidden)
            if hidden.flags & HIDDEN:    # its graph is replaying (in another thread, or
                                         # we run in a Function it called)
                raise RuntimeError(
                    "cannot compile a graph through a node of a compiled graph that is "
                    "replaying right now (in another thread, or it called the Function "
                    "that got here): compile after the replay")
            _adopt_spare_tape(t)
            del functions[:]
    except BaseException:
        _unmark(t)
        raise
    finally:
        return_scratch(&stack)
    _unmark(t)
    _make_program(t)
    t.out_slot = root.scratch
    _find_hidden(t)
    has_functions = len(functions) > 0
    with nogil:
        if lanes and not has_functions:
            t.lanes = find_lanes(t)
        if t.lanes == NULL:
            _number_slots_for_runs(t)
        _find_runs(t)
    return 0


cdef void _unmark(Tape* t) noexcept:
    """Clear the walk's VISITED marks (every node with a slot has one)."""
    cdef Py_ssize_t s
    for s in range(t.n_slots):
        if t.node_of_slot[s] != NULL:
            t.node_of_slot[s].flags &= ~VISITED


cdef Node* _walk(Tape* t, Node* root, NodeArray* arr, list functions) except? NULL:
    """The walk; returns NULL, or the first node found hidden in another compiled graph
    (the walk then stops: the caller reveals it and walks again)."""
    cdef Node* node
    cdef Node* child
    cdef uintptr_t p, rng
    cdef Py_ssize_t i, cap
    cdef PyObject* children
    arr.stack_n = 0
    push_stack(arr, root)
    while arr.stack_n:
        arr.stack_n -= 1
        p = <uintptr_t>arr.stack[arr.stack_n]
        if p & CHILDREN_DONE:
            _emit_op(t, <Node*>(p ^ CHILDREN_DONE), functions)
            continue
        if p & STEP_TAG:   # a fused sum's steps: their operands are done
            rng = <uintptr_t>arr.stack[arr.stack_n - 1]
            arr.stack_n -= 2
            _emit_steps(t, <Node*>(p ^ STEP_TAG), <int32_t>(<uintptr_t>arr.stack[arr.stack_n] >> 3),
                        step_lo(<Node*>rng), step_hi(<Node*>(rng & ~LAST_RANGE)),
                        (rng & LAST_RANGE) != 0)
            continue
        node = <Node*>p
        if node.flags & VISITED:
            continue
        if node.flags & HIDDEN:
            return node
        node.scratch = <uint32_t>_new_slot(t, node, node.data, node.grad)
        node.flags |= VISITED      # (after the slot: _unmark clears the nodes with one)
        if node.code == LEAF or (node.code == CUSTOM and not _custom_children_len(node)):
            cap = _capacity(t.cap_leaves, t.n_leaves + 1)
            if cap:
                _resize(<void**>&t.leaf_nodes, cap, sizeof(Node*))
                _resize(<void**>&t.leaf_slots, cap, sizeof(int32_t))
                t.cap_leaves = cap
            t.leaf_nodes[t.n_leaves] = node
            t.leaf_slots[t.n_leaves] = node.scratch
            t.n_leaves += 1
            continue
        # its references now; each operand link found below takes one off (_find_hidden)
        t.refs[node.scratch] = <int32_t>min(_refcount(_obj(node)), 0x7fffffff)
        if node.code == DOT:
            _visit_sum(t, node, arr)
            continue
        push_stack(arr, <Node*>(p | CHILDREN_DONE))
        # the children last-first so the first is visited first (as graph.pxi's sort)
        if node.code == CUSTOM:
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
    return NULL


# on the walk's stack, the step range of a fused sum's last steps carries this bit
cdef uintptr_t LAST_RANGE = <uintptr_t>1 << 63


cdef int _visit_sum(Tape* t, Node* node, NodeArray* arr) except -1:
    """A fused sum's visit: its terms' slots (those of visited operands now, the others
    when its steps come off the stack), and its operands and steps pushed as
    fused.pxi's composite_push_steps pushes them (with the sum's slot under each range).

    Most of a recording's time is here, waiting for the terms' operands to come from
    memory. So the terms are read first, in memory order and into local pointers (the
    loads do not wait on each other, nor on the buffer's header: its arrays follow it),
    and their pending operands and step ranges are pushed in a second pass, in the
    order the sort needs (last term first)."""
    cdef DotBuffer* buf = _dot_buffer(node)
    cdef Node** W = _weights_of(buf)
    cdef Py_ssize_t n = buf.n, j, hi = n - 1, base = t.n_terms
    cdef Py_ssize_t cap = _capacity(t.cap_terms, base + n)
    cdef int32_t slot = <int32_t>node.scratch
    cdef Node** X
    cdef Node* w
    cdef Node* x
    cdef int32_t* tw
    cdef int32_t* tx
    cdef int32_t* refs
    cdef Node** top
    cdef uintptr_t last = LAST_RANGE
    if cap:
        _resize(<void**>&t.tw, cap, sizeof(int32_t))
        _resize(<void**>&t.tx, cap, sizeof(int32_t))
        t.cap_terms = cap
    while arr.stack_cap - arr.stack_n < 5 * n + 1:   # a range's three and two operands a term
        _grow(&arr.stack, &arr.stack_cap)
    t.n_terms = base + n
    t.work[slot] = <int32_t>base
    X = W + n
    tw = t.tw + base
    tx = t.tx + base
    refs = t.refs
    for j in range(n):           # slots of visited operands; -1: not visited yet
        w = W[j]
        x = X[j]
        if w.flags & VISITED:
            tw[j] = <int32_t>w.scratch
            refs[w.scratch] -= 1     # (a leaf's count is never read)
        else:
            tw[j] = -1
        if x == NULL:
            tx[j] = _new_slot(t, NULL, buf.c[j], buf.cgrad[j])
            refs = t.refs            # (the slot arrays may have moved)
        elif x.flags & VISITED:
            tx[j] = <int32_t>x.scratch
            refs[x.scratch] -= 1
        else:
            tx[j] = -1
    top = arr.stack + arr.stack_n
    for j in range(n - 1, -1, -1):
        if tw[j] < 0 or tx[j] < 0 or j == 0:   # something may come before step j: end the range
            top[0] = <Node*>((<uintptr_t>slot << 3) | INDEX_TAG)
            top[1] = <Node*>(<uintptr_t>step_range(j, hi) | last)
            top[2] = <Node*>(<uintptr_t>node | STEP_TAG)
            top += 3
            last = 0
            if tx[j] < 0:
                top[0] = X[j]
                top += 1
            if tw[j] < 0:
                top[0] = W[j]
                top += 1
            hi = j - 1
    arr.stack_n = top - arr.stack
    if not (node.a.flags & VISITED):
        push_stack(arr, node.a)
    return 0


cdef int _emit_steps(Tape* t, Node* node, int32_t slot, Py_ssize_t lo, Py_ssize_t hi,
                     bint last) except -1:
    """A fused sum's steps lo..hi, in order: fill term lo if its operands were visited
    since (_visit_sum ends a range at each term it pushed operands for, so no other
    term of the range can be waiting), and after the last steps, its entry."""
    cdef Py_ssize_t base = t.work[slot]
    cdef DotBuffer* buf
    cdef Entry* en
    if t.tw[base + lo] < 0 or t.tx[base + lo] < 0:
        buf = _dot_buffer(node)
        if t.tw[base + lo] < 0:
            t.tw[base + lo] = <int32_t>buf.w[lo].scratch
            t.refs[buf.w[lo].scratch] -= 1
        if t.tx[base + lo] < 0:
            t.tx[base + lo] = <int32_t>buf.x[lo].scratch
            t.refs[buf.x[lo].scratch] -= 1
    _new_step(t, slot, <int32_t>hi, <int32_t>lo)   # its entry comes after the last steps
    if last:
        en = _new_entry(t, DOT, slot)
        en.a = <int32_t>node.a.scratch
        t.refs[en.a] -= 1
        en.b = <int32_t>base
        en.n = <int32_t>(hi + 1)
        t.work[slot] = <int32_t>(t.n_entries - 1)
    return 0


cdef int _emit_op(Tape* t, Node* node, list functions) except -1:
    """A plain op node, its operands done: its entry and its step (or, for an
    activation of the fused sum just emitted, that sum's act)."""
    cdef Entry* en
    cdef PyObject* children
    cdef Py_ssize_t i
    if (node.code == RELU or node.code == TANH or node.code == SIGMOID) and _fold_activation(t, node):
        return 0
    en = _new_entry(t, node.code, <int32_t>node.scratch)
    en.k = node.k
    if node.code == CUSTOM:
        functions.append((t.n_entries - 1, _function_of(node)))
        t.has_custom = True
        en.a = en.b = en.out
        children = custom_children(node)      # (each item one reference)
        for i in range(PyTuple_GET_SIZE(<object>children)):
            t.refs[_node_of_item(PyTuple_GET_ITEM(<object>children, i)).scratch] -= 1
    else:
        en.a = <int32_t>node.a.scratch
        en.b = en.a
        t.refs[en.a] -= 1
        if binary_op(node.code):
            if node.flags & CONST_B:
                en.b = _new_slot(t, NULL, node.k, node.kgrad)
            else:
                en.b = <int32_t>node.b.scratch
                t.refs[en.b] -= 1             # (a + a: its second reference)
        t.raises |= backward_can_raise(node.code)
    _new_step(t, <int32_t>(t.n_entries - 1), -1, -1)
    return 0


cdef bint _fold_activation(Tape* t, Node* node) noexcept:
    """Fold a relu/tanh/sigmoid into the fused sum it is applied to when the two are
    adjacent in both orders: forward (the sum's entry is the last one) and backward
    (the sum's last steps are the last step: reversed, the op's item comes right
    before the sum's first). The replay then applies it as the sum's act, which
    does the same float operations in the same order."""
    cdef Entry* dot
    cdef BwItem* last
    if t.n_entries == 0:
        return False
    dot = &t.entries[t.n_entries - 1]
    last = &t.program[t.n_program - 1]     # (the sum's entry came with its last steps)
    if dot.code != DOT or dot.act or <int32_t>node.a.scratch != dot.out \
            or last.entry != dot.out or last.hi != dot.n - 1:
        return False
    dot.act = node.code
    dot.act_out = <int32_t>node.scratch
    t.refs[dot.out] -= 1
    return True


cdef void _make_program(Tape* t) noexcept:
    """The backward program from the walk's steps: reversed, a fused sum's slot replaced
    by its entry, a sum's consecutive steps merged into one item (in place)."""
    cdef Py_ssize_t i, n = 0
    cdef BwItem item
    cdef BwItem* prog = t.program
    for i in range(t.n_program // 2):
        item = prog[i]
        prog[i] = prog[t.n_program - 1 - i]
        prog[t.n_program - 1 - i] = item
    for i in range(t.n_program):
        item = prog[i]
        if item.hi >= 0:
            item.entry = t.work[item.entry]
        if item.hi >= 0 and n > 0 and prog[n - 1].entry == item.entry and prog[n - 1].lo == item.hi + 1:
            prog[n - 1].lo = item.lo
        else:
            prog[n] = item
            n += 1
    t.n_program = n
    if t.n_slots:                 # (memset on NULL is undefined, even of 0 bytes)
        memset(t.hidden, 0, t.n_slots)
    if t.n_entries:
        memset(t.dot_g1, 0, t.n_entries * sizeof(double))


cdef Py_ssize_t _custom_children_len(Node* node) noexcept:
    return PyTuple_GET_SIZE(<object>custom_children(node))


cdef object _function_of(Node* node):
    """The FunctionBackward of a Function node; TypeError for a hand-written _backward."""
    rec = record_of(_value(node))
    if rec is not None:
        fb = (<_Record>rec).backward
        if fb is not None and hasattr(fb, "recompute") and hasattr(fb, "inputs"):
            return fb
    raise TypeError(
        f"cannot compile a node with op {_value(node)._op!r}: it has a hand-written "
        "_backward and no forward rule to replay; define it as a "
        "cmicrograd.function.Function instead")


cdef int _find_hidden(Tape* t) except -1:
    """Split the recorded op nodes (each entry's, and a fused sum's activation) into
    those Python holds (shown: written back after every call) and the others (hidden:
    they live only in the tape).

    A node is held from outside when it has more references than the recorded graph's
    own operand links (plus the compiled graph's reference to its output): the walk
    took its reference count when it reached it and one off for each link it found
    (t.refs)."""
    cdef Py_ssize_t e, n_acts = 0
    cdef Entry* en
    for e in range(t.n_entries):
        n_acts += t.entries[e].act != 0
    if t.n_entries + n_acts > t.cap_entries:     # (the shown arrays: one item a node)
        _grow_entries(t, t.n_entries + n_acts)
    t.n_shown = 0
    for e in range(t.n_entries):
        en = &t.entries[e]
        _show_or_hide(t, en.out, en.code == CUSTOM)
        if en.act:
            _show_or_hide(t, en.act_out, False)
    return 0


cdef inline void _show_or_hide(Tape* t, int32_t s, bint always_shown) noexcept:
    if t.refs[s] > (s == t.out_slot) or always_shown:
        t.shown_slots[t.n_shown] = s
        t.shown_nodes[t.n_shown] = t.node_of_slot[s]
        t.n_shown += 1
        t.hidden[s] = 0
    else:
        t.hidden[s] = 1


# ---- pass 2: layout (no GIL) ------------------------------------------------------------
cdef void _number_slots_for_runs(Tape* t) noexcept nogil:
    """Renumber slots so that each DOT's weights, and its inputs, are consecutive where
    possible: the first DOT to use a set of fresh slots lays them out."""
    cdef Py_ssize_t n = t.n_slots, e, j, s, pos = 0, side
    cdef int32_t* new = t.work     # old slot -> new slot; -1: not laid out yet
    cdef int32_t* run
    cdef Entry* en
    cdef bint fresh
    for s in range(n):
        new[s] = -1
    for e in range(t.n_entries):
        en = &t.entries[e]
        if en.code != DOT:
            continue
        for side in range(2):
            run = (t.tw if side == 0 else t.tx) + en.b
            fresh = True       # distinct, and not laid out yet (-2 marks "in this run")
            for j in range(en.n):
                if new[run[j]] != -1:
                    fresh = False
                    break
                new[run[j]] = -2
            for j in range(en.n):
                if new[run[j]] != -2:
                    break
                if fresh:
                    new[run[j]] = <int32_t>pos
                    pos += 1
                else:
                    new[run[j]] = -1
    for s in range(n):
        if new[s] < 0:
            new[s] = <int32_t>pos
            pos += 1
    _renumber_slots(t, new)


cdef void _renumber_slots(Tape* t, int32_t* new, bint terms_done=False) noexcept nogil:
    """Apply the slot permutation ``new`` (old slot -> new slot) to every array (new may
    be left changed); ``terms_done``: the fused sums' terms already are."""
    cdef Py_ssize_t i
    cdef Entry* en
    for i in range(t.n_entries):
        en = &t.entries[i]
        en.out = new[en.out]
        en.a = new[en.a]
        if en.code != DOT:
            en.b = new[en.b]
        if en.act_out >= 0:
            en.act_out = new[en.act_out]
    if not terms_done:
        for i in range(t.n_terms):
            t.tw[i] = new[t.tw[i]]
            t.tx[i] = new[t.tx[i]]
    for i in range(t.n_leaves):
        t.leaf_slots[i] = new[t.leaf_slots[i]]
    for i in range(t.n_shown):
        t.shown_slots[i] = new[t.shown_slots[i]]
    t.out_slot = new[t.out_slot]
    if _move_in_place or not _move_slots_to_new_arrays(t, new):
        _move_slots_in_place(t, new)


cdef bint _move_in_place = False   # tests: the fallback, as when memory is short


def _set_move_in_place(bint on):
    """Tests: make recordings move slots and entries in place, as they do when memory
    is short."""
    global _move_in_place
    _move_in_place = on


cdef bint _move_slots_to_new_arrays(Tape* t, const int32_t* new) noexcept nogil:
    """Move the per-slot arrays' contents to fresh arrays in the new order: reads in
    order, writes that do not wait on each other, so a big tape moves at memory speed
    (following the permutation's cycles in place waits on a cache miss per slot). False,
    with nothing changed, if there is no memory for the copies."""
    cdef Py_ssize_t i, n = t.n_slots, cap = t.cap_slots
    cdef int32_t j
    cdef double* D = <double*>cm_malloc_lines(cap * sizeof(double) + 8)
    cdef double* G = <double*>cm_malloc_lines(cap * sizeof(double) + 8)
    cdef Node** nodes = <Node**>malloc(cap * sizeof(Node*) + 8)
    cdef uint8_t* hidden = <uint8_t*>malloc(cap * sizeof(uint8_t) + 8)
    if D == NULL or G == NULL or nodes == NULL or hidden == NULL:
        free(D); free(G); free(nodes); free(hidden)
        return False
    for i in range(n):   # (one pass: one read of new[i] for the four)
        j = new[i]
        D[j] = t.D[i]
        G[j] = t.G[i]
        nodes[j] = t.node_of_slot[i]
        hidden[j] = t.hidden[i]
    free(t.D); free(t.G); free(t.node_of_slot); free(t.hidden)
    t.D, t.G, t.node_of_slot, t.hidden = D, G, nodes, hidden
    return True


cdef void _move_slots_in_place(Tape* t, int32_t* new) noexcept nogil:
    """The same with no extra memory: each slot's contents along its cycle (new is left
    marked)."""
    cdef Py_ssize_t i, start, k
    cdef double d, g, d2, g2
    cdef Node* node
    cdef Node* node2
    cdef uint8_t h, h2
    for start in range(t.n_slots):
        if new[start] < 0:
            continue
        d, g, node, h = t.D[start], t.G[start], t.node_of_slot[start], t.hidden[start]
        k = start
        while new[k] >= 0:
            i = new[k]
            new[k] = -1 - new[k]          # done
            d2, g2, node2, h2 = t.D[i], t.G[i], t.node_of_slot[i], t.hidden[i]
            t.D[i], t.G[i], t.node_of_slot[i], t.hidden[i] = d, g, node, h
            d, g, node, h = d2, g2, node2, h2
            k = i


cdef void _find_runs(Tape* t) noexcept nogil:
    """Per DOT: are its weights, and its inputs, consecutive disjoint slots (then the
    array kernels apply)? And group consecutive independent DOTs of equal length."""
    cdef Py_ssize_t e, j, g, f
    cdef Entry* en
    cdef Entry* first
    cdef int32_t lo, hi
    cdef bint ok
    for e in range(t.n_entries):
        en = &t.entries[e]
        if en.code != DOT:
            continue
        ok = True
        for j in range(1, en.n):
            if t.tw[en.b + j] != t.tw[en.b] + j or t.tx[en.b + j] != t.tx[en.b] + j:
                ok = False
                break
        if not ok:
            continue
        # the two ranges, the bias and the node itself: no slot twice
        lo = t.tw[en.b]
        hi = t.tx[en.b]
        if lo < hi + en.n and hi < lo + en.n:
            continue
        if lo <= en.a < lo + en.n or hi <= en.a < hi + en.n:
            continue
        en.wbase = lo
        en.xbase = hi
    e = 0
    while e < t.n_entries:
        first = &t.entries[e]
        if first.code != DOT or first.wbase < 0:
            e += 1
            continue
        g = 1
        while g < 4 and e + g < t.n_entries:
            en = &t.entries[e + g]
            if en.code != DOT or en.wbase < 0 or en.n != first.n or en.act != first.act:
                break
            ok = True
            for f in range(e, e + g):    # reads nothing the earlier ones write
                if not _independent(&t.entries[f], en):
                    ok = False
            if not ok:
                break
            g += 1
        first.group = <uint8_t>(g if g != 3 else 2)
        e += first.group


cdef inline bint _independent(Entry* earlier, Entry* later) noexcept nogil:
    cdef int32_t s
    cdef int32_t outs[2]
    cdef int i
    outs[0] = earlier.out
    outs[1] = earlier.act_out if earlier.act else -2
    for i in range(2):
        s = outs[i]
        if later.a == s or later.wbase <= s < later.wbase + later.n or later.xbase <= s < later.xbase + later.n:
            return False
    return True

