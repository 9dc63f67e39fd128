"""Numba kernel of the query ball: exact squared distances of uint8 codes to a code."""

from __future__ import annotations

import numba as nb
import numpy as np

from .jit import serial_and_parallel

_BLOCK = 4096
#: Below this many rows the distances are computed on the calling thread.
PARALLEL_MIN_ROWS = 1 << 16


def _squared_distances(codes, query, out):
    """``out[i] = sum_d (codes[i, d] - query[d]) ** 2`` exactly, in int32.

    Args:
        codes: uint8 ``(N, D)`` with ``D * 255**2 < 2**31``.
        query: uint8 ``(D,)``.
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
                diff = np.int32(codes[i, d]) - np.int32(query[d])
                acc += diff * diff
            out[i] = acc


squared_distances_serial, squared_distances_parallel = serial_and_parallel(
    _squared_distances
)


def squared_distances(codes, query, out) -> None:
    """:func:`_squared_distances` on one thread for small inputs, on all for large."""
    if codes.shape[0] < PARALLEL_MIN_ROWS:
        squared_distances_serial(codes, query, out)
    else:
        squared_distances_parallel(codes, query, out)
