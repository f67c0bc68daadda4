/* Dense-row event kernels for one element type; included by kernels.c once per type with
 *   T     element type (float or double)
 *   V     GCC vector of T (64 bytes), VL its lanes
 *   NAME  name mangler
 *
 * Both products are "for each output row, sum the dense rows its nonzero inputs select":
 *
 *   rows_matmul:      y[r, :] = sum over k with x[r, k] != 0 of x[r, k] wt[k, :]   (lists by row)
 *   outer_accumulate: g[k, :] = sum over r with x[r, k] != 0 of x[r, k] gy[r, :]  (lists by column)
 *
 * The columns go in blocks of up to MAX_NV vectors whose sums stay in registers. Before a block,
 * the threads copy that column block of the dense operand, in chunks of rows that fit the L2
 * cache, into a contiguous buffer (zero-padded to whole vectors): the rows the inputs select then
 * lie next to each other instead of one page apart, which is what keeps the TLB and the caches
 * effective (3-5x faster than reading in place at the W1 shapes). When the inputs select each row
 * of the dense operand only a few times, it is read in place instead (no copy to amortise).
 * Narrow outputs (N <= SMALL_NV vectors) of outer_accumulate skip the column lists altogether.
 *
 * Each output element is a sum over its nonzero inputs in ascending order (k for y, r for g), so a
 * result does not depend on the number of threads. Products may be fused with the sum (FMA): the
 * results equal the dense products to float tolerance.
 */

#define MAX_NV 6

/* out[0 .. w) (+)= sum over the pairs p = *pp, ... while idx[p] < end of val[p] * B[(idx[p] - base) * ld ..],
 * B holding at least nv whole vectors per row; nv is a compile-time constant at each call site,
 * so the sums stay in registers. `first`: start from init (or 0 when NULL) and always store, else
 * add to out. */
INLINE void NAME(row_sum)(const int nv, const i32 *restrict idx, const T *restrict val, i64 *pp, i64 pe,
                          i64 base, i64 end, const T *restrict B, i64 ld, T *restrict out, i64 w, int first,
                          const T *restrict init) {
    i64 p = *pp;
    if (!first && (p >= pe || idx[p] >= end)) return;
    V acc[MAX_NV];
    T tmp[MAX_NV * VL];
    if (first && init) { /* the bias block, zero-padded */
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, init, sizeof(T) * (size_t)w);
        memcpy(acc, tmp, sizeof(V) * (size_t)nv);
    } else if (first) {
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[v] = (V){0};
    } else if (w == nv * VL) {
        memcpy(acc, out, sizeof(V) * (size_t)nv);
    } else {
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, out, sizeof(T) * (size_t)w);
        memcpy(acc, tmp, sizeof(V) * (size_t)nv);
    }
    for (; p < pe && idx[p] < end; p++) {
        const T a = val[p];
        const T *b = B + (i64)(idx[p] - base) * ld;
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            V bv;
            memcpy(&bv, b + v * VL, sizeof bv);
            acc[v] += a * bv;
        }
    }
    *pp = p;
    if (w == nv * VL) {
        memcpy(out, acc, sizeof(V) * (size_t)nv);
    } else {
        memcpy(tmp, acc, sizeof(V) * (size_t)nv);
        memcpy(out, tmp, sizeof(T) * (size_t)w);
    }
}

/* For items i in [i0, i1): row_sum of the pairs cur[i - i0] .. that fall in rows [base, end) of M. */
HOT static void NAME(chunk_rows)(int nv, i64 i0, i64 i1, i64 *cur, const i64 *ptr, i64 off, const i32 *idx,
                                 const T *val, i64 base, i64 end, const T *B, i64 ld, T *out, i64 N, i64 j0, i64 w,
                                 int first, const T *init) {
    switch (nv) {
#define CASE(n)                                                                                          \
    case n:                                                                                              \
        for (i64 i = i0; i < i1; i++)                                                                    \
            NAME(row_sum)(n, idx, val, cur + (i - i0), ptr[i - off + 1], base, end, B, ld, out + i * N + j0, w, \
                          first, init);                                                                  \
        break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
    }
}

/* Rows [r0, r1) of the column block j0 .. j0 + w of M (element (r, j) at M[r rs + j cs]) into buf
 * (rows of nv VL, zero-padded), buf's row 0 being M's row base. A transposed M (rs = 1) is read
 * along its contiguous rows. */
static void NAME(copy_block)(const T *M, i64 rs, i64 cs, i64 j0, i64 w, int nv, i64 r0, i64 r1, i64 base,
                             T *buf) {
    const i64 ld = (i64)nv * VL;
    if (cs == 1 && w == ld) { /* whole vectors; the rows ahead are prefetched (each is on its own page) */
        for (i64 r = r0; r < r1; r++) {
            const T *src = M + r * rs + j0;
            if (r + 8 < r1)
                for (int v = 0; v < nv; v++) __builtin_prefetch(src + 8 * rs + v * VL);
            V *dst = (V *)(buf + (r - base) * ld);
            for (int v = 0; v < nv; v++) memcpy(dst + v, src + v * VL, sizeof(V));
        }
        return;
    }
    if (cs == 1) {
        for (i64 r = r0; r < r1; r++) memcpy(buf + (r - base) * ld, M + r * rs + j0, sizeof(T) * (size_t)w);
    } else if (rs == 1) {
        for (i64 j = 0; j < w; j++) {
            const T *src = M + (j0 + j) * cs;
            for (i64 r = r0; r < r1; r++) buf[(r - base) * ld + j] = src[r];
        }
    } else {
        for (i64 r = r0; r < r1; r++)
            for (i64 j = 0; j < w; j++) buf[(r - base) * ld + j] = M[r * rs + (j0 + j) * cs];
    }
    for (i64 r = r0; r < r1; r++)
        for (i64 j = w; j < ld; j++) buf[(r - base) * ld + j] = 0;
}

/* Rows of M per chunk: a chunk of one column block stays within about 512 KiB (in L2). */
static i64 NAME(chunk_rows_count)(void) { return (i64)(512 * 1024) / (MAX_NV * (i64)sizeof(V)); }

/* The loop shared by both products, inside a parallel region (every thread calls it). For each
 * column block (MAX_NV vectors) and each chunk of rows of the dense operand M [nm, N], the threads
 * copy that piece of M into one of two buffers (contiguous, so the rows the inputs select are not
 * a page apart), wait for each other, then each adds the chunk's pairs to its items [i0, i1) of out.
 * Items start from init (or 0) at the first chunk and continue from out after it, so every sum
 * keeps its ascending order. Two buffers: the next copy never overwrites one still being read.
 * `inplace` (the same in every thread): few pairs per row of M, so whole blocks of a row-major M
 * are read where they are instead of copied. */
static void NAME(blocks)(const T *M, i64 rs, i64 cs, i64 nm, i64 N, T *const *buf, int t, int n_t, i64 i0,
                         i64 i1, const i64 *ptr, i64 off, const i32 *idx, const T *val, T *out, i64 *cur,
                         const T *init, int inplace) {
    const i64 bw = MAX_NV * VL, cr = NAME(chunk_rows_count)();
    int b = 0;
    for (i64 j0 = 0; j0 < N; j0 += bw) {
        const i64 w = N - j0 < bw ? N - j0 : bw;
        const int nv = (int)((w + VL - 1) / VL);
        for (i64 i = i0; i < i1; i++) cur[i - i0] = ptr[i - off];
        if (inplace && cs == 1 && w == (i64)nv * VL) {
            NAME(chunk_rows)(nv, i0, i1, cur, ptr, off, idx, val, 0, nm, M + j0, rs, out, N, j0, w, 1,
                             init ? init + j0 : NULL);
            continue;
        }
        for (i64 c0 = 0; c0 < nm || c0 == 0; c0 += cr, b ^= 1) {
            const i64 c1 = c0 + cr < nm ? c0 + cr : nm;
            i64 m0, m1;
            share(c1 - c0, t, n_t, &m0, &m1);
            NAME(copy_block)(M, rs, cs, j0, w, nv, c0 + m0, c0 + m1, c0, buf[b]);
#pragma omp barrier
            NAME(chunk_rows)(nv, i0, i1, cur, ptr, off, idx, val, c0, c1, buf[b], (i64)nv * VL, out, N, j0, w,
                             c0 == 0, init ? init + j0 : NULL);
        }
    }
}

/* Read M in place when the inputs select its rows fewer than 4 times each on average. */
#define INPLACE(pairs, rows) ((pairs) < 4 * (rows))

static int NAME(alloc_buffers)(T **buf, i64 rows) {
    if (rows > NAME(chunk_rows_count)()) rows = NAME(chunk_rows_count)();
    size_t bytes = sizeof(T) * (size_t)(rows * MAX_NV * VL) + 64;
    bytes = (bytes + 63) & ~(size_t)63;
    buf[0] = aligned_alloc(64, bytes);
    buf[1] = aligned_alloc(64, bytes);
    return !buf[0] || !buf[1];
}

/* y [R, N] = bias + sum over nonzero x[r, k] of x[r, k] wt[k, :] (wt[k, j] at wt[k rs + j cs], bias
 * [N] or NULL); threads own row ranges. */
static int NAME(rows_matmul)(const T *x, const T *wt, i64 rs, i64 cs, const T *bias, T *y, i64 R, i64 K, i64 N,
                             int nt) {
    i64 pairs = 0;
    T *buf[2];
    int fail = NAME(alloc_buffers)(buf, K);
    if (!fail) {
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            const int t = THREAD_ID(), n_t = NUM_THREADS();
            i64 lo, hi;
            share(R, t, n_t, &lo, &hi);
            i32 *idx = NULL;
            T *val = NULL;
            i64 *rowptr = malloc(sizeof(i64) * (size_t)(hi - lo + 1));
            i64 *cur = malloc(sizeof(i64) * (size_t)(hi - lo + 1));
            int ok = rowptr && cur && !NAME(extract_rows)(x, lo, hi, K, &idx, &val, rowptr);
            if (!ok) {
#pragma omp atomic write
                fail = 1;
                lo = hi; /* still take part in the barriers */
            }
#pragma omp atomic update
            pairs += ok ? rowptr[hi - lo] : 0;
#pragma omp barrier
            NAME(blocks)(wt, rs, cs, K, N, buf, t, n_t, lo, hi, rowptr, lo, idx, val, y, cur, bias, INPLACE(pairs, K));
            free(cur);
            free(idx);
            free(val);
            free(rowptr);
        }
    }
    free(buf[0]);
    free(buf[1]);
    return fail;
}

/* Narrow outputs (N <= SMALL_NV vectors): no column lists. Each row's entries are added to a local
 * copy of the thread's rows [k0, k1) of g, row after row: g[k] += x[r, k] gy[r], the same sums in the
 * same order as the column-list path. */
#define SMALL_NV 2


INLINE void NAME(outer_small_rows)(const int nv, const NAME(rowseg) *seg, int nseg, const T *gy, i64 N, i64 k0,
                                   i64 k1, T *restrict gl) {
    for (int q = 0; q < nseg; q++) {
        const NAME(rowseg) *s = seg + q;
        for (i64 r = s->lo; r < s->hi; r++) {
            i64 p0 = s->rowptr[r - s->lo], p1 = s->rowptr[r - s->lo + 1];
            p0 = NAME(first_at_least)(s->idx, p0, p1, k0);
            p1 = NAME(first_at_least)(s->idx, p0, p1, k1);
            if (p0 == p1) continue;
            T tmp[SMALL_NV * VL] __attribute__((aligned(64))) = {0};
            memcpy(tmp, gy + r * N, sizeof(T) * (size_t)N);
            V b[SMALL_NV];
            memcpy(b, tmp, sizeof(V) * (size_t)nv);
            for (i64 p = p0; p < p1; p++) {
                const T a = s->val[p];
                V *row = (V *)(gl + (i64)(s->idx[p] - k0) * nv * VL);
#pragma GCC unroll 4
                for (int v = 0; v < nv; v++) row[v] += a * b[v];
            }
        }
    }
}

HOT static void NAME(outer_small)(int nv, const NAME(rowseg) *seg, int nseg, const T *gy, i64 N, i64 k0, i64 k1,
                                  T *gl) {
    if (nv == 1) NAME(outer_small_rows)(1, seg, nseg, gy, N, k0, k1, gl);
    else NAME(outer_small_rows)(SMALL_NV, seg, nseg, gy, N, k0, k1, gl);
}

static int NAME(outer_accumulate_narrow)(const T *x, const T *gy, T *g, i64 R, i64 K, i64 N, int nt) {
    NAME(rowseg) *seg = calloc((size_t)nt, sizeof(NAME(rowseg)));
    const int nv = (int)((N + VL - 1) / VL);
    int fail = !seg, nseg = nt;
    if (fail) return 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = THREAD_ID(), n_t = NUM_THREADS();
        NAME(rowseg) *s = seg + t;
        share(R, t, n_t, &s->lo, &s->hi);
        const i64 nr = s->hi - s->lo;
        s->rowptr = malloc(sizeof(i64) * (size_t)(nr + 1));
        if (!s->rowptr || NAME(extract_rows)(x, s->lo, s->hi, K, &s->idx, &s->val, s->rowptr)) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp barrier
        if (t == 0) nseg = n_t;
        i64 k0, k1;
        share(K, t, n_t, &k0, &k1);
        T *gl = aligned_alloc(64, (sizeof(T) * (size_t)((k1 - k0) * nv * VL) + 127) & ~(size_t)63);
        if (!gl) {
#pragma omp atomic write
            fail = 1;
        }
        if (!fail && gl) {
            memset(gl, 0, sizeof(T) * (size_t)((k1 - k0) * nv * VL));
            NAME(outer_small)(nv, seg, n_t, gy, N, k0, k1, gl);
            for (i64 k = k0; k < k1; k++) memcpy(g + k * N, gl + (k - k0) * nv * VL, sizeof(T) * (size_t)N);
        }
        free(gl);
    }
    for (int q = 0; q < nseg && q < nt; q++) {
        free(seg[q].idx);
        free(seg[q].val);
        free(seg[q].rowptr);
    }
    free(seg);
    return fail;
}

/* g [K, N] = sum over r with x[r, k] != 0 of x[r, k] gy[r, :] (rows ascending); threads own ranges
 * of k of about equal work (no atomics). */
static int NAME(outer_accumulate)(const T *x, const T *gy, T *g, i64 R, i64 K, i64 N, int nt) {
    if (N <= SMALL_NV * VL) return NAME(outer_accumulate_narrow)(x, gy, g, R, K, N, nt);
    T *buf[2] = {NULL, NULL};
    i64 *colptr = NULL, *bounds = malloc(sizeof(i64) * (size_t)(nt + 1));
    i32 *colrow = NULL;
    T *colval = NULL;
    int fail = !bounds || NAME(alloc_buffers)(buf, R);
    if (!fail) fail = NAME(build_columns)(x, R, K, nt, &colptr, &colrow, &colval);
    if (!fail) {
        balance(colptr, K, nt, bounds);
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            const int t = THREAD_ID(), n_t = NUM_THREADS();
            i64 k0 = bounds[t], k1 = bounds[t + 1];
            if (n_t != nt) { /* fewer threads than planned: thread 0 takes every input */
                k0 = 0;
                k1 = t == 0 ? K : 0;
            }
            i64 *cur = malloc(sizeof(i64) * (size_t)(k1 - k0 + 1));
            if (!cur) {
#pragma omp atomic write
                fail = 1;
                k1 = k0;
            }
            NAME(blocks)(gy, N, 1, R, N, buf, t, n_t, k0, k1, colptr, 0, colrow, colval, g, cur, NULL,
                         INPLACE(colptr[K], R));
            free(cur);
        }
    }
    free(buf[0]);
    free(buf[1]);
    free(bounds);
    free(colptr);
    free(colrow);
    free(colval);
    return fail;
}

/* Activity of x [T, R, F] for operation counting (neuro.energy.rules.Activity), one pass: per step t,
 * cols[t, f] = #{r : x[t, r, f] != 0} (NaN counts), amax[t] = max |x[t]|, and same[t] = 1 when every
 * nonzero |x[t]| equals amax[t] (a spike alphabet {-c, 0, c}; any NaN gives 0). Threads own steps. */
HOT static void NAME(column_activity_steps)(const T *restrict x, i64 t0, i64 t1, i64 R, i64 F, i64 *restrict cols,
                                            double *restrict amax, unsigned char *restrict same) {
    /* on the bit patterns of |x| (sign bit cleared), which order like the values: the loop is integer
     * compares, adds and min/max of one width, so it vectorises; counts in 32 bits per step (R < 2^31) */
    const U mag = ~((U)1 << (8 * sizeof(U) - 1)), inf_bits = IS_F32 ? (U)0x7f800000u : (U)0x7ff0000000000000ull;
    U *cnt = malloc(sizeof(U) * (size_t)(F > 0 ? F : 1));
    if (!cnt) return;
    for (i64 t = t0; t < t1; t++) {
        for (i64 f = 0; f < F; f++) cnt[f] = 0;
        U hi = 0, lo = ~(U)0;
        for (i64 r = 0; r < R; r++) {
            const U *restrict row = (const U *)(x + (t * R + r) * F);
            for (i64 f = 0; f < F; f++) {
                const U b = row[f] & mag;
                const U nz = (U)(b != 0);
                cnt[f] += nz;
                hi = b > hi ? b : hi;
                const U bl = b | (nz - 1);          /* zero -> all ones, so it never wins the minimum */
                lo = bl < lo ? bl : lo;
            }
        }
        i64 *c = cols + t * F;
        for (i64 f = 0; f < F; f++) c[f] = (i64)cnt[f];
        T a;
        memcpy(&a, &hi, sizeof a);
        amax[t] = (double)a;
        same[t] = hi <= inf_bits && (hi == 0 || lo == hi);   /* hi > inf_bits: a NaN */
    }
    free(cnt);
}

static void NAME(column_activity)(const T *x, i64 T_, i64 R, i64 F, i64 *cols, double *amax, unsigned char *same,
                                  int nt) {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(T_, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        NAME(column_activity_steps)(x, lo, hi, R, F, cols, amax, same);
    }
}

/* Number of nonzero entries of x [n] (NaN counts), threads over contiguous ranges. */
HOT static i64 NAME(count_range)(const T *restrict x, i64 lo, i64 hi) {
    i64 c = 0;
    for (i64 i = lo; i < hi; i++) c += x[i] != 0;
    return c;
}

static i64 NAME(count_nonzero)(const T *x, i64 n, int nt) {
    i64 total = 0;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(+ : total)
    {
        i64 lo, hi;
        share(n, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        total += NAME(count_range)(x, lo, hi);
    }
    return total;
}
