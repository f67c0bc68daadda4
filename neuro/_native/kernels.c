/* neuro._native._kernels: event kernels over dense rows (products of a sparse input with a dense
 * matrix), float32 and float64.
 *
 *   rows_matmul(x [R, K], wt [K, N], bias [N]) -> y [R, N]: y[r] = bias + sum_{k: x[r,k] != 0} x[r,k] wt[k]
 *       (wt with any strides, so a transposed weight needs no copy)
 *   outer_accumulate(x [R, K], gy [R, N]) -> g [K, N]: g[k] = sum_{r: x[r,k] != 0} x[r,k] gy[r]
 *   count_nonzero(x [n]) -> int
 *
 * Compiled with FMA contraction allowed (see setup.py): these results equal the dense products to
 * float tolerance. The kernels whose arithmetic must match PyTorch bit for bit live in engine.c.
 */
#include "common.h"

/* 64-byte vectors: one zmm register on AVX-512, two ymm on AVX2, four xmm on baseline x86-64 */
typedef float vf16 __attribute__((vector_size(64)));
typedef double vd8 __attribute__((vector_size(64)));

#define T float
#define U uint32_t
#define IS_F32 1
#define V vf16
#define VL 16
#define NAME(x) x##_f32
#include "extract_impl.h"
#include "kernels_impl.h"
#undef T
#undef U
#undef IS_F32
#undef V
#undef VL
#undef NAME

#define T double
#define U uint64_t
#define IS_F32 0
#define V vd8
#define VL 8
#define NAME(x) x##_f64
#include "extract_impl.h"
#include "kernels_impl.h"
#undef T
#undef U
#undef IS_F32
#undef V
#undef VL
#undef NAME

/* Python: rows_matmul(dtype, R, K, N, x, wt, wt_stride0, wt_stride1, bias, y, nthreads); dtype 0 =
 * float32, 1 = float64; strides in elements; bias 0 for none. */
static PyObject *py_rows_matmul(PyObject *self, PyObject *args) {
    int dt, nth;
    long long R, K, N, rs, cs;
    unsigned long long px, pw, pb, py;
    if (!PyArg_ParseTuple(args, "iLLLKKLLKKi", &dt, &R, &K, &N, &px, &pw, &rs, &cs, &pb, &py, &nth)) return NULL;
    int nt = clamp_threads(nth, R), fail;
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0)
        fail = rows_matmul_f32((const float *)px, (const float *)pw, rs, cs, (const float *)pb, (float *)py, R, K, N, nt);
    else
        fail = rows_matmul_f64((const double *)px, (const double *)pw, rs, cs, (const double *)pb, (double *)py, R, K,
                               N, nt);
    Py_END_ALLOW_THREADS
    if (fail) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* Python: outer_accumulate(dtype, R, K, N, x, gy, g, nthreads). */
static PyObject *py_outer_accumulate(PyObject *self, PyObject *args) {
    int dt, nth;
    long long R, K, N;
    unsigned long long px, pgy, pg;
    if (!PyArg_ParseTuple(args, "iLLLKKKi", &dt, &R, &K, &N, &px, &pgy, &pg, &nth)) return NULL;
    int nt = clamp_threads(nth, K), fail;
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0) fail = outer_accumulate_f32((const float *)px, (const float *)pgy, (float *)pg, R, K, N, nt);
    else fail = outer_accumulate_f64((const double *)px, (const double *)pgy, (double *)pg, R, K, N, nt);
    Py_END_ALLOW_THREADS
    if (fail) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* Python: count_nonzero(dtype, n, x, nthreads) -> int */
static PyObject *py_count_nonzero(PyObject *self, PyObject *args) {
    int dt, nth;
    long long n;
    unsigned long long px;
    if (!PyArg_ParseTuple(args, "iLKi", &dt, &n, &px, &nth)) return NULL;
    int nt = clamp_threads(nth, n / 65536 + 1);
    i64 c;
    Py_BEGIN_ALLOW_THREADS
    c = dt == 0 ? count_nonzero_f32((const float *)px, n, nt) : count_nonzero_f64((const double *)px, n, nt);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(c);
}

/* column_activity(dtype, T, R, F, x, cols, amax, same, nthreads) */
static PyObject *py_column_activity(PyObject *self, PyObject *args) {
    int dt, nth;
    long long T_, R, F;
    unsigned long long px, pc, pm, ps;
    if (!PyArg_ParseTuple(args, "iLLLKKKKi", &dt, &T_, &R, &F, &px, &pc, &pm, &ps, &nth)) return NULL;
    int nt = clamp_threads(nth, T_);
    Py_BEGIN_ALLOW_THREADS
    if (dt == 0) column_activity_f32((const float *)px, T_, R, F, (i64 *)pc, (double *)pm, (unsigned char *)ps, nt);
    else column_activity_f64((const double *)px, T_, R, F, (i64 *)pc, (double *)pm, (unsigned char *)ps, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"count_nonzero", py_count_nonzero, METH_VARARGS, "count_nonzero(dtype, n, x, nthreads) -> int"},
    {"column_activity", py_column_activity, METH_VARARGS, "column_activity(dtype, T, R, F, x, cols, amax, same, nthreads)"},
    {"rows_matmul", py_rows_matmul, METH_VARARGS, "rows_matmul(dtype, R, K, N, x, wt, rs, cs, bias, y, nthreads)"},
    {"outer_accumulate", py_outer_accumulate, METH_VARARGS, "outer_accumulate(dtype, R, K, N, x, gy, g, nthreads)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Event kernels over dense rows (neuro._native).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
