"""Build script for the compiled backend; the package metadata lives in pyproject.toml.

``neuro._native`` is three small C extension modules (no torch headers; a few seconds to compile):

* ``_kernels`` (kernels.c): event kernels over dense rows. FMA contraction allowed, results equal the
  dense products to float tolerance.
* ``_engine`` (engine.c): the fused LIF steps, the whole-run recurrent engine, the counter-based RNG
  and the CSR kernels, compiled with ``-ffp-contract=off`` so that their arithmetic matches the
  PyTorch step functions bit for bit.
* ``_spiking`` (spiking.c): fused time-axis passes of the converted spiking Transformer (encoders,
  running and window sums, grid rounding with step differences), also ``-ffp-contract=off``: bit for
  bit the PyTorch expressions they replace.

All are optional: where they do not build (no C compiler, no OpenMP), the install still succeeds
and the package runs on its PyTorch kernels.
"""
import os
import sys

from setuptools import Extension, setup

HERE = "neuro/_native"
HEADERS = [f"{HERE}/{h}" for h in ("common.h", "extract_impl.h", "kernels_impl.h", "engine_impl.h")]


def native(name: str, source: str, contract: str) -> Extension:
    if sys.platform == "win32":
        cflags, lflags = ["/O2", "/openmp"], []
    else:
        # -fno-trapping-math / -fno-math-errno: no FP exceptions or errno to preserve, so selects can be
        # vector blends (values are unchanged); -fno-unswitch-loops: the variant selects are already
        # branch-free, unswitching would only multiply the code (and the compile time, by 5x)
        cflags = ["-O3", "-std=gnu11", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-fno-unswitch-loops",
                  "-Wno-psabi", f"-ffp-contract={contract}"]
        lflags = ["-fopenmp"]
    extra = os.environ.get("NEURO_NATIVE_CFLAGS", "").split()
    return Extension(f"neuro._native.{name}", sources=[f"{HERE}/{source}"], depends=HEADERS,
                     extra_compile_args=cflags + extra, extra_link_args=lflags, optional=True)


setup(ext_modules=[native("_kernels", "kernels.c", "fast"), native("_engine", "engine.c", "off"),
                   native("_spiking", "spiking.c", "off")])
