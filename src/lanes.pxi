# Lanes: a batch of identical per-example subgraphs, found in a recording and laid out
# so that they replay together, one example per SIMD lane (lane_replay.pxi).
#
# A training loss over a batch is the same small graph once per example, the examples'
# results summed: sum(loss_e) (Python's sum: a chain of ADD nodes). At record time
# find_lanes looks for that shape in the tape: the chain's operands are the examples'
# roots; each example's nodes are those the walk reached first from its root (the walk
# gives them a block of consecutive slots, see _try_chain); what the examples share
# must be leaves (the parameters). When every example is the same template (the same
# ops on the same shared leaves, in the same order), _lay_out renumbers the slots so
# that the E copies of each template slot sit side by side (slot i * E + e), and
# describes the template for the replay.
#
# Every lane does exactly the float operations the scalar replay does for its example,
# in the same order, so every node's data and grad keep their bits:
# * forward: an op's value depends on its operands only;
# * backward, a lane's own grads: each example's items run in the recorded order;
# * backward, a shared slot's grad (a parameter's): the eager order adds the examples'
#   contributions from the last example to the first (the sum's chain is walked from
#   its end), one contribution per example (find_lanes refuses a template that reads a
#   shared slot twice). The replay adds them in that order, after the lanes, from the
#   lanes' data and grads.
# The program keeps its order, for the scalar replay (a second backward without a
# forward, or a rule that would raise). The lane backward runs the items recorded
# between the examples' (the sum's chain) first; _lay_out checks they touch nothing the
# examples write to, and cannot raise.

cdef extern from "lanes.h":
    enum:
        CM_JOB_PRODUCT
        CM_JOB_SHARED_PRODUCT
        CM_JOB_ROW
    ctypedef struct cm_lane_job:
        int32_t target, src, kind
        Py_ssize_t vec
    ctypedef struct cm_lane_kernels:
        void copy(double*, const double*, Py_ssize_t) noexcept nogil
        void fill(double*, double, Py_ssize_t) noexcept nogil
        void add(double*, const double*, const double*, Py_ssize_t) noexcept nogil
        void mul(double*, const double*, const double*, Py_ssize_t) noexcept nogil
        void relu(double*, const double*, Py_ssize_t) noexcept nogil
        void dot_sl(double*, double, const double*, Py_ssize_t) noexcept nogil
        void dot4_sl(double*, const double*, const double*, const double*, const double*,
                     const double*, Py_ssize_t) noexcept nogil
        void dot_ls(double*, const double*, double, Py_ssize_t) noexcept nogil
        void dot_ll(double*, const double*, const double*, Py_ssize_t) noexcept nogil
        void acc(double*, const double*, Py_ssize_t) noexcept nogil
        void plus0(double*, const double*, Py_ssize_t) noexcept nogil
        void relu_bw(double*, const double*, const double*, Py_ssize_t) noexcept nogil
        void axpy_sl(double*, double, const double*, Py_ssize_t) noexcept nogil
        void axpy_ls(double*, const double*, double, Py_ssize_t) noexcept nogil
        void axpy_ll(double*, const double*, const double*, Py_ssize_t) noexcept nogil
        void axpy_run(double* const*, Py_ssize_t, const double*, const double*, Py_ssize_t,
                      Py_ssize_t, Py_ssize_t) noexcept nogil
        void layer_forward(double* const*, const double*, const double*, const double* const*,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
        void layer_reduce(double*, const int32_t*, const int32_t*, const double*, Py_ssize_t,
                          const double*, const double*, Py_ssize_t) noexcept nogil
        void reduce(double*, const double*, const cm_lane_job*, Py_ssize_t, const double*,
                    Py_ssize_t) noexcept nogil
        void adam(double* const*, Py_ssize_t, double*, double*, Py_ssize_t, const double*) noexcept nogil
    const cm_lane_kernels* cm_lk
    const char* cm_lanes_select(int allow) noexcept
    ctypedef void (*cm_task)(void* arg, int part, int nparts) noexcept nogil
    void cm_pool_run(cm_task task, void* arg, int nparts) noexcept nogil
    long cm_next_chunk(long* next) noexcept nogil
    long cm_take_chunk(long long* range_, int from_high) noexcept nogil
    int CM_STEALS
    int cm_pool_init() noexcept


cdef enum:
    LANE = 0        # a template slot: example e's copy at slot + e
    SHARED = 1      # one slot every example reads (a parameter)
    MIN_LANES = 8   # fewer examples than this: not worth it
    MAX_CHAINS_TRIED = 4
    LANE_BLOCK = 8  # threads split the lanes at multiples of this
    MIN_PART_WORK = 262144  # lane operations below which another thread does not pay (the
                            # lanes then move between two cores' caches at each phase)
    MAX_LAYER_INPUTS = 1024 # a layer of wider neurons runs item by item; a longer run of
                            # neurons is cut in runs of this many
    LAYER_MIN_INPUTS = 8    # a layer's reduction pays from this many inputs

cdef struct LaneRef:
    int32_t kind
    int32_t slot

cdef struct LaneOp:            # a template entry
    uint8_t code
    uint8_t act
    int32_t n                  # DOT: terms
    int32_t term               # DOT: its first term in LanePlan.terms
    int32_t ra, rb             # a plain op's shared operands: their rows in buf (-1: none)
    int32_t run, wf            # > 1: the first of that many sums over the same inputs run
                               # as one forward (_find_layers), weights at LanePlan.wF + wf
    double k
    LaneRef out, act_out, a, b

cdef struct LaneTerm:
    LaneRef w, x

cdef struct LaneItem:          # a template backward item: steps hi..lo of op (-1: plain op)
    int32_t op, hi, lo
    int32_t run                # > 1: the first of that many fused sums run as one (see
    int32_t wt                 # _find_layers), their weights at wt in LanePlan.wT

cdef struct LaneLayer:         # a run of neurons over the same inputs (_find_layers)
    int32_t op0, step          # its template ops: op0, op0 + step, ... (step +-1)
    int32_t m, n               # neurons, inputs
    Py_ssize_t xt              # its inputs, lanes as rows, at LanePlan.xt_buf + xt
    Py_ssize_t w               # its weights' slots, neuron-major, at LanePlan.layer_w + w

cdef struct LanePlan:
    Py_ssize_t E               # lanes: examples
    Py_ssize_t n_ops, n_items, n_jobs, n_rows, n_terms
    LaneOp* ops
    LaneTerm* terms
    LaneItem* items
    cm_lane_job* jobs          # the shared slots' grads, after the lanes
    double* wT                 # the weights of each run of items, term-major (gathered
    Py_ssize_t n_wt            # before each lane backward)
    double* wF                 # the weights and biases of each forward run, neuron-major
    Py_ssize_t n_wf            # (gathered before each lane forward)
    LaneLayer* layers          # the runs whose weights' grads the reduction sums as layers
    Py_ssize_t n_layers, n_units   # (n_units: layer work units, two neurons each)
    double* xt_buf
    int32_t* layer_w
    Py_ssize_t entry_start, entry_stop   # the examples' entries in the tape (e-major)
    Py_ssize_t prog_start, prog_stop     # the program's items from the examples' first to last
    BwItem* chain              # the items among them that are not the examples' (the sum's
    Py_ssize_t n_chain         # chain): the lane backward runs them first
    # per lane vectors of E doubles: per template DOT its g (G1) and 0.0 + g (GP), the
    # rows of plain ops' shared operands, two scratch vectors (a shared operand spread)
    double* buf
    Py_ssize_t gp_at, rows_at, scratch_at
    bint g1_pending            # G1 holds the last backward's fused-sum grads, dot_g1 not yet


cdef void lanes_free(LanePlan* plan) noexcept nogil:
    if plan != NULL:
        free(plan.ops)
        free(plan.terms)
        free(plan.items)
        free(plan.jobs)
        free(plan.buf)
        free(plan.chain)
        free(plan.wT)
        free(plan.wF)
        free(plan.layers)
        free(plan.xt_buf)
        free(plan.layer_w)
        free(plan)


# ---- finding the lanes (at record time, on the tape's arrays, no GIL) ---------------------
cdef inline int _n_operands(Entry* en) noexcept nogil:
    """How many operand slots an entry reads (a fused sum: the bias and 2 per term)."""
    if en.code == DOT:
        return 1 + 2 * en.n
    return 2 if binary_op(en.code) else 1


cdef inline int32_t _operand_slot(Tape* t, Entry* en, int i) noexcept nogil:
    """An entry's i-th operand slot: a, then b (binary), or a fused sum's w_j, x_j."""
    if i == 0:
        return en.a
    if en.code == DOT:
        return t.tw[en.b + (i - 1) // 2] if (i - 1) % 2 == 0 else t.tx[en.b + (i - 1) // 2]
    return en.b


cdef LanePlan* find_lanes(Tape* t) noexcept nogil:
    """The lane plan of t (slots, entries and program rearranged for it), or NULL when
    t is not a batch of identical examples (t is then left as it was)."""
    cdef Py_ssize_t n = t.n_slots, i, m, best_len, best_start = -1, s, attempt
    cdef int32_t* entry_of = NULL      # per slot: the entry that makes it, or -1
    cdef int32_t* succ = NULL          # per entry: the ADD entry that continues its chain
    cdef uint8_t* tried = NULL         # per entry: a chain's start already tried
    cdef LanePlan* plan = NULL
    cdef Entry* en
    if t.has_custom or t.n_entries < 2 * MIN_LANES:
        return NULL
    entry_of = <int32_t*>malloc(n * sizeof(int32_t) + 4)
    succ = <int32_t*>malloc(t.n_entries * sizeof(int32_t) + 4)
    tried = <uint8_t*>calloc(t.n_entries + 1, 1)
    if entry_of == NULL or succ == NULL or tried == NULL:
        free(entry_of); free(succ); free(tried)
        return NULL
    try:
        for s in range(n):
            entry_of[s] = -1
        for i in range(t.n_entries):
            en = &t.entries[i]
            entry_of[en.out] = <int32_t>i
            if en.act:
                entry_of[en.act_out] = <int32_t>i
            succ[i] = -1
        # the sums' chains: ADD entries each taking the previous one's result as operand a
        for i in range(t.n_entries):
            en = &t.entries[i]
            if en.code == ADD and entry_of[en.a] >= 0:
                m = entry_of[en.a]
                if t.entries[m].code == ADD and en.a == t.entries[m].out:
                    succ[m] = <int32_t>i
        # the longest chains first (a regulariser's sum over the parameters may be longer
        # than the loss's over the examples, and is not a batch), then the one that ends
        # last: a loss's sum over a few examples, each of whose neurons sums more terms
        for attempt in range(MAX_CHAINS_TRIED + 1):
            best_start = _next_chain(t, entry_of, succ, tried, attempt == MAX_CHAINS_TRIED,
                                     &best_len)
            if best_start < 0:
                return NULL
            tried[best_start] = 1
            plan = _try_chain(t, best_start, best_len, entry_of, succ)
            if plan != NULL:
                return plan
        return NULL
    finally:
        free(entry_of); free(succ); free(tried)


cdef Py_ssize_t _next_chain(Tape* t, int32_t* entry_of, int32_t* succ, uint8_t* tried,
                            bint latest, Py_ssize_t* length) noexcept nogil:
    """The first entry of the untried chain of additions that is the longest (or, with
    latest, that ends last) among those long enough for lanes, or -1; its length in
    length."""
    cdef Py_ssize_t i, m, n, best = -1, best_end = -1
    cdef Entry* en
    length[0] = 0
    for i in range(t.n_entries):
        en = &t.entries[i]
        if (en.code != ADD or tried[i] or (entry_of[en.a] >= 0
                and t.entries[entry_of[en.a]].code == ADD and succ[entry_of[en.a]] == i)):
            continue              # not the start of a chain
        n = 1
        m = i
        while succ[m] >= 0:
            m = succ[m]
            n += 1
        if n + 1 >= MIN_LANES and (m > best_end if latest else n > length[0]):
            best, best_end, length[0] = i, m, n
    return best


# How the walk (record.pxi) lays out a sum over examples: it visits the chain's nodes
# first, then example 0's nodes, then example 1's, ..., giving slots in visiting order:
# each example's nodes get a block of consecutive slots starting at its root. Example 0's
# block also holds what it reads first: the parameters. Entries come in post-order: each
# example's block of entries ends with its root's. So for examples of one template,
# example e's slots are example 1's shifted by (root_e - root_1), and its entries are
# example 1's shifted by a constant too: comparing each example with example 1 costs one
# look per operand. Example 0 is compared with example 1 by a map of slots.
cdef LanePlan* _try_chain(Tape* t, Py_ssize_t chain_start, Py_ssize_t chain_len,
                          int32_t* entry_of, int32_t* succ) noexcept nogil:
    """The lane plan of the sum whose chain starts at entry chain_start, or NULL."""
    cdef Py_ssize_t n = t.n_slots, E = 0, K, S, e, i, j, k, m, opi, r1
    cdef Py_ssize_t tb1, tend, n_terms, tdelta = 0
    cdef int32_t base1                 # example 1's first slot
    cdef bint shifted
    cdef int32_t* roots = <int32_t*>malloc((chain_len + 1) * sizeof(int32_t))
    cdef int32_t* owner = NULL         # per slot: its example, -2 shared, -1 neither
    cdef int32_t* loc = NULL           # per lane slot: its template index
    cdef int32_t* entry_owner = NULL   # per entry: its example, or -1
    cdef int32_t* map0 = NULL          # per template slot: example 0's slot
    cdef Entry* en
    cdef Entry* en1
    cdef int32_t s, s1, delta, first
    if roots == NULL:
        return NULL
    try:
        m = chain_start
        en = &t.entries[m]
        if t.node_of_slot[en.b] == NULL:      # sum() from a number: (t_0 + 0) + t_1 + ...
            roots[E] = en.a
            E += 1
        elif entry_of[en.a] < 0:              # from a leaf (Value(0.0) + t_0 + t_1 + ...:
            roots[E] = en.b                   # sum(ts, Value(0.0)), a loop's total += t)
            E += 1
        else:
            roots[E] = en.a
            roots[E + 1] = en.b
            E += 2
        while succ[m] >= 0:
            m = succ[m]
            roots[E] = t.entries[m].b
            E += 1
        # a sum that goes on past the examples (sum(losses) + reg): its last addition adds
        # what is no example, and stays out of the lanes, after them (r1: example 1's root
        # entry, also below)
        r1 = entry_of[roots[1]]
        m = entry_of[roots[E - 1]]
        if E > MIN_LANES and r1 >= 0 and (m < 0 or not _same_op(&t.entries[m], &t.entries[r1])):
            E -= 1
        if E < MIN_LANES:
            return NULL
        # the blocks: S slots from each root (e >= 1), K entries ending at each root's
        S = roots[2] - roots[1]
        if S <= 0:
            return NULL
        for e in range(E):
            if entry_of[roots[e]] < 0 or (e >= 1 and roots[e] != roots[1] + (e - 1) * S):
                return NULL
        base1 = roots[1]
        K = 0
        while r1 - K >= 0 and base1 <= t.entries[r1 - K].out < base1 + S:
            K += 1
        owner = <int32_t*>malloc(n * sizeof(int32_t) + 4)
        loc = <int32_t*>malloc(n * sizeof(int32_t) + 4)
        entry_owner = <int32_t*>malloc(t.n_entries * sizeof(int32_t) + 4)
        map0 = <int32_t*>malloc(S * sizeof(int32_t) + 4)
        if owner == NULL or loc == NULL or entry_owner == NULL or map0 == NULL:
            return NULL
        for i in range(n):
            owner[i] = -1
            loc[i] = -1
        for i in range(t.n_entries):
            entry_owner[i] = -1
        for k in range(S):
            map0[k] = -1
        for e in range(E):
            first = entry_of[roots[e]] - <int32_t>K + 1
            if first < 0:
                return NULL
            for i in range(first, first + K):
                if entry_owner[i] >= 0:
                    return NULL                    # blocks overlap
                entry_owner[i] = <int32_t>e
            if first > 0:                          # the entry before must not be the example's
                s = t.entries[first - 1].out
                if (e >= 1 and roots[e] <= s < roots[e] + S) or (e == 0 and roots[0] <= s < roots[1]):
                    return NULL
        for e in range(1, E):                 # every slot of a block is its example's
            for i in range(roots[e], roots[e] + S):
                owner[i] = <int32_t>e
                loc[i] = <int32_t>(i - roots[e])
        # example 1's fused sums' terms: the walk gives an example's sums their terms one
        # after the other, so they are one block (or the batch is not as _try_chain
        # expects); every example's terms are compared with it in one pass, not sum by sum
        tb1 = -1
        tend = n_terms = 0
        for k in range(r1 - K + 1, r1 + 1):
            en1 = &t.entries[k]
            if en1.code == DOT:
                n_terms += en1.n
                tb1 = en1.b if tb1 < 0 else min(tb1, en1.b)
                tend = max(tend, en1.b + en1.n)
        if tb1 >= 0 and tend - tb1 != n_terms:
            return NULL
        # example e >= 2 against example 1, operand by operand; its terms as a block
        for e in range(2, E):
            delta = roots[e] - roots[1]
            m = entry_of[roots[e]] - entry_of[roots[1]]
            shifted = False      # tdelta known: example e's terms are example 1's, moved by it
            for k in range(r1 - K + 1, r1 + 1):
                en1 = &t.entries[k]
                en = &t.entries[k + m]
                if not _same_op(en, en1) or en.out != en1.out + delta or (
                        en.act and en.act_out != en1.act_out + delta):
                    return NULL
                if not _same_slot(en.a, en1.a, delta, base1, S):
                    return NULL
                if en.code != DOT:
                    if not _same_slot(en.b, en1.b, delta, base1, S):
                        return NULL
                elif not shifted:
                    tdelta = en.b - en1.b
                    shifted = True
                elif en.b - en1.b != tdelta:
                    return NULL          # its terms are not example 1's block, moved
            if shifted and not (
                    cm_same_slots(&t.tw[tb1 + tdelta], &t.tw[tb1], n_terms, delta, base1, base1 + S)
                    and cm_same_slots(&t.tx[tb1 + tdelta], &t.tx[tb1], n_terms, delta, base1, base1 + S)):
                return NULL
        # example 0 against example 1: its slots by a map; what example 1 reads outside
        # its block must be a leaf example 0 reads at the same place (shared)
        m = entry_of[roots[0]] - entry_of[roots[1]]
        for k in range(entry_of[roots[1]] - K + 1, entry_of[roots[1]] + 1):
            en1 = &t.entries[k]
            en = &t.entries[k + m]
            if not _same_op(en, en1):
                return NULL
            for opi in range(_n_operands(en) + 1 + (en.act != 0)):
                if opi < _n_operands(en):
                    s = _operand_slot(t, en, opi)
                    s1 = _operand_slot(t, en1, opi)
                elif opi == _n_operands(en):
                    s, s1 = en.out, en1.out
                else:
                    s, s1 = en.act_out, en1.act_out
                if base1 <= s1 < base1 + S:        # a template slot: example 0's copy
                    if map0[s1 - base1] < 0:
                        if owner[s] != -1 or not (roots[0] <= s < roots[1]):
                            return NULL
                        map0[s1 - base1] = s
                        owner[s] = 0
                        loc[s] = <int32_t>(s1 - base1)
                    elif map0[s1 - base1] != s:
                        return NULL
                else:                              # shared: the same leaf in every example
                    if s != s1 or entry_of[s] >= 0 or owner[s] >= 0:
                        return NULL
                    owner[s] = -2
        for k in range(S):
            if map0[k] < 0:
                return NULL                        # example 0 lacks a slot of the template
        # outside the examples, only the sum's chain may read an example's slot: its root
        for i in range(t.n_entries):
            if entry_owner[i] >= 0:
                continue
            en = &t.entries[i]
            for opi in range(_n_operands(en)):
                s = _operand_slot(t, en, opi)
                if owner[s] >= 0 and s != roots[owner[s]]:
                    return NULL
        return _lay_out(t, E, K, S, entry_owner, owner, loc, entry_of, tb1, n_terms)
    finally:
        free(roots); free(owner); free(loc); free(entry_owner); free(map0)


cdef inline bint _same_slot(int32_t s, int32_t s1, int32_t delta, Py_ssize_t base1,
                            Py_ssize_t S) noexcept nogil:
    """Whether an example reads s where example 1 reads s1: its own copy of a template
    slot (delta on), or the same shared slot."""
    return s == (s1 + delta if base1 <= s1 < base1 + S else s1)


cdef inline bint _same_op(Entry* en, Entry* en1) noexcept nogil:
    return (en.code == en1.code and en.act == en1.act and en.n == en1.n
            and (en.code != POW or en.k == en1.k))


cdef LanePlan* _lay_out(Tape* t, Py_ssize_t E, Py_ssize_t K, Py_ssize_t T, int32_t* entry_owner,
                        int32_t* owner, int32_t* loc, int32_t* entry_of, Py_ssize_t tb1,
                        Py_ssize_t block) noexcept nogil:
    """Check the program's order, then renumber slots (lane slot i of example e at
    i * E + e), reorder entries (the rest, the examples e-major, what needs them), and
    describe the template and the sum's chain. tb1, block: example 1's block of terms
    (tb1 < 0: none; see _try_chain).
    NULL (t unchanged) if the program's order does not allow lanes."""
    cdef Py_ssize_t i, e, k, j, p, n = t.n_slots, pos, first_lane = -1, last_lane = -1
    cdef Py_ssize_t n_items, prev_e, n_terms, n_jobs, n_rows, n_chain, n_before, after, cap
    cdef int32_t* new_slot = NULL
    cdef int32_t* new_entry = NULL
    cdef int32_t* template_of = NULL    # per entry of an example: its template position
    cdef uint8_t* needs_lanes = NULL    # per entry outside the examples: reads their results
    cdef uint8_t* shared_read = NULL    # per slot: a shared slot the template reads
    cdef int32_t* count = NULL          # per example: its entries so far
    cdef int32_t* items_seen = NULL     # per example: its items so far
    cdef LanePlan* plan = NULL
    cdef Entry* en
    cdef int32_t s
    cdef int opi
    cdef bint ok = False
    new_slot = <int32_t*>malloc(n * sizeof(int32_t) + 4)
    new_entry = <int32_t*>malloc(t.n_entries * sizeof(int32_t) + 4)
    template_of = <int32_t*>malloc(t.n_entries * sizeof(int32_t) + 4)
    needs_lanes = <uint8_t*>calloc(t.n_entries + 1, 1)
    shared_read = <uint8_t*>calloc(n + 1, 1)
    count = <int32_t*>calloc(2 * E, sizeof(int32_t))
    plan = <LanePlan*>calloc(1, sizeof(LanePlan))
    if (new_slot == NULL or new_entry == NULL or template_of == NULL or needs_lanes == NULL
            or shared_read == NULL or count == NULL or plan == NULL):
        free(new_slot); free(new_entry); free(template_of); free(needs_lanes); free(shared_read)
        free(count); free(plan)
        return NULL
    items_seen = count + E
    try:
        # template positions
        for i in range(t.n_entries):
            e = entry_owner[i]
            if e >= 0:
                template_of[i] = count[e]
                count[e] += 1
        # slots: lane slot (template index i, example e) -> i * E + e; the others after
        # (the shared slots in the order example 0 first reads them: a neuron's weights
        # side by side; the rest after)
        for s in range(n):
            new_slot[s] = <int32_t>(loc[s] * E + owner[s]) if owner[s] >= 0 else -1
        # what the template reads that is shared: once per example, and numbered; and the
        # sizes: its terms, its fused sums' shared operands (jobs), its plain ops' shared
        # operands (rows)
        pos = T * E
        n_terms = n_jobs = n_rows = 0
        for i in range(t.n_entries):
            if entry_owner[i] != 0:
                continue
            en = &t.entries[i]
            for opi in range(_n_operands(en)):
                s = _operand_slot(t, en, opi)
                if owner[s] == -2:
                    if shared_read[s]:
                        return NULL          # two contributions a example to one shared slot
                    shared_read[s] = 1
                    if en.code == DOT:
                        n_jobs += 1
                    else:
                        n_rows += 1
                if new_slot[s] < 0:
                    new_slot[s] = <int32_t>pos
                    pos += 1
            if en.code == DOT:
                n_terms += en.n
        for s in range(n):
            if new_slot[s] < 0:
                new_slot[s] = <int32_t>pos
                pos += 1
        # the program: the examples' items in one block (each example's contiguous, from
        # the last example to the first, all in the template's order); between them only
        # items that write nothing the examples write
        prev_e = E
        for p in range(t.n_program):
            e = entry_owner[t.program[p].entry]
            if e < 0:
                continue
            if first_lane < 0:
                first_lane = p
            last_lane = p
            if e != prev_e:
                if e != prev_e - 1:
                    return NULL
                prev_e = e
        if prev_e != 0:
            return NULL
        # each example's items must be the same, in the same order: the last example's
        # (the first met) are the template's; the items among them that are no example's
        # (the sum's chain) the lane backward runs first: they must not raise (the
        # examples' items would not have run yet) nor add to a shared grad
        cap = (last_lane - first_lane + 1) // E + 1   # (E equal shares and the chain)
        plan.items = <LaneItem*>malloc(cap * sizeof(LaneItem))
        if plan.items == NULL:
            return NULL
        n_items = n_chain = 0
        for p in range(first_lane, last_lane + 1):
            i = t.program[p].entry
            e = entry_owner[i]
            if e < 0:
                en = &t.entries[i]
                n_chain += 1
                if backward_can_raise(en.code) or (en.code == DOT and backward_can_raise(en.act)):
                    return NULL
                for opi in range(_n_operands(en)):
                    if shared_read[_operand_slot(t, en, opi)]:
                        return NULL
            elif e == E - 1:
                if n_items == cap:
                    return NULL          # more than a share: the examples' items differ
                plan.items[n_items].op = template_of[i]
                plan.items[n_items].hi = t.program[p].hi
                plan.items[n_items].lo = t.program[p].lo
                n_items += 1
            else:
                pos = items_seen[e]
                items_seen[e] += 1
                if (pos >= n_items or plan.items[pos].op != template_of[i]
                        or plan.items[pos].hi != t.program[p].hi or plan.items[pos].lo != t.program[p].lo):
                    return NULL
        for e in range(E - 1):
            if items_seen[e] != n_items:
                return NULL
        plan.ops = <LaneOp*>calloc(K + 1, sizeof(LaneOp))
        plan.terms = <LaneTerm*>malloc(n_terms * sizeof(LaneTerm) + 1)
        plan.jobs = <cm_lane_job*>malloc((n_jobs + n_rows) * sizeof(cm_lane_job) + 1)
        plan.gp_at = K * E
        plan.rows_at = 2 * K * E
        plan.scratch_at = plan.rows_at + n_rows * E
        plan.buf = <double*>cm_malloc_lines((plan.scratch_at + 2 * E) * sizeof(double))   # (written before read)
        plan.chain = <BwItem*>malloc(n_chain * sizeof(BwItem) + 1)
        if plan.ops == NULL or plan.terms == NULL or plan.jobs == NULL \
                or plan.buf == NULL or plan.chain == NULL:
            return NULL
        # every check passed: from here on, t changes
        plan.E = E
        plan.n_ops = K
        plan.n_items = n_items
        # entries: the rest that does not read the examples' results, the examples (e-major),
        # then what does
        n_before = 0
        for i in range(t.n_entries):
            if entry_owner[i] >= 0:
                continue
            en = &t.entries[i]
            for opi in range(_n_operands(en)):
                s = _operand_slot(t, en, opi)
                if owner[s] >= 0 or (entry_of[s] >= 0 and needs_lanes[entry_of[s]]):
                    needs_lanes[i] = 1
            n_before += not needs_lanes[i]
        plan.entry_start = n_before
        plan.entry_stop = n_before + E * K
        pos = 0                        # (the rest before the examples)
        after = plan.entry_stop        # (the rest after them)
        for i in range(t.n_entries):
            if entry_owner[i] >= 0:
                new_entry[i] = <int32_t>(n_before + entry_owner[i] * K + template_of[i])
            elif not needs_lanes[i]:
                new_entry[i] = <int32_t>pos
                pos += 1
            else:
                new_entry[i] = <int32_t>after
                after += 1
        # the program keeps its order (the scalar replay stops where micrograd would if a
        # rule raises); the lane backward runs the chain's items from a copy
        plan.prog_start = first_lane
        plan.prog_stop = last_lane + 1
        plan.n_chain = n_chain
        pos = 0
        for p in range(first_lane, last_lane + 1):
            if entry_owner[t.program[p].entry] < 0:
                plan.chain[pos] = t.program[p]
                plan.chain[pos].entry = new_entry[t.program[p].entry]
                pos += 1
        for p in range(t.n_program):
            t.program[p].entry = new_entry[t.program[p].entry]
        _permute_entries(t, new_entry)
        _renumber_slots(t, new_slot, _renumber_terms(t, new_slot, plan.entry_start, K, E, T * E,
                                                     tb1, block))
        _describe_template(plan, t, T * E)
        _hoist_steps(plan, T)
        _find_layers(plan)
        ok = True
        return plan
    finally:
        free(new_slot); free(new_entry); free(template_of); free(needs_lanes); free(shared_read)
        free(count)
        if not ok:
            lanes_free(plan)


cdef bint _renumber_terms(Tape* t, const int32_t* new, Py_ssize_t start, Py_ssize_t K,
                          Py_ssize_t E, Py_ssize_t lane_slots, Py_ssize_t tb1,
                          Py_ssize_t block) noexcept nogil:
    """_renumber_slots' work on the fused sums' terms, on a laid-out tape (its entries
    moved, example e's K at start + e * K), by what _try_chain proved: example e reads
    its own copy of each lane slot example 1 reads, which now sits e - 1 further, and
    the same shared slots. So examples 0 and 1 (and the rest) look each term up, and
    each example after copies example 1's block of terms (block terms at tb1; tb1 < 0:
    the template has no fused sum) in one sequential pass, which costs less than a
    lookup per term (most of a batch's terms). False, nothing done, if some term
    belongs to no fused sum."""
    cdef Py_ssize_t i, j, e, k, total = 0, derived = start + 2 * K, stop = start + E * K
    cdef int32_t end = <int32_t>lane_slots
    cdef Entry* en
    cdef Entry* src
    for i in range(t.n_entries):
        if t.entries[i].code == DOT:
            total += t.entries[i].n
    if total != t.n_terms:
        return False
    for i in range(t.n_entries):
        en = &t.entries[i]
        if en.code == DOT and not (derived <= i < stop):
            for j in range(en.b, en.b + en.n):
                t.tw[j] = new[t.tw[j]]
                t.tx[j] = new[t.tx[j]]
    if tb1 >= 0:
        k = 0
        while t.entries[start + K + k].code != DOT:
            k += 1
        src = &t.entries[start + K + k]
        for e in range(2, E):
            en = &t.entries[start + e * K + k]
            cm_shifted(&t.tw[tb1 + en.b - src.b], &t.tw[tb1], block, <int32_t>(e - 1), end)
            cm_shifted(&t.tx[tb1 + en.b - src.b], &t.tx[tb1], block, <int32_t>(e - 1), end)
    return True


cdef void _permute_entries(Tape* t, int32_t* new) noexcept nogil:
    """Move entry i to new[i]: into a fresh array (reads in order, writes that do not
    wait on each other), or without the memory for one, in place along the
    permutation's cycles (new is then left marked)."""
    cdef Py_ssize_t start, k, i
    cdef Entry moving, displaced
    cdef Entry* moved = NULL if _move_in_place else <Entry*>malloc(t.cap_entries * sizeof(Entry) + 1)
    if moved != NULL:
        for i in range(t.n_entries):
            moved[new[i]] = t.entries[i]
        free(t.entries)
        t.entries = moved
        return
    for start in range(t.n_entries):
        if new[start] < 0:
            continue
        moving = t.entries[start]
        k = start
        while new[k] >= 0:
            i = new[k]
            new[k] = -1 - new[k]
            displaced = t.entries[i]
            t.entries[i] = moving
            moving = displaced
            k = i


cdef void _describe_template(LanePlan* plan, Tape* t, Py_ssize_t lane_slots) noexcept nogil:
    """Fill the plan's ops and terms from example 0's entries (renumbered, at entry_start
    on), and its jobs: per shared operand of a fused sum, the job that adds its grad
    (products first, so the reduction finds them eight at a time), per shared operand
    of a plain op, its row."""
    cdef Py_ssize_t k, i, j = 0, E = plan.E, n_jobs = 0, n_rows = 0
    cdef Entry* en
    cdef LaneOp* op
    cdef LaneTerm* term
    cdef int pass_
    for k in range(plan.n_ops):
        en = &t.entries[plan.entry_start + k]
        op = &plan.ops[k]
        op.code = en.code
        op.act = en.act
        op.n = en.n
        op.k = en.k
        op.out = _ref(en.out, lane_slots)
        op.act_out = _ref(en.act_out, lane_slots) if en.act else op.out
        op.a = _ref(en.a, lane_slots)
        op.b = _ref(en.b, lane_slots) if en.code != DOT else op.a
        op.term = <int32_t>j
        op.ra = op.rb = -1
        if en.code == DOT:
            for i in range(en.n):
                plan.terms[j].w = _ref(t.tw[en.b + i], lane_slots)
                plan.terms[j].x = _ref(t.tx[en.b + i], lane_slots)
                j += 1
        else:
            if op.a.kind == SHARED:
                op.ra = <int32_t>n_rows
                n_rows += 1
            if binary_op(op.code) and op.b.kind == SHARED:
                op.rb = <int32_t>n_rows
                n_rows += 1
    for pass_ in range(2):     # the products, then the rest
        for k in range(plan.n_ops):
            op = &plan.ops[k]
            if op.code != DOT:
                continue
            if pass_ == 1 and op.a.kind == SHARED:   # the bias: g (one term) or 0.0 + g
                _add_job(plan, &n_jobs, CM_JOB_ROW, op.a.slot, 0,
                         (plan.gp_at if op.n > 1 else 0) + k * E)
            for i in range(op.n):
                term = &plan.terms[op.term + i]
                if term.w.kind == SHARED and (term.x.kind == LANE) == (pass_ == 0):
                    _add_job(plan, &n_jobs, CM_JOB_PRODUCT if pass_ == 0 else CM_JOB_SHARED_PRODUCT,
                             term.w.slot, term.x.slot, plan.gp_at + k * E)
                if term.x.kind == SHARED and (term.w.kind == LANE) == (pass_ == 0):
                    _add_job(plan, &n_jobs, CM_JOB_PRODUCT if pass_ == 0 else CM_JOB_SHARED_PRODUCT,
                             term.x.slot, term.w.slot, plan.gp_at + k * E)
    for k in range(plan.n_ops):
        op = &plan.ops[k]
        if op.ra >= 0:
            _add_job(plan, &n_jobs, CM_JOB_ROW, op.a.slot, 0, plan.rows_at + op.ra * E)
        if op.rb >= 0:
            _add_job(plan, &n_jobs, CM_JOB_ROW, op.b.slot, 0, plan.rows_at + op.rb * E)
    plan.n_jobs = n_jobs
    plan.n_rows = n_rows
    plan.n_terms = j


cdef void _hoist_steps(LanePlan* plan, Py_ssize_t T) noexcept nogil:
    """Reorder the template's backward items so that a layer's fused sums come one after
    the other. micrograd's order interleaves them with the steps of the sum that reads
    them (the next layer's neuron): its step j, then the neuron that made x_j, then step
    j - 1, ... A window of such items becomes: the steps first, then the layer. Valid
    when no step writes what a layer item before it reads or writes (a step writes only
    G[x_j], its weight's grad being a job): checked, slot by slot."""
    cdef Py_ssize_t i, j, k, q, nW, last
    cdef LaneItem* it
    cdef LaneOp* c
    cdef LaneOp* w0
    cdef LaneOp* w
    cdef LaneItem* tmp
    cdef uint8_t* touched = <uint8_t*>calloc(T + 1, 1)   # template slots a layer item uses
    cdef bint ok
    if touched == NULL:
        return
    tmp = <LaneItem*>malloc(plan.n_items * sizeof(LaneItem) + 1)
    if tmp == NULL:
        free(touched)
        return
    i = 0
    while i < plan.n_items:
        it = &plan.items[i]
        c = &plan.ops[it.op]
        if not _single_step(plan, it):
            i += 1
            continue
        j = i + 1
        last = it.hi
        nW = 0
        w0 = NULL
        while j < plan.n_items:
            if (plan.items[j].op == it.op and plan.items[j].hi < last
                    and _single_step(plan, &plan.items[j])):
                last = plan.items[j].hi
            elif (_whole_layer_item(plan, &plan.items[j]) and plan.items[j].op != it.op
                    and (w0 == NULL or _same_inputs(plan, w0, &plan.ops[plan.items[j].op]))):
                if w0 == NULL:
                    w0 = &plan.ops[plan.items[j].op]
                nW += 1
            else:
                break
            j += 1
        if nW >= 2:
            # check: each step's x_j is untouched by the layer items before it
            ok = True
            memset(touched, 0, T + 1)
            for k in range(i, j):
                if plan.items[k].op == it.op:
                    if touched[c_x_slot(plan, c, plan.items[k].hi) // plan.E]:
                        ok = False
                        break
                else:
                    w = &plan.ops[plan.items[k].op]
                    touched[w.out.slot // plan.E] = 1
                    touched[w.act_out.slot // plan.E] = 1
                    if w.a.kind == LANE:
                        touched[w.a.slot // plan.E] = 1
                    for q in range(w.n):
                        touched[plan.terms[w.term + q].x.slot // plan.E] = 1
            if ok:
                q = 0
                for k in range(i, j):          # the steps, then the layer, each in order
                    if plan.items[k].op == it.op:
                        tmp[q] = plan.items[k]
                        q += 1
                for k in range(i, j):
                    if plan.items[k].op != it.op:
                        tmp[q] = plan.items[k]
                        q += 1
                memcpy(&plan.items[i], tmp, (j - i) * sizeof(LaneItem))
        i = j
    free(touched)
    free(tmp)


cdef inline bint _single_step(LanePlan* plan, LaneItem* it) noexcept nogil:
    """One step j of a fused sum whose only lane write is G[x_j]: a shared weight, a lane
    input, and at step 0 a shared bias."""
    cdef LaneOp* op = &plan.ops[it.op]
    cdef LaneTerm* term
    if op.code != DOT or it.hi != it.lo or it.hi < 0:
        return False
    term = &plan.terms[op.term + it.hi]
    return term.w.kind == SHARED and term.x.kind == LANE and (it.hi != 0 or op.a.kind == SHARED)


cdef inline int32_t c_x_slot(LanePlan* plan, LaneOp* op, Py_ssize_t j) noexcept nogil:
    return plan.terms[op.term + j].x.slot


cdef void _find_layers(LanePlan* plan) noexcept nogil:
    """Mark runs of consecutive backward items that are whole fused sums over the same
    inputs: the neurons of one layer. Each item adds D[w_kj] * gp_k into G[x_j] for every
    j; the lane backward runs a run j by j instead, adding the run's k one after the
    other (the same additions into each G[x_j], in the same order), with G[x_j] held in
    registers. Needs: shared weights, lane inputs, the same inputs in the same order,
    none twice, none the run's own sums or biases, consecutive template ops."""
    cdef Py_ssize_t i, m, j, q, n, step, total = 0
    cdef LaneItem* first
    cdef LaneOp* op
    cdef LaneOp* op0
    for i in range(plan.n_items):
        plan.items[i].run = 0
    i = 0
    while i < plan.n_items:
        first = &plan.items[i]
        op0 = &plan.ops[first.op]
        m = 1
        if _whole_layer_item(plan, first):
            n = op0.n
            step = plan.items[i + 1].op - first.op if i + 1 < plan.n_items else 0
            while (i + m < plan.n_items and m < MAX_LAYER_INPUTS and (step == 1 or step == -1)
                   and plan.items[i + m].op == first.op + m * step
                   and _whole_layer_item(plan, &plan.items[i + m])
                   and _same_inputs(plan, op0, &plan.ops[plan.items[i + m].op])):
                m += 1
            if m > 1 and n <= MAX_LAYER_INPUTS and _inputs_apart(plan, i, m):
                first.run = <int32_t>m
                first.wt = <int32_t>total
                total += m * n
        i += m
    plan.n_wt = total
    plan.wT = <double*>malloc(total * sizeof(double) + 8) if total else NULL
    if total and plan.wT == NULL:
        for i in range(plan.n_items):
            plan.items[i].run = 0       # (no memory: the items one by one, as before)
    _layers_for_reduce(plan)
    _forward_layers(plan)


cdef void _forward_layers(LanePlan* plan) noexcept nogil:
    """Runs of consecutive template ops that are fused sums over the same inputs, with
    shared weights and biases: the lane forward computes them together (layer_forward),
    each sum's additions in its own order."""
    cdef Py_ssize_t k, m, total = 0
    cdef LaneOp* op0
    cdef LaneOp* op
    for k in range(plan.n_ops):
        plan.ops[k].run = 0
    k = 0
    while k < plan.n_ops:
        op0 = &plan.ops[k]
        m = 1
        if _forward_layer_op(plan, op0):
            while (k + m < plan.n_ops and m < MAX_LAYER_INPUTS
                   and _forward_layer_op(plan, &plan.ops[k + m])
                   and _same_inputs(plan, op0, &plan.ops[k + m])):
                m += 1
            if m > 1 and op0.n <= MAX_LAYER_INPUTS and _outputs_not_inputs(plan, k, m):
                op0.run = <int32_t>m
                op0.wf = <int32_t>total
                total += m * (op0.n + 1)
        k += m
    plan.n_wf = total
    plan.wF = <double*>malloc(total * sizeof(double) + 8) if total else NULL
    if total and plan.wF == NULL:
        for k in range(plan.n_ops):
            plan.ops[k].run = 0


cdef inline bint _forward_layer_op(LanePlan* plan, LaneOp* op) noexcept nogil:
    cdef Py_ssize_t j
    if op.code != DOT or op.a.kind != SHARED:
        return False
    for j in range(op.n):
        if plan.terms[op.term + j].w.kind != SHARED or plan.terms[op.term + j].x.kind != LANE:
            return False
    return True


cdef bint _outputs_not_inputs(LanePlan* plan, Py_ssize_t k0, Py_ssize_t m) noexcept nogil:
    """No sum of the run reads another's result (they are computed all at once)."""
    cdef LaneOp* op0 = &plan.ops[k0]
    cdef Py_ssize_t j, k
    cdef int32_t x
    for j in range(op0.n):
        x = plan.terms[op0.term + j].x.slot
        for k in range(k0, k0 + m):
            if x == plan.ops[k].out.slot or x == plan.ops[k].act_out.slot:
                return False
    return True


cdef void _layers_for_reduce(LanePlan* plan) noexcept nogil:
    """The runs of at least LAYER_MIN_INPUTS inputs become layers of the reduction: their
    weights' grads are summed sixteen inputs by two neurons at a time from the inputs
    turned lanes-as-rows (cm layer_reduce), and their product jobs leave the job list."""
    cdef Py_ssize_t i, k, j, q, nl = 0, xt = 0, w = 0, kept
    cdef LaneItem* first
    cdef LaneOp* op
    cdef LaneLayer* L
    cdef uint8_t* in_layer
    for i in range(plan.n_items):
        first = &plan.items[i]
        if first.run > 1 and plan.ops[first.op].n >= LAYER_MIN_INPUTS:
            nl += 1
    if nl == 0:
        return
    in_layer = <uint8_t*>calloc(plan.n_ops + 1, 1)
    plan.layers = <LaneLayer*>calloc(nl, sizeof(LaneLayer))
    if in_layer == NULL or plan.layers == NULL:
        free(in_layer)
        free(plan.layers)
        plan.layers = NULL
        return
    for i in range(plan.n_items):
        first = &plan.items[i]
        if first.run > 1 and plan.ops[first.op].n >= LAYER_MIN_INPUTS:
            L = &plan.layers[plan.n_layers]
            plan.n_layers += 1
            L.op0 = first.op
            L.step = first[1].op - first.op
            L.m = first.run
            L.n = plan.ops[first.op].n
            L.xt = xt
            L.w = w
            xt += L.n * plan.E
            w += L.m * L.n
            plan.n_units += (L.m + 1) // 2
    plan.xt_buf = <double*>malloc(xt * sizeof(double) + 8)
    plan.layer_w = <int32_t*>malloc(w * sizeof(int32_t) + 4)
    if plan.xt_buf == NULL or plan.layer_w == NULL:
        free(in_layer)
        free(plan.layers); free(plan.xt_buf); free(plan.layer_w)
        plan.layers = NULL
        plan.xt_buf = NULL
        plan.layer_w = NULL
        plan.n_layers = plan.n_units = 0
        return
    for q in range(plan.n_layers):
        L = &plan.layers[q]
        for k in range(L.m):
            op = &plan.ops[L.op0 + k * L.step]
            in_layer[L.op0 + k * L.step] = 1
            for j in range(L.n):
                plan.layer_w[L.w + k * L.n + j] = plan.terms[op.term + j].w.slot
    kept = 0                            # their products leave the jobs (biases stay)
    for i in range(plan.n_jobs):
        if plan.jobs[i].kind == CM_JOB_PRODUCT and plan.jobs[i].vec >= plan.gp_at \
                and plan.jobs[i].vec < plan.rows_at \
                and in_layer[(plan.jobs[i].vec - plan.gp_at) // plan.E]:
            continue
        plan.jobs[kept] = plan.jobs[i]
        kept += 1
    plan.n_jobs = kept
    free(in_layer)


cdef inline bint _whole_layer_item(LanePlan* plan, LaneItem* item) noexcept nogil:
    """A fused sum's one item (all its steps) with shared weights and lane inputs."""
    cdef LaneOp* op = &plan.ops[item.op]
    cdef Py_ssize_t j
    if op.code != DOT or item.hi != op.n - 1 or item.lo != 0:
        return False
    for j in range(op.n):
        if plan.terms[op.term + j].w.kind != SHARED or plan.terms[op.term + j].x.kind != LANE:
            return False
    return True


cdef inline bint _same_inputs(LanePlan* plan, LaneOp* a, LaneOp* b) noexcept nogil:
    cdef Py_ssize_t j
    if a.n != b.n:
        return False
    for j in range(a.n):
        if plan.terms[a.term + j].x.slot != plan.terms[b.term + j].x.slot:
            return False
    return True


cdef bint _inputs_apart(LanePlan* plan, Py_ssize_t i, Py_ssize_t m) noexcept nogil:
    """The run's inputs are distinct, and none is a sum, activation or bias of the run."""
    cdef LaneOp* op0 = &plan.ops[plan.items[i].op]
    cdef LaneOp* op
    cdef Py_ssize_t j, q, k
    cdef int32_t x
    for j in range(op0.n):
        x = plan.terms[op0.term + j].x.slot
        for q in range(j):
            if plan.terms[op0.term + q].x.slot == x:
                return False
        for k in range(m):
            op = &plan.ops[plan.items[i + k].op]
            if x == op.out.slot or x == op.act_out.slot or (op.a.kind == LANE and x == op.a.slot):
                return False
    return True


cdef inline void _add_job(LanePlan* plan, Py_ssize_t* n, int kind, int32_t target, int32_t src,
                          Py_ssize_t vec) noexcept nogil:
    plan.jobs[n[0]].kind = kind
    plan.jobs[n[0]].target = target
    plan.jobs[n[0]].src = src
    plan.jobs[n[0]].vec = vec
    n[0] += 1


cdef inline LaneRef _ref(int32_t slot, Py_ssize_t lane_slots) noexcept nogil:
    """A renumbered slot as the template sees it: example 0's copy of a lane slot (the
    others follow it), or a shared slot."""
    cdef LaneRef r
    r.kind = LANE if slot < lane_slots else SHARED
    r.slot = slot
    return r
