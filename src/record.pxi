# Recording a graph for replay: the graph under an output, as arrays of slots and ops.
#
# (replay.pxi's CompiledGraph drives it and replays the result.)

@cython.final
cdef class _Recording:
    """The graph as a tape is being made of it (Python lists: recording is done once)."""
    cdef public dict slot_of     # node address -> slot
    cdef public list init        # per slot: (data, grad) to start with
    cdef public list node        # per slot: node address (0 for an inline constant)
    cdef public list entries     # [code, out, a, b or terms, n, k, fb(, act, act_out)]
    cdef public dict entry_of    # node address -> entry index
    cdef public list steps       # topological order: (node address, DOT step or -1)
    cdef public list leaves
    cdef public list program     # [entry, hi, lo], in backward order

    def __cinit__(self):
        self.slot_of = {}
        self.init = []
        self.node = []
        self.entries = []
        self.entry_of = {}
        self.steps = []
        self.leaves = []
        self.program = []

    cdef void slot(self, Node* node, list keep) except *:
        key = <Py_ssize_t>node
        if key not in self.slot_of:
            self.slot_of[key] = len(self.init)
            self.init.append((node.data, node.grad))
            self.node.append(key)
            keep.append(_value(node))

    cdef Py_ssize_t constant(self, double value, double grad) except -1:
        self.init.append((value, grad))
        self.node.append(0)
        return len(self.init) - 1

    cdef void add_entry(self, Py_ssize_t key, list entry) except *:
        self.entry_of[key] = len(self.entries)
        self.entries.append(entry)

    cdef void make_program(self) except *:
        """Reverse topological order; consecutive steps of one DOT become one item."""
        for key, j in reversed(self.steps):
            e = self.entry_of[key]
            last = self.program[len(self.program) - 1] if self.program else None
            if j >= 0 and last is not None and last[0] == e and last[2] == j + 1:
                last[2] = j
            else:
                self.program.append([e, j, j])

    cdef void fuse_activations(self) except *:
        """Fold a relu/tanh/sigmoid applied right after a DOT into the DOT's entry when
        the two are adjacent in both orders: forward (the DOT, then the op) and
        backward (the op's item, then the DOT's first step)."""
        entries = self.entries
        item_of = {}
        first_step_of = {}
        for pos, (e, hi, lo) in enumerate(self.program):
            if hi < 0:
                item_of[e] = pos
            elif hi == entries[e][4] - 1:
                first_step_of[e] = pos
        fused_into = {}
        for e in range(len(entries) - 1):
            dot, op = entries[e], entries[e + 1]
            if (dot[0] == DOT and op[0] in (RELU, TANH, SIGMOID) and op[2] == dot[1]
                    and item_of.get(e + 1, -2) + 1 == first_step_of.get(e, -1)):
                fused_into[e + 1] = e
        renumber = {}
        out = []
        for e, entry in enumerate(entries):
            if e in fused_into:
                continue
            renumber[e] = len(out)
            op = entries[e + 1] if (e + 1) in fused_into else None
            out.append(entry + ([op[0], op[1]] if op is not None else [0, -1]))
        self.entries = out
        self.program = [[renumber[e], hi, lo] for e, hi, lo in self.program if e not in fused_into]

    cdef void number_slots_for_runs(self) except *:
        """Renumber slots so that each DOT's weights, and its inputs, are consecutive
        where possible: the first DOT to use a set of fresh slots lays them out."""
        cdef Py_ssize_t n = len(self.init)
        seen = bytearray(n)
        order = []
        for entry in self.entries:
            if entry[0] != DOT:
                continue
            for run in ([w for w, x in entry[3]], [x for w, x in entry[3]]):
                if len(set(run)) == len(run) and not any(seen[s] for s in run):
                    for s in run:
                        seen[s] = 1
                        order.append(s)
        for s in range(n):
            if not seen[s]:
                order.append(s)
        new = [0] * n
        for i, s in enumerate(order):
            new[s] = i
        self.init = [self.init[s] for s in order]
        self.node = [self.node[s] for s in order]
        self.slot_of = {key: new[s] for key, s in self.slot_of.items()}
        for entry in self.entries:
            entry[1] = new[entry[1]]
            entry[2] = new[entry[2]]
            if entry[0] == DOT:
                entry[3] = [(new[w], new[x]) for w, x in entry[3]]
            else:
                entry[3] = new[entry[3]]
            if entry[8] >= 0:
                entry[8] = new[entry[8]]


cdef Py_ssize_t _custom_children_len(Node* node) noexcept:
    return PyTuple_GET_SIZE(<object>custom_children(node))


cdef object _function_of(Node* node):
    """The FunctionBackward of a Function node, or None."""
    extra = _value(node)._extra
    if type(extra) is _Record:
        fb = (<_Record>extra).backward
        if fb is not None and hasattr(fb, "recompute") and hasattr(fb, "inputs"):
            return fb
    return None
