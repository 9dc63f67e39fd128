"""Numba kernel of :mod:`.local_cluster`: the nearest rows of each row."""

from __future__ import annotations

import numba as nb
import numpy as np

from .jit import serial_and_parallel
from .scan_kernels import keep_smallest


def _nearest_rows(codes, k):
    """int64 ``(n, k)``: for each row of ``codes`` (uint8 ``(n, D)``), its ``k``
    nearest other rows by exact squared distance, nearest first, ties to the lower
    row. ``k`` must be in ``[1, n - 1]``."""
    n, d = codes.shape
    out = np.empty((n, k), dtype=np.int64)
    for i in nb.prange(n):
        heap = np.empty(k, dtype=np.int64)
        size = 0
        for j in range(n):
            if j == i:
                continue
            acc = np.int64(0)
            for t in range(d):
                diff = np.int32(codes[j, t]) - np.int32(codes[i, t])
                acc += diff * diff
            size = keep_smallest(heap, size, k, (acc << 32) | np.int64(j))
        best = np.sort(heap[:size])
        for t in range(k):
            out[i, t] = best[t] & 0xFFFFFFFF
    return out


nearest_rows_serial, nearest_rows_parallel = serial_and_parallel(_nearest_rows)
