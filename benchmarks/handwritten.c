/* handwritten.c -- micrograd's moons training step written by hand in plain C.
 *
 * The machine's limit for the benchmark's "moons training step" row: no graph, no
 * objects, just the arithmetic of one step of MLP(NIN, [H1, H2, 1]) (relu hidden
 * layers, linear output) with micrograd's demo loss, backward by hand and SGD.
 *
 * "Same arithmetic" means the same floating-point operations in the same order as
 * cmicrograd / micrograd perform them, so that the loss (and every weight after an
 * update) is equal to cmicrograd's BIT FOR BIT. benchmarks/run.py checks that. The
 * order, operation by operation:
 *
 *   forward, per sample (rows in order):
 *     neuron      act = b + w0*x0 + w1*x1 + ...        (left to right, from b)
 *     relu        x < 0 ? 0 : x                        (so -0.0 stays -0.0)
 *     hinge       l_k = relu(score_k * (-y_k) + 1.0)
 *   data_loss = ((0 + l_0) + l_1 + ...) * (1.0 / n)     (Python's sum starts at 0)
 *   reg       = ((0 + p0*p0) + p1*p1 + ...) * alpha    (parameters in micrograd order)
 *   total     = data_loss + reg
 *
 *   backward: gradients are sums, and a float sum depends on its order. cmicrograd
 *   (like the reference engine) applies the node rules in reverse topological order of
 *   the graph micrograd builds, with a DFS that visits children in operand order. For
 *   this graph that means:
 *     - every parameter first gets its two L2 terms, grad = (0 + p*alpha) + p*alpha
 *       (the node p*p has p as both operands), because the regulariser is the second
 *       operand of total = data_loss + reg and so comes last in topological order;
 *     - then one term per sample, samples in REVERSE order (n-1 ... 0);
 *     - a hidden activation h_j of layer 1 collects one term per layer-2 neuron, also
 *       in reverse neuron order (H2-1 ... 0): neuron m's chain was built after neuron
 *       m-1's, so its backward runs first;
 *     - a node's grad starts at 0.0 and every rule ADDS into it (0.0 + x), exactly as
 *       `a._grad += ...`; with IEEE arithmetic (no -ffast-math) the additions of 0.0
 *       are kept, which matters for -0.0.
 *     relu'    : grad += (double)(out > 0) * out_grad
 *     mul a*b  : a.grad += b * g ; b.grad += a * g
 *   SGD: p = p - lr * grad.
 *
 * Build (what run.py does): cc -O2 -ffp-contract=off -fno-builtin-pow -shared -fPIC
 * -ffp-contract=off forbids fused multiply-adds, which would round differently.
 *
 * Parameter layout (micrograd's model.parameters()): layer -> neuron -> (w..., b).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L /* clock_gettime under a strict -std=c99 */
#endif
#include <stddef.h>
#include <time.h>

#ifndef NIN
#define NIN 2
#endif
#ifndef H1
#define H1 16
#endif
#ifndef H2
#define H2 16
#endif
#ifndef MAXN
#define MAXN 4096 /* most samples per step */
#endif

#define L1_OFF 0                        /* layer 1: H1 neurons of NIN weights + bias */
#define L2_OFF (L1_OFF + H1 * (NIN + 1)) /* layer 2: H2 neurons of H1 weights + bias */
#define L3_OFF (L2_OFF + H2 * (H1 + 1)) /* layer 3: 1 neuron of H2 weights + bias */
#define NPARAMS (L3_OFF + H2 + 1)

/* so run.py can check the sizes it was compiled for */
int hw_nparams(void) { return NPARAMS; }
int hw_sizes(int *out) { out[0] = NIN; out[1] = H1; out[2] = H2; return MAXN; }

/* activations kept from the forward pass for the backward pass */
static double h1[MAXN][H1];
static double h2[MAXN][H2];
static double score[MAXN];
static double lossk[MAXN];
static double grad[NPARAMS];

static double relu(double x) { return x < 0 ? 0.0 : x; }

/* One training step on n rows: returns the total loss (before the update). */
static double step(double *p, const double *X, const double *y, int n, double lr,
                   double alpha) {
    int k, i, j, m;
    /* ---- forward ---- */
    double sum = 0.0;
    for (k = 0; k < n; k++) {
        const double *x = X + (size_t)k * NIN;
        for (j = 0; j < H1; j++) {
            const double *w = p + L1_OFF + j * (NIN + 1);
            double act = w[NIN];              /* b */
            for (i = 0; i < NIN; i++) act = act + w[i] * x[i];
            h1[k][j] = relu(act);
        }
        for (m = 0; m < H2; m++) {
            const double *w = p + L2_OFF + m * (H1 + 1);
            double act = w[H1];
            for (j = 0; j < H1; j++) act = act + w[j] * h1[k][j];
            h2[k][m] = relu(act);
        }
        {
            const double *w = p + L3_OFF;
            double act = w[H2];
            for (m = 0; m < H2; m++) act = act + w[m] * h2[k][m];
            score[k] = act;                   /* linear output */
        }
        lossk[k] = relu(score[k] * (-y[k]) + 1.0);   /* (1 + -y*score).relu() */
        sum = sum + lossk[k];                 /* sum(losses), from 0 */
    }
    double inv_n = 1.0 / n;
    double data_loss = sum * inv_n;
    double sq = 0.0;
    for (i = 0; i < NPARAMS; i++) sq = sq + p[i] * p[i];
    double reg = sq * alpha;
    double total = data_loss + reg;

    /* ---- backward ---- */
    /* total = data_loss + reg: both get 0 + 1.0; reg = sq * alpha: sq.grad = alpha * 1.0,
       passed unchanged down the sum chain to every p*p node; p*p adds p*g twice. */
    double g_reg = 0.0 + 1.0;
    double g_sq = 0.0 + alpha * g_reg;
    for (i = 0; i < NPARAMS; i++) {
        grad[i] = 0.0;
        grad[i] += p[i] * g_sq;
        grad[i] += p[i] * g_sq;
    }
    /* data_loss = sum * inv_n: sum.grad = inv_n * 1.0, the same for every l_k */
    double g_data = 0.0 + 1.0;
    double g_l = 0.0 + inv_n * g_data;
    for (k = n - 1; k >= 0; k--) {
        const double *x = X + (size_t)k * NIN;
        double gz = 0.0 + (double)(lossk[k] > 0) * g_l;   /* relu */
        double gm = 0.0 + gz;                             /* z = m + 1 */
        double gs = 0.0 + (-y[k]) * gm;                   /* m = score * (-y) */
        double ga2[H2], gz2[H2], gh1[H1], gz1[H1];
        /* layer 3: score = b + v0*a0 + ...; every term's grad is gs */
        {
            double *w = p + L3_OFF;
            double *gw = grad + L3_OFF;
            for (m = 0; m < H2; m++) {
                gw[m] += h2[k][m] * gs;
                ga2[m] = 0.0 + w[m] * gs;
            }
            gw[H2] += gs;
        }
        for (m = 0; m < H2; m++) gz2[m] = 0.0 + (double)(h2[k][m] > 0) * ga2[m];
        /* layer 2, last neuron first: h1[j] collects its terms in that order */
        for (j = 0; j < H1; j++) gh1[j] = 0.0;
        for (m = H2 - 1; m >= 0; m--) {
            double *w = p + L2_OFF + m * (H1 + 1);
            double *gw = grad + L2_OFF + m * (H1 + 1);
            double g = gz2[m];
            for (j = H1 - 1; j >= 0; j--) {
                gw[j] += h1[k][j] * g;
                gh1[j] += w[j] * g;
            }
            gw[H1] += g;
        }
        for (j = 0; j < H1; j++) gz1[j] = 0.0 + (double)(h1[k][j] > 0) * gh1[j];
        /* layer 1 (the inputs' grads are not needed) */
        for (j = H1 - 1; j >= 0; j--) {
            double *gw = grad + L1_OFF + j * (NIN + 1);
            for (i = NIN - 1; i >= 0; i--) gw[i] += x[i] * gz1[j];
            gw[NIN] += gz1[j];
        }
    }
    /* ---- SGD ---- */
    for (i = 0; i < NPARAMS; i++) p[i] = p[i] - lr * grad[i];
    return total;
}

/* Run `steps` training steps on params (updated in place), writing each step's loss
 * to losses (if not NULL). Returns the elapsed wall time in seconds (CLOCK_MONOTONIC),
 * or -1.0 if n is out of range. */
double hw_train(int steps, double *params, const double *X, const double *y, int n,
                double lr, double alpha, double *losses) {
    struct timespec t0, t1;
    int s;
    double loss;
    if (n < 1 || n > MAXN) return -1.0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (s = 0; s < steps; s++) {
        loss = step(params, X, y, n, lr, alpha);
        if (losses) losses[s] = loss;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}
