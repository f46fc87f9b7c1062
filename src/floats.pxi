# Python's float semantics in C, for the op rules (value.pxi).
#
# A C double operation that Python would refuse (0.0 ** -1, exp(1000), log(-1)) gives
# inf or nan in C. The rules report such cases through an int* err as one of the ERR_*
# codes below (the numbers of cmicrograd/_numbers.py), and raise_math_error turns a code
# into exactly the exception the pure engine raises.

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
    ERR_UNKNOWN_OP = 7


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


cdef int raise_math_error(int err, double x, double y) except -1:
    """Raise the exception for error ``err`` about operands ``x`` and ``y``.

    The exception and its message come from cmicrograd._numbers, as in the reference.
    """
    raise _numbers.math_error(err, x, y)


def _float_pow(double x, double y):
    """x ** y by the engine's C float_pow (tests compare it with Python's **)."""
    cdef int err = 0
    cdef double r = float_pow(x, y, &err)
    if err:
        raise_math_error(err, x, y)
    return r
