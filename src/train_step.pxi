# The training step in C. Calling a graph compiled with an optimizer runs forward(),
# opt.zero_grad(), backward(), opt.step(). For cmicrograd's own optimizers (SGD, Adam,
# AdamW exactly: a subclass may override step) it runs them without a Python call per
# method or per parameter, with the same float operations:
# - zero_grad is folded into backward: a parameter that is a leaf of the recording starts
#   its backward at 0.0 (what zero_grad would have left in it) instead of at its grad; a
#   parameter that is not is set to 0.0 first, as zero_grad would;
# - the update runs the optimizer's C loop (nn_helpers.pxi) on the parameters' nodes,
#   found once, with the hyperparameters read at every step, as step() reads them.
# A _StepPlan holds the parameters and where they are; it is checked against opt.params at
# every step (one identity test per parameter) and made anew when the list changed.
# Anything unusual (a parameter that is not a compiled Value, a hyperparameter set to
# something step() was not built with) goes through the Python methods, which do the
# same operations and raise what they raise.

from libc.math cimport INFINITY

cdef object _SGD = None, _ADAM = None, _ADAMW = None   # cmicrograd.optim's, on first use


cdef class _StepPlan:
    cdef tuple params          # opt.params when planned, held: their addresses stay theirs
    cdef double** data         # &params[i].data, in order: what the update loops walk
    cdef Py_ssize_t n
    cdef tuple others          # the parameters that are not leaves of the recording
    cdef int32_t* zero_slots   # the slots of those that are: backward loads 0.0 there
    cdef Py_ssize_t n_zero
    cdef int32_t* load         # the leaves (indices into the tape's) that are not parameters
    cdef Py_ssize_t n_load
    cdef Py_ssize_t recording  # the graph's recording the two above belong to (0: none)

    def __dealloc__(self):
        free(self.data)
        free(self.zero_slots)
        free(self.load)


cdef bint is_planned_optimizer(object opt) except -1:
    global _SGD, _ADAM, _ADAMW
    if _SGD is None:
        from cmicrograd.optim import SGD, Adam, AdamW
        _SGD, _ADAM, _ADAMW = SGD, Adam, AdamW
    cls = type(opt)
    return cls is _SGD or cls is _ADAM or cls is _ADAMW


cdef _StepPlan make_plan(object params):
    """A plan for a list of compiled Values, or None."""
    cdef _StepPlan plan
    cdef Py_ssize_t i, n
    if type(params) is not list:
        return None
    items = tuple(params)
    n = len(items)
    for p in items:
        if type(p) is not Value:
            return None
    plan = _StepPlan.__new__(_StepPlan)
    plan.params = items
    plan.n = n
    plan.data = <double**>malloc(max(n, 1) * sizeof(double*))
    if plan.data == NULL:
        raise MemoryError()
    for i in range(n):
        plan.data[i] = &(<Value>items[i]).n.data
    return plan


cdef bint plan_matches(_StepPlan plan, object params) noexcept:
    """Whether params (opt.params now) is the list the plan was made from."""
    cdef Py_ssize_t i
    if plan is None or type(params) is not list or len(<list>params) != plan.n:
        return False
    for i in range(plan.n):
        if <PyObject*>(<list>params)[i] != PyTuple_GET_ITEM(plan.params, i):
            return False
    return True


cdef int plan_slots(_StepPlan plan, Tape* t, Py_ssize_t recording) except -1:
    """Which parameters are leaves of the recording t, and which leaves are not parameters."""
    cdef Py_ssize_t i
    outside = {<size_t>&(<Value>p).n: p for p in plan.params}   # parameters not seen as leaves
    zero = []
    load = []
    for i in range(t.n_leaves):
        if outside.pop(<size_t>t.leaf_nodes[i], None) is not None:
            zero.append(t.leaf_slots[i])
        else:
            load.append(i)
    plan.others = tuple(outside.values())
    plan.recording = 0
    free(plan.zero_slots)
    free(plan.load)
    plan.zero_slots = <int32_t*>malloc(max(len(zero), 1) * sizeof(int32_t))
    plan.load = <int32_t*>malloc(max(len(load), 1) * sizeof(int32_t))
    if plan.zero_slots == NULL or plan.load == NULL:
        raise MemoryError()
    for i in range(len(zero)):
        plan.zero_slots[i] = zero[i]
    for i in range(len(load)):
        plan.load[i] = load[i]
    plan.n_zero = len(zero)
    plan.n_load = len(load)
    plan.recording = recording
    return 0


cdef int plan_load_leaves(_StepPlan plan, Tape* t) except -1:
    """What backward's start does to the leaves, with zero_grad folded in: a parameter's
    grad is 0.0 (one that is not a leaf is set so first); the others' grads are loaded.
    Their data need no refresh: nothing ran since forward() loaded it."""
    cdef Py_ssize_t i
    for p in plan.others:
        (<Value>p).n.grad = 0.0
    for i in range(plan.n_zero):
        t.G[plan.zero_slots[i]] = 0.0
    for i in range(plan.n_load):
        t.G[t.leaf_slots[plan.load[i]]] = t.leaf_nodes[plan.load[i]].grad
    return 0


# ---- the updates: step() of each optimizer, as cmicrograd/optim.py computes it ---------
cdef inline bint _in_range(object x, double low, double high, bint closed) noexcept:
    """x is a float in [low, high) (closed: [low, high])."""
    return type(x) is float and low <= <double>x and (<double>x <= high if closed else <double>x < high)


cdef bint plan_update(_StepPlan plan, object opt) except -1:
    """opt.step() on the planned parameters. False: not done (a hyperparameter that step()
    must judge), the caller calls opt.step()."""
    cdef double k[8]
    cdef double lr, beta1, beta2, bias1, bias2, td
    cdef int err = 0
    cdef array m, v
    steps = opt.steps
    if type(steps) is not int:
        return False
    if type(opt) is _SGD:
        momentum, dampening, wd, nesterov = opt.momentum, opt.dampening, opt.weight_decay, opt.nesterov
        if not (_in_range(momentum, 0.0, 1.0, False) and _in_range(dampening, 0.0, 1.0, True)
                and _in_range(wd, 0.0, INFINITY, False) and type(nesterov) is bool):
            return False
        lr = _plan_lr(opt)
        if momentum == 0.0 and wd == 0.0:   # what SGD.step's sgd_update does
            sgd_loop(plan.data, _GRAD_OFFSET, NULL, plan.n, lr, 0.0, 0.0, 0.0, False, False)
        else:
            m = opt._buffers["momentum_buffer"]
            _check_buffer(m, plan.n, "the momentum buffer")
            sgd_loop(plan.data, _GRAD_OFFSET, m.data.as_doubles, plan.n, lr, momentum, dampening,
                     wd, nesterov, steps == 0)
        opt.steps = steps + 1
        return True
    betas, eps, wd, decoupled = opt.betas, opt.eps, opt.weight_decay, opt.decoupled
    if not (type(betas) is tuple and len(<tuple>betas) == 2 and _in_range(betas[0], 0.0, 1.0, False)
            and _in_range(betas[1], 0.0, 1.0, False) and _in_range(eps, 0.0, INFINITY, False)
            and eps != 0.0 and _in_range(wd, 0.0, INFINITY, False) and type(decoupled) is bool):
        return False
    beta1, beta2 = betas[0], betas[1]
    t = steps + 1
    td = t    # (an int too large for a float raises OverflowError, as beta1**t would)
    bias1 = 1.0 - float_pow(beta1, td, &err)
    bias2 = float_pow(1.0 - float_pow(beta2, td, &err), 0.5, &err)
    if err or bias1 == 0.0:
        return False
    lr = _plan_lr(opt)
    m = opt._buffers["exp_avg"]
    v = opt._buffers["exp_avg_sq"]
    _check_buffer(m, plan.n, "the first moment buffer")
    _check_buffer(v, plan.n, "the second moment buffer")
    if decoupled:   # AdamW: step() computes step_size, bc2_sqrt, grad_decay, param_scale so
        adam_constants(k, beta1, beta2, eps, lr / bias1, bias2, 0.0, 1.0 - lr * <double>wd)
    else:
        adam_constants(k, beta1, beta2, eps, lr / bias1, bias2, wd, 1.0)
    cm_lk.adam(plan.data, _GRAD_OFFSET, m.data.as_doubles, v.data.as_doubles, plan.n, k)
    opt.steps = t
    return True


cdef double _plan_lr(object opt) except? -1.0:
    """opt.current_lr(), without the call for a valid float."""
    lr = opt.lr
    return lr if _in_range(lr, 0.0, INFINITY, False) else opt.current_lr()
