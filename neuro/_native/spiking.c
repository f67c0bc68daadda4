/* neuro._native._spiking: fused time-axis passes of the converted spiking Transformer
 * (neuro.converters.spiking_ops), float32 and float64, on [T, N] arrays (time axis leading).
 *
 *   running_sum(dt, T, N, x, r)        r[t] = sum_{s <= t} x[s]                     (r float64)
 *   grid_diff(dt, T, N, x, g, f, y)    f[t] = g rint(x[t] / g), y[t] = f[t] - f[t-1] (f, y float64)
 *   grid_diff32(dt, T, N, x, g, f, y)  the same in float32, returning whether every |x / g| rounds below
 *                                      2^23 (so F and its differences are float32 numbers)
 *   step_diff(T, N, f, y)              y[t] = f[t] - f[t-1], y[0] = f[0]             (float64)
 *   widen_bias(T, R, N, y, bias, out)  out[t, r] = y[t, r] (+ bias at t = 0)          (y float32, out float64)
 *   running_sum_narrow(dt, T, N, x, r) r = float32(running_sum(x)) (sums in float64, one rounding)
 *   window_sum(T, N, x, w)             w = sum_t x[t]                               (x float32, w float64)
 *   scan_train(T, R, K, x, bar)        bar = float32(running_sum(x)) and the bounds of SpikingMatMul: the
 *                                      smallest nonzero |x|, all powers of two, max sum_t |x|, max row
 *                                      sum (over K) of sum_t |x| (x float32 [T, R, K])
 *   step_diff32(T, N, f, y)            step_diff in float32 (exact when the differences are float32 numbers)
 *   encode(T, N, C, a, step, smode, s, ors)  s = bit_planes of k = sign(a) min(floor(|a|/step + 1/2), 2^T - 1),
 *                                      ors[c] = OR of |k| over channel c (the last axis, C wide); step per
 *                                      element, per channel or one (smode 0, 1, 2)
 *
 * Compiled with -ffp-contract=off: every operation is one IEEE operation on exactly representable
 * dyadic values, so the results equal the PyTorch expressions they replace bit for bit (the rounding
 * onto the grid runs in the input's precision, as the PyTorch code does: x * (1/g), round half to
 * even, * g). Each thread takes a contiguous share of the N columns and walks all T steps of a block
 * of them, so the running sums stay in cache.
 */
#include "common.h"

#define BLOCK 2048

/* Hot inner loops over one block [b, e) of columns and all T steps (vectorised per clone). */
HOT static void rsum_f32(const float *restrict x, double *restrict r, i64 T, i64 N, i64 b, i64 e) {
    for (i64 i = b; i < e; i++) r[i] = (double)x[i];
    for (i64 t = 1; t < T; t++) {
        const float *xt = x + t * N;
        double *rt = r + t * N;
        const double *rp = rt - N;
        for (i64 i = b; i < e; i++) rt[i] = rp[i] + (double)xt[i];
    }
}

HOT static void rsum_f64(const double *restrict x, double *restrict r, i64 T, i64 N, i64 b, i64 e) {
    for (i64 i = b; i < e; i++) r[i] = x[i];
    for (i64 t = 1; t < T; t++) {
        const double *xt = x + t * N;
        double *rt = r + t * N;
        const double *rp = rt - N;
        for (i64 i = b; i < e; i++) rt[i] = rp[i] + xt[i];
    }
}

HOT static void gdiff_f32(const float *restrict x, float g, float ig, double *restrict f, double *restrict y, i64 T,
                          i64 N, i64 b, i64 e) {
    for (i64 t = 0; t < T; t++) {
        const float *xt = x + t * N;
        double *ft = f + t * N, *yt = y + t * N;
        for (i64 i = b; i < e; i++) ft[i] = (double)(__builtin_rintf(xt[i] * ig) * g);
        if (t == 0)
            for (i64 i = b; i < e; i++) yt[i] = ft[i];
        else
            for (i64 i = b; i < e; i++) yt[i] = ft[i] - ft[i - N];
    }
}

HOT static void gdiff_f64(const double *restrict x, double g, double ig, double *restrict f, double *restrict y, i64 T,
                          i64 N, i64 b, i64 e) {
    for (i64 t = 0; t < T; t++) {
        const double *xt = x + t * N;
        double *ft = f + t * N, *yt = y + t * N;
        for (i64 i = b; i < e; i++) ft[i] = __builtin_rint(xt[i] * ig) * g;
        if (t == 0)
            for (i64 i = b; i < e; i++) yt[i] = ft[i];
        else
            for (i64 i = b; i < e; i++) yt[i] = ft[i] - ft[i - N];
    }
}

/* float32 outputs: F = g q, q = rint(x / g) (in x's precision), flagged when some |q| >= 2^23 (then F
 * or a difference of two F might not be a float32 number) */
HOT static void gdiff32_f32(const float *restrict x, float g, float ig, float *restrict f, float *restrict y, i64 T,
                            i64 N, i64 b, i64 e, uint32_t *big) {
    uint32_t bg = 0;
    for (i64 t = 0; t < T; t++) {
        const float *xt = x + t * N;
        float *ft = f + t * N, *yt = y + t * N;
        for (i64 i = b; i < e; i++) {
            const float q = __builtin_rintf(xt[i] * ig);
            bg |= (uint32_t)!(__builtin_fabsf(q) < 8388608.0f);
            ft[i] = q * g;
        }
        if (t == 0)
            for (i64 i = b; i < e; i++) yt[i] = ft[i];
        else
            for (i64 i = b; i < e; i++) yt[i] = ft[i] - ft[i - N];
    }
    *big |= bg;
}

HOT static void gdiff32_f64(const double *restrict x, double g, double ig, float *restrict f, float *restrict y, i64 T,
                            i64 N, i64 b, i64 e, uint32_t *big) {
    uint32_t bg = 0;
    for (i64 t = 0; t < T; t++) {
        const double *xt = x + t * N;
        float *ft = f + t * N, *yt = y + t * N;
        for (i64 i = b; i < e; i++) {
            const double q = __builtin_rint(xt[i] * ig);
            bg |= (uint32_t)!(__builtin_fabs(q) < 8388608.0);
            ft[i] = (float)(q * g);
        }
        if (t == 0)
            for (i64 i = b; i < e; i++) yt[i] = ft[i];
        else
            for (i64 i = b; i < e; i++) yt[i] = ft[i] - ft[i - N];
    }
    *big |= bg;
}

HOT static void sdiff(const double *restrict f, double *restrict y, i64 T, i64 N, i64 b, i64 e) {
    for (i64 i = b; i < e; i++) y[i] = f[i];
    for (i64 t = 1; t < T; t++) {
        const double *ft = f + t * N;
        double *yt = y + t * N;
        for (i64 i = b; i < e; i++) yt[i] = ft[i] - ft[i - N];
    }
}

HOT static void sdiff32(const float *restrict f, float *restrict y, i64 T, i64 N, i64 b, i64 e) {
    for (i64 i = b; i < e; i++) y[i] = f[i];
    for (i64 t = 1; t < T; t++) {
        const float *ft = f + t * N;
        float *yt = y + t * N;
        for (i64 i = b; i < e; i++) yt[i] = ft[i] - ft[i - N];
    }
}

HOT static void rsum_narrow_f32(const float *restrict x, float *restrict r, i64 T, i64 N, i64 b, i64 e) {
    double acc[BLOCK];
    for (i64 i = b; i < e; i++) r[i] = (float)(acc[i - b] = (double)x[i]);
    for (i64 t = 1; t < T; t++) {
        const float *xt = x + t * N;
        float *rt = r + t * N;
        for (i64 i = b; i < e; i++) rt[i] = (float)(acc[i - b] += (double)xt[i]);
    }
}

HOT static void rsum_narrow_f64(const double *restrict x, float *restrict r, i64 T, i64 N, i64 b, i64 e) {
    double acc[BLOCK];
    for (i64 i = b; i < e; i++) r[i] = (float)(acc[i - b] = x[i]);
    for (i64 t = 1; t < T; t++) {
        const double *xt = x + t * N;
        float *rt = r + t * N;
        for (i64 i = b; i < e; i++) rt[i] = (float)(acc[i - b] += xt[i]);
    }
}

/* codes k = sign(a) min(floor(|a| / s + 1/2), 2^T - 1) and their MSB-first planes (as quantize_codes
 * and bit_planes in spiking_ops, operation for operation); ors[c] |= |k| over the elements of channel
 * c = i mod C (bit j set: plane T-1-j has a spike in channel c). The step of element i is step[i]
 * (smode 0), step[c] (smode 1: one per channel) or step[0] (smode 2). */
HOT static void encode(const double *restrict a, const double *restrict step, int smode, float *restrict s, i64 T,
                       i64 N, i64 b, i64 e, i64 C, int32_t *restrict ors) {
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
        i64 c = b % C;
        for (i64 i = 0; i < n; i++) {
            stp[i] = step[c];
            if (++c == C) c = 0;
        }
    }
    for (i64 i = 0; i < n; i++) {
        const double x = a[b + i], q = __builtin_floor(__builtin_fabs(x) / stp[i] + 0.5);
        mag[i] = (int32_t)(q > top ? top : q);
        const float sf = (float)stp[i];
        sg[i] = x < 0 ? -sf : (x > 0 ? sf : 0.0f);
    }
    i64 c = b % C;
    for (i64 i = 0; i < n; i++) {
        ors[c] |= mag[i];
        if (++c == C) c = 0;
    }
    for (i64 t = 0; t < T; t++) {
        const int k = (int)(T - 1 - t);
        const float scale = (float)(1 << k);
        float *st = s + t * N + b;
        for (i64 i = 0; i < n; i++) st[i] = (float)((mag[i] >> k) & 1) * (scale * sg[i]);
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

/* Python: running_sum(dtype, T, N, x, r, nthreads); dtype of x: 0 float32, 1 float64 */
static PyObject *py_running_sum(PyObject *self, PyObject *args) {
    int dt, nth;
    long long T, N;
    unsigned long long px, pr;
    if (!PyArg_ParseTuple(args, "iLLKKi", &dt, &T, &N, &px, &pr, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1);
    double *r = (double *)pr;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK) {
            i64 e = b + BLOCK < hi ? b + BLOCK : hi;
            if (dt == 0)
                rsum_f32((const float *)px, r, T, N, b, e);
            else
                rsum_f64((const double *)px, r, T, N, b, e);
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Python: grid_diff(dtype, T, N, x, g, f, y, nthreads) */
static PyObject *py_grid_diff(PyObject *self, PyObject *args) {
    int dt, nth;
    long long T, N;
    double g;
    unsigned long long px, pf, py;
    if (!PyArg_ParseTuple(args, "iLLKdKKi", &dt, &T, &N, &px, &g, &pf, &py, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1);
    double *f = (double *)pf, *y = (double *)py;
    const double ig = 1.0 / g;
    const float gf = (float)g, igf = (float)ig;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK) {
            i64 e = b + BLOCK < hi ? b + BLOCK : hi;
            if (dt == 0)
                gdiff_f32((const float *)px, gf, igf, f, y, T, N, b, e);
            else
                gdiff_f64((const double *)px, g, ig, f, y, T, N, b, e);
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Python: grid_diff32(dtype, T, N, x, g, f, y, nthreads) -> exact: f, y float32; False when some
 * |x / g| rounds to 2^23 or more (the outputs are then not to be used) */
static PyObject *py_grid_diff32(PyObject *self, PyObject *args) {
    int dt, nth;
    long long T, N;
    double g;
    unsigned long long px, pf, py;
    if (!PyArg_ParseTuple(args, "iLLKdKKi", &dt, &T, &N, &px, &g, &pf, &py, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1);
    float *f = (float *)pf, *y = (float *)py;
    const double ig = 1.0 / g;
    const float gf = (float)g, igf = (float)ig;
    uint32_t big = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : big)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK) {
            i64 e = b + BLOCK < hi ? b + BLOCK : hi;
            if (dt == 0)
                gdiff32_f32((const float *)px, gf, igf, f, y, T, N, b, e, &big);
            else
                gdiff32_f64((const double *)px, g, ig, f, y, T, N, b, e, &big);
        }
    }
    Py_END_ALLOW_THREADS
    if (big) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* Python: step_diff(T, N, f, y, nthreads) */
static PyObject *py_step_diff(PyObject *self, PyObject *args) {
    int nth;
    long long T, N;
    unsigned long long pf, py;
    if (!PyArg_ParseTuple(args, "LLKKi", &T, &N, &pf, &py, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1);
    const double *f = (const double *)pf;
    double *y = (double *)py;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK) sdiff(f, y, T, N, b, b + BLOCK < hi ? b + BLOCK : hi);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
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

/* Python: running_sum_narrow(dtype, T, N, x, r, nthreads): r float32 = the float64 running sum rounded */
static PyObject *py_running_sum_narrow(PyObject *self, PyObject *args) {
    int dt, nth;
    long long T, N;
    unsigned long long px, pr;
    if (!PyArg_ParseTuple(args, "iLLKKi", &dt, &T, &N, &px, &pr, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1);
    float *r = (float *)pr;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK) {
            i64 e = b + BLOCK < hi ? b + BLOCK : hi;
            if (dt == 0)
                rsum_narrow_f32((const float *)px, r, T, N, b, e);
            else
                rsum_narrow_f64((const double *)px, r, T, N, b, e);
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Python: encode(T, N, C, a, step, smode, s, ors, nthreads); a float64 [N], step float64 ([N], [C] or [1]
 * by smode), s float32 [T, N], ors int32 [C] */
static PyObject *py_encode(PyObject *self, PyObject *args) {
    int nth, smode;
    long long T, N, C;
    unsigned long long pa, ps, po, pors;
    if (!PyArg_ParseTuple(args, "LLLKKiKKi", &T, &N, &C, &pa, &ps, &smode, &po, &pors, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1), fail = 0;
    int32_t *ors = (int32_t *)pors;
    memset(ors, 0, (size_t)C * sizeof(int32_t));
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : fail)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        int32_t *mine = (int32_t *)calloc((size_t)C, sizeof(int32_t));
        if (!mine) {
            fail = 1;
        } else {
            for (i64 b = lo; b < hi; b += BLOCK)
                encode((const double *)pa, (const double *)ps, smode, (float *)po, T, N, b, b + BLOCK < hi ? b + BLOCK : hi,
                       C, mine);
#pragma omp critical
            for (i64 c = 0; c < C; c++) ors[c] |= mine[c];
            free(mine);
        }
    }
    Py_END_ALLOW_THREADS
    if (fail) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* Python: window_sum(T, N, x, w, nthreads); x float32 [T, N], w float64 [N] */
static PyObject *py_window_sum(PyObject *self, PyObject *args) {
    int nth;
    long long T, N;
    unsigned long long px, pw;
    if (!PyArg_ParseTuple(args, "LLKKi", &T, &N, &px, &pw, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1);
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK)
            wsum_f32((const float *)px, (double *)pw, T, N, b, b + BLOCK < hi ? b + BLOCK : hi);
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

/* Python: step_diff32(T, N, f, y, nthreads); float32 */
static PyObject *py_step_diff32(PyObject *self, PyObject *args) {
    int nth;
    long long T, N;
    unsigned long long pf, py;
    if (!PyArg_ParseTuple(args, "LLKKi", &T, &N, &pf, &py, &nth)) return NULL;
    int nt = clamp_threads(nth, N / BLOCK + 1);
    const float *f = (const float *)pf;
    float *y = (float *)py;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(N, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        for (i64 b = lo; b < hi; b += BLOCK) sdiff32(f, y, T, N, b, b + BLOCK < hi ? b + BLOCK : hi);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scan_train", py_scan_train, METH_VARARGS, "scan_train(T, R, K, x, bar, nthreads) -> (u, pow2, top, rowmax)"},
    {"step_diff32", py_step_diff32, METH_VARARGS, "step_diff32(T, N, f, y, nthreads)"},
    {"grid_diff32", py_grid_diff32, METH_VARARGS, "grid_diff32(dtype, T, N, x, g, f, y, nthreads) -> exact"},
    {"window_sum", py_window_sum, METH_VARARGS, "window_sum(T, N, x, w, nthreads)"},
    {"running_sum_narrow", py_running_sum_narrow, METH_VARARGS, "running_sum_narrow(dtype, T, N, x, r, nthreads)"},
    {"encode", py_encode, METH_VARARGS, "encode(T, N, C, a, step, smode, s, ors, nthreads)"},
    {"running_sum", py_running_sum, METH_VARARGS, "running_sum(dtype, T, N, x, r, nthreads)"},
    {"grid_diff", py_grid_diff, METH_VARARGS, "grid_diff(dtype, T, N, x, g, f, y, nthreads)"},
    {"step_diff", py_step_diff, METH_VARARGS, "step_diff(T, N, f, y, nthreads)"},
    {"widen_bias", py_widen_bias, METH_VARARGS, "widen_bias(T, R, N, y, bias, out, nthreads)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_spiking", "Fused time-axis passes of the spiking Transformer (neuro._native).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__spiking(void) { return PyModule_Create(&module); }
