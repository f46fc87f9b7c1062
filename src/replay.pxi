# Compile once, replay many: CompiledGraph replays a recorded Tape (record.pxi) in C.
#
# Replaying is a walk over arrays with no Python call, no allocation and no sort, with
# the GIL released. What Python sees stays exact:
# * leaves (parameters, inputs, constants) stay in their Values: their data is read at
#   each forward and backward, their grads are added to in place;
# * a non-leaf node that Python still holds is written back after every call (shown);
# * the other non-leaf nodes are HIDDEN: they live only in the arrays. Anything that
#   could reveal one (_prev, pickling, an eager backward through it, a structural change
#   such as expanding a fused sum) first writes its compiled graph back into the Values
#   and detaches it; a detached graph records itself again on its next call.
#
# Many compiled graphs live side by side. Each has a small id, kept in the nodes it
# recorded (Node.tape), so revealing a node detaches only the graph that holds it;
# graphs that share no nodes, or only leaves (the same parameters under a training and
# a validation loss), never disturb each other. A non-leaf node recorded by two graphs
# is marked SHARED_TAPE, and revealing it detaches every graph. Two graphs that share
# leaves take a lock around backward, so that their grad updates never interleave.
#
# Fused sums: on the first backward after a forward, every hidden intermediate of a
# chain has grad 0.0 + G (G the sum node's grad), so a term's rule is just
# w.grad += x * G' and x.grad += w * G'. A graph whose backward can raise (POW, LOG), or
# a second backward without a forward, keeps every intermediate grad instead ("full").
#
# Layout: slots are numbered so that each fused sum's weights, and its inputs, are
# consecutive where possible (for an MLP they always are); such a sum runs the plain
# array loops of kernels.h, which compilers vectorize. Within one sum every weight and
# input receives exactly one addition, so splitting the interleaved updates into two
# loops changes no result; the recorder checks the ranges are disjoint.

from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK,
                               PyThread_get_thread_ident)

cdef extern from "kernels.h":
    void cm_axpy(double* g, const double* v, double a, Py_ssize_t n) noexcept nogil
    double cm_dot(double s, const double* w, const double* x, Py_ssize_t n) noexcept nogil
    void cm_dot4(double* s, const double* w0, const double* x0, const double* w1,
                 const double* x1, const double* w2, const double* x2, const double* w3,
                 const double* x3, Py_ssize_t n) noexcept nogil

# ---- which compiled graph holds a node -------------------------------------------------
cdef enum:
    NO_TAPE = 0
    SHARED_TAPE = 0xFFFF          # recorded by several graphs: revealing it detaches all

cdef PyObject** _tapes = NULL      # id -> CompiledGraph (borrowed; cleared when it detaches)
cdef Py_ssize_t _tapes_cap = 0
cdef Py_ssize_t _n_recorded = 0    # compiled graphs currently recorded
cdef PyThread_type_lock _leaf_lock = NULL   # held around backward by graphs sharing leaves
cdef unsigned long _leaf_lock_owner = 0     # the thread holding it (a Function's callback
cdef int _leaf_lock_depth = 0               # may run another graph's backward: re-entrant)


cdef int _lock_leaves() except -1:
    global _leaf_lock_owner, _leaf_lock_depth
    cdef unsigned long me = PyThread_get_thread_ident()
    if _leaf_lock_depth and _leaf_lock_owner == me:
        _leaf_lock_depth += 1
        return 0
    with nogil:
        PyThread_acquire_lock(_leaf_lock, WAIT_LOCK)
    _leaf_lock_owner = me
    _leaf_lock_depth = 1
    return 0


cdef void _unlock_leaves() noexcept:
    global _leaf_lock_depth
    _leaf_lock_depth -= 1
    if _leaf_lock_depth == 0:
        PyThread_release_lock(_leaf_lock)


cdef uint16_t _take_id(CompiledGraph g) noexcept:
    """A free id for g, or SHARED_TAPE if all 65,534 are taken (then _record raises)."""
    global _tapes, _tapes_cap
    cdef Py_ssize_t i, cap
    cdef PyObject** grown
    for i in range(1, _tapes_cap):
        if _tapes[i] == NULL:
            _tapes[i] = <PyObject*>g
            return <uint16_t>i
    if _tapes_cap >= SHARED_TAPE:
        return SHARED_TAPE
    cap = min(2 * _tapes_cap + 16, <Py_ssize_t>SHARED_TAPE)
    grown = <PyObject**>realloc(_tapes, cap * sizeof(PyObject*))
    if grown == NULL:
        return SHARED_TAPE
    memset(grown + _tapes_cap, 0, (cap - _tapes_cap) * sizeof(PyObject*))
    i = max(1, _tapes_cap)
    _tapes, _tapes_cap = grown, cap
    _tapes[i] = <PyObject*>g
    return <uint16_t>i


cdef void _detach_owner(uint16_t id) noexcept:
    """Detach the compiled graph with this id (every recorded one for SHARED_TAPE)."""
    cdef Py_ssize_t i
    if id == SHARED_TAPE:
        for i in range(1, _tapes_cap):
            if _tapes[i] != NULL:
                (<CompiledGraph>_tapes[i])._detach_or_defer()
    elif id < _tapes_cap and _tapes[id] != NULL:
        (<CompiledGraph>_tapes[id])._detach_or_defer()


# ---- the interface the core calls (graph.pxi, value.pxi, fused.pxi) ------------------
cdef inline bint any_recorded() noexcept:
    """Whether any graph is recorded at all (the core's fast path: nothing to reveal)."""
    return _n_recorded != 0


cdef inline void reveal(Node* node) noexcept:
    """node is about to be shown to Python or restructured: if a compiled graph recorded
    it, write that graph back and detach it."""
    if node.flags & (HIDDEN | RECORDED):
        _detach_owner(node.tape)


cdef inline void reveal_hidden(Node* node) noexcept:
    """node's data is about to be read: if it lives in a compiled graph, write it back."""
    if node.flags & HIDDEN:
        _detach_owner(node.tape)


# What other threads may do while a recording has released the GIL (record_tape's
# layout), which makes it record again (_record): restructure a node (counted by
# reveal_to_change), or mark nodes as another graph's (counted at the end of _record).
cdef size_t _restructured = 0
cdef size_t _markings = 0


cdef bint _hides_others_nodes(Tape* t) noexcept:
    """Whether a node t recorded as an op (not yet marked as t's) is hidden in another
    graph: one that recorded it while t's recording had released the GIL."""
    cdef Py_ssize_t e
    for e in range(t.n_entries):
        if t.node_of_slot[t.entries[e].out].flags & HIDDEN:
            return True
        if t.entries[e].act and t.node_of_slot[t.entries[e].act_out].flags & HIDDEN:
            return True
    return False


cdef int reveal_to_change(Node* node) except -1:
    """node is about to be restructured (re-initialised, a fused sum expanded, an inline
    constant made a Value): the graphs holding it must let go first. One that is
    replaying right now (a Function it calls reached node) cannot: RuntimeError."""
    global _restructured
    _restructured += 1
    if node.flags & (HIDDEN | RECORDED):
        _detach_owner(node.tape)
        forget_stale_marks(node)
        if node.flags & (HIDDEN | RECORDED):
            raise RuntimeError(
                "this Value belongs to a compiled graph that is replaying right now (in "
                "another thread, or it called the Function that got here): change it or "
                "look inside it after the replay")
    return 0


cdef void forget_stale_marks(Node* node) noexcept:
    """After node's graphs were asked to detach: if no recorded graph holds node any
    more, clear its marks. (A node several graphs recorded is marked SHARED_TAPE; each
    graph's detach clears only its own marks, so the last one to go leaves them.)"""
    if node.flags & (HIDDEN | RECORDED) and not _held_by_a_graph(node):
        node.flags &= ~(HIDDEN | RECORDED)
        node.tape = NO_TAPE


cdef bint _held_by_a_graph(Node* node) noexcept:
    """Whether a recorded graph has node in its tape (a scan: only for the rare marks a
    detach could not clear)."""
    cdef Py_ssize_t i, s
    cdef CompiledGraph g
    for i in range(1, _tapes_cap):
        if _tapes[i] != NULL:
            g = <CompiledGraph>_tapes[i]
            if g.recorded:
                for s in range(g.t.n_slots):
                    if g.t.node_of_slot[s] == node:
                        return True
    return False


cdef void reveal_hidden_in(NodeArray* topo) noexcept:
    """After a sort met hidden nodes (FOUND_HIDDEN): detach the graphs that hold them."""
    cdef Py_ssize_t i
    cdef uintptr_t p
    cdef Node* node
    for i in range(topo.n):
        p = <uintptr_t>topo.items[i]
        if not (p & INDEX_TAG):
            node = <Node*>(p & ~(<uintptr_t>TAG_MASK))
            if node.flags & HIDDEN:
                _detach_owner(node.tape)


@cython.final
@cython.no_gc_clear   # its Values stay valid while it detaches (a cycle through its output)
cdef class CompiledGraph:
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
    cdef readonly Value output
    cdef readonly object optimizer
    cdef Tape t
    cdef uint16_t id
    cdef readonly Py_ssize_t recordings   # how many times it recorded its graph
    cdef int passes                  # backwards since the last forward
    cdef bint full                   # keep every intermediate grad (see above)
    cdef bint shares_leaves          # another graph reads some of our leaves: lock backward
    cdef bint recorded
    cdef bint replayed               # a forward or backward ran since recording
    cdef bint running
    cdef bint recording              # in _record (which releases the GIL for a while)
    cdef bint detach_pending         # asked to detach while running: do it when done
    cdef bint forward_failed
    cdef bint use_lanes              # look for lanes when recording
    cdef bint lanes_fresh            # a forward ran since the last backward: lanes may run it
    cdef int n_threads
    cdef list functions              # per Function entry: its FunctionBackward
    cdef dict custom_index           # entry index -> position in functions
    cdef dict slot_index             # node address -> slot, for Function nodes' inputs
    cdef _StepPlan plan               # the training step's parameters (train_step.pxi)

    def __cinit__(self):
        self.recorded = False
        self.id = NO_TAPE

    def __init__(self, Value output, optimizer=None, *, threads=1, lanes=True):
        self.output = output
        self.optimizer = _check_optimizer(optimizer, Value)
        self.n_threads = _check_threads(threads)
        self.use_lanes = _check_lanes(lanes)
        self._record()

    def __dealloc__(self):
        if self.recorded:
            self._detach()   # the Values outlive us: leave them current
        tape_free(&self.t)

    # ---- recording ------------------------------------------------------------------
    cdef int _record(self) except -1:
        global _n_recorded, _leaf_lock, _markings
        cdef Py_ssize_t i
        cdef Node* node
        cdef Node* leaf
        cdef size_t seen, marked
        cdef int tries
        functions = []
        tape_free(&self.t)
        # record_tape lays out the tape without the GIL. Meanwhile another thread calling
        # into this graph gets an error (_ensure_recorded), not a second recording into
        # the same arrays. Since the nodes are marked as ours only at the end, another
        # thread may also restructure one (a fused sum expanded by _prev: it would be
        # replayed and written back as what it was), or record some into its own graph
        # and hide them there (a node hidden in two graphs keeps stale marks when they
        # detach, and every later walk restarts at each one): then record again, and the
        # walk detaches that graph as it does any graph whose hidden nodes it meets.
        self.recording = True
        try:
            for tries in range(1000):
                seen, marked = _restructured, _markings
                record_tape(&self.t, &self.output.n, functions, self.use_lanes)
                if _restructured == seen and (_markings == marked or
                                              not _hides_others_nodes(&self.t)):
                    break
                tape_free(&self.t)
                del functions[:]
            else:
                raise RuntimeError("cannot compile: other threads keep restructuring the graph "
                                   "or compiling its nodes while it is being recorded")
        except BaseException:
            tape_free(&self.t)
            raise
        finally:
            self.recording = False
        self.functions = [fb for e, fb in functions]
        self.custom_index = {e: i for i, (e, fb) in enumerate(functions)}
        self.slot_index = None
        if functions:
            self.slot_index = {<Py_ssize_t>self.t.node_of_slot[s]: s for s in range(self.t.n_slots)
                               if self.t.node_of_slot[s] != NULL}
        # mark what we hold: op nodes as recorded (and hidden), leaves by owner
        self.id = _take_id(self)
        if self.id == SHARED_TAPE:
            tape_free(&self.t)
            self.id = NO_TAPE
            raise MemoryError("too many compiled graphs alive at once (65,534): drop some")
        self.shares_leaves = False
        for i in range(self.t.n_leaves):
            leaf = self.t.leaf_nodes[i]
            if leaf.tape == NO_TAPE:
                leaf.tape = self.id
            elif leaf.tape != self.id:
                self.shares_leaves = True
                if leaf.tape != SHARED_TAPE and leaf.tape < _tapes_cap and _tapes[leaf.tape] != NULL:
                    (<CompiledGraph>_tapes[leaf.tape]).shares_leaves = True
                leaf.tape = SHARED_TAPE
        if self.shares_leaves and _leaf_lock == NULL:
            _leaf_lock = PyThread_allocate_lock()
            if _leaf_lock == NULL:
                raise MemoryError("cannot make a lock")
        # and hold every node (each slot's: an entry's, a fused sum's activation, a leaf),
        # so that they stay alive as long as we do; the output through self.output, which
        # the GC sees: a cycle through it is freed
        for i in range(self.t.n_entries):
            self._mark_and_hold(self.t.entries[i].out)
            if self.t.entries[i].act:
                self._mark_and_hold(self.t.entries[i].act_out)
        for i in range(self.t.n_leaves):
            if self.t.leaf_slots[i] != self.t.out_slot:
                Py_INCREF(<object>_obj(self.t.leaf_nodes[i]))
        _n_recorded += 1
        _markings += 1
        self.recordings += 1
        self.passes = 0
        self.full = True           # start exact: the recorded intermediates' grads as they are
        self.forward_failed = False
        self.lanes_fresh = False
        self.recorded = True
        self.replayed = False
        return 0

    cdef inline void _mark_and_hold(self, int32_t s) noexcept:
        """Mark the op node of slot s as recorded (and hidden), and take a reference."""
        cdef Node* node = self.t.node_of_slot[s]
        node.flags |= RECORDED | (HIDDEN if self.t.hidden[s] else 0)
        node.tape = self.id if node.tape == NO_TAPE else SHARED_TAPE
        if s != self.t.out_slot:
            Py_INCREF(<object>_obj(node))

    # ---- writing back and detaching -------------------------------------------------
    cdef void _write_back_hidden(self) noexcept:
        """Put every hidden node's current data and grad (and a fused sum's
        intermediates, an inline constant's grad) into its Value."""
        cdef Py_ssize_t i, e
        cdef Entry* en
        cdef Node* node
        lanes_flush_g1(&self.t)
        for i in range(self.t.n_slots):
            if self.t.hidden[i]:
                self.t.node_of_slot[i].data = self.t.D[i]
                self.t.node_of_slot[i].grad = self.t.G[i]
        for e in range(self.t.n_entries):
            en = &self.t.entries[e]
            node = self.t.node_of_slot[en.out]
            if en.code == DOT:
                self._write_back_dot(e)
            elif binary_op(en.code) and node.flags & CONST_B:
                node.kgrad = self.t.G[en.b]

    cdef void _write_back_dot(self, Py_ssize_t e) noexcept:
        cdef Entry* en = &self.t.entries[e]
        cdef DotBuffer* buf = _dot_buffer(self.t.node_of_slot[en.out])
        cdef Py_ssize_t j
        cdef int err = 0
        cdef double s = self.t.D[en.a]
        cdef double gp = 0.0 + self.t.dot_g1[e]
        for j in range(en.n):
            buf.m[j] = mul_forward(self.t.D[self.t.tw[en.b + j]], self.t.D[self.t.tx[en.b + j]], 0.0, &err)
            s = add_forward(s, buf.m[j], 0.0, &err)
            buf.s[j] = s
            if self.t.node_of_slot[self.t.tx[en.b + j]] == NULL:
                buf.cgrad[j] = self.t.G[self.t.tx[en.b + j]]
            if self.full:
                buf.sgrad[j] = self.t.sgrad[en.b + j]
                buf.mgrad[j] = self.t.mgrad[en.b + j]
            elif self.passes == 0:
                buf.sgrad[j] = 0.0
                buf.mgrad[j] = 0.0
            else:       # one backward since the forward: every intermediate got 0.0 + G
                buf.sgrad[j] = gp
                buf.mgrad[j] = gp

    cdef void _detach_or_defer(self) noexcept:
        """Detach, or, if a replay is running (another thread's, or ours calling into a
        Function), detach when it ends: its arrays are never copied half-computed."""
        if self.running:
            self.detach_pending = True
        else:
            self._detach()

    cdef void _detach(self) noexcept:
        global _n_recorded
        cdef Py_ssize_t i
        cdef Node* node
        self.detach_pending = False
        if not self.recorded:
            return
        self.recorded = False
        _n_recorded -= 1
        if self.replayed and not self.forward_failed:
            self._write_back_hidden()   # (not replayed: the Values hold what we recorded)
        for i in range(self.t.n_slots):
            node = self.t.node_of_slot[i]
            if node != NULL and node.tape == self.id:
                node.flags &= ~(HIDDEN | RECORDED)
                node.tape = NO_TAPE
        if self.id != SHARED_TAPE:
            _tapes[self.id] = NULL
        self.id = NO_TAPE
        release_all(self.t.node_of_slot, self.t.n_slots, self.t.out_slot)   # at any depth
        tape_free(&self.t)

    cdef void _finish_pending_detach(self) noexcept:
        if self.detach_pending:
            self._detach()

    # ---- replay ---------------------------------------------------------------------
    cdef int _ensure_recorded(self) except -1:
        if self.running:
            raise RuntimeError("this compiled graph is being replayed in another thread")
        if self.recording:
            raise RuntimeError("this compiled graph is being recorded in another thread")
        if not self.recorded:
            self._record()
        return 0

    def forward(self):
        """Recompute every non-leaf node from the leaves' current data, reset the
        non-leaf grads to 0.0, and return the output's data."""
        cdef Py_ssize_t i
        cdef int err = 0
        cdef Py_ssize_t failed = -1
        cdef Tape* t = &self.t
        self._ensure_recorded()
        self.forward_failed = True
        self.replayed = True
        for i in range(t.n_leaves):
            t.D[t.leaf_slots[i]] = t.leaf_nodes[i].data
        self.running = True
        try:
            if t.has_custom:
                failed = self._forward_entries(&err)
            elif t.lanes != NULL:
                with nogil:
                    failed = _forward_with_lanes(t, self.n_threads, &err)
            else:
                with nogil:
                    failed = _forward_run(t.D, t.G, t.entries, 0, t.n_entries, t.tw, t.tx, &err)
        finally:
            self.running = False
        if err:
            en = &t.entries[failed]
            if en.code == DOT:   # its fused activation failed
                x, y = t.D[en.out], 0.0
            else:
                x, y = t.D[en.a], en.k
            self._finish_pending_detach()
            raise_math_error(err, x, y)
        for i in range(t.n_shown):
            t.shown_nodes[i].data = t.D[t.shown_slots[i]]
            t.shown_nodes[i].grad = 0.0
        self.passes = 0
        self.full = t.raises
        if self.full and t.n_terms:
            self._alloc_full()
            memset(t.sgrad, 0, t.n_terms * sizeof(double))
            memset(t.mgrad, 0, t.n_terms * sizeof(double))
        self.forward_failed = False
        self.lanes_fresh = True
        value = t.D[t.out_slot]
        self._finish_pending_detach()
        return value

    cdef Py_ssize_t _forward_entries(self, int* err) except? -2:
        """Forward with Function nodes: C runs between them, Python for them."""
        cdef Py_ssize_t e = 0, run_end, failed
        cdef Entry* en
        cdef Tape* t = &self.t
        while e < t.n_entries:
            run_end = e
            while run_end < t.n_entries and t.entries[run_end].code != CUSTOM:
                run_end += 1
            failed = _forward_run(t.D, t.G, t.entries, e, run_end, t.tw, t.tx, err)
            if err[0]:
                return failed
            if run_end == t.n_entries:
                break
            en = &t.entries[run_end]
            fb = self.functions[self.custom_index[run_end]]
            for v in fb.inputs:   # the inputs' Values must hold this replay's data
                (<Value>v).n.data = t.D[self._slot_of(v)]
            t.D[en.out] = fb.recompute()
            t.G[en.out] = 0.0
            e = run_end + 1
        return -1

    cdef Py_ssize_t _slot_of(self, object v) except -1:
        return self.slot_index[<Py_ssize_t>&(<Value>v).n]

    def backward(self):
        """What ``output.backward()`` would do on the graph as the last forward built
        it: set the output's grad to 1.0 and accumulate into every recorded node."""
        self._backward_locked(None)

    cdef int _backward_locked(self, _StepPlan zero) except -1:
        """backward(); with a plan, the plan's parameters start from 0.0 (zero_grad)."""
        cdef bint locked = False
        self._ensure_recorded()
        if self.forward_failed:
            raise RuntimeError("the last forward() failed: call forward() again first")
        if self.shares_leaves:
            _lock_leaves()       # (waits with the GIL released: we may be detached meanwhile)
            locked = True
        try:
            self._ensure_recorded()
            self._backward(zero)
        finally:
            if locked:
                _unlock_leaves()
        return 0

    cdef int _backward(self, _StepPlan zero) except -1:
        cdef Py_ssize_t i
        cdef int err = 0
        cdef Py_ssize_t failed = -1
        cdef Tape* t = &self.t
        if zero is not None:     # a training step: straight after forward()
            if zero.recording != self.recordings:
                plan_slots(zero, t, self.recordings)
            plan_load_leaves(zero, t)
        else:   # the rules read current data, as micrograd's closures do: refresh what
            for i in range(t.n_leaves):   # Python may have changed since the forward
                t.D[t.leaf_slots[i]] = t.leaf_nodes[i].data
                t.G[t.leaf_slots[i]] = t.leaf_nodes[i].grad
        for i in range(t.n_shown):
            t.D[t.shown_slots[i]] = t.shown_nodes[i].data
            t.G[t.shown_slots[i]] = t.shown_nodes[i].grad
        if not self.full and self.passes >= 1:   # a second backward: keep every grad
            self._enter_full_mode()
        elif self.full and t.sgrad == NULL and t.n_terms:   # backward right after recording
            self._full_from_buffers()
        # the lanes run the first backward since a forward (full mode then means only
        # that a rule can raise, and the lanes check first that none will)
        lanes = t.lanes != NULL and self.lanes_fresh and self.passes == 0
        self.lanes_fresh = False
        self.replayed = True
        t.G[t.out_slot] = 1.0
        self.running = True
        try:
            if not lanes:
                lanes_flush_g1(t)          # (a scalar backward updates dot_g1 itself)
            if t.has_custom:
                failed = self._backward_items(&err)
            elif lanes:
                with nogil:
                    failed = _backward_with_lanes(t, self.full, self.n_threads, &err)
            else:
                with nogil:
                    failed = _backward_run(t.D, t.G, t.entries, t.program, 0, t.n_program,
                                           t.tw, t.tx, t.dot_g1, t.sgrad, t.mgrad, self.full, &err)
        finally:
            self.running = False
            for i in range(t.n_leaves):
                t.leaf_nodes[i].grad = t.G[t.leaf_slots[i]]
            for i in range(t.n_shown):
                t.shown_nodes[i].grad = t.G[t.shown_slots[i]]
            self.passes += 1
        if err:
            en = &t.entries[t.program[failed].entry]
            if en.code == POW:
                x, y = t.D[en.a], en.k - 1.0
            else:
                x, y = t.D[en.a], t.G[en.out]
            self._finish_pending_detach()
            raise_math_error(err, x, y)
        self._finish_pending_detach()
        return 0

    cdef int _alloc_full(self) except -1:
        if self.t.sgrad == NULL:
            self.t.sgrad = <double*>malloc(max(1, self.t.n_terms) * sizeof(double))
            self.t.mgrad = <double*>malloc(max(1, self.t.n_terms) * sizeof(double))
            if self.t.sgrad == NULL or self.t.mgrad == NULL:
                raise MemoryError("not enough memory to replay the graph")
        return 0

    cdef int _full_from_buffers(self) except -1:
        """Full mode as recorded: the fused sums' intermediate grads, from their buffers."""
        cdef Py_ssize_t e, j
        cdef Entry* en
        cdef DotBuffer* buf
        self._alloc_full()
        for e in range(self.t.n_entries):
            en = &self.t.entries[e]
            if en.code == DOT:
                buf = _dot_buffer(self.t.node_of_slot[en.out])
                for j in range(en.n):
                    self.t.sgrad[en.b + j] = buf.sgrad[j]
                    self.t.mgrad[en.b + j] = buf.mgrad[j]
        return 0

    cdef int _enter_full_mode(self) except -1:
        """Spell out the intermediate grads a first fast backward left implicit."""
        cdef Py_ssize_t e, j
        cdef Entry* en
        cdef double gp
        self._alloc_full()
        lanes_flush_g1(&self.t)
        for e in range(self.t.n_entries):
            en = &self.t.entries[e]
            if en.code == DOT:
                gp = 0.0 + self.t.dot_g1[e]
                for j in range(en.n):
                    self.t.sgrad[en.b + j] = gp
                    self.t.mgrad[en.b + j] = gp
        self.full = True
        return 0

    cdef Py_ssize_t _backward_items(self, int* err) except? -2:
        """Backward with Function nodes: C runs between them, Python for them."""
        cdef Py_ssize_t i = 0, run_end, failed
        cdef Entry* en
        cdef Tape* t = &self.t
        while i < t.n_program:
            run_end = i
            while run_end < t.n_program and t.entries[t.program[run_end].entry].code != CUSTOM:
                run_end += 1
            failed = _backward_run(t.D, t.G, t.entries, t.program, i, run_end,
                                   t.tw, t.tx, t.dot_g1, t.sgrad, t.mgrad, self.full, err)
            if err[0]:
                return failed
            if run_end == t.n_program:
                break
            en = &t.entries[t.program[run_end].entry]
            fb = self.functions[self.custom_index[t.program[run_end].entry]]
            (<Value>fb.out).n.grad = t.G[en.out]
            for v in fb.inputs:   # the callback adds to the inputs' Values: sync them
                (<Value>v).n.grad = t.G[self._slot_of(v)]
                (<Value>v).n.data = t.D[self._slot_of(v)]
            fb()
            for v in fb.inputs:
                t.G[self._slot_of(v)] = (<Value>v).n.grad
            i = run_end + 1
        return -1

    def __call__(self):
        """One training step: ``forward()``, the optimizer's ``zero_grad()``,
        ``backward()``, the optimizer's ``step()``. Returns the loss (the output's data
        before the update). For SGD, Adam and AdamW it runs in C (train_step.pxi)."""
        cdef _StepPlan plan
        if self.optimizer is None:
            raise TypeError("this compiled graph has no optimizer: compile(loss, optimizer=opt) "
                            "to call it as a training step, or call forward() and backward()")
        value = self.forward()
        opt = self.optimizer
        plan = None
        if not self.t.has_custom and is_planned_optimizer(opt):   # (else Python runs between)
            plan = self.plan
            if not plan_matches(plan, opt.params):
                plan = self.plan = make_plan(opt.params)   # None: not all compiled Values
        if plan is None:   # the optimizer's own methods (they say what is wrong, if anything)
            opt.zero_grad()
            self.backward()
            opt.step()
        else:
            self._backward_locked(plan)   # with opt.zero_grad() folded in
            if not plan_update(plan, opt):
                opt.step()
        return value

    @property
    def threads(self):
        """How many threads a replay uses (settable). The lanes are split between them;
        the result is the same bits for any number."""
        return self.n_threads

    @threads.setter
    def threads(self, value):
        self.n_threads = _check_threads(value)

    @property
    def lanes(self):
        """How many examples a replay runs side by side, one per SIMD lane (0: none)."""
        self._ensure_recorded()
        return self.t.lanes.E if self.t.lanes != NULL else 0

    @property
    def num_nodes(self):
        """How many recorded nodes and constants (slots) a replay walks."""
        self._ensure_recorded()
        return self.t.n_slots

    def __repr__(self):
        return (f"<cmicrograd CompiledGraph: {self.t.n_slots} slots, {self.t.n_entries} ops, "
                f"{self.t.n_terms} fused terms, output={self.output!r}>")


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
        # the common ops first, by their rules (value.pxi) with no error to check
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


def compile(Value output, optimizer=None, *, threads=1, lanes=True):
    """Record the graph that produced ``output`` for fast replay (see CompiledGraph)."""
    return CompiledGraph(output, optimizer, threads=threads, lanes=lanes)


cdef Py_ssize_t _forward_with_lanes(Tape* t, int threads, int* err) noexcept nogil:
    """Forward: the entries before the examples, the lanes, the entries after. If a lane's
    rule fails, the examples run again in scalar, which fails where the scalar replay
    does. Returns the failing entry, or -1."""
    cdef LanePlan* p = t.lanes
    cdef Py_ssize_t failed = _forward_run(t.D, t.G, t.entries, 0, p.entry_start, t.tw, t.tx, err)
    if err[0]:
        return failed
    if lanes_run(p, FORWARD_LANES, t.D, t.G, t.dot_g1, threads):
        failed = _forward_run(t.D, t.G, t.entries, p.entry_start, p.entry_stop, t.tw, t.tx, err)
        if err[0]:
            return failed
    return _forward_run(t.D, t.G, t.entries, p.entry_stop, t.n_entries, t.tw, t.tx, err)


cdef Py_ssize_t _backward_with_lanes(Tape* t, bint full, int threads, int* err) noexcept nogil:
    """The first backward since a forward: the items before the examples, the sum's
    chain, the lanes, the shared grads, the items after. Returns the failing item, or
    -1. If a lane's rule would raise, the scalar replay runs instead: it raises where
    micrograd would, with every grad as micrograd leaves it."""
    cdef LanePlan* p = t.lanes
    cdef Py_ssize_t failed
    if t.raises and lanes_would_raise(p, t.D):
        return _backward_run(t.D, t.G, t.entries, t.program, 0, t.n_program,
                             t.tw, t.tx, t.dot_g1, t.sgrad, t.mgrad, full, err)
    failed = _backward_run(t.D, t.G, t.entries, t.program, 0, p.prog_start,
                           t.tw, t.tx, t.dot_g1, t.sgrad, t.mgrad, full, err)
    if err[0]:
        return failed
    _backward_run(t.D, t.G, t.entries, p.chain, 0, p.n_chain,
                  t.tw, t.tx, t.dot_g1, t.sgrad, t.mgrad, full, err)   # (cannot raise)
    lanes_run(p, BACKWARD_LANES, t.D, t.G, t.dot_g1, threads)            # (nor these)
    lanes_run(p, REDUCE, t.D, t.G, t.dot_g1, threads)
    p.g1_pending = True
    if full:
        lanes_flush_g1(t)
        lanes_spell_out(p, t)
    return _backward_run(t.D, t.G, t.entries, t.program, p.prog_stop, t.n_program,
                         t.tw, t.tx, t.dot_g1, t.sgrad, t.mgrad, full, err)


# compile()'s argument checks are cmicrograd._engines' (the pure engine's too, so both
# engines say the same), imported on first use (it may import this module) and kept,
# not imported at every call.
cdef object _engines_module = None


cdef object _engines():
    global _engines_module
    if _engines_module is None:
        from cmicrograd import _engines
        _engines_module = _engines
    return _engines_module


cdef int _check_threads(object threads) except -1:
    return _engines().check_threads(threads)


cdef bint _check_lanes(object lanes) except -1:
    return _engines().check_lanes(lanes)


cdef object _check_optimizer(object optimizer, type value_type):
    """optimizer, if it is None or a cmicrograd optimizer over Values of value_type."""
    return _engines().check_optimizer(optimizer, value_type)

