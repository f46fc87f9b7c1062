/* kernels.h -- the inner loops of a replay (replay.pxi) over contiguous arrays, and two
 * of the recording's (lanes.pxi) over slot numbers.
 *
 * A fused sum whose weights and inputs sit in consecutive slots runs these plain loops,
 * which compilers unroll and vectorize. They do exactly the floating-point operations
 * of micrograd's chain, in its order where order matters:
 *   forward  s = s + w[j] * x[j], j ascending (a sequential chain, never reassociated:
 *            the build disables FMA contraction and we use no -ffast-math);
 *   backward g[j] = g[j] + v[j] * a, one addition per accumulator, so their relative
 *            order does not matter.
 */
#ifndef CMICROGRAD_KERNELS_H
#define CMICROGRAD_KERNELS_H

#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(_MSC_VER)
#define CM_RESTRICT __restrict
#else
#define CM_RESTRICT __restrict__
#endif

/* n bytes starting on a cache line, to be released with free() (NULL if none): the
 * arrays that threads split by lanes (lanes.pxi), so that where one thread's lanes end
 * and the next's begin is a line boundary, not a line both write. Where there is no
 * posix_memalign (Windows), plain malloc: correct, only without that guarantee. */
static inline void *cm_malloc_lines(size_t n) {
#ifdef _WIN32
    return malloc(n);
#else
    void *p = NULL;
    return posix_memalign(&p, 64, n) == 0 ? p : NULL;
#endif
}

#if defined(_MSC_VER)
#define CM_NOINLINE __declspec(noinline)
#else
#define CM_NOINLINE __attribute__((noinline))
#endif

/* The recording's checks and copies of slot numbers (lanes.pxi: _try_chain, _renumber_terms),
 * branch-free so that compilers vectorize them. Kept out of line: inlined into the
 * recording's long functions, the loops stayed scalar. */

/* Whether s[j] == s1[j] + (delta if lo <= s1[j] < hi else 0) for every j in [0, n). */
static CM_NOINLINE int cm_same_slots(const int32_t *s, const int32_t *s1, Py_ssize_t n,
                                     int32_t delta, int32_t lo, int32_t hi) {
    int32_t differ = 0;
    Py_ssize_t j;
    for (j = 0; j < n; j++)
        differ |= s[j] ^ (s1[j] + (delta & -(int32_t)((s1[j] >= lo) & (s1[j] < hi))));
    return differ == 0;
}

/* out[j] = src[j] + (shift if src[j] < lanes_end else 0) for j in [0, n) (no overlap). */
static CM_NOINLINE void cm_shifted(int32_t *CM_RESTRICT out, const int32_t *CM_RESTRICT src,
                                   Py_ssize_t n, int32_t shift, int32_t lanes_end) {
    Py_ssize_t j;
    for (j = 0; j < n; j++) out[j] = src[j] + (shift & -(int32_t)(src[j] < lanes_end));
}

/* g[j] += v[j] * a for j in [0, n) */
static inline void cm_axpy(double *CM_RESTRICT g, const double *CM_RESTRICT v, double a,
                           Py_ssize_t n) {
    Py_ssize_t j;
    for (j = 0; j < n; j++) g[j] = g[j] + v[j] * a;
}

/* s + w[0]*x[0] + w[1]*x[1] + ..., left to right */
static inline double cm_dot(double s, const double *CM_RESTRICT w,
                            const double *CM_RESTRICT x, Py_ssize_t n) {
    Py_ssize_t j;
    for (j = 0; j < n; j++) s = s + w[j] * x[j];
    return s;
}

/* four independent sums of equal length, side by side so their chains overlap */
static inline void cm_dot4(double *s, const double *w0, const double *x0,
                           const double *w1, const double *x1, const double *w2,
                           const double *x2, const double *w3, const double *x3,
                           Py_ssize_t n) {
    double s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
    Py_ssize_t j;
    for (j = 0; j < n; j++) {
        s0 = s0 + w0[j] * x0[j];
        s1 = s1 + w1[j] * x1[j];
        s2 = s2 + w2[j] * x2[j];
        s3 = s3 + w3[j] * x3[j];
    }
    s[0] = s0; s[1] = s1; s[2] = s2; s[3] = s3;
}

#endif
