/* lanes.h -- the lane replay's loops (lane_kernels.h), built for two instruction sets,
 * and a small pool of worker threads to run a replay on several cores.
 *
 * Instruction sets: the baseline of the target (SSE2 on x86-64) always; on x86-64 with
 * GCC or clang also AVX2 (4 doubles a lane step), chosen at import when the CPU has it
 * (cm_lanes_select). Both give the same bits: the same operations in the same order;
 * AVX2 alone does not bring FMA, and the build disables contraction anyway.
 *
 * Threads: PyThread (Python's portable threads), created once and kept; a replay hands
 * each one a part of the work and waits for all (cm_pool_run). They never touch Python
 * objects and never hold the GIL.
 */
#ifndef CMICROGRAD_LANES_H
#define CMICROGRAD_LANES_H

#include <Python.h>
#include <pythread.h>
#include <string.h>
#ifndef _WIN32
#include <sched.h>
#endif
#include "kernels.h"   /* CM_RESTRICT */

/* a shared slot's grad, the sum over examples of one contribution each */
enum { CM_JOB_PRODUCT = 0,          /* G[target] += D[src + e] * buf[vec + e] */
       CM_JOB_SHARED_PRODUCT = 1,   /* G[target] += D[src] * buf[vec + e] */
       CM_JOB_ROW = 2 };            /* G[target] += buf[vec + e] */
typedef struct {
    int32_t target, src, kind;
    Py_ssize_t vec;
} cm_lane_job;

#define CM_K(name) cm_lk_##name##_base
#define CM_TARGET
#include "lane_kernels.h"
#undef CM_K
#undef CM_TARGET

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CM_HAVE_AVX2_KERNELS 1
#include <immintrin.h>
#define CM_K(name) cm_lk_##name##_avx2
#define CM_TARGET __attribute__((target("avx2")))
#define CM_AVX2_INTRINSICS 1
#include "lane_kernels.h"
#undef CM_K
#undef CM_TARGET
#undef CM_AVX2_INTRINSICS
#else
#define CM_HAVE_AVX2_KERNELS 0
#endif

typedef struct {
    void (*copy)(double *, const double *, Py_ssize_t);
    void (*fill)(double *, double, Py_ssize_t);
    void (*add)(double *, const double *, const double *, Py_ssize_t);
    void (*mul)(double *, const double *, const double *, Py_ssize_t);
    void (*relu)(double *, const double *, Py_ssize_t);
    void (*dot_sl)(double *, double, const double *, Py_ssize_t);
    void (*dot4_sl)(double *, const double *, const double *, const double *, const double *,
                    const double *, Py_ssize_t);
    void (*dot_ls)(double *, const double *, double, Py_ssize_t);
    void (*dot_ll)(double *, const double *, const double *, Py_ssize_t);
    void (*acc)(double *, const double *, Py_ssize_t);
    void (*plus0)(double *, const double *, Py_ssize_t);
    void (*relu_bw)(double *, const double *, const double *, Py_ssize_t);
    void (*axpy_sl)(double *, double, const double *, Py_ssize_t);
    void (*axpy_ls)(double *, const double *, double, Py_ssize_t);
    void (*axpy_ll)(double *, const double *, const double *, Py_ssize_t);
    void (*axpy_run)(double *const *, Py_ssize_t, const double *, const double *, Py_ssize_t,
                     Py_ssize_t, Py_ssize_t);
    void (*layer_forward)(double *const *, const double *, const double *, const double *const *,
                          Py_ssize_t, Py_ssize_t, Py_ssize_t);
    void (*layer_reduce)(double *, const int32_t *, const int32_t *, const double *, Py_ssize_t,
                         const double *, const double *, Py_ssize_t);
    void (*reduce)(double *, const double *, const cm_lane_job *, Py_ssize_t, const double *, Py_ssize_t);
    void (*adam)(double *const *, Py_ssize_t, double *, double *, Py_ssize_t, const double *);
} cm_lane_kernels;

#define CM_KERNEL_TABLE(sfx) { \
    cm_lk_copy_##sfx, cm_lk_fill_##sfx, cm_lk_add_##sfx, cm_lk_mul_##sfx, cm_lk_relu_##sfx, \
    cm_lk_dot_sl_##sfx, cm_lk_dot4_sl_##sfx, cm_lk_dot_ls_##sfx, cm_lk_dot_ll_##sfx, cm_lk_acc_##sfx, \
    cm_lk_plus0_##sfx, cm_lk_relu_bw_##sfx, cm_lk_axpy_sl_##sfx, cm_lk_axpy_ls_##sfx, \
    cm_lk_axpy_ll_##sfx, cm_lk_axpy_run_##sfx, cm_lk_layer_forward_##sfx, cm_lk_layer_reduce_##sfx, cm_lk_reduce_##sfx, \
    cm_lk_adam_##sfx }

static const cm_lane_kernels cm_lanes_base = CM_KERNEL_TABLE(base);
#if CM_HAVE_AVX2_KERNELS
static const cm_lane_kernels cm_lanes_avx2 = CM_KERNEL_TABLE(avx2);
#endif
static const cm_lane_kernels *cm_lk = &cm_lanes_base;

/* Use AVX2 if the CPU has it and allow is true; returns the kernels' name. */
static const char *cm_lanes_select(int allow) {
    cm_lk = &cm_lanes_base;
#if CM_HAVE_AVX2_KERNELS
    __builtin_cpu_init();
    if (allow && __builtin_cpu_supports("avx2")) {
        cm_lk = &cm_lanes_avx2;
        return "avx2";
    }
#endif
    (void)allow;
    return "baseline";
}

/* ---- the worker pool ----
 * Handing a part to a sleeping thread costs tens of microseconds (waking it), more than
 * a small replay takes. So a worker that finished spins for a while (CM_SPIN_NS) on its
 * generation counter before it sleeps on its lock, and the caller spins until the parts
 * are done: back-to-back phases (forward, backward, the reduction, the next step) hand
 * over in about a microsecond. Where the compiler offers no atomics (MSVC), the workers
 * only sleep and wake through their locks: slower hand-offs, the same results. */
typedef void (*cm_task)(void *arg, int part, int nparts);

#define CM_MAX_WORKERS 64
#if defined(__GNUC__) || defined(__clang__)
#define CM_ATOMICS 1
#ifdef _WIN32
#include <windows.h>   /* SwitchToThread */
#endif
#define CM_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define CM_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define CM_XCHG(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#if defined(__x86_64__) || defined(__i386__)
#define CM_PAUSE() __builtin_ia32_pause()
#else
#define CM_PAUSE() ((void)0)
#endif
#else
#define CM_ATOMICS 0
#endif
#define CM_SPINS 20000            /* pause-loops between looks at the clock, and the caller's
                                     wait before it starts yielding */
#define CM_SPIN_NS 2000000        /* how long a worker waits for more work before it sleeps:
                                     longer than the Python between two phases of a step */
#if CM_ATOMICS
#ifdef _WIN32
static long long cm_now_ns(void) {
    LARGE_INTEGER t, f;
    QueryPerformanceCounter(&t);
    QueryPerformanceFrequency(&f);
    return (long long)((double)t.QuadPart * 1e9 / (double)f.QuadPart);
}
#else
#include <time.h>
static long long cm_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#endif
#endif

/* The next chunk of a phase's work for whichever thread asks (threads of unequal speed
 * share it evenly); without atomics, -1: the caller splits the work evenly instead. */
static inline long cm_next_chunk(long *next) {
#if CM_ATOMICS
    return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
#else
    (void)next;
    return -1;
#endif
}

/* A part's chunks of lanes [lo, hi), in one word (lo in its low half): the part's own
 * thread takes them from the low end; a thread that ran out of its own takes them from
 * the high end. So each thread keeps the lanes its cache holds, and only the last few
 * chunks of a slower thread move. Returns the chunk taken, or -1 when none is left.
 * Without atomics (CM_STEALS 0) only the owner takes from its range. */
#define CM_STEALS CM_ATOMICS
static inline long cm_take_chunk(long long *range, int from_high) {
#if CM_ATOMICS
    long long old = __atomic_load_n(range, __ATOMIC_RELAXED), next;
    for (;;) {
        long lo = (long)(old & 0xffffffffLL), hi = (long)(old >> 32);
        if (lo >= hi) return -1;
        next = from_high ? ((long long)(hi - 1) << 32) | lo : ((long long)hi << 32) | (lo + 1);
        if (__atomic_compare_exchange_n(range, &old, next, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return from_high ? hi - 1 : lo;
    }
#else
    long lo = (long)(*range & 0xffffffffLL), hi = (long)(*range >> 32);
    (void)from_high;
    if (lo >= hi) return -1;
    *range = ((long long)hi << 32) | (lo + 1);
    return lo;
#endif
}

typedef struct {
    PyThread_type_lock go, done;   /* go: released to wake it; done: (no atomics) finished */
    cm_task task;
    void *arg;
    int part, nparts;
    long gen;                      /* the caller's latest task for it */
    long done_gen;                 /* the last task it finished */
    int sleeping;                  /* 1 while it sleeps (or is about to) on go */
} cm_worker;

static cm_worker cm_workers[CM_MAX_WORKERS];
static int cm_n_workers = 0;
static long cm_pool_gen = 0;
static PyThread_type_lock cm_pool_lock = NULL;   /* one replay at a time uses the pool */
static long cm_pool_pid = 0;                      /* the process that started the workers */

#ifdef _WIN32
#include <process.h>
#define cm_getpid() ((long)_getpid())
#else
#include <unistd.h>
#define cm_getpid() ((long)getpid())
#endif

/* At import (with the GIL): the pool's lock. Returns -1 if it cannot be made. */
static int cm_pool_init(void) {
    if (cm_pool_lock == NULL) cm_pool_lock = PyThread_allocate_lock();
    cm_pool_pid = cm_getpid();
    return cm_pool_lock == NULL ? -1 : 0;
}

static void cm_worker_main(void *p) {
    cm_worker *w = (cm_worker *)p;
#if CM_ATOMICS
    long seen = 0;
    for (;;) {
        int i;
        long long until = 0;
        long gen = CM_LOAD(&w->gen);
        for (i = 0; gen == seen; i++) {
            CM_PAUSE();
            gen = CM_LOAD(&w->gen);
            if (i % 256 == 0) {                  /* now and then: is the time up? */
                long long now = cm_now_ns();
                if (until == 0) until = now + CM_SPIN_NS;
                else if (now > until) break;
            }
        }
        if (gen == seen) {                       /* nothing came: sleep until woken */
            CM_STORE(&w->sleeping, 1);
            gen = CM_LOAD(&w->gen);
            if (gen == seen || CM_XCHG(&w->sleeping, 0) == 0)
                PyThread_acquire_lock(w->go, WAIT_LOCK);   /* (the caller released it) */
            gen = CM_LOAD(&w->gen);
        }
        seen = gen;
        w->task(w->arg, w->part, w->nparts);
        CM_STORE(&w->done_gen, seen);
    }
#else
    for (;;) {
        PyThread_acquire_lock(w->go, WAIT_LOCK);
        w->task(w->arg, w->part, w->nparts);
        PyThread_release_lock(w->done);
    }
#endif
}

/* Start workers until there are n (returns how many there are). */
static int cm_pool_grow(int n) {
    if (n > CM_MAX_WORKERS) n = CM_MAX_WORKERS;
    while (cm_n_workers < n) {
        cm_worker *w = &cm_workers[cm_n_workers];
        memset(w, 0, sizeof(*w));
        w->go = PyThread_allocate_lock();
        w->done = PyThread_allocate_lock();
        if (w->go == NULL || w->done == NULL) break;
        PyThread_acquire_lock(w->go, WAIT_LOCK);    /* held: the worker waits on it */
        PyThread_acquire_lock(w->done, WAIT_LOCK);
        if (PyThread_start_new_thread(cm_worker_main, w) == PYTHREAD_INVALID_THREAD_ID) break;
        cm_n_workers++;
    }
    return cm_n_workers;
}

static void cm_start(cm_worker *w, long gen) {
#if CM_ATOMICS
    CM_STORE(&w->gen, gen);
    if (CM_XCHG(&w->sleeping, 0) == 1) PyThread_release_lock(w->go);
#else
    (void)gen;
    PyThread_release_lock(w->go);
#endif
}

static void cm_wait(cm_worker *w, long gen) {
#if CM_ATOMICS
    long i;
    for (i = 0; CM_LOAD(&w->done_gen) != gen; i++) {
        if (i < CM_SPINS) {
            CM_PAUSE();
        } else {                                  /* a long part: let others run */
#ifdef _WIN32
            SwitchToThread();
#else
            sched_yield();
#endif
        }
    }
#else
    (void)gen;
    PyThread_acquire_lock(w->done, WAIT_LOCK);
#endif
}

/* Run task(arg, i, nparts) for i in [0, nparts): part 0 on the calling thread, the
 * others on workers; return when all are done. With fewer workers than asked for (no
 * threads to be had), the caller runs the missing parts itself: same result. */
static void cm_pool_run(cm_task task, void *arg, int nparts) {
    int i, have;
    long gen;
    if (nparts <= 1) {
        task(arg, 0, 1);
        return;
    }
    if (cm_pool_lock == NULL) {
        for (i = 0; i < nparts; i++) task(arg, i, nparts);
        return;
    }
    if (cm_pool_pid != cm_getpid()) {
        /* a forked child: the workers (and whoever held the pool) stayed in the parent;
         * start afresh (the parent's locks are left as they are) */
        PyThread_type_lock fresh = PyThread_allocate_lock();
        if (fresh == NULL) {
            for (i = 0; i < nparts; i++) task(arg, i, nparts);
            return;
        }
        cm_pool_lock = fresh;
        cm_n_workers = 0;
        cm_pool_pid = cm_getpid();
    }
    PyThread_acquire_lock(cm_pool_lock, WAIT_LOCK);
    have = cm_pool_grow(nparts - 1);
    gen = ++cm_pool_gen;
    for (i = 1; i < nparts && i - 1 < have; i++) {
        cm_worker *w = &cm_workers[i - 1];
        w->task = task;
        w->arg = arg;
        w->part = i;
        w->nparts = nparts;
        cm_start(w, gen);
    }
    task(arg, 0, nparts);
    for (i = have + 1; i < nparts; i++) task(arg, i, nparts);
    for (i = 1; i < nparts && i - 1 < have; i++) cm_wait(&cm_workers[i - 1], gen);
    PyThread_release_lock(cm_pool_lock);
}

#endif
