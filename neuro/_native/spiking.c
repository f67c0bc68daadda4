/* neuro._native._spiking: fused time-axis passes of the converted spiking Transformer
 * (neuro.converters.spiking_ops), float32 and float64, on [T, N] arrays (time axis leading).
 *
 * Column passes, all called as name(dt, T, N, x, g, o, o2, nthreads) (dt: x's dtype, 0 float32, 1 float64;
 * unused arguments 0):
 *   running_sum         o[t] = sum_{s <= t} x[s]                          (o float64)
 *   running_sum_narrow  o = float32(running_sum(x)) (sums in float64, one rounding)
 *   grid_diff           o[t] = g rint(x[t] / g), o2[t] = o[t] - o[t-1]   (float64)
 *   grid_diff32         the same in float32, returning whether every |x / g| rounds below 2^23 (so F and
 *                       its differences are float32 numbers)
 *   step_diff           o[t] = x[t] - x[t-1], o[0] = x[0]                (in x's dtype; exact when the
 *                       differences are numbers of that dtype)
 *   window_sum          o = sum_t x[t]                                     (x float32, o float64)
 *   add_wide            o = o2 + x, T = 1                                  (o2, o float64)
 * Other passes:
 *   add_bias32(R, N, y, bias)          y += bias when every sum (in float64) is a float32 number (y float32
 *                                      [R, N], bias float64 [N]); returns whether it was
 *   widen_bias(T, R, N, y, bias, out)  out[t, r] = y[t, r] (+ bias at t = 0)   (y float32, out float64)
 *   scan_train(T, R, K, x, bar)        bar = float32(running_sum(x)) and the bounds of SpikingMatMul: the
 *                                      smallest nonzero |x|, all powers of two, max sum_t |x|, max row
 *                                      sum (over K) of sum_t |x| (x float32 [T, R, K])
 *   encode(T, N, C, a, step, smode, s, ors, cnt)  s = bit_planes of k = sign(a) min(floor(|a|/step + 1/2),
 *                                      2^T - 1), ors[c] = OR of |k| over channel c (the last axis, C wide),
 *                                      cnt[t] = spikes at step t; step per element, per channel or one
 *                                      (smode 0, 1, 2)
 *   spike_matmul(R, K, N, s, wt, y)    y = s @ wt from the weight rows of the nonzero s only (float32)
 *
 * Compiled with -ffp-contract=off: every operation is one IEEE operation on exactly representable
 * dyadic values, so the results equal the PyTorch expressions they replace bit for bit (the rounding
 * onto the grid runs in the input's precision, as the PyTorch code does: x * (1/g), round half to
 * even, * g). Each thread takes a contiguous share of the N columns and walks all T steps of a block
 * of them, so the running sums stay in cache.
 */
#include "common.h"

#define BLOCK 2048

/* Hot inner loops over one block [b, e) of columns and all T steps (vectorised per clone), each written
 * once for float32 and float64 inputs (TX) and outputs (TO); RINT and FABS work in their argument's
 * precision, as PyTorch does in the input's dtype. */
#define RINT(v) _Generic((v), float: __builtin_rintf(v), default: __builtin_rint(v))
#define FABS(v) _Generic((v), float: __builtin_fabsf(v), default: __builtin_fabs(v))

/* r[t] = sum_{s <= t} x[s], summed in float64 and rounded once to TO */
#define RUNNING_SUM(name, TX, TO)                                                                    \
    HOT static void name(const TX *restrict x, TO *restrict r, i64 T, i64 N, i64 b, i64 e) {         \
        double acc[BLOCK];                                                                           \
        for (i64 i = b; i < e; i++) r[i] = (TO)(acc[i - b] = (double)x[i]);                          \
        for (i64 t = 1; t < T; t++) {                                                                \
            const TX *xt = x + t * N;                                                                \
            TO *rt = r + t * N;                                                                      \
            for (i64 i = b; i < e; i++) rt[i] = (TO)(acc[i - b] += (double)xt[i]);                   \
        }                                                                                            \
    }
RUNNING_SUM(rsum_f32, float, double)
RUNNING_SUM(rsum_f64, double, double)
RUNNING_SUM(rsum_narrow_f32, float, float)
RUNNING_SUM(rsum_narrow_f64, double, float)

/* y[t] = f[t] - f[t-1], y[0] = f[0] (f, y of the same type) */
#define STEP_DIFF(name, TF)                                                                          \
    HOT static void name(const TF *restrict f, TF *restrict y, i64 T, i64 N, i64 b, i64 e) {         \
        for (i64 i = b; i < e; i++) y[i] = f[i];                                                     \
        for (i64 t = 1; t < T; t++) {                                                                \
            const TF *ft = f + t * N;                                                                \
            TF *yt = y + t * N;                                                                      \
            for (i64 i = b; i < e; i++) yt[i] = ft[i] - ft[i - N];                                   \
        }                                                                                            \
    }
STEP_DIFF(sdiff, double)
STEP_DIFF(sdiff32, float)

/* F = g q with q = rint(x / g) in x's precision (x * (1/g), ties to even), widened or rounded to TO, and
 * its step differences; *big |= 1 when some |q| >= 2^23 (then, for float32 outputs, F or a difference of
 * two F might not be a float32 number) */
#define GRID_DIFF(name, TX, TO)                                                                      \
    HOT static void name(const TX *restrict x, TX g, TX ig, TO *restrict f, TO *restrict y, i64 T, i64 N, \
                         i64 b, i64 e, uint32_t *big) {                                              \
        uint32_t bg = 0;                                                                             \
        for (i64 t = 0; t < T; t++) {                                                                \
            const TX *xt = x + t * N;                                                                \
            TO *ft = f + t * N;                                                                      \
            for (i64 i = b; i < e; i++) {                                                            \
                const TX q = RINT(xt[i] * ig);                                                       \
                bg |= (uint32_t)!(FABS(q) < (TX)8388608.0);                                          \
                ft[i] = (TO)(q * g);                                                                 \
            }                                                                                        \
        }                                                                                            \
        sdiff_##TO(f, y, T, N, b, e);                                                                \
        *big |= bg;                                                                                  \
    }
#define sdiff_double sdiff
#define sdiff_float sdiff32
GRID_DIFF(gdiff_f32, float, double)
GRID_DIFF(gdiff_f64, double, double)
GRID_DIFF(gdiff32_f32, float, float)
GRID_DIFF(gdiff32_f64, double, float)

/* codes k = sign(a) min(floor(|a| / s + 1/2), 2^T - 1) and their MSB-first planes (as quantize_codes
 * and bit_planes in spiking_ops, operation for operation); ors[c] |= |k| over the elements of channel
 * c = i mod C (bit j set: plane T-1-j has a spike in channel c). The step of element i is step[i]
 * (smode 0), step[c] (smode 1: one per channel) or step[0] (smode 2). */
HOT static void encode(const double *restrict a, const double *restrict step, int smode, float *restrict s, i64 T,
                       i64 N, i64 b, i64 e, i64 C, int32_t *restrict ors, i64 *restrict cnt) {
    int32_t mag[BLOCK];
    float sg[BLOCK];
    double stp[BLOCK];
    const double top = (double)((1 << T) - 1);
    const i64 n = e - b;
    if (smode == 0) {
        for (i64 i = 0; i < n; i++) stp[i] = step[b + i];
    } else if (smode == 2) {
        for (i64 i = 0; i < n; i++) stp[i] = step[0];
    } else {
        for (i64 i = 0, m; i < n; i += m) {                              /* runs of consecutive channels */
            const i64 c0 = (b + i) % C;
            m = C - c0 < n - i ? C - c0 : n - i;
            for (i64 j = 0; j < m; j++) stp[i + j] = step[c0 + j];
        }
    }
    for (i64 i = 0; i < n; i++) {
        const double x = a[b + i], q = __builtin_floor(__builtin_fabs(x) / stp[i] + 0.5);
        mag[i] = (int32_t)(q > top ? top : q);
        const float sf = (float)stp[i];
        sg[i] = x < 0 ? -sf : (x > 0 ? sf : 0.0f);
    }
    for (i64 i = 0, m; i < n; i += m) {
        const i64 c0 = (b + i) % C;
        m = C - c0 < n - i ? C - c0 : n - i;
        for (i64 j = 0; j < m; j++) ors[c0 + j] |= mag[i + j];
    }
    for (i64 t = 0; t < T; t++) {
        const int k = (int)(T - 1 - t);
        const float scale = (float)(1 << k);
        float *st = s + t * N + b;
        i64 spikes = 0;
        for (i64 i = 0; i < n; i++) {
            const int32_t bit = (mag[i] >> k) & 1;
            st[i] = (float)bit * (scale * sg[i]);
            spikes += bit;
        }
        cnt[t] += spikes;
    }
}

HOT static void wsum_f32(const float *restrict x, double *restrict w, i64 T, i64 N, i64 b, i64 e) {
    for (i64 i = b; i < e; i++) w[i] = (double)x[i];
    for (i64 t = 1; t < T; t++) {
        const float *xt = x + t * N;
        for (i64 i = b; i < e; i++) w[i] += (double)xt[i];
    }
}

/* One pass over a spike train [T, R, K] (float32): its running sums (float64 sums, rounded to float32)
 * and the magnitudes that bound its products: sig = sum_t |x_t| per element, the largest sig, the
 * largest row sum of sig, the smallest nonzero |x| (as bits minus one) and whether every nonzero |x|
 * is a normal power of two. Rows [r0, r1); acc and sig hold (r1 - r0) K entries. */
HOT static void scan_rows(const float *restrict x, float *restrict bar, i64 T, i64 N, i64 K, i64 r0, i64 r1,
                          double *restrict acc, double *restrict sig, uint32_t *minnz, uint32_t *bad, double *top,
                          double *rowmax) {
    const i64 b = r0 * K, e = r1 * K;
    uint32_t mn = *minnz, bd = 0;
    for (i64 i = 0; i < e - b; i++) acc[i] = sig[i] = 0.0;
    for (i64 t = 0; t < T; t++) {
        const float *xt = x + t * N + b;
        float *bt = bar + t * N + b;
        for (i64 i = 0; i < e - b; i++) {
            const float v = xt[i];
            uint32_t u;
            memcpy(&u, &v, 4);
            u &= 0x7FFFFFFFu;
            const uint32_t ex = u >> 23, m1 = u - 1u;
            mn = m1 < mn ? m1 : mn;
            bd |= (uint32_t)(u != 0) & (uint32_t)(((u & 0x7FFFFFu) != 0) | (ex == 0) | (ex == 255));
            acc[i] += (double)v;
            bt[i] = (float)acc[i];
            sig[i] += (double)__builtin_fabsf(v);
        }
    }
    double tp = *top, rm = *rowmax;
    for (i64 r = 0; r < r1 - r0; r++) {
        double rs = 0.0;
        for (i64 k = 0; k < K; k++) {
            const double v = sig[r * K + k];
            rs += v;
            tp = v > tp ? v : tp;
        }
        rm = rs > rm ? rs : rm;
    }
    *minnz = mn;
    *bad |= bd;
    *top = tp;
    *rowmax = rm;
}

HOT static void widen(const float *restrict y, const double *restrict bias, double *restrict o, i64 N) {
    if (bias)
        for (i64 j = 0; j < N; j++) o[j] = (double)y[j] + bias[j];
    else
        for (i64 j = 0; j < N; j++) o[j] = (double)y[j];
}

/* whether some (double)y + bias is not a float32 number (or is NaN), over y [R, N] */
HOT static uint32_t bias_check32(const float *restrict y, const double *restrict bias, i64 R, i64 N) {
    uint32_t bad = 0;
    for (i64 r = 0; r < R; r++)
        for (i64 j = 0; j < N; j++) {
            const double v = (double)y[r * N + j] + bias[j];
            bad |= (uint32_t)!((double)(float)v == v);
        }
    return bad;
}

HOT static void bias_add32(float *restrict y, const double *restrict bias, i64 R, i64 N) {
    for (i64 r = 0; r < R; r++)
        for (i64 j = 0; j < N; j++) y[r * N + j] = (float)((double)y[r * N + j] + bias[j]);
}

/* o = x + a, a widened exactly to float64 */
#define ADD_WIDE(name, TA)                                                                           \
    HOT static void name(const TA *restrict a, const double *restrict x, double *restrict o, i64 lo, i64 hi) { \
        for (i64 i = lo; i < hi; i++) o[i] = x[i] + (double)a[i];                                    \
    }
ADD_WIDE(add_wide_f32, float)
ADD_WIDE(add_wide_f64, double)

/* A column pass: its arrays (time axis leading, [T, N]) and scalars; `o` and `o2` are written. */
typedef struct {
    int dt;         /* dtype of x: 0 float32, 1 float64 */
    i64 T, N;
    const void *x;  /* the input train */
    double g;       /* the grid of grid_diff / grid_diff32 */
    void *o, *o2;   /* outputs (add_wide reads o2: the float64 addend) */
} pass_t;

/* The work on columns [b, e) of a pass, all T steps; returns flags (OR-ed over all blocks). */
typedef uint32_t (*block_fn)(const pass_t *p, i64 b, i64 e);

/* f32(x as float *, ...) or f64(x as double *, ...) by the pass's dtype */
#define BY_DTYPE(p, f32, f64, ...) \
    ((p)->dt == 0 ? f32((const float *)(p)->x, __VA_ARGS__) : f64((const double *)(p)->x, __VA_ARGS__))

static uint32_t blk_running_sum(const pass_t *p, i64 b, i64 e) {
    BY_DTYPE(p, rsum_f32, rsum_f64, p->o, p->T, p->N, b, e);
    return 0;
}

static uint32_t blk_running_sum_narrow(const pass_t *p, i64 b, i64 e) {
    BY_DTYPE(p, rsum_narrow_f32, rsum_narrow_f64, p->o, p->T, p->N, b, e);
    return 0;
}

static uint32_t blk_step_diff(const pass_t *p, i64 b, i64 e) {
    BY_DTYPE(p, sdiff32, sdiff, p->o, p->T, p->N, b, e);
    return 0;
}

/* Q_g and the step differences, in float64 or (narrow) float32; the reciprocal of g is rounded once to
 * x's precision, as q_grid's `y * (1.0 / g)`. Returns 1 when some |x / g| rounds to 2^23 or more. */
static uint32_t grid_pass(const pass_t *p, i64 b, i64 e, int narrow) {
    uint32_t big = 0;
    const double g = p->g, ig = 1.0 / g;
    const float gf = (float)g, igf = (float)ig;
    if (narrow)
        p->dt == 0 ? gdiff32_f32(p->x, gf, igf, p->o, p->o2, p->T, p->N, b, e, &big)
                   : gdiff32_f64(p->x, g, ig, p->o, p->o2, p->T, p->N, b, e, &big);
    else
        p->dt == 0 ? gdiff_f32(p->x, gf, igf, p->o, p->o2, p->T, p->N, b, e, &big)
                   : gdiff_f64(p->x, g, ig, p->o, p->o2, p->T, p->N, b, e, &big);
    return big;
}

static uint32_t blk_grid_diff(const pass_t *p, i64 b, i64 e) {
    grid_pass(p, b, e, 0);
    return 0;
}

/* flag 1: the float32 outputs are not to be used */
static uint32_t blk_grid_diff32(const pass_t *p, i64 b, i64 e) { return grid_pass(p, b, e, 1); }

static uint32_t blk_window_sum(const pass_t *p, i64 b, i64 e) {
    wsum_f32(p->x, p->o, p->T, p->N, b, e);
    return 0;
}

/* o = o2 + x element-wise over all T N values (o2 float64, x widened exactly: the promotion of a mixed
 * float64 + float32 sum); called with T = 1 */
static uint32_t blk_add_wide(const pass_t *p, i64 b, i64 e) {
    BY_DTYPE(p, add_wide_f32, add_wide_f64, p->o2, p->o, b, e);
    return 0;
}

/* Python: name(dtype, T, N, x, g, o, o2, nthreads) for every column pass: the threads take contiguous
 * shares of the N columns, each walks its share in blocks of BLOCK columns (all T steps of a block while
 * its running values are in cache); the GIL is released meanwhile. Returns the OR of the blocks' flags. */
static int column_pass(PyObject *args, block_fn fn, uint32_t *flags) {
    pass_t p;
    long long T, N;
    unsigned long long px, po, po2;
    int nth;
    if (!PyArg_ParseTuple(args, "iLLKdKKi", &p.dt, &T, &N, &px, &p.g, &po, &po2, &nth)) return 0;
    p.T = T, p.N = N, p.x = (const void *)px, p.o = (void *)po, p.o2 = (void *)po2;
    const int nt = clamp_threads(nth, N / BLOCK + 1);
    uint32_t fl = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : fl)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK) fl |= fn(&p, b, b + BLOCK < hi ? b + BLOCK : hi);
    }
    Py_END_ALLOW_THREADS
    *flags = fl;
    return 1;
}

/* Python wrappers: None, or (grid_diff32) whether the outputs are exact */
#define COLUMN_PASS(name)                                               \
    static PyObject *py_##name(PyObject *self, PyObject *args) {        \
        uint32_t flags;                                                 \
        if (!column_pass(args, blk_##name, &flags)) return NULL;        \
        Py_RETURN_NONE;                                                 \
    }
COLUMN_PASS(running_sum)
COLUMN_PASS(running_sum_narrow)
COLUMN_PASS(grid_diff)
COLUMN_PASS(step_diff)
COLUMN_PASS(window_sum)
COLUMN_PASS(add_wide)

static PyObject *py_grid_diff32(PyObject *self, PyObject *args) {
    uint32_t big;
    if (!column_pass(args, blk_grid_diff32, &big)) return NULL;
    return PyBool_FromLong(!big);
}

/* Python: add_bias32(R, N, y, bias) -> whether y + bias (summed in float64) is exact in float32 for every
 * element of y [R, N] (float32; bias float64 [N]); if so y is overwritten with it, else left as it is */
static PyObject *py_add_bias32(PyObject *self, PyObject *args) {
    long long R, N;
    unsigned long long py, pb;
    if (!PyArg_ParseTuple(args, "LLKK", &R, &N, &py, &pb)) return NULL;
    float *y = (float *)py;
    const double *bias = (const double *)pb;
    uint32_t inexact = 0;
    Py_BEGIN_ALLOW_THREADS
    inexact = bias_check32(y, bias, R, N);
    if (!inexact) bias_add32(y, bias, R, N);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(!inexact);
}

/* Python: widen_bias(T, R, N, y, bias, out, nthreads); bias 0 for none */
static PyObject *py_widen_bias(PyObject *self, PyObject *args) {
    int nth;
    long long T, R, N;
    unsigned long long py, pb, po;
    if (!PyArg_ParseTuple(args, "LLLKKKi", &T, &R, &N, &py, &pb, &po, &nth)) return NULL;
    const i64 rows = T * R;
    int nt = clamp_threads(nth, rows / 64 + 1);
    const float *y = (const float *)py;
    const double *bias = (const double *)pb;
    double *out = (double *)po;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(rows, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 r = lo; r < hi; r++) widen(y + r * N, r < R ? bias : NULL, out + r * N, N);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Python: encode(T, N, C, a, step, smode, s, ors, cnt, nthreads); a float64 [N], step float64 ([N], [C] or [1]
 * by smode), s float32 [T, N], ors int32 [C], cnt int64 [T] (the number of spikes at each step); T <= 16 */
static PyObject *py_encode(PyObject *self, PyObject *args) {
    int nth, smode;
    long long T, N, C;
    unsigned long long pa, ps, po, pors, pcnt;
    if (!PyArg_ParseTuple(args, "LLLKKiKKKi", &T, &N, &C, &pa, &ps, &smode, &po, &pors, &pcnt, &nth)) return NULL;
    if (T < 1 || T > 16) return PyErr_Format(PyExc_ValueError, "encode: T = %lld outside 1..16", T);
    int nt = clamp_threads(nth, N / BLOCK + 1), fail = 0;
    int32_t *ors = (int32_t *)pors;
    i64 *cnt = (i64 *)pcnt;
    memset(ors, 0, (size_t)C * sizeof(int32_t));
    memset(cnt, 0, (size_t)T * sizeof(i64));
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : fail)
    {
        i64 lo, hi, mine_cnt[16] = {0};
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        int32_t *mine = (int32_t *)calloc((size_t)C, sizeof(int32_t));
        if (!mine) {
            fail = 1;
        } else {
            for (i64 b = lo; b < hi; b += BLOCK)
                encode((const double *)pa, (const double *)ps, smode, (float *)po, T, N, b, b + BLOCK < hi ? b + BLOCK : hi,
                       C, mine, mine_cnt);
#pragma omp critical
            {
                for (i64 c = 0; c < C; c++) ors[c] |= mine[c];
                for (i64 t = 0; t < T; t++) cnt[t] += mine_cnt[t];
            }
            free(mine);
        }
    }
    Py_END_ALLOW_THREADS
    if (fail) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* y[r] = sum_k s[r, k] wt[k] over the nonzero s[r, k], rows [r0, r1) of s [R, K] and y [R, N] (float32) */
HOT static void spike_rows(const float *restrict s, const float *restrict wt, float *restrict y, i64 K, i64 N, i64 r0,
                           i64 r1) {
    for (i64 r = r0; r < r1; r++) {
        const float *sr = s + r * K;
        float *yr = y + r * N;
        for (i64 j = 0; j < N; j++) yr[j] = 0.0f;
        for (i64 k0 = 0; k0 < K; k0 += 16) {
            const i64 k1 = k0 + 16 < K ? k0 + 16 : K;
            uint32_t any = 0;                                     /* skip 16 silent inputs at once */
            for (i64 k = k0; k < k1; k++) {
                uint32_t u;
                memcpy(&u, sr + k, 4);
                any |= u << 1;                                    /* nonzero apart from the sign */
            }
            if (!any) continue;
            for (i64 k = k0; k < k1; k++) {
                const float v = sr[k];
                if (v == 0.0f) continue;
                const float *wk = wt + k * N;
                for (i64 j = 0; j < N; j++) yr[j] += v * wk[j];
            }
        }
    }
}

/* Python: spike_matmul(R, K, N, s, wt, y, nthreads): y = s @ wt accumulating the weight rows of the nonzero
 * entries of s only (s [R, K], wt [K, N], y [R, N], float32; equal to the dense product when every partial
 * sum is exact in float32, as SpikingLinear guarantees) */
static PyObject *py_spike_matmul(PyObject *self, PyObject *args) {
    int nth;
    long long R, K, N;
    unsigned long long ps, pw, py;
    if (!PyArg_ParseTuple(args, "LLLKKKi", &R, &K, &N, &ps, &pw, &py, &nth)) return NULL;
    const int nt = clamp_threads(nth, R / 16 + 1);
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(R, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        spike_rows((const float *)ps, (const float *)pw, (float *)py, K, N, lo, hi);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Python: scan_train(T, R, K, x, bar, nthreads) -> (smallest nonzero |x| or inf, all powers of two,
 * largest sum_t |x_t|, largest row sum of sum_t |x_t|); x, bar float32 [T, R, K] */
static PyObject *py_scan_train(PyObject *self, PyObject *args) {
    int nth;
    long long T, R, K;
    unsigned long long px, pb;
    if (!PyArg_ParseTuple(args, "LLLKKi", &T, &R, &K, &px, &pb, &nth)) return NULL;
    const i64 N = R * K, rpb = K >= BLOCK ? 1 : BLOCK / K;
    int nt = clamp_threads(nth, R / rpb + 1), fail = 0;
    uint32_t mn = 0xFFFFFFFFu, bad = 0;
    double top = 0.0, rowmax = 0.0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : fail)
    {
        i64 lo, hi;
        share(R, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        uint32_t tmn = 0xFFFFFFFFu, tbad = 0;
        double ttop = 0.0, trm = 0.0;
        double *buf = (double *)malloc(2 * (size_t)(rpb * K) * sizeof(double));
        if (!buf) {
            fail = 1;
        } else {
            for (i64 r = lo; r < hi; r += rpb)
                scan_rows((const float *)px, (float *)pb, T, N, K, r, r + rpb < hi ? r + rpb : hi, buf, buf + rpb * K,
                          &tmn, &tbad, &ttop, &trm);
            free(buf);
        }
#pragma omp critical
        {
            if (tmn < mn) mn = tmn;
            bad |= tbad;
            if (ttop > top) top = ttop;
            if (trm > rowmax) rowmax = trm;
        }
    }
    Py_END_ALLOW_THREADS
    if (fail) return PyErr_NoMemory();
    double u = __builtin_inf();
    if (mn != 0xFFFFFFFFu) {
        const uint32_t bits = mn + 1u;
        float f;
        memcpy(&f, &bits, 4);
        u = (double)f;
    }
    return Py_BuildValue("(dOdd)", u, bad ? Py_False : Py_True, top, rowmax);
}

static PyMethodDef methods[] = {
    {"running_sum", py_running_sum, METH_VARARGS, "running_sum(dtype, T, N, x, 0.0, r, 0, nthreads)"},
    {"running_sum_narrow", py_running_sum_narrow, METH_VARARGS,
     "running_sum_narrow(dtype, T, N, x, 0.0, r, 0, nthreads)"},
    {"grid_diff", py_grid_diff, METH_VARARGS, "grid_diff(dtype, T, N, x, g, f, y, nthreads)"},
    {"grid_diff32", py_grid_diff32, METH_VARARGS, "grid_diff32(dtype, T, N, x, g, f, y, nthreads) -> exact"},
    {"step_diff", py_step_diff, METH_VARARGS, "step_diff(dtype, T, N, f, 0.0, y, 0, nthreads)"},
    {"window_sum", py_window_sum, METH_VARARGS, "window_sum(0, T, N, x, 0.0, w, 0, nthreads)"},
    {"add_wide", py_add_wide, METH_VARARGS, "add_wide(dtype, T, N, a, 0.0, out, x, nthreads)"},
    {"add_bias32", py_add_bias32, METH_VARARGS, "add_bias32(R, N, y, bias) -> exact"},
    {"widen_bias", py_widen_bias, METH_VARARGS, "widen_bias(T, R, N, y, bias, out, nthreads)"},
    {"encode", py_encode, METH_VARARGS, "encode(T, N, C, a, step, smode, s, ors, cnt, nthreads)"},
    {"spike_matmul", py_spike_matmul, METH_VARARGS, "spike_matmul(R, K, N, s, wt, y, nthreads)"},
    {"scan_train", py_scan_train, METH_VARARGS, "scan_train(T, R, K, x, bar, nthreads) -> (u, pow2, top, rowmax)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_spiking", "Fused time-axis passes of the spiking Transformer (neuro._native).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__spiking(void) { return PyModule_Create(&module); }
