"""Numba kernel for applying integer linear weights to ``(N, D)`` uint8 codes."""

from __future__ import annotations

import numba as nb
import numpy as np

_BLOCK = 4096


@nb.njit(parallel=True, cache=True, fastmath=False)
def linear_scores(codes, weights, out):
    """``out[i] = sum_d weights[d] * codes[i, d]`` exactly, in int32.

    Args:
        codes: uint8 ``(N, D)``.
        weights: int32 ``(D,)``, small enough that no sum overflows int32
            (``255 * D * max|weights| < 2**31``).
        out: int32 ``(N,)``, written.
    """
    n, n_dims = codes.shape
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for b in nb.prange(n_blocks):
        first = b * _BLOCK
        last = min(n, first + _BLOCK)
        for i in range(first, last):
            acc = np.int32(0)
            for d in range(n_dims):
                acc += weights[d] * np.int32(codes[i, d])
            out[i] = acc
