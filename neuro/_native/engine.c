/* neuro._native._engine: arithmetic that must equal the PyTorch code bit for bit (compiled with
 * -ffp-contract=off, see setup.py):
 *
 *   lif_forward / lif_backward   fused multi-step LIF (neuro.neurons.lif.lif_step over [T, M])
 *   recurrent_run                the whole-run engine of a recurrent LIF population (benchmark W2)
 *   uniform / binomial           the counter-based RNG of neuro.core.random
 *   csr_matmul / csr_value_grad / csr_input_grad   CSR synapse kernels in TorchKernels' summation order
 *   delay_ring                   event-driven delayed synapses through a ring buffer (DelayLinear inference)
 */
#include <math.h>

#include "common.h"

enum { SG_ATAN = 0, SG_SIGMOID = 1, SG_TRIANGLE = 2 };

typedef struct {
    double decay, v_rest, v_th, v_reset;
    int decay_input, hard, strict, detach;
    int sg_kind;
    double sg_a, sg_b;
} lif_params;

/* expf for the Sigmoid surrogate, vectorisable (Cephes polynomial, about 1 ulp; the surrogate is a
 * gradient, compared to float tolerance). */
INLINE float expf_vec(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float fx = x * 1.44269504088896341f;
    fx = (fx + 12582912.0f) - 12582912.0f; /* round to nearest integer */
    float r = x - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)fx + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

#define T float
#define U uint32_t
#define IS_F32 1
#define EXP expf_vec
#define NAME(x) x##_f32
#include "extract_impl.h"
#include "engine_impl.h"
#undef T
#undef U
#undef IS_F32
#undef EXP
#undef NAME

#define T double
#define U uint64_t
#define IS_F32 0
#define EXP exp
#define NAME(x) x##_f64
#include "extract_impl.h"
#include "engine_impl.h"
#undef T
#undef U
#undef IS_F32
#undef EXP
#undef NAME

/* ================================================================ counter-based RNG
 * z = splitmix64(splitmix64(seed) + step * n + index); u = (z >> 11) 2^-53  (neuro/core/random.py) */
#define GOLDEN 0x9E3779B97F4A7C15ULL
#define MIX1 0xBF58476D1CE4E5B9ULL
#define MIX2 0x94D049BB133111EBULL

static inline uint64_t splitmix64(uint64_t z) {
    z += GOLDEN;
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

static inline double u01(uint64_t z) { return (double)(z >> 11) * 0x1p-53; }

typedef uint64_t v8u __attribute__((vector_size(64)));
typedef int64_t v8i __attribute__((vector_size(64)));
typedef double v8d __attribute__((vector_size(64)));

INLINE v8u splitmix64_v(v8u z) {
    z += GOLDEN;
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

/* (z >> 11) 2^-53 without a 64-bit integer conversion: the top 52 bits through the mantissa of
 * [1, 2) give (z >> 12) 2^-52, the 53rd bit adds 0 or 2^-53. Every operation is exact, so the
 * result equals u01(z). */
INLINE v8d u01_v(v8u z) {
    v8d f = (v8d)((z >> 12) | 0x3FF0000000000000ULL) - 1.0;
    v8u lo = (v8u){0} - ((z >> 11) & 1);
    return f + (v8d)(lo & 0x3CA0000000000000ULL); /* bits of 2^-53 */
}

/* Binomial counts k[i] = #{j : cdf[j] <= u[i]} for neurons [i0, i0 + n), n a multiple of 8.
 * cdf8: the first 8 entries of the table (+inf padded); entries past 8 are counted in a scalar
 * pass for the rare draws beyond cdf[7]. Returns through k (int32). */
HOT static void draw_counts(uint64_t base, i64 i0, i64 n, const double *cdf8, const double *cdf, i64 ncdf,
                            int32_t *k) {
    v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
    v8i far = {0};
    for (i64 b = 0; b < n; b += 8) {
        v8u z = splitmix64_v(lane + (uint64_t)(base + (uint64_t)(i0 + b)));
        v8d u = u01_v(z);
        v8i cnt = {0};
        for (int j = 0; j < 8; j++) cnt -= (v8i)(cdf8[j] <= u);
        far |= (v8i)(cdf8[7] <= u);
        for (int l = 0; l < 8; l++) k[b + l] = (int32_t)cnt[l];
    }
    if (ncdf > 8) {
        int any = 0;
        for (int l = 0; l < 8; l++) any |= far[l] != 0;
        if (any)
            for (i64 b = 0; b < n; b++)
                if (k[b] == 8) {
                    double u = u01(splitmix64(base + (uint64_t)(i0 + b)));
                    i64 j = 8;
                    while (j < ncdf && cdf[j] <= u) j++;
                    k[b] = (int32_t)j;
                }
    }
}

static int32_t draw_count_scalar(uint64_t base, i64 i, const double *cdf, i64 ncdf) {
    double u = u01(splitmix64(base + (uint64_t)i));
    i64 j = 0;
    while (j < ncdf && cdf[j] <= u) j++;
    return (int32_t)j;
}

/* ================================================================ recurrent run (float64) */
enum { DRIVE_NONE = 0, DRIVE_POISSON = 1, DRIVE_CONST = 2, DRIVE_GIVEN = 3 };

typedef struct {
    int kind;
    const double *values; /* const [N] or given [steps, N] */
    uint64_t key;         /* splitmix64(seed) */
    const double *cdf;
    i64 ncdf;
    double cdf8[8];
    double weight;
} drive_t;

#define RUN_BLOCK 256

/* One block of neurons [i0, i0 + n): drive, charge, fire, reset. Appends spikes to list. */
HOT static i64 update_block(const drive_t *dr, i64 t, i64 N, i64 i0, i64 n, double *restrict v,
                            double *restrict acc, const lif_params *p, int32_t *restrict list, i64 nlist) {
    double ext[RUN_BLOCK];
    int32_t k[RUN_BLOCK];
    char fired[RUN_BLOCK];
    const double *src = NULL;
    if (dr->kind == DRIVE_POISSON) {
        const uint64_t base = dr->key + (uint64_t)t * (uint64_t)N;
        i64 nv = n & ~(i64)7;
        draw_counts(base, i0, nv, dr->cdf8, dr->cdf, dr->ncdf, k);
        for (i64 b = nv; b < n; b++) k[b] = draw_count_scalar(base, i0 + b, dr->cdf, dr->ncdf);
        for (i64 b = 0; b < n; b++) ext[b] = (double)k[b] * dr->weight;
        src = ext;
    } else if (dr->kind == DRIVE_CONST) {
        src = dr->values + i0;
    } else if (dr->kind == DRIVE_GIVEN) {
        src = dr->values + t * N + i0;
    }
    const double d = p->decay, a = 1.0 - p->decay, vr = p->v_rest, vth = p->v_th, vres = p->v_reset;
    const uint64_t strict = p->strict ? ~(uint64_t)0 : 0;
    double *restrict vb = v + i0, *restrict ab = acc + i0;
#define UPDATE(XEXPR, DI, HD)                                                   \
    for (i64 b = 0; b < n; b++) {                                               \
        double x = XEXPR;                                                       \
        double vv = vb[b];                                                      \
        double h = DI ? vv + (x - (vv - vr)) * a : (vv - vr) * d + vr + x;      \
        double z = h - vth;                                                     \
        double s = pick_f64(strict, z > 0 ? 1.0 : 0.0, z >= 0 ? 1.0 : 0.0);      \
        vb[b] = HD ? h * (1.0 - s) + vres * s : h - vth * s;                    \
        ab[b] = 0;                                                              \
        fired[b] = s != 0;                                                      \
    }
    if (src) {
        if (p->decay_input) {
            if (p->hard) UPDATE(src[b] + ab[b], 1, 1) else UPDATE(src[b] + ab[b], 1, 0)
        } else {
            if (p->hard) UPDATE(src[b] + ab[b], 0, 1) else UPDATE(src[b] + ab[b], 0, 0)
        }
    } else {
        if (p->decay_input) {
            if (p->hard) UPDATE(ab[b], 1, 1) else UPDATE(ab[b], 1, 0)
        } else {
            if (p->hard) UPDATE(ab[b], 0, 1) else UPDATE(ab[b], 0, 0)
        }
    }
#undef UPDATE
    for (i64 b = 0; b < n; b++) { /* branch-free append */
        list[nlist] = (int32_t)(i0 + b);
        nlist += fired[b];
    }
    return nlist;
}

/* The synapses in the layout the run reads: targets as int32, the owned slice of each row per
 * thread, and the weight of each row when all its synapses share it (W2: one weight per
 * presynaptic neuron), so that a spike streams 4 bytes per synapse. */
typedef struct {
    const i64 *split;      /* [N][nt + 1]: row j's synapses for targets of thread q: split[j][q] .. split[j][q+1] */
    const int32_t *target; /* [nnz] */
    const double *weights; /* [nnz] */
    const double *row_w;   /* [N] the shared weight of row j */
    const char *uniform;   /* [N] whether row j's weights are all row_w[j] (bit for bit) */
    int nt;
} synapses_t;

/* Deliver the spikes of the previous step to the targets this thread owns (thread me): for each
 * spiking j ascending, its synapses in order (rows are sorted by target, so the owned ones are one
 * slice). Each target receives its adds in the order of the whole row list, whatever nt is. */
HOT static void scatter(double *restrict acc, const int32_t *L, i64 n, int me, const synapses_t *S) {
    const int stride = S->nt + 1;
    for (i64 i = 0; i < n; i++) {
        if (i + 16 < n) __builtin_prefetch(S->split + (i64)L[i + 16] * stride + me);
        if (i + 8 < n) {
            const i64 *nx = S->split + (i64)L[i + 8] * stride + me;
            for (i64 e = nx[0]; e < nx[1]; e += 16) __builtin_prefetch(S->target + e);
        }
        const i64 j = L[i];
        const i64 *sp = S->split + j * stride + me;
        const i64 e0 = sp[0], e1 = sp[1];
        if (S->uniform[j]) {
            const double w = S->row_w[j];
            for (i64 e = e0; e < e1; e++) acc[S->target[e]] += w;
        } else {
            for (i64 e = e0; e < e1; e++) acc[S->target[e]] += S->weights[e];
        }
    }
}

typedef struct {
    int32_t *buf[2]; /* spike lists of the last two steps (double buffer) */
    i64 nbuf[2];
    i64 *out;        /* every spike of the run, owner-private until the merge */
    i64 nout, cap;
    i64 *per_step;   /* spikes per step */
    int fail;
} thread_out;

static int run_network(i64 N, i64 steps, double *v, const i64 *indptr, const i64 *indices, const double *weights,
                       const lif_params *p, const drive_t *dr, double *vtrace, int nt, thread_out **outs_ret,
                       int *nt_ret) {
    const i64 nnz = indptr[N];
    double *acc = calloc((size_t)N, sizeof(double));
    i64 *split = malloc(sizeof(i64) * (size_t)N * (size_t)(nt + 1));
    int32_t *target = malloc(sizeof(int32_t) * (size_t)(nnz + 1));
    double *row_w = malloc(sizeof(double) * (size_t)N);
    char *uniform = malloc((size_t)N);
    thread_out *outs = calloc((size_t)nt, sizeof(thread_out));
    int fail = 0, n_used = nt;
    synapses_t S = {split, target, weights, row_w, uniform, nt};
    if (!acc || !split || !target || !row_w || !uniform || !outs) {
        free(acc);
        free(split);
        free(target);
        free(row_w);
        free(uniform);
        free(outs);
        return 1;
    }
    team_barrier step_end;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int me = THREAD_ID(), n_t = NUM_THREADS();
        i64 lo, hi;
        share(N, me, n_t, &lo, &hi);
        thread_out *o = outs + me;
#pragma omp single
        team_barrier_init(&step_end, n_t);
        o->buf[0] = malloc(sizeof(int32_t) * (size_t)(hi - lo + 1));
        o->buf[1] = malloc(sizeof(int32_t) * (size_t)(hi - lo + 1));
        o->cap = 1024;
        o->out = malloc(sizeof(i64) * (size_t)o->cap);
        o->per_step = calloc((size_t)steps, sizeof(i64));
        if (!o->buf[0] || !o->buf[1] || !o->out || !o->per_step) o->fail = 1;
        /* this thread's rows: int32 targets, where they cross the thread boundaries, shared weights */
        i64 bound[65];
        for (int q = 0; q <= n_t; q++) bound[q] = N * q / n_t; /* share()'s bounds */
        for (i64 j = lo; j < hi; j++) {
            const i64 e0 = indptr[j], e1 = indptr[j + 1];
            i64 *sp = split + j * (n_t + 1);
            i64 e = e0;
            for (int q = 0; q < n_t; q++) {
                while (e < e1 && indices[e] < bound[q]) e++;
                sp[q] = e;
            }
            sp[n_t] = e1;
            char same = 1;
            const double w0 = e1 > e0 ? weights[e0] : 0.0;
            for (i64 k = e0; k < e1; k++) {
                target[k] = (int32_t)indices[k];
                same &= memcmp(&weights[k], &w0, sizeof w0) == 0;
            }
            row_w[j] = w0;
            uniform[j] = same;
        }
#pragma omp barrier
#pragma omp single
        {
            n_used = n_t;
            S.nt = n_t;
            for (int q = 0; q < n_t; q++) fail |= outs[q].fail;
        }
        if (!fail) {
            for (i64 t = 0; t < steps; t++) {
                const int cur = (int)(t & 1), prev = cur ^ 1;
                if (t > 0)
                    for (int q = 0; q < n_t; q++) scatter(acc, outs[q].buf[prev], outs[q].nbuf[prev], me, &S);
                i64 nl = 0;
                for (i64 i0 = lo; i0 < hi; i0 += RUN_BLOCK) {
                    i64 n = hi - i0 < RUN_BLOCK ? hi - i0 : RUN_BLOCK;
                    nl = update_block(dr, t, N, i0, n, v, acc, p, o->buf[cur], nl);
                }
                o->nbuf[cur] = nl;
                o->per_step[t] = nl;
                if (o->nout + nl > o->cap) {
                    while (o->nout + nl > o->cap) o->cap *= 2;
                    i64 *grown = realloc(o->out, sizeof(i64) * (size_t)o->cap);
                    if (!grown) {
                        o->fail = 1;
                        o->cap = 0;
                    } else {
                        o->out = grown;
                    }
                }
                if (!o->fail) {
                    for (i64 i = 0; i < nl; i++) o->out[o->nout + i] = o->buf[cur][i];
                    o->nout += nl;
                }
                if (vtrace) memcpy(vtrace + t * N + lo, v + lo, sizeof(double) * (size_t)(hi - lo));
                if (n_t > 1) team_barrier_wait(&step_end);
            }
        }
        free(o->buf[0]);
        free(o->buf[1]);
        o->buf[0] = o->buf[1] = NULL;
    }
    for (int q = 0; q < n_used; q++) fail |= outs[q].fail;
    free(acc);
    free(split);
    free(target);
    free(row_w);
    free(uniform);
    *outs_ret = outs;
    *nt_ret = n_used;
    return fail;
}

static int parse_lif(PyObject *tup, lif_params *p) {
    memset(p, 0, sizeof *p);
    return PyArg_ParseTuple(tup, "ddddiiiiidd", &p->decay, &p->v_rest, &p->v_th, &p->v_reset, &p->decay_input,
                            &p->hard, &p->strict, &p->detach, &p->sg_kind, &p->sg_a, &p->sg_b);
}

/* recurrent_run(N, steps, v, indptr, indices, weights, lif, drive_kind, values, key, cdf, ncdf, weight,
 *               vtrace, nthreads) -> (spike_indices: bytearray of int64, offsets: bytearray of int64) */
static PyObject *py_recurrent_run(PyObject *self, PyObject *args) {
    long long N, steps, ncdf;
    unsigned long long pv, pip, pix, pw, pvals, key, pcdf, ptrace;
    PyObject *lt;
    int kind, nth;
    double weight;
    lif_params p;
    if (!PyArg_ParseTuple(args, "LLKKKKO!iKKKLdKi", &N, &steps, &pv, &pip, &pix, &pw, &PyTuple_Type, &lt, &kind,
                          &pvals, &key, &pcdf, &ncdf, &weight, &ptrace, &nth))
        return NULL;
    if (!parse_lif(lt, &p)) return NULL;
    if (N < 1 || steps < 0 || N >= ((i64)1 << 31)) {
        PyErr_SetString(PyExc_ValueError, "recurrent_run: N must be in [1, 2^31) and steps >= 0");
        return NULL;
    }
    drive_t dr;
    memset(&dr, 0, sizeof dr);
    dr.kind = kind;
    dr.values = (const double *)pvals;
    dr.key = key;
    dr.cdf = (const double *)pcdf;
    dr.ncdf = ncdf;
    dr.weight = weight;
    for (int j = 0; j < 8; j++) dr.cdf8[j] = j < ncdf ? dr.cdf[j] : INFINITY;
    int nt = clamp_threads(nth > 64 ? 64 : nth, N);
    thread_out *outs = NULL;
    int n_used = 0, fail;
    Py_BEGIN_ALLOW_THREADS
    fail = run_network(N, steps, (double *)pv, (const i64 *)pip, (const i64 *)pix, (const double *)pw, &p, &dr,
                       (double *)ptrace, nt, &outs, &n_used);
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (!fail) {
        i64 total = 0;
        for (int q = 0; q < n_used; q++) total += outs[q].nout;
        PyObject *idx = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(sizeof(i64) * (size_t)total));
        PyObject *off = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(sizeof(i64) * (size_t)(steps + 1)));
        if (idx && off) {
            i64 *I = (i64 *)PyByteArray_AS_STRING(idx), *O = (i64 *)PyByteArray_AS_STRING(off);
            i64 *pos = calloc((size_t)n_used, sizeof(i64));
            i64 n = 0;
            O[0] = 0;
            for (i64 t = 0; t < steps; t++) {
                for (int q = 0; q < n_used; q++) {
                    i64 c = outs[q].per_step[t];
                    memcpy(I + n, outs[q].out + pos[q], sizeof(i64) * (size_t)c);
                    pos[q] += c;
                    n += c;
                }
                O[t + 1] = n;
            }
            free(pos);
            res = Py_BuildValue("(NN)", idx, off);
        } else {
            Py_XDECREF(idx);
            Py_XDECREF(off);
        }
    } else {
        PyErr_NoMemory();
    }
    if (outs) {
        for (int q = 0; q < n_used; q++) {
            free(outs[q].out);
            free(outs[q].per_step);
        }
        free(outs);
    }
    return res;
}

/* ================================================================ Python wrappers */
static PyObject *py_uniform(PyObject *self, PyObject *args) {
    unsigned long long seed, step, n, pout;
    if (!PyArg_ParseTuple(args, "KKKK", &seed, &step, &n, &pout)) return NULL;
    double *out = (double *)pout;
    uint64_t base = splitmix64(seed) + step * n;
    i64 nv = (i64)n & ~(i64)7;
    v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
    for (i64 i = 0; i < nv; i += 8) {
        v8d u = u01_v(splitmix64_v(lane + (base + (uint64_t)i)));
        memcpy(out + i, &u, sizeof u);
    }
    for (i64 i = nv; i < (i64)n; i++) out[i] = u01(splitmix64(base + (uint64_t)i));
    Py_RETURN_NONE;
}

static PyObject *py_binomial(PyObject *self, PyObject *args) {
    unsigned long long seed, step, n, pcdf, pout;
    long long ncdf;
    if (!PyArg_ParseTuple(args, "KKKKLK", &seed, &step, &n, &pcdf, &ncdf, &pout)) return NULL;
    const double *cdf = (const double *)pcdf;
    i64 *out = (i64 *)pout;
    double cdf8[8];
    for (int j = 0; j < 8; j++) cdf8[j] = j < ncdf ? cdf[j] : INFINITY;
    uint64_t base = splitmix64(seed) + step * n;
    int32_t k[RUN_BLOCK];
    for (i64 i0 = 0; i0 < (i64)n; i0 += RUN_BLOCK) {
        i64 m = (i64)n - i0 < RUN_BLOCK ? (i64)n - i0 : RUN_BLOCK, mv = m & ~(i64)7;
        draw_counts(base, i0, mv, cdf8, cdf, ncdf, k);
        for (i64 b = mv; b < m; b++) k[b] = draw_count_scalar(base, i0 + b, cdf, ncdf);
        for (i64 b = 0; b < m; b++) out[i0 + b] = k[b];
    }
    Py_RETURN_NONE;
}

static PyObject *py_rows_sorted(PyObject *self, PyObject *args) {
    long long n;
    unsigned long long pip, pix;
    if (!PyArg_ParseTuple(args, "LKK", &n, &pip, &pix)) return NULL;
    const i64 *indptr = (const i64 *)pip, *indices = (const i64 *)pix;
    for (i64 j = 0; j < n; j++)
        for (i64 e = indptr[j] + 1; e < indptr[j + 1]; e++)
            if (indices[e] < indices[e - 1]) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* lif_forward(dtype, nT, M, x, v, s, h, lif, nthreads): v in/out, h = 0 to not keep it. */
static PyObject *py_lif_forward(PyObject *self, PyObject *args) {
    int dt, nth;
    long long nT, M;
    unsigned long long px, pv, ps, ph;
    PyObject *lt;
    lif_params p;
    if (!PyArg_ParseTuple(args, "iLLKKKKO!i", &dt, &nT, &M, &px, &pv, &ps, &ph, &PyTuple_Type, &lt, &nth)) return NULL;
    if (!parse_lif(lt, &p)) return NULL;
    int nt = clamp_threads(nth, M / 256 + 1);
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0) lif_forward_f32(&p, (const float *)px, (float *)pv, (float *)ps, (float *)ph, nT, M, nt);
    else lif_forward_f64(&p, (const double *)px, (double *)pv, (double *)ps, (double *)ph, nT, M, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* lif_backward(dtype, nT, M, x, v0, gs, gv, gx, lif, nthreads): gv in (final) / out (initial). */
static PyObject *py_lif_backward(PyObject *self, PyObject *args) {
    int dt, nth, fail;
    long long nT, M;
    unsigned long long px, pv0, pgs, pgv, pgx;
    PyObject *lt;
    lif_params p;
    if (!PyArg_ParseTuple(args, "iLLKKKKKO!i", &dt, &nT, &M, &px, &pv0, &pgs, &pgv, &pgx, &PyTuple_Type, &lt, &nth))
        return NULL;
    if (!parse_lif(lt, &p)) return NULL;
    if (p.sg_kind < 0 || p.sg_kind > 2) {
        PyErr_SetString(PyExc_ValueError, "lif_backward: unknown surrogate kind");
        return NULL;
    }
    int nt = clamp_threads(nth, M / 256 + 1);
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0)
        fail = lif_backward_f32(&p, (const float *)px, (const float *)pv0, (const float *)pgs, (float *)pgv,
                                (float *)pgx, nT, M, nt);
    else
        fail = lif_backward_f64(&p, (const double *)px, (const double *)pv0, (const double *)pgs, (double *)pgv,
                                (double *)pgx, nT, M, nt);
    Py_END_ALLOW_THREADS
    if (fail) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* csr_matmul(dtype, R, K, N, x, indptr, indices, values, y, nthreads) */
static PyObject *py_csr_matmul(PyObject *self, PyObject *args) {
    int dt, nth;
    long long R, K, N;
    unsigned long long px, pip, pix, pval, py;
    if (!PyArg_ParseTuple(args, "iLLLKKKKKi", &dt, &R, &K, &N, &px, &pip, &pix, &pval, &py, &nth)) return NULL;
    int nt = clamp_threads(nth, R);
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0) csr_matmul_f32((const float *)px, (const i64 *)pip, (const i64 *)pix, (const float *)pval, (float *)py, R, K, N, nt);
    else csr_matmul_f64((const double *)px, (const i64 *)pip, (const i64 *)pix, (const double *)pval, (double *)py, R, K, N, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* csr_value_grad(dtype, R, K, N, x, gy, indptr, indices, g, nthreads) */
static PyObject *py_csr_value_grad(PyObject *self, PyObject *args) {
    int dt, nth, fail;
    long long R, K, N;
    unsigned long long px, pgy, pip, pix, pg;
    if (!PyArg_ParseTuple(args, "iLLLKKKKKi", &dt, &R, &K, &N, &px, &pgy, &pip, &pix, &pg, &nth)) return NULL;
    int nt = clamp_threads(nth, K);
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0) fail = csr_value_grad_f32((const float *)px, (const float *)pgy, (const i64 *)pip, (const i64 *)pix, (float *)pg, R, K, N, nt);
    else fail = csr_value_grad_f64((const double *)px, (const double *)pgy, (const i64 *)pip, (const i64 *)pix, (double *)pg, R, K, N, nt);
    Py_END_ALLOW_THREADS
    if (fail) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* csr_input_grad(dtype, R, K, N, gy, indptr, indices, values, gx, nthreads) */
static PyObject *py_csr_input_grad(PyObject *self, PyObject *args) {
    int dt, nth;
    long long R, K, N;
    unsigned long long pgy, pip, pix, pval, pgx;
    if (!PyArg_ParseTuple(args, "iLLLKKKKKi", &dt, &R, &K, &N, &pgy, &pip, &pix, &pval, &pgx, &nth)) return NULL;
    int nt = clamp_threads(nth, R);
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0) csr_input_grad_f32((const float *)pgy, (const i64 *)pip, (const i64 *)pix, (const float *)pval, (float *)pgx, R, K, N, nt);
    else csr_input_grad_f64((const double *)pgy, (const i64 *)pip, (const i64 *)pix, (const double *)pval, (double *)pgx, R, K, N, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* delay_ring(dtype, C, B, K, N, L, t0, x, indptr, indices, values, ring, y, nthreads) */
static PyObject *py_delay_ring(PyObject *self, PyObject *args) {
    int dt, nth;
    long long C, B, K, N, L, t0;
    unsigned long long px, pip, pix, pval, pring, py;
    if (!PyArg_ParseTuple(args, "iLLLLLLKKKKKKi", &dt, &C, &B, &K, &N, &L, &t0, &px, &pip, &pix, &pval, &pring, &py, &nth))
        return NULL;
    int nt = clamp_threads(nth, B);
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0) delay_ring_f32((const float *)px, (const i64 *)pip, (const i64 *)pix, (const float *)pval, (float *)pring, (float *)py, C, B, K, N, L, t0, nt);
    else delay_ring_f64((const double *)px, (const i64 *)pip, (const i64 *)pix, (const double *)pval, (double *)pring, (double *)py, C, B, K, N, L, t0, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"lif_forward", py_lif_forward, METH_VARARGS, "lif_forward(dtype, nT, M, x, v, s, h, lif, nthreads)"},
    {"lif_backward", py_lif_backward, METH_VARARGS, "lif_backward(dtype, nT, M, x, v0, gs, gv, gx, lif, nthreads)"},
    {"recurrent_run", py_recurrent_run, METH_VARARGS,
     "recurrent_run(N, steps, v, indptr, indices, weights, lif, drive_kind, values, key, cdf, ncdf, weight, "
     "vtrace, nthreads) -> (indices bytes, offsets bytes)"},
    {"uniform", py_uniform, METH_VARARGS, "uniform(seed, step, n, out)"},
    {"binomial", py_binomial, METH_VARARGS, "binomial(seed, step, n, cdf, ncdf, out)"},
    {"rows_sorted", py_rows_sorted, METH_VARARGS, "rows_sorted(n, indptr, indices) -> bool"},
    {"csr_matmul", py_csr_matmul, METH_VARARGS, "csr_matmul(dtype, R, K, N, x, indptr, indices, values, y, nthreads)"},
    {"csr_value_grad", py_csr_value_grad, METH_VARARGS, "csr_value_grad(dtype, R, K, N, x, gy, indptr, indices, g, nthreads)"},
    {"csr_input_grad", py_csr_input_grad, METH_VARARGS, "csr_input_grad(dtype, R, K, N, gy, indptr, indices, values, gx, nthreads)"},
    {"delay_ring", py_delay_ring, METH_VARARGS, "delay_ring(dtype, C, B, K, N, L, t0, x, indptr, indices, values, ring, y, nthreads)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_engine", "Bit-exact LIF, recurrent-run, RNG and CSR kernels (neuro._native).", -1, methods,
};

PyMODINIT_FUNC PyInit__engine(void) { return PyModule_Create(&module); }
