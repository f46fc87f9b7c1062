# Compile once, replay many: a recorded graph's forward and backward in flat arrays.
#
# compile(root) records the graph under root: every node gets a slot (its data and grad
# side by side) in one array; the ops become entries in topological order, and the
# backward schedule lists them in the reverse order micrograd's backward visits them,
# fused sums keeping their per-term steps (fused.pxi). Replaying is then a walk over
# arrays with no Python call, no allocation and no sort, with the GIL released.
#
# What Python sees stays exact:
# * leaves (parameters, inputs, constants) stay in their Values: their data is read at
#   each forward and backward, their grads are added to in place;
# * a non-leaf node that Python still holds (its refcount exceeds the references the
#   graph itself holds) is written back after every call;
# * the other non-leaf nodes are hidden: marked HIDDEN, they live only in the arrays.
#   Anything that could reveal one (_prev, pickling, an eager backward through it, a
#   structural change such as expanding a fused sum) first writes every tape back into
#   its Values and detaches it (reveal_recorded_graphs); a detached tape records the graph again
#   on its next call. So a graph is recorded by at most one live tape at a time.
#
# Fused sums: on the first backward after a forward, every hidden intermediate of a
# chain has grad 0.0 + G (G the sum node's grad), so a term's rule is just
# w.grad += x * G' and x.grad += w * G'. A graph whose backward can raise (POW, LOG), or
# a second backward without a forward, keeps every intermediate grad instead.
#
# Layout: data and grad live in two arrays (D and G). Slots are numbered so that each
# fused sum's weights, and its inputs, are consecutive where that is possible (for an
# MLP it always is: a neuron's weights, a layer's outputs); such a sum runs the plain
# array loops of kernels.h, which compilers vectorize. Within one sum every weight and
# input receives exactly one addition, so splitting the interleaved updates into two
# loops changes no result; the recorder checks the ranges are disjoint.

cdef extern from "kernels.h":
    void cm_axpy(double* g, const double* v, double a, Py_ssize_t n) noexcept nogil
    double cm_dot(double s, const double* w, const double* x, Py_ssize_t n) noexcept nogil
    void cm_dot4(double* s, const double* w0, const double* x0, const double* w1,
                 const double* x1, const double* w2, const double* x2, const double* w3,
                 const double* x3, Py_ssize_t n) noexcept nogil

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
    int32_t entry
    int32_t hi       # DOT: steps hi down to lo; plain nodes: -1
    int32_t lo

cdef object _live_tapes = None      # weakref.WeakSet of CompiledGraph
cdef Py_ssize_t _n_recorded = 0     # nodes flagged RECORDED in all live tapes


cdef void reveal_recorded_graphs() noexcept:
    """Write every live compiled graph back into its Values and detach it (see above).

    A graph in the middle of a replay (another thread's, with the GIL released, or ours,
    in a Function's callback) is not touched: it detaches itself when the replay ends,
    so its arrays are never copied half-computed."""
    global _n_recorded
    cdef bint pending = False
    if _n_recorded == 0 or _live_tapes is None:
        return
    for tape in list(_live_tapes):
        if (<CompiledGraph>tape).running:
            (<CompiledGraph>tape).detach_pending = True
            pending = True
        else:
            (<CompiledGraph>tape)._detach()
    if not pending:
        _n_recorded = 0


# ---- the interface the core calls (graph.pxi, value.pxi, fused.pxi) ------------------
cdef inline bint any_recorded() noexcept:
    """Whether any node is recorded at all (the core's fast path: nothing to reveal)."""
    return _n_recorded != 0


cdef inline void reveal(Node* node) noexcept:
    """node is about to be shown to Python or restructured: if a compiled graph recorded
    it, write that graph back and detach it."""
    if node.flags & (HIDDEN | RECORDED):
        reveal_recorded_graphs()


cdef inline void reveal_hidden(Node* node) noexcept:
    """node's data is about to be read: if it lives in a compiled graph, write it back."""
    if node.flags & HIDDEN:
        reveal_recorded_graphs()


@cython.final
cdef class CompiledGraph:
    """A recorded graph, replayed in C: ``forward()`` recomputes every non-leaf node from
    the leaves' current data, ``backward()`` does what ``output.backward()`` would.

    Make one with ``cmicrograd.compile(output)``. Python control flow that ran while the
    graph was built (an ``if`` on ``.data``) is frozen into it, as with torch.jit.trace;
    relu and the other ops are evaluated anew at every replay.
    """
    cdef readonly Value output
    cdef double* D                   # data of every slot
    cdef double* G                   # grad of every slot
    cdef Entry* entries
    cdef int32_t* tw                 # per term: the weight's and the input's slots
    cdef int32_t* tx
    cdef BwItem* program
    cdef Node** leaf_nodes
    cdef int32_t* leaf_slots
    cdef Node** shown_nodes          # recorded non-leaf nodes Python holds
    cdef int32_t* shown_slots
    cdef Node** node_of_slot         # the Node of each slot (NULL for constants)
    cdef uint8_t* hidden             # per slot: 1 if the node lives only here
    cdef double* dot_g1              # per entry: a fused sum's grad at the first backward
    cdef double* sgrad               # per term, in full mode: s_j's and m_j's grads
    cdef double* mgrad
    cdef Py_ssize_t n_slots, n_entries, n_terms, n_program, n_leaves, n_shown
    cdef Py_ssize_t out_slot
    cdef int passes                  # backwards since the last forward
    cdef bint full                   # keep every intermediate grad (see above)
    cdef bint raises                 # the graph has POW or LOG nodes
    cdef bint has_custom             # Function nodes: replay calls into Python
    cdef bint recorded
    cdef bint running
    cdef bint detach_pending         # asked to detach while running: do it when done
    cdef bint forward_failed
    cdef list keep                   # a reference to every recorded Value
    cdef list functions              # per CUSTOM entry: its FunctionBackward
    cdef dict custom_index           # entry index -> position in functions
    cdef dict slot_index             # node address -> slot, for Function nodes' inputs
    cdef object __weakref__

    def __cinit__(self):
        self.recorded = False

    def __init__(self, Value output):
        self.output = output
        _register_tape(self)
        self._record()

    def __dealloc__(self):
        if self.recorded and self.keep is not None:
            self._detach()   # the Values outlive us: leave them current
        self._free_arrays()

    cdef void _free_arrays(self) noexcept:
        PyMem_Free(self.D); self.D = NULL
        PyMem_Free(self.G); self.G = NULL
        PyMem_Free(self.entries); self.entries = NULL
        PyMem_Free(self.tw); self.tw = NULL
        PyMem_Free(self.tx); self.tx = NULL
        PyMem_Free(self.program); self.program = NULL
        PyMem_Free(self.leaf_nodes); self.leaf_nodes = NULL
        PyMem_Free(self.leaf_slots); self.leaf_slots = NULL
        PyMem_Free(self.shown_nodes); self.shown_nodes = NULL
        PyMem_Free(self.shown_slots); self.shown_slots = NULL
        PyMem_Free(self.node_of_slot); self.node_of_slot = NULL
        PyMem_Free(self.hidden); self.hidden = NULL
        PyMem_Free(self.dot_g1); self.dot_g1 = NULL
        PyMem_Free(self.sgrad); self.sgrad = NULL
        PyMem_Free(self.mgrad); self.mgrad = NULL

    # ---- recording ------------------------------------------------------------------
    cdef int _record(self) except -1:
        # Recording makes tens of thousands of short-lived lists and tuples: without the
        # cyclic GC scanning them as they come, it takes a third less time.
        import gc
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._record_graph()
        finally:
            if enabled:
                gc.enable()

    cdef int _record_graph(self) except -1:
        global _n_recorded
        cdef NodeArray topo
        cdef Py_ssize_t i, j, t, n_topo
        cdef Node* node
        cdef uintptr_t p
        cdef DotBuffer* buf
        reveal_recorded_graphs()             # one live tape per graph (see the module comment)
        self._free_arrays()
        self.keep = []
        self.functions = []
        self.custom_index = {}
        self.recorded = False
        self.raises = False
        self.has_custom = False
        borrow_scratch(&topo)
        try:
            topological_sort(&self.output.n, &topo)
            clear_visited(topo.items, topo.n)
            n_topo = topo.n
            order = [<Py_ssize_t>topo.items[i] for i in range(n_topo)]
        finally:
            return_scratch(&topo)
        rec = _Recording()
        for i in range(n_topo):
            p = <uintptr_t>order[i]
            if p & INDEX_TAG:
                continue
            if p & STEP_TAG:
                node = <Node*>(p ^ STEP_TAG)
                rec.slot(node, self.keep)
                j = <Py_ssize_t>((<uintptr_t>order[i - 1]) >> 3)
                buf = _dot_buffer(node)
                if j == buf.n - 1:  # the last step: every operand has a slot now
                    terms = []
                    for t in range(buf.n):
                        x = (rec.slot_of[<Py_ssize_t>buf.terms[t].x] if buf.terms[t].x != NULL
                             else rec.constant(buf.terms[t].c, buf.terms[t].cgrad))
                        terms.append((rec.slot_of[<Py_ssize_t>buf.terms[t].w], x))
                    rec.add_entry(<Py_ssize_t>node, [DOT, rec.slot_of[<Py_ssize_t>node],
                                  rec.slot_of[<Py_ssize_t>node.a], terms, buf.n, 0.0, None])
                rec.steps.append((<Py_ssize_t>node, j))
                continue
            node = <Node*>p
            rec.slot(node, self.keep)
            if node.code == LEAF or (node.code == CUSTOM and not _custom_children_len(node)):
                rec.leaves.append(<Py_ssize_t>node)
                continue
            rec.add_entry(<Py_ssize_t>node, self._entry_for(node, rec))
            rec.steps.append((<Py_ssize_t>node, -1))
        rec.make_program()
        rec.fuse_activations()
        rec.number_slots_for_runs()
        self._fill(rec)
        self.out_slot = rec.slot_of[<Py_ssize_t>&self.output.n]
        self.slot_index = rec.slot_of if self.has_custom else None
        self._find_shown(rec.slot_of)
        self._find_runs()
        _n_recorded += self.n_slots
        self.passes = 0
        self.full = True           # start exact: the recorded intermediates' grads as they are
        self.forward_failed = False
        self.recorded = True
        self._init_full_from_buffers()
        return 0

    cdef list _entry_for(self, Node* node, _Recording rec):
        """The entry of a plain op node (its operands have slots already)."""
        cdef int code = node.code
        out = rec.slot_of[<Py_ssize_t>node]
        if code == CUSTOM:
            fb = _function_of(node)
            if fb is None:
                raise TypeError(
                    f"cannot compile a node with op {_value(node)._op!r}: it has a hand-written "
                    "_backward and no forward rule to replay; define it as a "
                    "cmicrograd.function.Function instead")
            self.has_custom = True
            return [CUSTOM, out, out, out, 0, 0.0, fb]
        a = rec.slot_of[<Py_ssize_t>node.a]
        b = a
        if code == ADD or code == MUL:
            if node.flags & CONST_B:
                b = rec.constant(node.k, node.kgrad)
            else:
                b = rec.slot_of[<Py_ssize_t>node.b]
        if backward_can_raise(code):
            self.raises = True
        return [code, out, a, b, 0, node.k, None]

    cdef int _fill(self, _Recording rec) except -1:
        cdef Py_ssize_t i, t
        self.n_slots = len(rec.init)
        self.n_entries = len(rec.entries)
        self.n_terms = sum(len(en[3]) for en in rec.entries if en[0] == DOT)
        self.n_program = len(rec.program)
        self.n_leaves = len(rec.leaves)
        n = max(1, self.n_slots)
        self.D = <double*>PyMem_Malloc(n * sizeof(double))
        self.G = <double*>PyMem_Malloc(n * sizeof(double))
        self.node_of_slot = <Node**>PyMem_Malloc(n * sizeof(Node*))
        self.entries = <Entry*>PyMem_Malloc(max(1, self.n_entries) * sizeof(Entry))
        self.tw = <int32_t*>PyMem_Malloc(max(1, self.n_terms) * sizeof(int32_t))
        self.tx = <int32_t*>PyMem_Malloc(max(1, self.n_terms) * sizeof(int32_t))
        self.program = <BwItem*>PyMem_Malloc(max(1, self.n_program) * sizeof(BwItem))
        self.leaf_nodes = <Node**>PyMem_Malloc(max(1, self.n_leaves) * sizeof(Node*))
        self.leaf_slots = <int32_t*>PyMem_Malloc(max(1, self.n_leaves) * sizeof(int32_t))
        self.dot_g1 = <double*>PyMem_Malloc(max(1, self.n_entries) * sizeof(double))
        if (self.D == NULL or self.G == NULL or self.node_of_slot == NULL or self.entries == NULL
                or self.tw == NULL or self.tx == NULL or self.program == NULL
                or self.leaf_nodes == NULL or self.leaf_slots == NULL or self.dot_g1 == NULL):
            raise MemoryError("not enough memory to compile the graph")
        for i in range(self.n_slots):
            self.D[i], self.G[i] = rec.init[i]
            self.node_of_slot[i] = <Node*><Py_ssize_t>rec.node[i]
        t = 0
        for i in range(self.n_entries):
            code, out, a, terms_or_b, n_terms, k, fb, act, act_out = rec.entries[i]
            en = &self.entries[i]
            en.code = code
            en.out = out
            en.a = a
            en.k = k
            en.act = act
            en.act_out = act_out
            en.group = 1
            en.wbase = -1
            en.xbase = -1
            self.dot_g1[i] = 0.0
            if code == DOT:
                en.b = t
                en.n = n_terms
                for w, x in terms_or_b:
                    self.tw[t] = w
                    self.tx[t] = x
                    t += 1
            else:
                en.b = terms_or_b
                en.n = 0
            if code == CUSTOM:
                self.custom_index[i] = len(self.functions)
                self.functions.append(fb)
        for i in range(self.n_program):
            self.program[i].entry, self.program[i].hi, self.program[i].lo = rec.program[i]
        for i in range(self.n_leaves):
            self.leaf_nodes[i] = <Node*><Py_ssize_t>rec.leaves[i]
            self.leaf_slots[i] = rec.slot_of[rec.leaves[i]]
        return 0

    cdef int _find_shown(self, dict slot_of) except -1:
        """Split the recorded non-leaf nodes into those Python holds and hidden ones."""
        cdef Py_ssize_t i, e, t, internal_total
        cdef Node* node
        cdef Entry* en
        internal = [0] * self.n_slots     # references the recorded graph holds
        ops = []                          # slots of op nodes: entries and fused activations
        for e in range(self.n_entries):
            en = &self.entries[e]
            node = self.node_of_slot[en.out]
            ops.append(en.out)
            if en.code == DOT:
                internal[en.a] += 1
                for t in range(en.b, en.b + en.n):
                    internal[self.tw[t]] += 1
                    if self.node_of_slot[self.tx[t]] != NULL:
                        internal[self.tx[t]] += 1
                if en.act:
                    internal[en.out] += 1
                    ops.append(en.act_out)
            elif en.code == CUSTOM:
                for child in _value(node)._prev:
                    internal[slot_of[<Py_ssize_t>&(<Value>child).n]] += 1
            else:
                internal[en.a] += 1
                if self.node_of_slot[en.b] != NULL and (en.code == ADD or en.code == MUL):
                    internal[en.b] += 1
        self.hidden = <uint8_t*>PyMem_Malloc(max(1, self.n_slots))
        if self.hidden == NULL:
            raise MemoryError("not enough memory to compile the graph")
        memset(self.hidden, 0, self.n_slots)
        shown = []
        for i in ops:
            node = self.node_of_slot[i]
            node.flags |= RECORDED
            # held from outside: more references than the graph, self.keep (and
            # self.output for the root) account for
            internal_total = internal[i] + 1 + (1 if node == &self.output.n else 0)
            if _refcount(_obj(node)) > internal_total or node.code == CUSTOM:
                shown.append(i)
            else:
                self.hidden[i] = 1
                node.flags |= HIDDEN
        self.n_shown = len(shown)
        self.shown_nodes = <Node**>PyMem_Malloc(max(1, self.n_shown) * sizeof(Node*))
        self.shown_slots = <int32_t*>PyMem_Malloc(max(1, self.n_shown) * sizeof(int32_t))
        if self.shown_nodes == NULL or self.shown_slots == NULL:
            raise MemoryError("not enough memory to compile the graph")
        for i in range(self.n_shown):
            self.shown_slots[i] = shown[i]
            self.shown_nodes[i] = self.node_of_slot[shown[i]]
        return 0

    cdef void _find_runs(self) noexcept:
        """Per DOT: are its weights, and its inputs, consecutive disjoint slots (then the
        array kernels apply)? And group consecutive independent DOTs of equal length."""
        cdef Py_ssize_t e, j, g, f, t
        cdef Entry* en
        cdef Entry* first
        cdef int32_t lo, hi
        cdef bint ok
        for e in range(self.n_entries):
            en = &self.entries[e]
            if en.code != DOT:
                continue
            ok = True
            for j in range(1, en.n):
                if self.tw[en.b + j] != self.tw[en.b] + j or self.tx[en.b + j] != self.tx[en.b] + j:
                    ok = False
                    break
            if not ok:
                continue
            # the two ranges, the bias and the node itself: no slot twice
            lo = self.tw[en.b]
            hi = self.tx[en.b]
            if lo < hi + en.n and hi < lo + en.n:
                continue
            if lo <= en.a < lo + en.n or hi <= en.a < hi + en.n:
                continue
            en.wbase = lo
            en.xbase = hi
        e = 0
        while e < self.n_entries:
            first = &self.entries[e]
            if first.code != DOT or first.wbase < 0:
                e += 1
                continue
            g = 1
            while g < 4 and e + g < self.n_entries:
                en = &self.entries[e + g]
                if en.code != DOT or en.wbase < 0 or en.n != first.n or en.act != first.act:
                    break
                ok = True
                for f in range(e, e + g):    # reads nothing the earlier ones write
                    if not self._independent(&self.entries[f], en):
                        ok = False
                if not ok:
                    break
                g += 1
            first.group = g if g != 3 else 2
            e += first.group

    cdef bint _independent(self, Entry* earlier, Entry* later) noexcept:
        cdef int32_t s
        for s in (earlier.out, earlier.act_out if earlier.act else -2):
            if later.a == s or later.wbase <= s < later.wbase + later.n or later.xbase <= s < later.xbase + later.n:
                return False
        return True

    cdef int _init_full_from_buffers(self) except -1:
        """Full mode from the recorded DOT buffers' intermediate grads."""
        cdef Py_ssize_t e, j
        cdef Entry* en
        cdef DotBuffer* buf
        if self.n_terms == 0:
            return 0
        self._alloc_full()
        for e in range(self.n_entries):
            en = &self.entries[e]
            if en.code == DOT:
                buf = _dot_buffer(self.node_of_slot[en.out])
                for j in range(en.n):
                    self.sgrad[en.b + j] = buf.terms[j].sgrad
                    self.mgrad[en.b + j] = buf.terms[j].mgrad
        return 0

    cdef int _alloc_full(self) except -1:
        if self.sgrad == NULL:
            self.sgrad = <double*>PyMem_Malloc(max(1, self.n_terms) * sizeof(double))
            self.mgrad = <double*>PyMem_Malloc(max(1, self.n_terms) * sizeof(double))
            if self.sgrad == NULL or self.mgrad == NULL:
                raise MemoryError("not enough memory to replay the graph")
        return 0

    # ---- writing back and detaching -------------------------------------------------
    cdef void _write_back_hidden(self) noexcept:
        """Put every hidden node's current data and grad (and a fused sum's
        intermediates, an inline constant's grad) into its Value."""
        cdef Py_ssize_t i, e
        cdef Entry* en
        cdef Node* node
        for i in range(self.n_slots):
            if self.hidden[i]:
                self.node_of_slot[i].data = self.D[i]
                self.node_of_slot[i].grad = self.G[i]
        for e in range(self.n_entries):
            en = &self.entries[e]
            node = self.node_of_slot[en.out]
            if en.code == DOT:
                self._write_back_dot(e)
            elif (en.code == ADD or en.code == MUL) and node.flags & CONST_B:
                node.kgrad = self.G[en.b]

    cdef void _write_back_dot(self, Py_ssize_t e) noexcept:
        cdef Entry* en = &self.entries[e]
        cdef DotBuffer* buf = _dot_buffer(self.node_of_slot[en.out])
        cdef DotTerm* t
        cdef Py_ssize_t j
        cdef double s = self.D[en.a]
        cdef double gp = 0.0 + self.dot_g1[e]
        for j in range(en.n):
            t = &buf.terms[j]
            t.m = self.D[self.tw[en.b + j]] * self.D[self.tx[en.b + j]]
            s = s + t.m
            t.s = s
            if self.node_of_slot[self.tx[en.b + j]] == NULL:
                t.cgrad = self.G[self.tx[en.b + j]]
            if self.full:
                t.sgrad = self.sgrad[en.b + j]
                t.mgrad = self.mgrad[en.b + j]
            elif self.passes == 0:
                t.sgrad = 0.0
                t.mgrad = 0.0
            else:       # one backward since the forward: every intermediate got 0.0 + G
                t.sgrad = gp
                t.mgrad = gp

    cdef void _detach(self) noexcept:
        cdef Py_ssize_t i
        self.detach_pending = False
        if not self.recorded:
            return
        if not self.forward_failed:
            self._write_back_hidden()
        for i in range(self.n_slots):
            if self.node_of_slot[i] != NULL:
                self.node_of_slot[i].flags &= ~(HIDDEN | RECORDED)
        self.recorded = False

    # ---- replay ---------------------------------------------------------------------
    cdef int _ensure_recorded(self) except -1:
        if self.running:
            raise RuntimeError("this compiled graph is being replayed in another thread")
        if not self.recorded:
            self._record()
        return 0

    def forward(self):
        """Recompute every non-leaf node from the leaves' current data, reset the
        non-leaf grads to 0.0, and return the output's data."""
        cdef Py_ssize_t i
        cdef int err = 0
        cdef Py_ssize_t failed = -1
        self._ensure_recorded()
        self.forward_failed = True
        for i in range(self.n_leaves):
            self.D[self.leaf_slots[i]] = self.leaf_nodes[i].data
        self.running = True
        try:
            if self.has_custom:
                failed = self._forward_entries(&err)
            else:
                with nogil:
                    failed = _forward_run(self.D, self.G, self.entries, 0, self.n_entries,
                                          self.tw, self.tx, &err)
        finally:
            self.running = False
        if err:
            self._finish_pending_detach()
            en = &self.entries[failed]
            if en.code == DOT:   # its fused activation failed
                raise_math_error(err, self.D[en.out], 0.0)
            raise_math_error(err, self.D[en.a], en.k)
        for i in range(self.n_shown):
            self.shown_nodes[i].data = self.D[self.shown_slots[i]]
            self.shown_nodes[i].grad = 0.0
        self.passes = 0
        self.full = self.raises
        if self.full and self.n_terms:
            memset(self.sgrad, 0, self.n_terms * sizeof(double))
            memset(self.mgrad, 0, self.n_terms * sizeof(double))
        self.forward_failed = False
        value = self.D[self.out_slot]
        self._finish_pending_detach()
        return value

    cdef Py_ssize_t _forward_entries(self, int* err) except? -2:
        """Forward with Function nodes: C runs between them, Python for them."""
        cdef Py_ssize_t e = 0, run_end, failed
        cdef Entry* en
        while e < self.n_entries:
            run_end = e
            while run_end < self.n_entries and self.entries[run_end].code != CUSTOM:
                run_end += 1
            failed = _forward_run(self.D, self.G, self.entries, e, run_end, self.tw, self.tx, err)
            if err[0]:
                return failed
            if run_end == self.n_entries:
                break
            en = &self.entries[run_end]
            fb = self.functions[self.custom_index[run_end]]
            for v in fb.inputs:   # the inputs' Values must hold this replay's data
                (<Value>v).n.data = self.D[self._slot_of(v)]
            self.D[en.out] = fb.recompute()
            self.G[en.out] = 0.0
            e = run_end + 1
        return -1

    cdef Py_ssize_t _slot_of(self, object v) except -1:
        return self.slot_index[<Py_ssize_t>&(<Value>v).n]

    def backward(self):
        """What ``output.backward()`` would do on the graph as the last forward built
        it: set the output's grad to 1.0 and accumulate into every recorded node."""
        cdef Py_ssize_t i
        cdef int err = 0
        cdef Py_ssize_t failed = -1
        self._ensure_recorded()
        if self.forward_failed:
            raise RuntimeError("the last forward() failed: call forward() again first")
        # the rules read current data, as micrograd's closures do: refresh what Python
        # may have changed since the forward
        for i in range(self.n_leaves):
            self.D[self.leaf_slots[i]] = self.leaf_nodes[i].data
            self.G[self.leaf_slots[i]] = self.leaf_nodes[i].grad
        for i in range(self.n_shown):
            self.D[self.shown_slots[i]] = self.shown_nodes[i].data
            self.G[self.shown_slots[i]] = self.shown_nodes[i].grad
        if not self.full and self.passes >= 1:   # a second backward: keep every grad
            self._enter_full_mode()
        self.G[self.out_slot] = 1.0
        self.running = True
        try:
            if self.has_custom:
                failed = self._backward_items(&err)
            else:
                with nogil:
                    failed = _backward_run(self.D, self.G, self.entries, self.program, 0,
                                           self.n_program, self.tw, self.tx, self.dot_g1,
                                           self.sgrad, self.mgrad, self.full, &err)
        finally:
            self.running = False
            for i in range(self.n_leaves):
                self.leaf_nodes[i].grad = self.G[self.leaf_slots[i]]
            for i in range(self.n_shown):
                self.shown_nodes[i].grad = self.G[self.shown_slots[i]]
            self.passes += 1
            self._finish_pending_detach()
        if err:
            en = &self.entries[self.program[failed].entry]
            if en.code == POW:
                raise_math_error(err, self.D[en.a], en.k - 1.0)
            raise_math_error(err, self.D[en.a], self.G[en.out])
        return None

    cdef void _finish_pending_detach(self) noexcept:
        """Detach now if someone asked while this tape was running (see _detach_tapes)."""
        if self.detach_pending:
            self._detach()

    cdef int _enter_full_mode(self) except -1:
        """Spell out the intermediate grads a first fast backward left implicit."""
        cdef Py_ssize_t e, j
        cdef Entry* en
        cdef double gp
        self._alloc_full()
        for e in range(self.n_entries):
            en = &self.entries[e]
            if en.code == DOT:
                gp = 0.0 + self.dot_g1[e]
                for j in range(en.n):
                    self.sgrad[en.b + j] = gp
                    self.mgrad[en.b + j] = gp
        self.full = True
        return 0

    cdef Py_ssize_t _backward_items(self, int* err) except? -2:
        """Backward with Function nodes: C runs between them, Python for them."""
        cdef Py_ssize_t i = 0, run_end, failed
        cdef Entry* en
        while i < self.n_program:
            run_end = i
            while run_end < self.n_program and self.entries[self.program[run_end].entry].code != CUSTOM:
                run_end += 1
            failed = _backward_run(self.D, self.G, self.entries, self.program, i, run_end,
                                   self.tw, self.tx, self.dot_g1, self.sgrad, self.mgrad,
                                   self.full, err)
            if err[0]:
                return failed
            if run_end == self.n_program:
                break
            en = &self.entries[self.program[run_end].entry]
            fb = self.functions[self.custom_index[self.program[run_end].entry]]
            (<Value>fb.out).n.grad = self.G[en.out]
            for v in fb.inputs:   # the callback adds to the inputs' Values: sync them
                (<Value>v).n.grad = self.G[self._slot_of(v)]
                (<Value>v).n.data = self.D[self._slot_of(v)]
            fb()
            for v in fb.inputs:
                self.G[self._slot_of(v)] = (<Value>v).n.grad
            i = run_end + 1
        return -1

    @property
    def num_nodes(self):
        """How many recorded nodes and constants (slots) a replay walks."""
        self._ensure_recorded()
        return self.n_slots

    def __repr__(self):
        return (f"<cmicrograd CompiledGraph: {self.n_slots} slots, {self.n_entries} ops, "
                f"{self.n_terms} fused terms, output={self.output!r}>")


cdef void _register_tape(CompiledGraph tape) except *:
    global _live_tapes
    if _live_tapes is None:
        import weakref
        _live_tapes = weakref.WeakSet()
    _live_tapes.add(tape)


# ---- the replay loops (no Python, no GIL) ----------------------------------------------
cdef inline double _dot_forward(double* D, Entry* en, int32_t* tw, int32_t* tx) noexcept nogil:
    cdef double s = D[en.a]
    cdef Py_ssize_t t
    if en.wbase >= 0:
        return cm_dot(s, &D[en.wbase], &D[en.xbase], en.n)
    for t in range(en.b, en.b + en.n):
        s = s + D[tw[t]] * D[tx[t]]
    return s


cdef Py_ssize_t _forward_run(double* D, double* G, Entry* entries, Py_ssize_t start,
                             Py_ssize_t stop, int32_t* tw, int32_t* tx, int* err) noexcept nogil:
    """Forward over entries[start:stop]; returns the failing entry, or -1."""
    cdef Py_ssize_t e = start, d, width
    cdef Entry* en
    cdef double s[4]
    while e < stop:
        en = &entries[e]
        if en.code == DOT:
            width = en.group if e + en.group <= stop else 1
            if width == 4:
                s[0] = D[en[0].a]
                s[1] = D[en[1].a]
                s[2] = D[en[2].a]
                s[3] = D[en[3].a]
                cm_dot4(s, &D[en[0].wbase], &D[en[0].xbase], &D[en[1].wbase], &D[en[1].xbase],
                        &D[en[2].wbase], &D[en[2].xbase], &D[en[3].wbase], &D[en[3].xbase], en.n)
            else:
                for d in range(width):
                    s[d] = _dot_forward(D, &en[d], tw, tx)
            for d in range(width):
                D[en[d].out] = s[d]
                G[en[d].out] = 0.0
                if en[d].act:
                    D[en[d].act_out] = forward_rule(en[d].act, s[d], 0.0, 0.0, err)
                    G[en[d].act_out] = 0.0
                    if err[0]:
                        return e + d
            e += width
            continue
        # the common ops first, by their rules (rules.pxi) with no error to check
        if en.code == ADD:
            D[en.out] = add_forward(D[en.a], D[en.b], 0.0, err)
        elif en.code == MUL:
            D[en.out] = mul_forward(D[en.a], D[en.b], 0.0, err)
        elif en.code == RELU:
            D[en.out] = relu_forward(D[en.a], 0.0, 0.0, err)
        else:
            D[en.out] = forward_rule(en.code, D[en.a], D[en.b], en.k, err)
            if err[0]:
                return e
        G[en.out] = 0.0
        e += 1
    return -1


cdef Py_ssize_t _backward_run(double* D, double* G, Entry* entries, BwItem* program,
                              Py_ssize_t start, Py_ssize_t stop, int32_t* tw, int32_t* tx,
                              double* dot_g1, double* sgrad, double* mgrad, bint full,
                              int* err) noexcept nogil:
    """Backward over program[start:stop]; returns the failing item, or -1."""
    cdef Py_ssize_t i, j, t, span
    cdef BwItem* item
    cdef Entry* en
    cdef double g, gp, gs
    for i in range(start, stop):
        item = &program[i]
        en = &entries[item.entry]
        if en.code == DOT:
            if en.act and item.hi == en.n - 1:   # the fused activation comes first
                backward_rule(en.act, D[en.out], 0.0, 0.0, D[en.act_out], G[en.act_out],
                              &G[en.out], NULL, err)
            g = G[en.out]
            if not full:
                # first backward since the forward: each intermediate's grad is 0.0 + G
                gp = 0.0 + g
                if item.hi == en.n - 1:
                    dot_g1[item.entry] = g
                if en.wbase >= 0:
                    if item.lo == 0:
                        G[en.a] += g if en.n == 1 else gp
                    span = item.hi - item.lo + 1
                    cm_axpy(&G[en.wbase + item.lo], &D[en.xbase + item.lo], gp, span)
                    cm_axpy(&G[en.xbase + item.lo], &D[en.wbase + item.lo], gp, span)
                    continue
                for j in range(item.hi, item.lo - 1, -1):
                    t = en.b + j
                    if j == 0:
                        G[en.a] += g if en.n == 1 else gp
                    G[tw[t]] += D[tx[t]] * gp
                    G[tx[t]] += D[tw[t]] * gp
            else:
                for j in range(item.hi, item.lo - 1, -1):
                    t = en.b + j
                    gs = g if j == en.n - 1 else sgrad[t]
                    if j == 0:
                        G[en.a] += gs
                    else:
                        sgrad[t - 1] += gs
                    mgrad[t] += gs
                    G[tw[t]] += D[tx[t]] * mgrad[t]
                    G[tx[t]] += D[tw[t]] * mgrad[t]
        elif en.code == ADD:
            add_backward(D[en.a], D[en.b], 0.0, D[en.out], G[en.out], &G[en.a], &G[en.b], err)
        elif en.code == MUL:
            mul_backward(D[en.a], D[en.b], 0.0, D[en.out], G[en.out], &G[en.a], &G[en.b], err)
        else:
            backward_rule(en.code, D[en.a], D[en.b], en.k, D[en.out], G[en.out],
                          &G[en.a], &G[en.b], err)
            if err[0]:
                return i
    return -1


def compile(Value output):
    """Record the graph that produced ``output`` for fast replay (see CompiledGraph)."""
    return CompiledGraph(output)
