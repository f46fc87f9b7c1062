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
