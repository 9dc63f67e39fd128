"""Numba kernel of the class ball: exact squared distances of chosen rows to a point."""

from __future__ import annotations

import numba as nb
import numpy as np

from .jit import serial_and_parallel

_BLOCK = 4096
#: Below this many rows the distances are computed on the calling thread.
PARALLEL_MIN_ROWS = 1 << 16


def _row_distances(codes, rows, center, out):
    """``out[i] = sum_d (codes[rows[i], d] - center[d]) ** 2`` exactly.

    Args:
        codes: uint8 ``(N, D)``.
        rows: int64 ``(m,)``, rows of ``codes``.
        center: int64 ``(D,)``.
        out: int64 ``(m,)``, written.
    """
    m = rows.shape[0]
    n_dims = codes.shape[1]
    n_blocks = (m + _BLOCK - 1) // _BLOCK
    for b in nb.prange(n_blocks):
        first = b * _BLOCK
        last = min(m, first + _BLOCK)
        for i in range(first, last):
            r = rows[i]
            acc = np.int64(0)
            for d in range(n_dims):
                diff = np.int64(codes[r, d]) - center[d]
                acc += diff * diff
            out[i] = acc


row_distances_serial, row_distances_parallel = serial_and_parallel(_row_distances)


def row_distances(codes, rows, center, out) -> None:
    """:func:`_row_distances` on one thread for few rows, on all for many."""
    if rows.shape[0] < PARALLEL_MIN_ROWS:
        row_distances_serial(codes, rows, center, out)
    else:
        row_distances_parallel(codes, rows, center, out)
