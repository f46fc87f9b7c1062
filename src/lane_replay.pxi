# Replaying lanes: the examples found by lanes.pxi, side by side.
#
# Forward runs every template op over a block of lanes (examples); backward runs every
# template backward item over them, then adds each shared slot's contributions (a
# parameter's grad) from the last example to the first (lane_kernels.h's reduce). Both
# split the lanes, and the reduction its jobs, between threads (lanes.h's pool): every
# lane and every job is computed by one thread, the same way for any number of them.
# replay.pxi calls lanes_run around the scalar parts before and after the examples.

cdef struct LaneTask:          # one lane replay phase, split between threads
    LanePlan* plan
    double* D
    double* G
    double* dot_g1
    int phase                  # FORWARD_LANES, BACKWARD_LANES or REDUCE
    long next                  # the reduction: the next chunk to take
    Py_ssize_t chunk           # lanes (or jobs) a chunk
    int err[64]                # per part: an error (forward, backward rules)
    long long lanes_left[64]   # per part: its chunks of lanes not taken yet (cm_take_chunk)

cdef enum:
    FORWARD_LANES = 0
    BACKWARD_LANES = 1
    REDUCE = 2


cdef inline double* _lanes_of(LanePlan* p, double* D, LaneRef r, Py_ssize_t e0, Py_ssize_t n,
                              int which) noexcept nogil:
    """Lanes e0.. of an operand: its vector, or a shared operand spread into scratch."""
    cdef double* v
    if r.kind == LANE:
        return D + r.slot + e0
    v = p.buf + p.scratch_at + which * p.E + e0
    cm_lk.fill(v, D[r.slot], n)
    return v


cdef void _lanes_forward(LanePlan* p, double* D, double* G, Py_ssize_t e0, Py_ssize_t e1,
                         int* err) noexcept nogil:
    """Every template op over lanes e0..e1-1, in the template's order: each lane computes
    what the scalar forward computes for its example."""
    cdef Py_ssize_t n = e1 - e0, k, j, e, i
    cdef double w4[4]
    cdef LaneOp* op
    cdef LaneTerm* term
    cdef double* o
    cdef double* a
    cdef double* b
    cdef double* w
    k = 0
    while k < p.n_ops:
        op = &p.ops[k]
        o = D + op.out.slot + e0
        k += 1
        if op.run > 1:                      # a layer: its sums at once, then their acts
            _layer_forward(p, D, G, op, e0, e1, err)
            k += op.run - 1
            if err[0]:
                return
            continue
        if op.code == DOT:
            if op.a.kind == LANE:
                cm_lk.copy(o, D + op.a.slot + e0, n)
            else:
                cm_lk.fill(o, D[op.a.slot], n)
            j = 0
            while j < op.n:                  # s = s + w * x, term by term
                term = &p.terms[op.term + j]
                if j + 4 <= op.n and _four_shared_weights(term):
                    for i in range(4):
                        w4[i] = D[term[i].w.slot]
                    cm_lk.dot4_sl(o, w4, D + term[0].x.slot + e0, D + term[1].x.slot + e0,
                                  D + term[2].x.slot + e0, D + term[3].x.slot + e0, n)
                    j += 4
                    continue
                j += 1
                if term.w.kind == SHARED and term.x.kind == LANE:
                    cm_lk.dot_sl(o, D[term.w.slot], D + term.x.slot + e0, n)
                elif term.w.kind == LANE and term.x.kind == LANE:
                    cm_lk.dot_ll(o, D + term.w.slot + e0, D + term.x.slot + e0, n)
                elif term.w.kind == LANE:
                    cm_lk.dot_ls(o, D + term.w.slot + e0, D[term.x.slot], n)
                else:
                    w = _lanes_of(p, D, term.w, e0, n, 0)
                    cm_lk.dot_ls(o, w, D[term.x.slot], n)
            cm_lk.fill(G + op.out.slot + e0, 0.0, n)
            if op.act:
                a = D + op.act_out.slot + e0
                if op.act == RELU:
                    cm_lk.relu(a, o, n)
                else:
                    for e in range(n):
                        a[e] = forward_rule(op.act, o[e], 0.0, 0.0, err)
                cm_lk.fill(G + op.act_out.slot + e0, 0.0, n)
        else:
            a = _lanes_of(p, D, op.a, e0, n, 0)
            b = _lanes_of(p, D, op.b, e0, n, 1) if binary_op(op.code) else a
            if op.code == ADD:
                cm_lk.add(o, a, b, n)
            elif op.code == MUL:
                cm_lk.mul(o, a, b, n)
            elif op.code == RELU:
                cm_lk.relu(o, a, n)
            else:
                for e in range(n):
                    o[e] = forward_rule(op.code, a[e], b[e], op.k, err)
            cm_lk.fill(G + op.out.slot + e0, 0.0, n)
        if err[0]:
            return


cdef void _layer_forward(LanePlan* p, double* D, double* G, LaneOp* first, Py_ssize_t e0,
                         Py_ssize_t e1, int* err) noexcept nogil:
    cdef Py_ssize_t n = e1 - e0, k, j, e, m = first.run
    cdef double* outs[MAX_LAYER_INPUTS]
    cdef const double* xs[MAX_LAYER_INPUTS]
    cdef LaneOp* op
    cdef double* o
    cdef double* a
    for k in range(m):
        outs[k] = D + first[k].out.slot + e0
    for j in range(first.n):
        xs[j] = D + p.terms[first.term + j].x.slot + e0
    cm_lk.layer_forward(outs, p.wF + first.wf + m * first.n, p.wF + first.wf, xs, m, first.n, n)
    for k in range(m):
        op = first + k
        o = outs[k]
        cm_lk.fill(G + op.out.slot + e0, 0.0, n)
        if op.act:
            a = D + op.act_out.slot + e0
            if op.act == RELU:
                cm_lk.relu(a, o, n)
            else:
                for e in range(n):
                    a[e] = forward_rule(op.act, o[e], 0.0, 0.0, err)
            cm_lk.fill(G + op.act_out.slot + e0, 0.0, n)


cdef void lanes_gather_forward_weights(LanePlan* p, double* D) noexcept nogil:
    """Before a lane forward: each forward run's weights (neuron-major), then biases."""
    cdef Py_ssize_t k, j, q, m
    cdef LaneOp* op
    for k in range(p.n_ops):
        op = &p.ops[k]
        if op.run > 1:
            m = op.run
            for q in range(m):
                for j in range(op.n):
                    p.wF[op.wf + q * op.n + j] = D[p.terms[op[q].term + j].w.slot]
                p.wF[op.wf + m * op.n + q] = D[op[q].a.slot]


cdef inline bint _four_shared_weights(LaneTerm* term) noexcept nogil:
    return (term[0].w.kind == SHARED and term[0].x.kind == LANE and term[1].w.kind == SHARED
            and term[1].x.kind == LANE and term[2].w.kind == SHARED and term[2].x.kind == LANE
            and term[3].w.kind == SHARED and term[3].x.kind == LANE)


cdef void _lanes_backward(LanePlan* p, double* D, double* G, Py_ssize_t e0, Py_ssize_t e1,
                          int* err) noexcept nogil:
    """Every template backward item over lanes e0..e1-1, in the template's order: the
    first backward since a forward (fast mode, replay.pxi), what the scalar
    _backward_run does for each example, except that a shared operand's grad is left
    for _lanes_reduce (a fused sum's: from GP; a plain op's: added into its row)."""
    cdef Py_ssize_t n = e1 - e0, i, j, e, E = p.E
    cdef LaneItem* item
    cdef LaneOp* op
    cdef LaneTerm* term
    cdef double* g
    cdef double* g1
    cdef double* gp
    cdef double* a
    cdef double* b
    cdef double* ga
    cdef double* gb
    cdef double dummy
    i = 0
    while i < p.n_items:
        item = &p.items[i]
        op = &p.ops[item.op]
        g = G + op.out.slot + e0
        i += 1
        if item.run > 1:
            _layer_backward(p, D, G, item, e0, e1, err)
            i += item.run - 1
            continue
        if op.code == DOT:
            g1 = p.buf + item.op * E + e0
            gp = p.buf + p.gp_at + item.op * E + e0
            if item.hi == op.n - 1:         # the first item: the activation, then g
                if op.act == RELU:
                    cm_lk.relu_bw(g, D + op.act_out.slot + e0, G + op.act_out.slot + e0, n)
                elif op.act:
                    for e in range(n):
                        backward_rule(op.act, D[op.out.slot + e0 + e], 0.0, 0.0,
                                      D[op.act_out.slot + e0 + e], G[op.act_out.slot + e0 + e],
                                      &g[e], NULL, err)
                cm_lk.copy(g1, g, n)        # (dot_g1's, when asked: lanes_flush_g1)
                cm_lk.plus0(gp, g, n)
            for j in range(item.hi, item.lo - 1, -1):
                term = &p.terms[op.term + j]
                if j == 0 and op.a.kind == LANE:
                    cm_lk.acc(G + op.a.slot + e0, g1 if op.n == 1 else gp, n)
                if term.w.kind == LANE:      # G[w] += D[x] * gp
                    if term.x.kind == LANE:
                        cm_lk.axpy_ll(G + term.w.slot + e0, D + term.x.slot + e0, gp, n)
                    else:
                        cm_lk.axpy_sl(G + term.w.slot + e0, D[term.x.slot], gp, n)
                if term.x.kind == LANE:      # G[x] += D[w] * gp
                    if term.w.kind == LANE:
                        cm_lk.axpy_ll(G + term.x.slot + e0, D + term.w.slot + e0, gp, n)
                    else:
                        cm_lk.axpy_sl(G + term.x.slot + e0, D[term.w.slot], gp, n)
            continue
        a = _lanes_of(p, D, op.a, e0, n, 0)
        b = _lanes_of(p, D, op.b, e0, n, 1) if binary_op(op.code) else a
        ga = G + op.a.slot + e0
        if op.ra >= 0:
            ga = p.buf + p.rows_at + op.ra * E + e0
            cm_lk.fill(ga, -0.0, n)           # -0.0 + x is x, bit for bit
        gb = G + op.b.slot + e0
        if op.rb >= 0:
            gb = p.buf + p.rows_at + op.rb * E + e0
            cm_lk.fill(gb, -0.0, n)
        if op.code == ADD:
            cm_lk.acc(ga, g, n)
            cm_lk.acc(gb, g, n)
        elif op.code == MUL:                  # ga += b * g; gb += a * g
            cm_lk.axpy_ll(ga, b, g, n)
            cm_lk.axpy_ll(gb, a, g, n)
        elif op.code == RELU:
            cm_lk.relu_bw(ga, D + op.out.slot + e0, g, n)
        else:
            for e in range(n):
                backward_rule(op.code, a[e], b[e], op.k, D[op.out.slot + e0 + e], g[e], &ga[e],
                              &gb[e] if binary_op(op.code) else &dummy, err)
            if err[0]:
                return
    _layers_as_rows(p, D, e0, e1)


cdef void _layers_as_rows(LanePlan* p, double* D, Py_ssize_t e0, Py_ssize_t e1) noexcept nogil:
    """Lanes e0..e1-1 of each reduction layer's inputs, as rows (xt[e * n + j])."""
    cdef Py_ssize_t q, e, j, n
    cdef LaneLayer* L
    cdef LaneOp* op
    cdef double* xt
    for q in range(p.n_layers):
        L = &p.layers[q]
        op = &p.ops[L.op0]
        n = L.n
        for e in range(e0, e1):
            xt = p.xt_buf + L.xt + e * n
            for j in range(n):
                xt[j] = D[p.terms[op.term + j].x.slot + e]


cdef void _layer_backward(LanePlan* p, double* D, double* G, LaneItem* first, Py_ssize_t e0,
                          Py_ssize_t e1, int* err) noexcept nogil:
    """A run of fused sums over the same inputs (lanes.pxi _find_layers), over lanes
    e0..e1-1: each sum's activation and g first (they touch only its own slots), then
    for each input j the run's additions D[w_kj] * gp_k into G[x_j], k in item order."""
    cdef Py_ssize_t n = e1 - e0, k, j, e, E = p.E, m = first.run
    cdef double* targets[MAX_LAYER_INPUTS]
    cdef LaneItem* item
    cdef LaneOp* op
    cdef double* g
    for k in range(m):
        item = first + k
        op = &p.ops[item.op]
        g = G + op.out.slot + e0
        if op.act == RELU:
            cm_lk.relu_bw(g, D + op.act_out.slot + e0, G + op.act_out.slot + e0, n)
        elif op.act:
            for e in range(n):
                backward_rule(op.act, D[op.out.slot + e0 + e], 0.0, 0.0,
                              D[op.act_out.slot + e0 + e], G[op.act_out.slot + e0 + e],
                              &g[e], NULL, err)
        cm_lk.copy(p.buf + item.op * E + e0, g, n)
        cm_lk.plus0(p.buf + p.gp_at + item.op * E + e0, g, n)
        if op.a.kind == LANE:               # a lane bias (a shared one is a job)
            cm_lk.acc(G + op.a.slot + e0, p.buf + (0 if op.n == 1 else p.gp_at) + item.op * E + e0, n)
    op = &p.ops[first.op]
    for j in range(op.n):                   # (distinct inputs: any order of j)
        targets[j] = G + p.terms[op.term + j].x.slot + e0
    cm_lk.axpy_run(targets, op.n, p.wT + first.wt, p.buf + p.gp_at + first.op * E + e0,
                   (first[1].op - first.op) * E, m, n)


cdef void lanes_gather_weights(LanePlan* p, double* D) noexcept nogil:
    """Before a lane backward: each run's weights, term-major (wT[j * m + k] = w_kj)."""
    cdef Py_ssize_t i, j, k, m
    cdef LaneItem* first
    cdef LaneOp* op
    for i in range(p.n_items):
        first = &p.items[i]
        if first.run > 1:
            m = first.run
            for k in range(m):
                op = &p.ops[first[k].op]
                for j in range(op.n):
                    p.wT[first.wt + j * m + k] = D[p.terms[op.term + j].w.slot]


cdef void _lanes_task(void* arg, int part, int nparts) noexcept nogil:
    """One thread's part of a phase: lanes (_lanes_share), or units of the reduction
    (chunks of jobs, pairs of a layer's neurons), which reads every lane anyway: taken one
    after the other by whichever thread is free (without atomics, an even share)."""
    cdef LaneTask* task = <LaneTask*>arg
    cdef LanePlan* p = task.plan
    cdef Py_ssize_t n, lo, hi, u, chunks
    cdef long c
    task.err[part] = 0
    if task.phase != REDUCE:
        _lanes_share(task, part, nparts)
        return
    chunks = (p.n_jobs + task.chunk - 1) // task.chunk
    n = chunks + p.n_units
    c = cm_next_chunk(&task.next) if nparts > 1 else -1
    if c < 0:
        lo = n * part // nparts
        hi = n * (part + 1) // nparts
        for u in range(lo, hi):
            _reduce_unit(task, u, chunks)
        return
    while c < n:
        _reduce_unit(task, c, chunks)
        c = cm_next_chunk(&task.next)


cdef void _lanes_share(LaneTask* task, int part, int nparts) noexcept nogil:
    """A thread's lanes in a forward or backward phase: its own chunks (the same in every
    phase and step, so its cache holds them), then, if it is done first, other parts'
    chunks from their far ends. A fixed split waits for the slower thread: the two
    cores of a VM seldom run at the same speed."""
    cdef long c
    cdef int k
    if nparts == 1:
        _lanes_chunk(task, 0, task.plan.E, part)
        return
    for k in range(nparts if CM_STEALS else 1):   # k 0: its own range, from the low end
        while not task.err[part]:
            c = cm_take_chunk(&task.lanes_left[(part + k) % nparts], k > 0)
            if c < 0:
                break
            _lanes_chunk(task, c * task.chunk, min(task.plan.E, (c + 1) * task.chunk), part)


cdef inline void _lanes_chunk(LaneTask* task, Py_ssize_t e0, Py_ssize_t e1,
                              int part) noexcept nogil:
    """The phase's work on lanes e0..e1-1."""
    if task.phase == FORWARD_LANES:
        _lanes_forward(task.plan, task.D, task.G, e0, e1, &task.err[part])
    else:
        _lanes_backward(task.plan, task.D, task.G, e0, e1, &task.err[part])


cdef void _reduce_unit(LaneTask* task, Py_ssize_t u, Py_ssize_t chunks) noexcept nogil:
    """Unit u of the reduction: a chunk of jobs, or two neurons of a layer."""
    cdef LanePlan* p = task.plan
    cdef LaneLayer* L
    cdef Py_ssize_t q = 0, k, E = p.E
    cdef double* gp1
    if u < chunks:
        cm_lk.reduce(task.G, task.D, p.jobs + u * task.chunk,
                     min(p.n_jobs, (u + 1) * task.chunk) - u * task.chunk, p.buf, E)
        return
    u -= chunks
    while u >= (p.layers[q].m + 1) // 2:
        u -= (p.layers[q].m + 1) // 2
        q += 1
    L = &p.layers[q]
    k = 2 * u
    gp1 = p.buf + p.gp_at + (L.op0 + (k + 1) * L.step) * E if k + 1 < L.m else NULL
    cm_lk.layer_reduce(task.G, p.layer_w + L.w + k * L.n, p.layer_w + L.w + (k + 1) * L.n,
                       p.xt_buf + L.xt, L.n, p.buf + p.gp_at + (L.op0 + k * L.step) * E, gp1, E)


cdef int lanes_run(LanePlan* p, int phase, double* D, double* G, double* dot_g1,
                   int threads) noexcept nogil:
    """Run a phase on `threads` threads (fewer if the lanes are few); returns nonzero if
    a lane's rule failed. Every split gives the same bits: the lanes are independent,
    and each shared grad is one job's, whatever thread runs it."""
    cdef LaneTask task
    cdef int i, parts, failed = 0
    cdef long long chunks
    cdef Py_ssize_t work = p.E * (p.n_jobs + p.n_wt if phase == REDUCE else p.n_ops + p.n_terms)
    # threads is a maximum: each part gets at least MIN_PART_WORK lane operations (less
    # is over before a thread could take it), and the lanes at least LANE_BLOCK each
    parts = <int>min(<Py_ssize_t>min(threads, 64), max(work // MIN_PART_WORK, 1),
                     max(p.E // LANE_BLOCK, 1) if phase != REDUCE else 64)
    task.plan = p
    task.D = D
    task.G = G
    task.dot_g1 = dot_g1
    task.phase = phase
    if phase == BACKWARD_LANES and p.n_wt:
        lanes_gather_weights(p, D)
    if phase == FORWARD_LANES and p.n_wf:
        lanes_gather_forward_weights(p, D)
    if phase == REDUCE:     # chunks of jobs: about four per part, multiples of 16
        task.next = 0
        task.chunk = (p.n_jobs // (4 * parts) + 16) // 16 * 16
    else:                   # chunks of lanes: about eight per part, whole LANE_BLOCKs
        task.chunk = (p.E // (8 * parts) + LANE_BLOCK) // LANE_BLOCK * LANE_BLOCK
        chunks = (p.E + task.chunk - 1) // task.chunk
        for i in range(parts):
            task.lanes_left[i] = ((chunks * (i + 1) // parts) << 32) | (chunks * i // parts)
    cm_pool_run(_lanes_task, &task, parts)
    for i in range(parts):
        failed |= task.err[i]
    return failed


cdef bint lanes_would_raise(LanePlan* p, double* D) noexcept nogil:
    """Whether a template backward rule would raise in some lane (whether one raises
    depends on the data only: see cmicrograd/_ops.py). Then the scalar replay runs
    instead, and stops where micrograd would."""
    cdef Py_ssize_t k, e
    cdef LaneOp* op
    cdef double ga, gb
    cdef int err = 0
    for k in range(p.n_ops):
        op = &p.ops[k]
        if op.code == DOT:
            if op.act and backward_can_raise(op.act):
                for e in range(p.E):
                    backward_rule(op.act, D[op.out.slot + e], 0.0, 0.0, D[op.act_out.slot + e], 1.0,
                                  &ga, &gb, &err)
        elif backward_can_raise(op.code):
            for e in range(p.E):
                backward_rule(op.code, D[op.a.slot + (e if op.a.kind == LANE else 0)],
                              D[op.b.slot + (e if op.b.kind == LANE else 0)], op.k,
                              D[op.out.slot + e], 1.0, &ga, &gb, &err)
        if err:
            return True
    return False


cdef void lanes_flush_g1(Tape* t) noexcept nogil:
    """Copy the examples' fused-sum grads of the last lane backward into dot_g1 (which
    the write-back and full mode read; the lanes keep them per template DOT, lane by
    lane, and copy them only when asked)."""
    cdef LanePlan* p = t.lanes
    cdef Py_ssize_t k, e
    if p == NULL or not p.g1_pending:
        return
    for e in range(p.E):
        for k in range(p.n_ops):
            if p.ops[k].code == DOT:
                t.dot_g1[p.entry_start + e * p.n_ops + k] = p.buf[k * p.E + e]
    p.g1_pending = False


cdef void lanes_spell_out(LanePlan* p, Tape* t) noexcept nogil:
    """After a lane backward in full mode (replay.pxi): the fused sums' intermediate
    grads, as the scalar full-mode backward leaves them from zero: 0.0 + g for every
    product and every partial sum but the last."""
    cdef Py_ssize_t i, j
    cdef Entry* en
    cdef double gp
    for i in range(p.entry_start, p.entry_stop):
        en = &t.entries[i]
        if en.code != DOT:
            continue
        gp = 0.0 + t.dot_g1[i]
        for j in range(en.n):
            t.mgrad[en.b + j] = gp
            if j < en.n - 1:
                t.sgrad[en.b + j] = gp


cdef str LANE_KERNELS = "baseline"    # the instruction set the lane loops use (avx2, baseline)


cdef int init_lanes() except -1:
    """At import: the worker pool's lock, and the lane loops for this CPU (AVX2 unless
    CMICROGRAD_SIMD=0 asks for the baseline ones)."""
    global LANE_KERNELS
    from cmicrograd._flags import flag_off, SIMD

    if cm_pool_init() < 0:
        raise MemoryError("cannot make a lock")
    LANE_KERNELS = cm_lanes_select(0 if flag_off(SIMD) else 1).decode()
    return 0


def _lane_kernels():
    """The instruction set of the lane loops: 'avx2' or 'baseline' (for tests)."""
    return LANE_KERNELS
