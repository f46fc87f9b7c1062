/* lane_kernels.h -- the loops of a lane replay (lane_replay.pxi), one template op over many
 * examples side by side: plain loops over contiguous arrays, which compilers vectorize.
 *
 * Included twice by lanes.h: once for the baseline instruction set, once (x86-64, GCC or
 * clang) for AVX2, named by CM_K(name) and marked by CM_TARGET. Each lane does exactly
 * the scalar replay's floating-point operations in the scalar replay's operand order
 * (the build disables FMA contraction and fast-math), so the two sets give the same bits.
 *
 * Arrays are per-lane vectors of n doubles; a scalar argument is an operand every lane
 * shares (a parameter).
 */

/* ---- forward ---- */
CM_TARGET static void CM_K(copy)(double *CM_RESTRICT o, const double *CM_RESTRICT a, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) o[e] = a[e];
}
CM_TARGET static void CM_K(fill)(double *CM_RESTRICT o, double c, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) o[e] = c;
}
CM_TARGET static void CM_K(add)(double *CM_RESTRICT o, const double *a, const double *b, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) o[e] = a[e] + b[e];
}
CM_TARGET static void CM_K(mul)(double *CM_RESTRICT o, const double *a, const double *b, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) o[e] = a[e] * b[e];
}
/* relu_forward: 0.0 if a < 0 else a (so -0.0 and nan pass through) */
CM_TARGET static void CM_K(relu)(double *CM_RESTRICT o, const double *CM_RESTRICT a, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) o[e] = a[e] < 0 ? 0.0 : a[e];
}
/* a fused sum's step s = s + w * x: w shared (sl), x shared (ls), or neither (ll) */
CM_TARGET static void CM_K(dot_sl)(double *CM_RESTRICT s, double w, const double *CM_RESTRICT x, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) s[e] = s[e] + w * x[e];
}
/* four steps at once, shared weights: each lane still adds them one by one, in order */
CM_TARGET static void CM_K(dot4_sl)(double *CM_RESTRICT s, const double *CM_RESTRICT w,
                                    const double *CM_RESTRICT x0, const double *CM_RESTRICT x1,
                                    const double *CM_RESTRICT x2, const double *CM_RESTRICT x3,
                                    Py_ssize_t n) {
    const double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (Py_ssize_t e = 0; e < n; e++)
        s[e] = (((s[e] + w0 * x0[e]) + w1 * x1[e]) + w2 * x2[e]) + w3 * x3[e];
}
CM_TARGET static void CM_K(dot_ls)(double *CM_RESTRICT s, const double *CM_RESTRICT w, double x, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) s[e] = s[e] + w[e] * x;
}
CM_TARGET static void CM_K(dot_ll)(double *CM_RESTRICT s, const double *CM_RESTRICT w,
                                   const double *CM_RESTRICT x, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) s[e] = s[e] + w[e] * x[e];
}

/* ---- backward ---- */
/* g = g + v (an add's grad; the -0.0-started row of a shared operand) */
CM_TARGET static void CM_K(acc)(double *CM_RESTRICT g, const double *CM_RESTRICT v, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) g[e] = g[e] + v[e];
}
/* a fused sum's intermediate grads: 0.0 + g */
CM_TARGET static void CM_K(plus0)(double *CM_RESTRICT o, const double *CM_RESTRICT g, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) o[e] = 0.0 + g[e];
}
/* relu_backward: ga += (out > 0) * g */
CM_TARGET static void CM_K(relu_bw)(double *CM_RESTRICT ga, const double *CM_RESTRICT out,
                                    const double *CM_RESTRICT g, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) ga[e] = ga[e] + (double)(out[e] > 0) * g[e];
}
/* g = g + u * v: u shared (sl), v shared (ls), or neither (ll) */
CM_TARGET static void CM_K(axpy_sl)(double *CM_RESTRICT g, double u, const double *CM_RESTRICT v, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) g[e] = g[e] + u * v[e];
}
CM_TARGET static void CM_K(axpy_ls)(double *CM_RESTRICT g, const double *CM_RESTRICT u, double v, Py_ssize_t n) {
    for (Py_ssize_t e = 0; e < n; e++) g[e] = g[e] + u[e] * v;
}
CM_TARGET static void CM_K(axpy_ll)(double *g, const double *u, const double *v, Py_ssize_t n) {
    /* g may be u or v (x * x): each lane still reads before it writes */
    for (Py_ssize_t e = 0; e < n; e++) g[e] = g[e] + u[e] * v[e];
}

/* a layer's inputs' grads: for each of nj inputs j, g_j[e] += w_j[0] * gp[e] + ...,
 * one addition after the other, k = 0..m-1 (gp_k at gp + k * stride; w_j = w + j * m).
 * Four inputs and eight lanes at a time: 4 x 8 sums held in registers, so that the
 * additions of different sums overlap (each sum's chain is as long as the layer). */
#if defined(__GNUC__) || defined(__clang__)   /* GCC's vector extension: the fast loops */
#define CM_VEC 1
#ifndef CM_V4D_DEFINED
#define CM_V4D_DEFINED
typedef double cm_v4d __attribute__((vector_size(32), aligned(8)));
#endif
#define CM_LD(p) (*(const cm_v4d *)(p))
#define CM_ST(p, v) (*(cm_v4d *)(p) = (v))
#endif
CM_TARGET static void CM_K(axpy_run)(double *const *g, Py_ssize_t nj, const double *w,
                                     const double *gp, Py_ssize_t stride, Py_ssize_t m,
                                     Py_ssize_t n) {
    Py_ssize_t j = 0, e, k;
#ifdef CM_VEC
    for (; j + 4 <= nj; j += 4) {
        double *g0 = g[j], *g1 = g[j + 1], *g2 = g[j + 2], *g3 = g[j + 3];
        const double *w0 = w + j * m, *w1 = w0 + m, *w2 = w1 + m, *w3 = w2 + m;
        for (e = 0; e + 8 <= n; e += 8) {
            cm_v4d a0 = CM_LD(g0 + e), b0 = CM_LD(g0 + e + 4), a1 = CM_LD(g1 + e), b1 = CM_LD(g1 + e + 4);
            cm_v4d a2 = CM_LD(g2 + e), b2 = CM_LD(g2 + e + 4), a3 = CM_LD(g3 + e), b3 = CM_LD(g3 + e + 4);
            for (k = 0; k < m; k++) {
                const double *p = gp + k * stride + e;
                cm_v4d pl = CM_LD(p), ph = CM_LD(p + 4);
                a0 = a0 + w0[k] * pl; b0 = b0 + w0[k] * ph;
                a1 = a1 + w1[k] * pl; b1 = b1 + w1[k] * ph;
                a2 = a2 + w2[k] * pl; b2 = b2 + w2[k] * ph;
                a3 = a3 + w3[k] * pl; b3 = b3 + w3[k] * ph;
            }
            CM_ST(g0 + e, a0); CM_ST(g0 + e + 4, b0); CM_ST(g1 + e, a1); CM_ST(g1 + e + 4, b1);
            CM_ST(g2 + e, a2); CM_ST(g2 + e + 4, b2); CM_ST(g3 + e, a3); CM_ST(g3 + e + 4, b3);
        }
        for (; e < n; e++) {
            double s0 = g0[e], s1 = g1[e], s2 = g2[e], s3 = g3[e];
            for (k = 0; k < m; k++) {
                const double pk = gp[k * stride + e];
                s0 = s0 + w0[k] * pk; s1 = s1 + w1[k] * pk; s2 = s2 + w2[k] * pk; s3 = s3 + w3[k] * pk;
            }
            g0[e] = s0; g1[e] = s1; g2[e] = s2; g3[e] = s3;
        }
    }
#endif
    for (; j < nj; j++) {
        double *gj = g[j];
        const double *wj = w + j * m;
        for (e = 0; e < n; e++) {
            double s = gj[e];
            for (k = 0; k < m; k++) s = s + wj[k] * gp[k * stride + e];
            gj[e] = s;
        }
    }
}

/* a layer's forward: out_k[e] = b[k] + w_k[0] * x_0[e] + w_k[1] * x_1[e] + ..., left to
 * right, for m neurons over the same n inputs (w_k = w + k * n); four neurons by eight
 * lanes in registers, so that the sums' chains overlap */
CM_TARGET static void CM_K(layer_forward)(double *const *out, const double *b, const double *w,
                                          const double *const *x, Py_ssize_t m, Py_ssize_t n,
                                          Py_ssize_t len) {
    Py_ssize_t k = 0, e, j;
#ifdef CM_VEC
    for (; k + 4 <= m; k += 4) {
        const double *w0 = w + k * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        for (e = 0; e + 8 <= len; e += 8) {
            cm_v4d a0 = {b[k], b[k], b[k], b[k]}, a1 = {b[k + 1], b[k + 1], b[k + 1], b[k + 1]};
            cm_v4d a2 = {b[k + 2], b[k + 2], b[k + 2], b[k + 2]}, a3 = {b[k + 3], b[k + 3], b[k + 3], b[k + 3]};
            cm_v4d c0 = a0, c1 = a1, c2 = a2, c3 = a3;
            for (j = 0; j < n; j++) {
                cm_v4d xl = CM_LD(x[j] + e), xh = CM_LD(x[j] + e + 4);
                a0 = a0 + w0[j] * xl; c0 = c0 + w0[j] * xh;
                a1 = a1 + w1[j] * xl; c1 = c1 + w1[j] * xh;
                a2 = a2 + w2[j] * xl; c2 = c2 + w2[j] * xh;
                a3 = a3 + w3[j] * xl; c3 = c3 + w3[j] * xh;
            }
            CM_ST(out[k] + e, a0); CM_ST(out[k] + e + 4, c0);
            CM_ST(out[k + 1] + e, a1); CM_ST(out[k + 1] + e + 4, c1);
            CM_ST(out[k + 2] + e, a2); CM_ST(out[k + 2] + e + 4, c2);
            CM_ST(out[k + 3] + e, a3); CM_ST(out[k + 3] + e + 4, c3);
        }
        for (; e < len; e++) {
            double s0 = b[k], s1 = b[k + 1], s2 = b[k + 2], s3 = b[k + 3];
            for (j = 0; j < n; j++) {
                const double xj = x[j][e];
                s0 = s0 + w0[j] * xj; s1 = s1 + w1[j] * xj; s2 = s2 + w2[j] * xj; s3 = s3 + w3[j] * xj;
            }
            out[k][e] = s0; out[k + 1][e] = s1; out[k + 2][e] = s2; out[k + 3][e] = s3;
        }
    }
#endif
    for (; k < m; k++) {
        const double *wk = w + k * n;
        for (e = 0; e < len; e++) {
            double s0 = b[k];
            for (j = 0; j < n; j++) s0 = s0 + wk[j] * x[j][e];
            out[k][e] = s0;
        }
    }
}

/* a layer's weights' grads (the reduction, lane_replay.pxi): for every input j,
 * G[w0[j]] += xt[e][j] * gp0[e] for e from the last lane to the first, and the same for
 * w1 and gp1 (the next neuron) when gp1 is not NULL. xt is the layer's inputs with
 * lanes as rows (xt[e * n + j]); sixteen inputs of two neurons in registers at once. */
CM_TARGET static void CM_K(layer_reduce)(double *G, const int32_t *w0, const int32_t *w1,
                                         const double *xt, Py_ssize_t n, const double *gp0,
                                         const double *gp1, Py_ssize_t E) {
    Py_ssize_t j = 0, e;
#ifdef CM_VEC
    Py_ssize_t i;
    double t[16];
    for (; j + 16 <= n; j += 16) {
        cm_v4d a0, a1, a2, a3, b0, b1, b2, b3;
        for (i = 0; i < 16; i++) t[i] = G[w0[j + i]];
        a0 = CM_LD(t); a1 = CM_LD(t + 4); a2 = CM_LD(t + 8); a3 = CM_LD(t + 12);
        if (gp1) {
            for (i = 0; i < 16; i++) t[i] = G[w1[j + i]];
            b0 = CM_LD(t); b1 = CM_LD(t + 4); b2 = CM_LD(t + 8); b3 = CM_LD(t + 12);
            for (e = E - 1; e >= 0; e--) {
                const double *x = xt + e * n + j;
                cm_v4d x0 = CM_LD(x), x1 = CM_LD(x + 4), x2 = CM_LD(x + 8), x3 = CM_LD(x + 12);
                const double g0 = gp0[e], g1 = gp1[e];
                a0 = a0 + x0 * g0; a1 = a1 + x1 * g0; a2 = a2 + x2 * g0; a3 = a3 + x3 * g0;
                b0 = b0 + x0 * g1; b1 = b1 + x1 * g1; b2 = b2 + x2 * g1; b3 = b3 + x3 * g1;
            }
            CM_ST(t, b0); CM_ST(t + 4, b1); CM_ST(t + 8, b2); CM_ST(t + 12, b3);
            for (i = 0; i < 16; i++) G[w1[j + i]] = t[i];
        } else {
            for (e = E - 1; e >= 0; e--) {
                const double *x = xt + e * n + j;
                const double g0 = gp0[e];
                a0 = a0 + CM_LD(x) * g0; a1 = a1 + CM_LD(x + 4) * g0;
                a2 = a2 + CM_LD(x + 8) * g0; a3 = a3 + CM_LD(x + 12) * g0;
            }
        }
        CM_ST(t, a0); CM_ST(t + 4, a1); CM_ST(t + 8, a2); CM_ST(t + 12, a3);
        for (i = 0; i < 16; i++) G[w0[j + i]] = t[i];
    }
#endif
    for (; j < n; j++) {                     /* the inputs left over (all, without CM_VEC) */
        double s0 = G[w0[j]], s1 = gp1 ? G[w1[j]] : 0.0;
        for (e = E - 1; e >= 0; e--) {
            s0 = s0 + xt[e * n + j] * gp0[e];
            if (gp1) s1 = s1 + xt[e * n + j] * gp1[e];
        }
        G[w0[j]] = s0;
        if (gp1) G[w1[j]] = s1;
    }
}
#ifdef CM_VEC
#undef CM_VEC
#undef CM_LD
#undef CM_ST
#endif

/* ---- the shared slots' grads: each job adds its examples' contributions to one slot,
 * from the last example to the first (the eager order). Eight jobs at a time, so that
 * eight independent chains of additions overlap. ---- */
#ifdef CM_AVX2_INTRINSICS
/* Sixteen product jobs, each job's sum in one lane of a vector: four jobs' products for
 * four examples are loaded as rows, transposed, and added example by example, from the
 * last to the first, four vectors side by side. */
#define CM_TRANSPOSE_ADD(acc, p0, p1, p2, p3) do {                                   \
        __m256d t0 = _mm256_unpacklo_pd(p0, p1), t1 = _mm256_unpackhi_pd(p0, p1);   \
        __m256d t2 = _mm256_unpacklo_pd(p2, p3), t3 = _mm256_unpackhi_pd(p2, p3);   \
        acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t1, t3, 0x31)); /* e + 3 */ \
        acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t0, t2, 0x31)); /* e + 2 */ \
        acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t1, t3, 0x20)); /* e + 1 */ \
        acc = _mm256_add_pd(acc, _mm256_permute2f128_pd(t0, t2, 0x20)); /* e     */ \
    } while (0)
#define CM_PRODUCT(j, e) _mm256_mul_pd(_mm256_loadu_pd(D + (j).src + (e)), _mm256_loadu_pd(buf + (j).vec + (e)))

CM_TARGET static void CM_K(reduce16)(double *G, const double *D, const cm_lane_job *jobs,
                                     const double *buf, Py_ssize_t n) {
    double a[16];
    Py_ssize_t e, top = n & ~(Py_ssize_t)3;
    int i, q;
    __m256d acc[4];
    for (i = 0; i < 16; i++) {        /* the last n % 4 examples first, one by one */
        const double *x = D + jobs[i].src, *v = buf + jobs[i].vec;
        double s = G[jobs[i].target];
        for (e = n - 1; e >= top; e--) s = s + x[e] * v[e];
        a[i] = s;
    }
    for (q = 0; q < 4; q++) acc[q] = _mm256_loadu_pd(a + 4 * q);
    for (e = top - 4; e >= 0; e -= 4) {
        for (q = 0; q < 4; q++) {
            const cm_lane_job *j = jobs + 4 * q;
            __m256d p0 = CM_PRODUCT(j[0], e), p1 = CM_PRODUCT(j[1], e);
            __m256d p2 = CM_PRODUCT(j[2], e), p3 = CM_PRODUCT(j[3], e);
            CM_TRANSPOSE_ADD(acc[q], p0, p1, p2, p3);
        }
    }
    for (q = 0; q < 4; q++) _mm256_storeu_pd(a + 4 * q, acc[q]);
    for (i = 0; i < 16; i++) G[jobs[i].target] = a[i];
}
#undef CM_TRANSPOSE_ADD
#undef CM_PRODUCT
#endif

CM_TARGET static void CM_K(reduce)(double *G, const double *D, const cm_lane_job *jobs,
                                   Py_ssize_t njobs, const double *buf, Py_ssize_t n) {
    Py_ssize_t i = 0, e, k;
#ifdef CM_AVX2_INTRINSICS
    while (i + 16 <= njobs) {
        int all_products = 1;
        for (k = 0; k < 16; k++) all_products &= jobs[i + k].kind == CM_JOB_PRODUCT;
        if (!all_products) break;
        CM_K(reduce16)(G, D, jobs + i, buf, n);
        i += 16;
    }
#endif
    while (i + 8 <= njobs) {
        int all_products = 1;
        for (k = 0; k < 8; k++) all_products &= jobs[i + k].kind == CM_JOB_PRODUCT;
        if (!all_products) break;
        const double *x0 = D + jobs[i].src, *x1 = D + jobs[i + 1].src, *x2 = D + jobs[i + 2].src,
                     *x3 = D + jobs[i + 3].src, *x4 = D + jobs[i + 4].src, *x5 = D + jobs[i + 5].src,
                     *x6 = D + jobs[i + 6].src, *x7 = D + jobs[i + 7].src;
        const double *v0 = buf + jobs[i].vec, *v1 = buf + jobs[i + 1].vec, *v2 = buf + jobs[i + 2].vec,
                     *v3 = buf + jobs[i + 3].vec, *v4 = buf + jobs[i + 4].vec, *v5 = buf + jobs[i + 5].vec,
                     *v6 = buf + jobs[i + 6].vec, *v7 = buf + jobs[i + 7].vec;
        double a0 = G[jobs[i].target], a1 = G[jobs[i + 1].target], a2 = G[jobs[i + 2].target],
               a3 = G[jobs[i + 3].target], a4 = G[jobs[i + 4].target], a5 = G[jobs[i + 5].target],
               a6 = G[jobs[i + 6].target], a7 = G[jobs[i + 7].target];
        for (e = n - 1; e >= 0; e--) {
            a0 = a0 + x0[e] * v0[e]; a1 = a1 + x1[e] * v1[e];
            a2 = a2 + x2[e] * v2[e]; a3 = a3 + x3[e] * v3[e];
            a4 = a4 + x4[e] * v4[e]; a5 = a5 + x5[e] * v5[e];
            a6 = a6 + x6[e] * v6[e]; a7 = a7 + x7[e] * v7[e];
        }
        G[jobs[i].target] = a0; G[jobs[i + 1].target] = a1; G[jobs[i + 2].target] = a2;
        G[jobs[i + 3].target] = a3; G[jobs[i + 4].target] = a4; G[jobs[i + 5].target] = a5;
        G[jobs[i + 6].target] = a6; G[jobs[i + 7].target] = a7;
        i += 8;
    }
    for (; i < njobs; i++) {
        const cm_lane_job *j = &jobs[i];
        const double *v = buf + j->vec;
        double a = G[j->target];
        if (j->kind == CM_JOB_PRODUCT) {
            const double *x = D + j->src;
            for (e = n - 1; e >= 0; e--) a = a + x[e] * v[e];
        } else if (j->kind == CM_JOB_SHARED_PRODUCT) {
            double x = D[j->src];
            for (e = n - 1; e >= 0; e--) a = a + x * v[e];
        } else {
            for (e = n - 1; e >= 0; e--) a = a + v[e];
        }
        G[j->target] = a;
    }
}

/* ---- the optimizer ----
 * Not a lane loop, but the same instruction-set switch: one Adam / AdamW step over n
 * parameters (nn_helpers.pxi's adam_kernel; cmicrograd/optim.py's _adam_kernel lists the
 * operations, done here in the same order). p[i] points at parameter i's data, its grad
 * at p[i][goff]; m and v are its moments; k holds w1 = 1 - beta1, beta2, w2 = 1 - beta2,
 * eps, step_size, bc2_sqrt, grad_decay, param_scale. AVX2 updates four parameters at a
 * time (sqrt and the two divisions dominate); four that are not all distinct (a list that
 * names a parameter twice) go one by one, so every update still sees the one before. */
#define CM_ADAM_ONE(i) do { \
    double d_ = p[i][0], g_, m_, v_; \
    if (scale) d_ = d_ * k[7]; \
    g_ = p[i][goff]; \
    if (decay) g_ = g_ + k[6] * d_; \
    m_ = m[i]; \
    m_ = m_ + k[0] * (g_ - m_); \
    v_ = k[1] * v[i] + k[2] * g_ * g_; \
    m[i] = m_; \
    v[i] = v_; \
    p[i][0] = d_ - k[4] * m_ / (sqrt(v_) / k[5] + k[3]); \
} while (0)

CM_TARGET static void CM_K(adam)(double *const *p, Py_ssize_t goff, double *CM_RESTRICT m,
                                 double *CM_RESTRICT v, Py_ssize_t n, const double *k) {
    const int scale = k[7] != 1.0, decay = k[6] != 0.0;
    Py_ssize_t i = 0;
#ifdef CM_AVX2_INTRINSICS
    const __m256d w1 = _mm256_set1_pd(k[0]), b2 = _mm256_set1_pd(k[1]), w2 = _mm256_set1_pd(k[2]),
                  eps = _mm256_set1_pd(k[3]), ss = _mm256_set1_pd(k[4]), bc = _mm256_set1_pd(k[5]),
                  gd = _mm256_set1_pd(k[6]), ps = _mm256_set1_pd(k[7]);
    for (; i + 4 <= n; i += 4) {
        double *a = p[i], *b = p[i + 1], *c = p[i + 2], *e = p[i + 3];
        double out[4];
        __m256d d, g, mi, vi, den;
        if (a == b || a == c || a == e || b == c || b == e || c == e) {
            CM_ADAM_ONE(i); CM_ADAM_ONE(i + 1); CM_ADAM_ONE(i + 2); CM_ADAM_ONE(i + 3);
            continue;
        }
        d = _mm256_set_pd(e[0], c[0], b[0], a[0]);
        if (scale) d = _mm256_mul_pd(d, ps);
        g = _mm256_set_pd(e[goff], c[goff], b[goff], a[goff]);
        if (decay) g = _mm256_add_pd(g, _mm256_mul_pd(gd, d));
        mi = _mm256_loadu_pd(m + i);
        mi = _mm256_add_pd(mi, _mm256_mul_pd(w1, _mm256_sub_pd(g, mi)));
        vi = _mm256_add_pd(_mm256_mul_pd(b2, _mm256_loadu_pd(v + i)),
                           _mm256_mul_pd(_mm256_mul_pd(w2, g), g));
        _mm256_storeu_pd(m + i, mi);
        _mm256_storeu_pd(v + i, vi);
        den = _mm256_add_pd(_mm256_div_pd(_mm256_sqrt_pd(vi), bc), eps);
        _mm256_storeu_pd(out, _mm256_sub_pd(d, _mm256_div_pd(_mm256_mul_pd(ss, mi), den)));
        a[0] = out[0]; b[0] = out[1]; c[0] = out[2]; e[0] = out[3];
    }
#endif
    for (; i < n; i++) CM_ADAM_ONE(i);
}
#undef CM_ADAM_ONE
