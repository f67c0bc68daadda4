r"""Counter-based random numbers: the same draws in every engine, in any order.

A draw is a pure function of ``(seed, step, index)``, so the PyTorch engine, the compiled engine
and an exporter can all reproduce one Poisson drive without sharing generator state.

.. math::
    z = \mathrm{splitmix64}(\mathrm{splitmix64}(seed) + step \cdot n + index), \qquad
    u = \lfloor z / 2^{11} \rfloor \cdot 2^{-53} \in [0, 1)

splitmix64 (Steele, Lea, Flood, OOPSLA 2014): ``z += 0x9E3779B97F4A7C15;
z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9; z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^= z >> 31``
(all mod 2^64). A binomial count is drawn by inversion: ``k = #{j : cdf[j] <= u}`` over the table
``cdf[j] = P(K <= j)`` (:func:`binomial_cdf`), exact to the table's float64 rounding.
"""
from __future__ import annotations

import math

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser over uint64 (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, step: int, n: int) -> np.ndarray:
    """float64 [n] in [0, 1): the draws of ``step`` for indices 0..n-1."""
    key = splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
    with np.errstate(over="ignore"):
        ctr = key + np.uint64(step) * np.uint64(n) + np.arange(n, dtype=np.uint64)
    return (splitmix64(ctr) >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def binomial_cdf(n: int, p: float, tail: float = 1e-15) -> np.ndarray:
    """float64 table ``cdf[j] = P(K <= j)`` for K ~ Binomial(n, p), stopped once 1 - cdf < tail."""
    out, acc = [], 0.0
    for j in range(n + 1):
        acc += math.comb(n, j) * p**j * (1 - p) ** (n - j)
        out.append(acc)
        if 1.0 - acc < tail:
            break
    return np.asarray(out, dtype=np.float64)


def binomial(seed: int, step: int, n: int, cdf: np.ndarray) -> np.ndarray:
    """int64 [n]: Binomial counts for one step by inversion of ``cdf``."""
    return np.searchsorted(cdf, uniform(seed, step, n), side="right").astype(np.int64)
