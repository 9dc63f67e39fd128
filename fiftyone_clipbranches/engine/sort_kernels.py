"""Numba kernel ranking float64 scores: a stable LSD radix sort on their bits.

``radix_descending_order(scores)`` is ``np.argsort(-scores, kind="stable")`` (ties
keep their input order) in linear time: four passes of 16-bit digits over an
unsigned key that orders like the scores, skipping a pass where every key has one
digit. About 4x faster than numpy's stable sort from 10^5 rows on.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_SIGN = np.uint64(1 << 63)
_DIGIT_BITS = 16
_N_BUCKETS = 1 << _DIGIT_BITS


@nb.njit(cache=True, nogil=True)
def radix_descending_order(scores):
    """int64 ``(n,)``: positions of ``scores`` (float64 ``(n,)``, no NaN) by
    descending value, equal values in ascending position (-0.0 equals 0.0)."""
    n = scores.shape[0]
    keys = np.empty(n, np.uint64)
    bits = (scores + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    for i in range(n):
        b = bits[i]
        # ascending order of the floats is ascending order of these keys; invert
        # them for a descending rank
        up = ~b if b & _SIGN else b | _SIGN
        keys[i] = ~up
    order = np.arange(n, dtype=np.int64)
    tmp_keys = np.empty(n, np.uint64)
    tmp_order = np.empty(n, np.int64)
    count = np.zeros(_N_BUCKETS, np.int64)
    mask = np.uint64(_N_BUCKETS - 1)
    for p in range(64 // _DIGIT_BITS):
        shift = np.uint64(p * _DIGIT_BITS)
        count[:] = 0
        for i in range(n):
            count[(keys[i] >> shift) & mask] += 1
        if n == 0 or count[(keys[0] >> shift) & mask] == n:
            continue  # one digit for every key: the pass would not move anything
        total = 0
        for d in range(_N_BUCKETS):
            c = count[d]
            count[d] = total
            total += c
        for i in range(n):
            d = (keys[i] >> shift) & mask
            at = count[d]
            count[d] = at + 1
            tmp_keys[at] = keys[i]
            tmp_order[at] = order[i]
        keys, tmp_keys = tmp_keys, keys
        order, tmp_order = tmp_order, order
    return order


@nb.njit(cache=True, nogil=True)
def radix_sorted(keys, max_key):
    """int64 ``(n,)``: ``keys`` (int64 ``(n,)``, each in ``[0, max_key]``) in
    ascending order, as ``np.sort``; an LSD radix sort in as few passes of up to
    16-bit digits as ``max_key`` needs (2 for the pair keys of 10M rows and 25
    members), linear in ``n``."""
    n = keys.shape[0]
    n_bits = 1
    while n_bits < 63 and (max_key >> n_bits) > 0:
        n_bits += 1
    n_passes = (n_bits + _DIGIT_BITS - 1) // _DIGIT_BITS
    width = (n_bits + n_passes - 1) // n_passes
    mask = (np.int64(1) << width) - 1
    src = keys.copy()
    dst = np.empty_like(src)
    counts = np.empty((np.int64(1) << width) + 1, np.int64)
    for p in range(n_passes):
        shift = p * width
        counts[:] = 0
        for i in range(n):
            counts[((src[i] >> shift) & mask) + 1] += 1
        for d in range(counts.shape[0] - 1):
            counts[d + 1] += counts[d]
        for i in range(n):
            d = (src[i] >> shift) & mask
            dst[counts[d]] = src[i]
            counts[d] += 1
        src, dst = dst, src
    return src
