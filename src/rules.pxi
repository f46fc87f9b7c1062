# The arithmetic of every op, on C doubles, shared by eager backward and tape replay.
#
# Same order and names as cmicrograd/reference/engine.py. Each rule does exactly the
# floating-point operations the reference does, in the same order, so both engines give
# the same bits (the build turns off FMA contraction and pow rewriting; see setup.py).
# Errors are reported through *err as one of the ERR_* codes of cmicrograd._numbers.

from libc.errno cimport errno, ERANGE
from libc.math cimport (pow as c_pow, exp as c_exp, log as c_log, tanh as c_tanh,
                        fabs, floor, fmod, copysign, isnan, isinf, isfinite)

cdef enum:
    ERR_ZERO_POW = 1
    ERR_FRACTIONAL_POW = 2
    ERR_POW_RANGE = 3
    ERR_EXP_RANGE = 4
    ERR_LOG_DOMAIN = 5
    ERR_ZERO_DIV = 6


# ---- Python's float semantics in C -------------------------------------------------
cdef inline bint _is_odd_integer(double x) noexcept nogil:
    return fmod(fabs(x), 2.0) == 1.0


cdef double float_pow(double iv, double iw, int* err) noexcept nogil:
    """iv ** iw as CPython's float_pow computes it (Objects/floatobject.c), except
    that a negative base to a fractional power is an error instead of a complex."""
    cdef bint negate = False
    cdef bint odd
    cdef double ix
    if iw == 0.0:
        return 1.0                       # x**0 is 1, even 0**0 and nan**0
    if isnan(iv):
        return iv
    if isnan(iw):
        return 1.0 if iv == 1.0 else iw
    if isinf(iw):
        iv = fabs(iv)
        if iv == 1.0:
            return 1.0
        if (iw > 0.0) == (iv > 1.0):
            return fabs(iw)              # inf
        return 0.0
    if isinf(iv):
        odd = _is_odd_integer(iw)
        if iw > 0.0:
            return iv if odd else fabs(iv)
        return copysign(0.0, iv) if odd else 0.0
    if iv == 0.0:
        if iw < 0.0:
            err[0] = ERR_ZERO_POW
            return -1.0
        return iv if _is_odd_integer(iw) else 0.0
    if iv < 0.0:
        if iw != floor(iw):
            err[0] = ERR_FRACTIONAL_POW
            return -1.0
        iv = -iv
        negate = _is_odd_integer(iw)
    if iv == 1.0:
        return -1.0 if negate else 1.0
    errno = 0
    ix = c_pow(iv, iw)
    if errno == 0 and isinf(ix):
        errno = ERANGE
    elif errno == ERANGE and ix == 0.0:
        errno = 0                        # underflow to zero is not an error
    if negate:
        ix = -ix
    if errno != 0:
        err[0] = ERR_POW_RANGE if errno == ERANGE else ERR_FRACTIONAL_POW
    return ix


# ---- forward rules: out.data from the operands' data (k: POW's exponent) -------------
cdef inline double add_forward(double a, double b, double k, int* err) noexcept nogil:
    return a + b

cdef inline double mul_forward(double a, double b, double k, int* err) noexcept nogil:
    return a * b

cdef inline double pow_forward(double a, double b, double k, int* err) noexcept nogil:
    return float_pow(a, k, err)

cdef inline double relu_forward(double a, double b, double k, int* err) noexcept nogil:
    return 0.0 if a < 0 else a

cdef inline double tanh_forward(double a, double b, double k, int* err) noexcept nogil:
    return c_tanh(a)                     # saturates to +-1.0 instead of overflowing

cdef inline double exp_forward(double a, double b, double k, int* err) noexcept nogil:
    cdef double r = c_exp(a)
    if isinf(r) and isfinite(a):
        err[0] = ERR_EXP_RANGE
    return r

cdef inline double log_forward(double a, double b, double k, int* err) noexcept nogil:
    if isnan(a):
        return a                         # as math.log: nan in, the same nan out
    if a > 0:
        return c_log(a)
    err[0] = ERR_LOG_DOMAIN
    return -1.0

cdef inline double sigmoid_forward(double a, double b, double k, int* err) noexcept nogil:
    cdef double e
    if a >= 0:                           # split at 0 so exp never overflows
        return 1.0 / (1.0 + c_exp(-a))
    e = c_exp(a)
    return e / (1.0 + e)


cdef inline double forward_rule(int code, double a, double b, double k, int* err) noexcept nogil:
    if code == ADD:
        return add_forward(a, b, k, err)
    if code == MUL:
        return mul_forward(a, b, k, err)
    if code == POW:
        return pow_forward(a, b, k, err)
    if code == RELU:
        return relu_forward(a, b, k, err)
    if code == TANH:
        return tanh_forward(a, b, k, err)
    if code == EXP:
        return exp_forward(a, b, k, err)
    if code == LOG:
        return log_forward(a, b, k, err)
    return sigmoid_forward(a, b, k, err)


# ---- backward rules: accumulate out's local derivative into the operands' grads -----
# a, b: operand data; k: POW's exponent; out, g: the node's data and grad;
# ga, gb: where the operands' grads live (the same address for a + a and a * a).
cdef inline void add_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += g
    gb[0] += g

cdef inline void mul_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += b * g
    gb[0] += a * g

cdef inline void pow_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    cdef double p = float_pow(a, k - 1.0, err)
    if err[0] == 0:
        ga[0] += (k * p) * g

cdef inline void relu_backward(double a, double b, double k, double out, double g,
                               double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += (<double>(out > 0)) * g

cdef inline void tanh_backward(double a, double b, double k, double out, double g,
                               double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += (1.0 - out * out) * g

cdef inline void exp_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += out * g

cdef inline void log_backward(double a, double b, double k, double out, double g,
                              double* ga, double* gb, int* err) noexcept nogil:
    if a == 0.0:
        err[0] = ERR_ZERO_DIV
        return
    ga[0] += g / a

cdef inline void sigmoid_backward(double a, double b, double k, double out, double g,
                                  double* ga, double* gb, int* err) noexcept nogil:
    ga[0] += (out * (1.0 - out)) * g


cdef inline void backward_rule(int code, double a, double b, double k, double out, double g,
                               double* ga, double* gb, int* err) noexcept nogil:
    if code == ADD:
        add_backward(a, b, k, out, g, ga, gb, err)
    elif code == MUL:
        mul_backward(a, b, k, out, g, ga, gb, err)
    elif code == POW:
        pow_backward(a, b, k, out, g, ga, gb, err)
    elif code == RELU:
        relu_backward(a, b, k, out, g, ga, gb, err)
    elif code == TANH:
        tanh_backward(a, b, k, out, g, ga, gb, err)
    elif code == EXP:
        exp_backward(a, b, k, out, g, ga, gb, err)
    elif code == LOG:
        log_backward(a, b, k, out, g, ga, gb, err)
    elif code == SIGMOID:
        sigmoid_backward(a, b, k, out, g, ga, gb, err)


cdef int raise_math_error(int err, double x, double y) except -1:
    """Raise the exception for error ``err`` about operands ``x`` and ``y``.

    The exception and its message come from cmicrograd._numbers, as in the reference.
    """
    raise _numbers.math_error(err, x, y)
