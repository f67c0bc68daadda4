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

/* Contiguous share [lo, hi) of n items for thread `t` of `nt` (same split on every call). */
INLINE void share(i64 n, int t, int nt, i64 *lo, i64 *hi) {
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

/* Split `n` items with cumulative work `cum[0..n]` (non-decreasing, cum[0] = 0) into `nt` ranges of
 * about equal work: bounds[0] = 0, bounds[nt] = n. */
static void balance(const i64 *cum, i64 n, int nt, i64 *bounds) {
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
