/* Fused LIF steps and CSR kernels for one element type; included by engine.c once per type with
 *   T     float or double
 *   EXP   exp for T (vectorisable)
 *   NAME  name mangler
 * The arithmetic is written in the order of the PyTorch code it replaces and this file is compiled
 * without FMA contraction, so forward results are bit-identical to it:
 *   neuro/neurons/lif.py  lif_charge:      decay_input: h = v + (x - (v - v_rest)) * (1 - d)
 *                                          else:        h = (v - v_rest) * d + v_rest + x
 *   neuro/neurons/base.py fire_and_reset:  s = H(h - v_th); hard: v = h (1 - s) + v_reset s; soft: v = h - v_th s
 *   neuro/synapses/kernels.py TorchKernels.csr_*: the same products, summed in the same order.
 * Python float parameters become T before use, as PyTorch casts a scalar operand to the tensor dtype.
 */

#define LIF_CHUNK 1024 /* elements whose state stays in L1 across the time steps */

/* Variants (strict threshold, detach_reset, decay_input, hard reset) are bit masks (all ones or
 * zero) selecting, with and/or on the bits, between results computed both ways: one vectorised
 * loop body serves every variant, and the selected value is computed exactly as in PyTorch.
 * (Selects on flags would make GCC unswitch each loop into 2^flags copies.) */
typedef struct {
    T d, a, vr, vth, vres; /* decay, 1 - decay, v_rest, v_th, v_reset */
    U strict, detach, decay_input, hard;
    T sg0, sg1; /* surrogate constants, see surrogate() */
} NAME(lif_consts);

/* mask ? a : b on the bits (mask all ones or zero) */
INLINE T NAME(pick)(U mask, T a, T b) {
    U ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    U r = (ua & mask) | (ub & ~mask);
    T out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static NAME(lif_consts) NAME(make_consts)(const lif_params *p) {
    NAME(lif_consts) c;
    c.d = (T)p->decay;
    c.a = (T)(1.0 - p->decay);
    c.vr = (T)p->v_rest;
    c.vth = (T)p->v_th;
    c.vres = (T)p->v_reset;
    c.strict = p->strict ? ~(U)0 : 0;
    c.detach = p->detach ? ~(U)0 : 0;
    c.decay_input = p->decay_input ? ~(U)0 : 0;
    c.hard = p->hard ? ~(U)0 : 0;
    switch (p->sg_kind) {
    case SG_ATAN: /* alpha / 2 / (1 + (pi / 2 * alpha * z)^2) */
        c.sg0 = (T)(p->sg_a / 2);
        c.sg1 = (T)(3.141592653589793 / 2 * p->sg_a);
        break;
    case SG_SIGMOID: /* alpha * sigmoid(alpha z) * (1 - sigmoid(alpha z)) */
        c.sg0 = (T)p->sg_a;
        c.sg1 = (T)p->sg_a;
        break;
    default: /* triangle: gamma * max(0, 1 - eps |z|) */
        c.sg0 = (T)p->sg_a;
        c.sg1 = (T)p->sg_b;
        break;
    }
    return c;
}

INLINE T NAME(charge)(T v, T x, T vr, T d, T a, U decay_input) {
    T with_input_decay = v + (x - (v - vr)) * a;
    T without = (v - vr) * d + vr + x;
    return NAME(pick)(decay_input, with_input_decay, without);
}

INLINE T NAME(fire)(T z, U strict) { /* H(z): z > 0 (strict) or z >= 0 */
    T gt = z > 0 ? (T)1 : (T)0;
    T ge = z >= 0 ? (T)1 : (T)0;
    return NAME(pick)(strict, gt, ge);
}

INLINE T NAME(surrogate)(const int SG, T z, const NAME(lif_consts) *c) {
    if (SG == SG_ATAN) {
        T u = c->sg1 * z;
        return c->sg0 / (1 + u * u);
    }
    if (SG == SG_SIGMOID) {
        T sg = 1 / (1 + EXP(-(c->sg1 * z)));
        return c->sg0 * sg * (1 - sg);
    }
    T w = 1 - c->sg1 * (z < 0 ? -z : z);
    return c->sg0 * (w > 0 ? w : (T)0);
}

/* One chunk [c0, c1) of the M neurons through all nT steps. The variants (decay_input, hard reset,
 * strict threshold) are selects between results computed both ways, so that one vectorised body
 * serves all of them; the selected value is computed exactly as in PyTorch. */
INLINE void NAME(lif_fwd_chunk)(const int SV, const NAME(lif_consts) *cp, const T *restrict x, T *restrict v,
                                T *restrict s, T *restrict h, i64 nT, i64 M, i64 c0, i64 c1) {
    const NAME(lif_consts) c = *cp; /* locals: loop invariants, no reloads */
    const T vth = c.vth, vres = c.vres, vr = c.vr, d = c.d, a = c.a;
    const U strict = c.strict, hard = c.hard, di = c.decay_input;
    for (i64 t = 0; t < nT; t++) {
        const T *restrict xt = x + t * M;
        T *restrict st = s + t * M;
        T *restrict ht = SV ? h + t * M : NULL;
        for (i64 m = c0; m < c1; m++) {
            T hh = NAME(charge)(v[m], xt[m], vr, d, a, di);
            T sp = NAME(fire)(hh - vth, strict);
            T v_hard = hh * ((T)1 - sp) + vres * sp;
            T v_soft = hh - vth * sp;
            v[m] = NAME(pick)(hard, v_hard, v_soft);
            st[m] = sp;
            if (SV) ht[m] = hh;
        }
    }
}

/* x [nT, M], v [M] (initial, overwritten with the final state), s [nT, M] out, h [nT, M] out or NULL. */
HOT static void NAME(lif_fwd_range)(const lif_params *p, const T *x, T *v, T *s, T *h, i64 nT, i64 M,
                                    i64 m0, i64 m1) {
    const NAME(lif_consts) c = NAME(make_consts)(p);
    for (i64 c0 = m0; c0 < m1; c0 += LIF_CHUNK) {
        i64 c1 = c0 + LIF_CHUNK < m1 ? c0 + LIF_CHUNK : m1;
        if (h) NAME(lif_fwd_chunk)(1, &c, x, v, s, h, nT, M, c0, c1);
        else NAME(lif_fwd_chunk)(0, &c, x, v, s, h, nT, M, c0, c1);
    }
}

/* Backpropagation through time. Nothing but the input is kept from the forward pass: for a chunk
 * of neurons the charged membrane h of every step is recomputed (the same arithmetic as the
 * forward pass, so the same values) into a small buffer, then walked backwards.
 * gv [M]: in, the gradient of the final v; out, that of the initial v. gs [nT, M]: gradient of the
 * output spikes; gx [nT, M] out. Per step, backwards (s = H(h - v_th), g = dL/dv_t):
 *   hard reset: g_s = gs + (g v_reset - g h)  (gs alone when detach_reset)
 *               g_h = g (1 - s) + g_s sg(h - v_th)
 *   soft reset: g_s = gs + (-(v_th g));  g_h = g + g_s sg(h - v_th)
 *   charge:     decay_input: g_x = g_h (1 - d), g_{v,t-1} = g_h - g_x;  else g_x = g_h, g_{v,t-1} = g_h d
 * (the operations autograd performs on the generic loop, in its order where it matters). */
INLINE void NAME(lif_bwd_chunk)(const int SG, const NAME(lif_consts) *cp, const T *restrict x,
                                const T *restrict v0, const T *restrict gs, T *restrict gv, T *restrict gx,
                                T *restrict hb, i64 nT, i64 M, i64 c0, i64 c1) {
    const NAME(lif_consts) c = *cp;
    const T vth = c.vth, vres = c.vres, vr = c.vr, a = c.a, d = c.d;
    const U strict = c.strict, detach = c.detach, hard = c.hard, di = c.decay_input;
    const i64 w = c1 - c0;
    T vb[LIF_CHUNK], sgb[LIF_CHUNK];
    for (i64 m = 0; m < w; m++) vb[m] = v0[c0 + m];
    for (i64 t = 0; t < nT; t++) { /* recompute h [nT, w] */
        const T *restrict xt = x + t * M + c0;
        T *restrict ht = hb + t * w;
        for (i64 m = 0; m < w; m++) {
            T hh = NAME(charge)(vb[m], xt[m], vr, d, a, di);
            T sp = NAME(fire)(hh - vth, strict);
            T v_hard = hh * ((T)1 - sp) + vres * sp;
            T v_soft = hh - vth * sp;
            vb[m] = NAME(pick)(hard, v_hard, v_soft);
            ht[m] = hh;
        }
    }
    for (i64 t = nT - 1; t >= 0; t--) {
        const T *restrict ht = hb + t * w;
        const T *restrict gst = gs + t * M + c0;
        T *restrict gxt = gx + t * M + c0;
        T *restrict gvc = gv + c0;
        for (i64 m = 0; m < w; m++) sgb[m] = NAME(surrogate)(SG, ht[m] - vth, &c); /* own loop: vectorises */
        for (i64 m = 0; m < w; m++) {
            T hh = ht[m], g = gvc[m], gso = gst[m];
            T sp = NAME(fire)(hh - vth, strict);
            T sg = sgb[m];
            T gs_hard = gso + (g * vres - g * hh);
            T gs_soft = gso + (-(vth * g));
            T gs_reset = NAME(pick)(hard, gs_hard, gs_soft);
            T gsum = NAME(pick)(detach, gso, gs_reset);
            T gh_hard = g * ((T)1 - sp) + gsum * sg;
            T gh_soft = g + gsum * sg;
            T gh = NAME(pick)(hard, gh_hard, gh_soft);
            T gx_di = gh * a;
            T gv_di = gh - gx_di, gv_plain = gh * d;
            gxt[m] = NAME(pick)(di, gx_di, gh);
            gvc[m] = NAME(pick)(di, gv_di, gv_plain);
        }
    }
}

/* Chunk width for the backward pass: its h buffer [nT, width] stays within about 256 KiB (L2). */
static i64 NAME(bwd_width)(i64 nT) {
    i64 w = (i64)(256 * 1024 / sizeof(T)) / (nT > 0 ? nT : 1);
    w = w > LIF_CHUNK ? LIF_CHUNK : w;
    w &= ~(i64)15;
    return w < 16 ? 16 : w;
}

HOT static int NAME(lif_bwd_range)(const lif_params *p, const T *x, const T *v0, const T *gs, T *gv, T *gx,
                                   i64 nT, i64 M, i64 m0, i64 m1) {
    const NAME(lif_consts) c = NAME(make_consts)(p);
    const i64 width = NAME(bwd_width)(nT);
    T *hb = malloc(sizeof(T) * (size_t)(nT * width + 1));
    if (!hb) return 1;
    for (i64 c0 = m0; c0 < m1; c0 += width) {
        i64 c1 = c0 + width < m1 ? c0 + width : m1;
        switch (p->sg_kind) {
        case SG_ATAN: NAME(lif_bwd_chunk)(SG_ATAN, &c, x, v0, gs, gv, gx, hb, nT, M, c0, c1); break;
        case SG_SIGMOID: NAME(lif_bwd_chunk)(SG_SIGMOID, &c, x, v0, gs, gv, gx, hb, nT, M, c0, c1); break;
        default: NAME(lif_bwd_chunk)(SG_TRIANGLE, &c, x, v0, gs, gv, gx, hb, nT, M, c0, c1); break;
        }
    }
    free(hb);
    return 0;
}

static void NAME(lif_forward)(const lif_params *p, const T *x, T *v, T *s, T *h, i64 nT, i64 M, int nt) {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(M, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        NAME(lif_fwd_range)(p, x, v, s, h, nT, M, lo, hi);
    }
}

static int NAME(lif_backward)(const lif_params *p, const T *x, const T *v0, const T *gs, T *gv, T *gx, i64 nT,
                              i64 M, int nt) {
    int fail = 0;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : fail)
    {
        i64 lo, hi;
        share(M, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        fail |= NAME(lif_bwd_range)(p, x, v0, gs, gv, gx, nT, M, lo, hi);
    }
    return fail;
}

/* ---------------------------------------------------------------- CSR synapses (by input)
 * y[r, indices[e]] += x[r, k] * values[e] over nonzero x[r, k] (k ascending), e in row k in order:
 * the order of TorchKernels.csr_matmul's index_add, so the sums are equal bit for bit. */
HOT static void NAME(csr_matmul_rows)(const T *x, const i64 *indptr, const i64 *indices, const T *values,
                                      T *y, i64 r0, i64 r1, i64 K, i64 N) {
    for (i64 r = r0; r < r1; r++) {
        const T *xr = x + r * K;
        T *yr = y + r * N;
        for (i64 j = 0; j < N; j++) yr[j] = 0;
        for (i64 k = 0; k < K; k++) {
            const T a = xr[k];
            if (a != 0)
                for (i64 e = indptr[k]; e < indptr[k + 1]; e++) yr[indices[e]] += a * values[e];
        }
    }
}

static void NAME(csr_matmul)(const T *x, const i64 *indptr, const i64 *indices, const T *values, T *y,
                             i64 R, i64 K, i64 N, int nt) {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(R, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        NAME(csr_matmul_rows)(x, indptr, indices, values, y, lo, hi, K, N);
    }
}

/* ---------------------------------------------------------------- delayed synapses (ring buffer)
 * C steps of neuro.synapses.delay.delay_event_steps, fused: ring [B, 2L, N], step c has slot
 * s = (t0 + c) mod L. Each nonzero x[c, b, k] adds x * values[e] to ring[b, s * N + indices[e]]
 * (indices[e] = d * N + o: arrival d steps later at output o); then y[c, b] = ring[b, s] +
 * ring[b, s + L] and both slots are cleared. Work per step ~ active inputs x fan-out + N, never L x N.
 * Batch rows are independent: threads own ranges of b and run every step for them. */
HOT static void NAME(delay_ring_rows)(const T *x, const i64 *indptr, const i64 *indices, const T *values, T *ring,
                                      T *y, i64 b0, i64 b1, i64 C, i64 B, i64 K, i64 N, i64 L, i64 t0) {
    for (i64 c = 0; c < C; c++) {
        const i64 s = (t0 + c) % L;
        for (i64 b = b0; b < b1; b++) {
            const T *xr = x + (c * B + b) * K;
            T *rb = ring + b * 2 * L * N;
            T *base = rb + s * N;
            for (i64 k = 0; k < K; k++) {
                const T a = xr[k];
                if (a != 0)
                    for (i64 e = indptr[k]; e < indptr[k + 1]; e++) base[indices[e]] += a * values[e];
            }
            T *yr = y + (c * B + b) * N, *r0 = rb + s * N, *r1 = rb + (s + L) * N;
            for (i64 j = 0; j < N; j++) {
                yr[j] = r0[j] + r1[j];
                r0[j] = 0;
                r1[j] = 0;
            }
        }
    }
}

static void NAME(delay_ring)(const T *x, const i64 *indptr, const i64 *indices, const T *values, T *ring, T *y,
                             i64 C, i64 B, i64 K, i64 N, i64 L, i64 t0, int nt) {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(B, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        NAME(delay_ring_rows)(x, indptr, indices, values, ring, y, lo, hi, C, B, K, N, L, t0);
    }
}

/* g[e] = sum over r ascending with x[r, pre(e)] != 0 of x[r, pre(e)] * gy[r, post(e)];
 * threads own ranges of inputs k (their synapses), about equal in synapse count. */
HOT static void NAME(csr_value_grad_range)(i64 k0, i64 k1, const i64 *colptr, const i32 *colrow,
                                           const T *colval, const T *gy, const i64 *indptr,
                                           const i64 *indices, T *g, i64 N) {
    for (i64 e = indptr[k0]; e < indptr[k1]; e++) g[e] = 0;
    for (i64 k = k0; k < k1; k++) {
        const i64 e0 = indptr[k], e1 = indptr[k + 1];
        for (i64 p = colptr[k]; p < colptr[k + 1]; p++) {
            const T a = colval[p];
            const T *gyr = gy + (i64)colrow[p] * N;
            for (i64 e = e0; e < e1; e++) g[e] += a * gyr[indices[e]];
        }
    }
}

static int NAME(csr_value_grad)(const T *x, const T *gy, const i64 *indptr, const i64 *indices, T *g,
                                i64 R, i64 K, i64 N, int nt) {
    i64 *colptr, *bounds = malloc(sizeof(i64) * (size_t)(nt + 1));
    i32 *colrow;
    T *colval;
    if (!bounds) return 1;
    if (NAME(build_columns)(x, R, K, nt, &colptr, &colrow, &colval)) {
        free(bounds);
        return 1;
    }
    balance(indptr, K, nt, bounds);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = THREAD_ID();
        if (NUM_THREADS() != nt) {
            if (t == 0) NAME(csr_value_grad_range)(0, K, colptr, colrow, colval, gy, indptr, indices, g, N);
        } else {
            NAME(csr_value_grad_range)(bounds[t], bounds[t + 1], colptr, colrow, colval, gy, indptr, indices,
                                       g, N);
        }
    }
    free(bounds);
    free(colptr);
    free(colrow);
    free(colval);
    return 0;
}

/* gx[r, k] = sum over e in row k (in order) of gy[r, indices[e]] * values[e]; threads own rows. */
HOT static void NAME(csr_input_grad_rows)(const T *gy, const i64 *indptr, const i64 *indices, const T *values,
                                          T *gx, i64 r0, i64 r1, i64 K, i64 N) {
    for (i64 r = r0; r < r1; r++) {
        const T *gyr = gy + r * N;
        T *gxr = gx + r * K;
        for (i64 k = 0; k < K; k++) {
            T acc = 0;
            for (i64 e = indptr[k]; e < indptr[k + 1]; e++) acc += gyr[indices[e]] * values[e];
            gxr[k] = acc;
        }
    }
}

static void NAME(csr_input_grad)(const T *gy, const i64 *indptr, const i64 *indices, const T *values, T *gx,
                                 i64 R, i64 K, i64 N, int nt) {
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        i64 lo, hi;
        share(R, THREAD_ID(), NUM_THREADS(), &lo, &hi);
        NAME(csr_input_grad_rows)(gy, indptr, indices, values, gx, lo, hi, K, N);
    }
}
