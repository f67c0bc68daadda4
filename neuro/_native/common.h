/* Shared by the two compiled modules of neuro._native: threads, function multiversioning,
 * argument parsing helpers and the extraction of nonzero inputs.
 *
 * Arrays arrive as raw addresses (torch.Tensor.data_ptr()) with their sizes; the Python side
 * (neuro/_native/__init__.py) checks dtypes, contiguity and shapes before calling, and keeps the
 * tensors alive for the duration of the call. The GIL is released while a kernel runs.
 */
#ifndef NEURO_NATIVE_COMMON_H
#define NEURO_NATIVE_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#define NUM_THREADS() omp_get_num_threads()
#else
#define THREAD_ID() 0
#define NUM_THREADS() 1
#endif

/* Hot loops get an AVX-512, an AVX2/FMA and a baseline x86-64 body; the loader picks one at run
 * time (GCC function multiversioning through an ifunc resolver, so glibc is needed). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(NEURO_NO_CLONES)
#ifdef NEURO_CLONES_V3
#define HOT __attribute__((target_clones("arch=haswell", "default")))
#else
#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=haswell", "default")))
#endif
#else
#define HOT
#endif

#define INLINE static inline __attribute__((always_inline))

/* Explicit AVX-512 / AVX2 code (the extraction of nonzero inputs), chosen at run time. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(NEURO_NO_CLONES)
#include <immintrin.h>
#define HAVE_X86_SIMD 1
#else
#define HAVE_X86_SIMD 0
#endif

/* Slack entries at the end of every buffer that the vector extraction writes (full-vector stores). */
#define EXTRACT_SLACK 16

typedef int64_t i64;
typedef int32_t i32;

/* A barrier for a team that meets once per simulated step (the recurrent engine). OpenMP's own
 * barrier spins while it waits; when another process holds one of the cores, the spinning thread
 * keeps its core while the thread it waits for queues for the other one, and every step costs a
 * scheduler time slice (measured: W2 20-50x slower on a 2-core machine with one core busy). This one
 * spins for a few microseconds and then sleeps on a futex, so a waiting thread gives its core up.
 * Elsewhere than Linux it is OpenMP's barrier. Memory: each arrival is a release, the last arrival
 * acquires them all and publishes the next phase with a release, which every waiter acquires. */
#if defined(__linux__) && defined(_OPENMP)
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
    atomic_int arrived, phase;
    int n;
} team_barrier;

#define TEAM_BARRIER_SPIN 256

INLINE void team_barrier_init(team_barrier *b, int n) {
    atomic_init(&b->arrived, 0);
    atomic_init(&b->phase, 0);
    b->n = n;
}

static inline void team_barrier_wait(team_barrier *b) {
    const int phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->phase, phase + 1, memory_order_release);
        syscall(SYS_futex, (int *)&b->phase, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        return;
    }
    for (int i = 0; i < TEAM_BARRIER_SPIN; i++) {
        if (atomic_load_explicit(&b->phase, memory_order_acquire) != phase) return;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    while (atomic_load_explicit(&b->phase, memory_order_acquire) == phase)
        syscall(SYS_futex, (int *)&b->phase, FUTEX_WAIT_PRIVATE, phase, NULL, NULL, 0);
}
#else
typedef struct {
    int n;
} team_barrier;

INLINE void team_barrier_init(team_barrier *b, int n) { b->n = n; }

static inline void team_barrier_wait(team_barrier *b) {
    (void)b;
#ifdef _OPENMP
#pragma omp barrier
#endif
}
#endif

/* Contiguous share [lo, hi) of n items for thread `t` of `nt` (same split on every call). */
INLINE void share(i64 n, int t, int nt, i64 *lo, i64 *hi) {
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

/* Split `n` items with cumulative work `cum[0..n]` (non-decreasing, cum[0] = 0) into `nt` ranges of
 * about equal work: bounds[0] = 0, bounds[nt] = n. */
static inline void balance(const i64 *cum, i64 n, int nt, i64 *bounds) {
    i64 total = cum[n];
    bounds[0] = 0;
    i64 i = 0;
    for (int t = 1; t < nt; t++) {
        i64 target = total * t / nt;
        while (i < n && cum[i] < target) i++;
        bounds[t] = i;
    }
    bounds[nt] = n;
}

static int clamp_threads(long nthreads, i64 work_items) {
    long n = nthreads < 1 ? 1 : nthreads;
#ifndef _OPENMP
    n = 1;
#endif
    if (work_items < n) n = work_items < 1 ? 1 : (long)work_items;
    return (int)n;
}

#endif /* NEURO_NATIVE_COMMON_H */
