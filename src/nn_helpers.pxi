# The nn library's loops, run in C: what Neuron, Layer, Module.zero_grad, SGD and
# cmicrograd.assign call (cmicrograd/_nn.py). Each builds exactly the nodes, or does
# exactly the float operations, of the Python loop it replaces (the reference engine
# has that loop under the same name).

def weighted_sum(w, x, b):
    """``b + w[0]*x[0] + w[1]*x[1] + ...``, built exactly as micrograd's Neuron builds it
    (``sum((wi*xi for wi, xi in zip(w, x)), b)``), but w and x must have equal lengths."""
    ws = w if type(w) is list or type(w) is tuple else list(w)
    xs = x if type(x) is list or type(x) is tuple else list(x)
    return _weighted_sum(ws, xs, b)


cdef object _weighted_sum(object ws, object xs, object b):
    cdef Py_ssize_t i, n = len(ws)
    if len(xs) != n:
        raise ValueError(
            f"weighted_sum needs as many inputs as weights: {n} weights, {len(xs)} inputs")
    if n and type(b) is Value:
        fused = fused_sum(ws, xs, <Value>b, n)
        if fused is not None:
            return fused
    act = b
    for i in range(n):
        wi = ws[i]
        xi = xs[i]
        if type(wi) is Value and type(xi) is Value:
            p = _binary(MUL, <Value>wi, <Value>xi)
        elif type(wi) is Value and type(xi) is float:
            p = _with_constant(MUL, <Value>wi, PyFloat_AS_DOUBLE(xi))
        else:
            p = wi * xi
        if type(act) is Value and type(p) is Value:
            act = _binary(ADD, <Value>act, <Value>p)
        else:
            act = act + p
    return act


def layer_forward(neurons, x):
    """Every neuron's output on input x: ``activation(weighted_sum(n.w, x, n.b))``,
    neuron by neuron (what ``Layer`` computes; the activation is a method name, or
    'linear' for none)."""
    cdef list out = []
    xs = x if type(x) is list or type(x) is tuple else list(x)
    for neuron in neurons:
        w = neuron.w
        act = _weighted_sum(w if type(w) is list or type(w) is tuple else list(w), xs, neuron.b)
        activation = neuron.activation
        if type(act) is Value and activation == "relu":
            act = _unary(RELU, <Value>act, 0.0)
        elif type(act) is Value and activation == "tanh":
            act = _unary(TANH, <Value>act, 0.0)
        elif activation != "linear":
            act = getattr(act, activation)()
        out.append(act)
    return out


def zero_grad(values):
    """Set every value's grad to 0.0."""
    for v in values:
        if type(v) is Value:
            (<Value>v).n.grad = 0.0
        else:
            v.grad = 0.0


def set_data(values, data):
    """``values[i].data = data[i]`` for every i (equal lengths)."""
    cdef Py_ssize_t i, n = len(values)
    if len(data) != n:
        raise ValueError(f"set_data needs as many numbers as Values: {n} Values, {len(data)} numbers")
    for i in range(n):
        v = values[i]
        if type(v) is not Value:
            raise TypeError(f"set_data needs Values, not {type(v).__name__}")
        (<Value>v).n.data = _to_float(data[i], "Value data")


def sgd_update(values, lr):
    """``v.data -= lr * v.grad`` for every value (plain SGD)."""
    cdef double rate = _to_float(lr, "the learning rate")
    cdef Node* node
    for v in values:
        if type(v) is not Value:
            raise TypeError(f"sgd_update needs Values, not {type(v).__name__}")
        node = &(<Value>v).n
        node.data = node.data - rate * node.grad


# ---- the optimizers' kernels (cmicrograd/optim.py has their Python twins, _sgd_kernel
# and _adam_kernel, and documents the float operations, which these do in the same order)
cdef inline Node* _param(object p) except NULL:
    if type(p) is not Value:
        raise TypeError(f"an optimizer's parameters must be Values, not {type(p).__name__}")
    return &(<Value>p).n


cdef int _check_buffer(array buf, Py_ssize_t n, str what) except -1:
    """buf must hold at least n doubles: the kernels write 8-byte floats into it."""
    if buf.typecode != "d":
        raise TypeError(f"{what} must be an array('d'), not array({buf.typecode!r})")
    if len(buf) < n:
        raise ValueError(f"{what} is shorter than the parameter list")
    return 0


cdef enum:
    _CHUNK = 256  # parameters per call of an optimizer's loop

cdef Node _probe
cdef Py_ssize_t _GRAD_OFFSET = &_probe.grad - &_probe.data  # a node's grad, seen from its data


cdef void sgd_loop(double *const *p, Py_ssize_t goff, double* m, Py_ssize_t n, double lr,
                   double momentum, double dampening, double weight_decay, bint nesterov,
                   bint first) noexcept nogil:
    """One SGD step over n parameters, in order: p[i] points at parameter i's data, its
    grad at p[i][goff], m[i] is its momentum buffer (the operations of _sgd_kernel)."""
    cdef double keep = 1.0 - dampening
    cdef double g, b
    cdef Py_ssize_t i
    for i in range(n):
        g = p[i][goff]
        if weight_decay != 0.0:
            g = g + weight_decay * p[i][0]
        if momentum != 0.0:
            b = g if first else momentum * m[i] + keep * g
            m[i] = b
            g = g + momentum * b if nesterov else b
        p[i][0] = p[i][0] - lr * g


def sgd_kernel(params, array buf not None, double lr, double momentum, double dampening,
               double weight_decay, bint nesterov, bint first):
    """One SGD step over params (see cmicrograd.optim._sgd_kernel)."""
    # the loop above, handed the parameters' nodes in chunks, in order
    cdef double* nodes[_CHUNK]
    cdef double* m = buf.data.as_doubles
    cdef Py_ssize_t i = 0, done = 0, n = len(params)
    _check_buffer(buf, n, "the momentum buffer")
    for item in params:
        if done + i >= n:
            raise ValueError("params yielded more items than its len()")
        nodes[i] = &_param(item).data
        i += 1
        if i == _CHUNK:
            sgd_loop(nodes, _GRAD_OFFSET, m + done, i, lr, momentum, dampening, weight_decay,
                     nesterov, first)
            done += i
            i = 0
    if i:
        sgd_loop(nodes, _GRAD_OFFSET, m + done, i, lr, momentum, dampening, weight_decay,
                 nesterov, first)


cdef inline void adam_constants(double* k, double beta1, double beta2, double eps,
                                double step_size, double bc2_sqrt, double grad_decay,
                                double param_scale) noexcept:
    """The eight numbers the Adam loop (lane_kernels.h) reads."""
    k[0] = 1.0 - beta1; k[1] = beta2; k[2] = 1.0 - beta2; k[3] = eps
    k[4] = step_size; k[5] = bc2_sqrt; k[6] = grad_decay; k[7] = param_scale


def adam_kernel(params, array exp_avg not None, array exp_avg_sq not None, double beta1, double beta2,
                double eps, double step_size, double bc2_sqrt, double grad_decay,
                double param_scale):
    """One Adam / AdamW step over params (see cmicrograd.optim._adam_kernel)."""
    # The update itself is a loop in lane_kernels.h (four parameters at a time with AVX2:
    # its square root and divisions are most of a step); here, the parameters' nodes are
    # handed to it in chunks of _CHUNK, in order.
    cdef double k[8]
    cdef double* nodes[_CHUNK]
    cdef double* m = exp_avg.data.as_doubles
    cdef double* v = exp_avg_sq.data.as_doubles
    cdef Py_ssize_t i = 0, done = 0, n = len(params)
    _check_buffer(exp_avg, n, "the first moment buffer")
    _check_buffer(exp_avg_sq, n, "the second moment buffer")
    adam_constants(k, beta1, beta2, eps, step_size, bc2_sqrt, grad_decay, param_scale)
    for item in params:
        if done + i >= n:
            raise ValueError("params yielded more items than its len()")
        nodes[i] = &_param(item).data
        i += 1
        if i == _CHUNK:
            cm_lk.adam(nodes, _GRAD_OFFSET, m + done, v + done, i, k)
            done += i
            i = 0
    if i:
        cm_lk.adam(nodes, _GRAD_OFFSET, m + done, v + done, i, k)
