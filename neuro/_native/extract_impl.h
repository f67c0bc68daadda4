/* Nonzero inputs of a dense batch x [R, K], by row and by column; one element type per inclusion
 * (T, NAME as in kernels_impl.h). Entries keep their order: columns ascending within a row, rows
 * ascending within a column, whatever the number of threads. NaN counts as nonzero. */

/* One row xr [K]: appends its nonzero entries at idx/val[n..], returns the new n. Three bodies:
 * AVX-512 (compress the lanes of a vector), AVX2 (mask, then the set bits), portable C
 * (branch-free: always store, advance when nonzero). Buffers need EXTRACT_SLACK spare entries. */
static i64 NAME(extract_row_c)(const T *restrict xr, i64 K, i32 *restrict idx, T *restrict val, i64 n) {
    for (i64 k = 0; k < K; k++) {
        T a = xr[k];
        idx[n] = (i32)k;
        val[n] = a;
        n += (a != 0);
    }
    return n;
}

#if HAVE_X86_SIMD
__attribute__((target("avx512f"))) static i64 NAME(extract_row_avx512)(const T *restrict xr, i64 K,
                                                                       i32 *restrict idx, T *restrict val,
                                                                       i64 n) {
#if IS_F32
    __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    for (i64 k = 0; k < K; k += 16) {
        __mmask16 live = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(live, xr + k);
        __mmask16 m = _mm512_mask_cmp_ps_mask(live, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        if (m) {
            _mm512_storeu_ps(val + n, _mm512_maskz_compress_ps(m, v));
            _mm512_storeu_si512((void *)(idx + n), _mm512_maskz_compress_epi32(m, iota));
            n += __builtin_popcount(m);
        }
        iota = _mm512_add_epi32(iota, step);
    }
#else
    __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i step = _mm512_setr_epi32(8, 8, 8, 8, 8, 8, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0);
    for (i64 k = 0; k < K; k += 8) {
        __mmask8 live = K - k >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (K - k)) - 1);
        __m512d v = _mm512_maskz_loadu_pd(live, xr + k);
        __mmask8 m = _mm512_mask_cmp_pd_mask(live, v, _mm512_setzero_pd(), _CMP_NEQ_UQ);
        if (m) {
            _mm512_storeu_pd(val + n, _mm512_maskz_compress_pd(m, v));
            _mm512_storeu_si512((void *)(idx + n), _mm512_maskz_compress_epi32((__mmask16)m, iota));
            n += __builtin_popcount(m);
        }
        iota = _mm512_add_epi32(iota, step);
    }
#endif
    return n;
}

__attribute__((target("avx2,bmi"))) static i64 NAME(extract_row_avx2)(const T *restrict xr, i64 K,
                                                                     i32 *restrict idx, T *restrict val, i64 n) {
#if IS_F32
    const int W = 8;
#else
    const int W = 4;
#endif
    i64 k = 0;
    for (; k + W <= K; k += W) {
#if IS_F32
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(xr + k), _mm256_setzero_ps(), _CMP_NEQ_UQ));
#else
        unsigned m = (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(xr + k), _mm256_setzero_pd(), _CMP_NEQ_UQ));
#endif
        while (m) {
            unsigned b = (unsigned)__builtin_ctz(m);
            idx[n] = (i32)(k + b);
            val[n] = xr[k + b];
            n++;
            m &= m - 1;
        }
    }
    for (; k < K; k++) {
        T a = xr[k];
        idx[n] = (i32)k;
        val[n] = a;
        n += (a != 0);
    }
    return n;
}
#endif

typedef i64 (*NAME(extract_fn))(const T *, i64, i32 *, T *, i64);

static NAME(extract_fn) NAME(pick_extract)(void) {
#if HAVE_X86_SIMD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return NAME(extract_row_avx512);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi")) return NAME(extract_row_avx2);
#endif
    return NAME(extract_row_c);
}

/* Rows [r0, r1) of x: row r's entries are (*idx, *val)[rowptr[r - r0] .. rowptr[r - r0 + 1]).
 * The arrays are malloc'ed here (sized for 1/8 density, grown when needed) and owned by the caller;
 * rowptr [r1 - r0 + 1] is the caller's. Returns nonzero when out of memory. */
static int NAME(extract_rows)(const T *x, i64 r0, i64 r1, i64 K, i32 **idx, T **val, i64 *rowptr) {
    static NAME(extract_fn) fn = NULL; /* a benign race: every thread stores the same pointer */
    if (!fn) fn = NAME(pick_extract)();
    const i64 worst = (r1 - r0) * K;
    i64 cap = (worst < 4096 ? worst : worst / 8 > 4096 ? worst / 8 : 4096) + K + EXTRACT_SLACK;
    i32 *ix = malloc(sizeof(i32) * (size_t)cap);
    T *vl = malloc(sizeof(T) * (size_t)cap);
    i64 n = 0;
    rowptr[0] = 0;
    for (i64 r = r0; r < r1 && ix && vl; r++) {
        if (n + K + EXTRACT_SLACK > cap) {
            cap = 2 * cap > n + K + EXTRACT_SLACK ? 2 * cap : n + K + EXTRACT_SLACK;
            i32 *ix2 = realloc(ix, sizeof(i32) * (size_t)cap);
            if (ix2) ix = ix2;
            T *vl2 = ix2 ? realloc(vl, sizeof(T) * (size_t)cap) : NULL;
            if (vl2) vl = vl2;
            if (!ix2 || !vl2) {
                free(ix);
                free(vl);
                ix = NULL;
                vl = NULL;
                break;
            }
        }
        n = fn(x + r * K, K, ix, vl, n);
        rowptr[r - r0 + 1] = n;
    }
    *idx = ix;
    *val = vl;
    if (!ix || !vl) {
        free(ix);
        free(vl);
        *idx = NULL;
        *val = NULL;
        return 1;
    }
    return 0;
}

/* Rows [lo, hi) of x as extracted by one thread. */
typedef struct {
    i64 lo, hi;
    i32 *idx;
    T *val;
    i64 *rowptr;
    i64 *count; /* [K] entries per column */
} NAME(rowseg);

INLINE i64 NAME(first_at_least)(const i32 *idx, i64 p0, i64 p1, i64 k) { /* lower bound in a sorted row */
    while (p0 < p1) {
        i64 mid = p0 + (p1 - p0) / 2;
        if (idx[mid] < k) p0 = mid + 1;
        else p1 = mid;
    }
    return p0;
}

#define COLUMN_GROUP 128 /* columns filled together: their write positions stay in L1 */

/* Fill the lists of columns [k0, k1) from every thread's rows (rows ascending within a column):
 * column groups of COLUMN_GROUP, each a pass over the rows with a cursor per row. */
static void NAME(fill_columns)(const NAME(rowseg) *seg, int nseg, i64 R, i64 k0, i64 k1, const i64 *colptr,
                               i32 *colrow, T *colval, i64 *cur) {
    i64 pos[COLUMN_GROUP];
    for (int q = 0; q < nseg; q++)
        for (i64 r = seg[q].lo; r < seg[q].hi; r++)
            cur[r] = NAME(first_at_least)(seg[q].idx, seg[q].rowptr[r - seg[q].lo], seg[q].rowptr[r - seg[q].lo + 1], k0);
    for (i64 g0 = k0; g0 < k1; g0 += COLUMN_GROUP) {
        const i64 g1 = g0 + COLUMN_GROUP < k1 ? g0 + COLUMN_GROUP : k1;
        for (i64 k = g0; k < g1; k++) pos[k - g0] = colptr[k];
        for (int q = 0; q < nseg; q++) {
            const NAME(rowseg) *s = seg + q;
            for (i64 r = s->lo; r < s->hi; r++) {
                i64 p = cur[r];
                const i64 pe = s->rowptr[r - s->lo + 1];
                for (; p < pe && s->idx[p] < g1; p++) {
                    const i64 w = pos[s->idx[p] - g0]++;
                    colrow[w] = (i32)r;
                    colval[w] = s->val[p];
                }
                cur[r] = p;
            }
        }
    }
}

/* Column lists of x: column k's entries are (colrow, colval)[colptr[k] .. colptr[k + 1]), rows
 * ascending. Threads extract row ranges, then fill column ranges of about equal size. Arrays are
 * malloc'ed here and owned by the caller. Returns nonzero when out of memory. */
__attribute__((unused)) static int NAME(build_columns)(const T *x, i64 R, i64 K, int nt, i64 **colptr_out,
                                                       i32 **colrow_out, T **colval_out) {
    int fail = 0, nseg = nt;
    NAME(rowseg) *seg = calloc((size_t)nt, sizeof(NAME(rowseg)));
    i64 *colptr = malloc(sizeof(i64) * (size_t)(K + 1)), *bounds = malloc(sizeof(i64) * (size_t)(nt + 1));
    i32 *colrow = NULL;
    T *colval = NULL;
    if (!seg || !colptr || !bounds) {
        free(seg);
        free(colptr);
        free(bounds);
        return 1;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = THREAD_ID(), n_t = NUM_THREADS();
        NAME(rowseg) *s = seg + t;
        share(R, t, n_t, &s->lo, &s->hi);
        const i64 nr = s->hi - s->lo;
        s->rowptr = malloc(sizeof(i64) * (size_t)(nr + 1));
        s->count = calloc((size_t)K + 1, sizeof(i64));
        if (s->rowptr && s->count && !NAME(extract_rows)(x, s->lo, s->hi, K, &s->idx, &s->val, s->rowptr)) {
            for (i64 p = 0; p < s->rowptr[nr]; p++) s->count[s->idx[p]]++;
        } else {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp barrier
#pragma omp single
        {
            nseg = n_t;
            if (!fail) {
                i64 total = 0;
                for (i64 k = 0; k < K; k++) {
                    colptr[k] = total;
                    for (int q = 0; q < n_t; q++) total += seg[q].count[k];
                }
                colptr[K] = total;
                colrow = malloc(sizeof(i32) * (size_t)(total + 1));
                colval = malloc(sizeof(T) * (size_t)(total + 1));
                if (!colrow || !colval) fail = 1;
                else balance(colptr, K, n_t, bounds);
            }
        } /* implicit barrier */
        if (!fail) {
            i64 *cur = malloc(sizeof(i64) * (size_t)(R + 1));
            if (cur) {
                NAME(fill_columns)(seg, n_t, R, bounds[t], bounds[t + 1], colptr, colrow, colval, cur);
            } else {
#pragma omp atomic write
                fail = 1;
            }
            free(cur);
        }
    }
    for (int q = 0; q < nseg && q < nt; q++) {
        free(seg[q].idx);
        free(seg[q].val);
        free(seg[q].rowptr);
        free(seg[q].count);
    }
    free(seg);
    free(bounds);
    if (fail) {
        free(colptr);
        free(colrow);
        free(colval);
        return 1;
    }
    *colptr_out = colptr;
    *colrow_out = colrow;
    *colval_out = colval;
    return 0;
}
