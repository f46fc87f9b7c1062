/* Do the two vCPUs behave as two cores or as SMT siblings? Time a throughput-bound AVX2
 * loop (12 independent vector add/mul chains: saturates the FP ports of one core) and a
 * latency-bound scalar loop (one dependent chain: leaves the ports mostly idle), on one
 * thread, then on two threads at once. Two cores: both ~2x. SMT siblings: the latency
 * loop ~2x, the throughput loop ~1x. It tells whether the threads target of row 12c2
 * can be reached on a machine at all; x86-64 with AVX2 only.
 *
 *   cc -O2 -o two_cores benchmarks/two_cores.c -lpthread && ./two_cores
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static volatile double sink;
__attribute__((target("avx2"))) static void *throughput(void *arg) {
    long n = (long)arg;
    __m256d a[12], m = _mm256_set1_pd(0.999999), c = _mm256_set1_pd(1e-9);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_pd(1.0 + i);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_add_pd(_mm256_mul_pd(a[i], m), c);
    double s = 0; for (int i = 0; i < 12; i++) s += a[i][0];
    sink = s; return NULL;
}
static void *latency(void *arg) {
    long n = (long)arg; double x = 1.0;
    for (long k = 0; k < n; k++) x = x * 0.999999 + 1e-9;
    sink = x; return NULL;
}
static double run(void *(*f)(void *), long n, int threads) {
    pthread_t t; double t0 = now();
    if (threads == 2) pthread_create(&t, NULL, f, (void *)n);
    f((void *)n);
    if (threads == 2) pthread_join(t, NULL);
    return now() - t0;
}
int main(void) {
    long nt = 40000000, nl = 400000000;
    for (int rep = 0; rep < 3; rep++) {
        double t1 = run(throughput, nt, 1), t2 = run(throughput, nt, 2);
        double l1 = run(latency, nl, 1), l2 = run(latency, nl, 2);
        printf("throughput-bound AVX2: 1 thread %.3f s, 2 threads (2x the work) %.3f s -> %.2fx | "
               "latency-bound scalar: %.3f s, %.3f s -> %.2fx\n", t1, t2, 2 * t1 / t2, l1, l2, 2 * l1 / l2);
    }
    return 0;
}
