"""Numba kernels for full parallel scans over ``(N, D)`` uint8 codes.

Boxes are given with their dimensions resolved: ``box_dims`` int32 ``(B, max_len)``,
``box_len`` int32 ``(B,)``, ``lo8`` uint8 ``(B, max_len)`` lower bounds and ``span8``
uint8 ``hi - lo`` (non-empty boxes only, bounds clipped to [0, 255]); ``order``
lists the boxes grouped by member and ``next_group[t]`` is the first position after
``t`` whose box belongs to another member; ``used_dims`` int64 lists the dims any
box uses. The kernels that measure each box against a sample (rows held, shrinking)
read the codes transposed, ``cols`` uint8 ``(D, N)``, with ``lo`` / ``hi`` int32
``(B, max_len)``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .jit import parallel_kernel, serial_and_parallel

_BLOCK = 2048


@nb.njit(inline="always")
def _count_rows(
    codes, used_dims, box_dims, box_len, lo8, span8, order, next_group, out, first, last
):
    """Count, for rows ``first..last``, the member groups with a box holding the row.

    Rows are processed in blocks transposed to column-major (only the dims some box
    uses), so every box test is a branch-free loop over contiguous bytes:
    ``lo <= v <= hi`` is ``uint8(v - lo) <= uint8(hi - lo)``.
    """
    n_boxes = order.shape[0]
    cols = np.empty((codes.shape[1], _BLOCK), dtype=np.uint8)
    mask = np.empty(_BLOCK, dtype=np.uint8)
    acc = np.empty(_BLOCK, dtype=np.uint8)
    cnt = np.empty(_BLOCK, dtype=np.int32)
    for a in range(first, last, _BLOCK):
        w = min(last, a + _BLOCK) - a
        for d in used_dims:
            for i in range(w):
                cols[d, i] = codes[a + i, d]
        for i in range(w):
            cnt[i] = 0
        t = 0
        while t < n_boxes:
            group_end = next_group[t]
            for i in range(w):
                acc[i] = 0
            for tt in range(t, group_end):
                b = order[tt]
                for i in range(w):
                    mask[i] = 1
                for j in range(box_len[b]):
                    col = cols[box_dims[b, j]]
                    lo = lo8[b, j]
                    span = span8[b, j]
                    for i in range(w):
                        mask[i] &= np.uint8(np.uint8(col[i] - lo) <= span)
                for i in range(w):
                    acc[i] |= mask[i]
            for i in range(w):
                cnt[i] += acc[i]
            t = group_end
        for i in range(w):
            out[a + i] = cnt[i]


def _count_boxes(
    codes, used_dims, box_dims, box_len, lo8, span8, order, next_group, out
):
    """``out[i]`` = number of member groups (``order``/``next_group``) holding row i
    (chunks of rows spread over threads in ``count_boxes_parallel``)."""
    n = codes.shape[0]
    n_chunks = max(1, min(1024, n // (16 * _BLOCK)))
    for c in nb.prange(n_chunks):
        _count_rows(
            codes, used_dims, box_dims, box_len, lo8, span8, order, next_group, out,
            c * n // n_chunks, (c + 1) * n // n_chunks,
        )  # fmt: skip


count_boxes_serial, count_boxes_parallel = serial_and_parallel(_count_boxes)


@nb.njit(inline="always")
def _sift_down(heap, k):
    i = 0
    x = heap[0]
    while True:
        c = 2 * i + 1
        if c >= k:
            break
        if c + 1 < k and heap[c + 1] > heap[c]:
            c += 1
        if heap[c] <= x:
            break
        heap[i] = heap[c]
        i = c
    heap[i] = x


def _knn(codes, query, k, allowed):
    """Exact k smallest keys ``sq_dist * 2**32 + id`` (int64, sorted ascending)
    of the rows whose ``allowed`` (uint8 ``(N,)``) is nonzero, or of every row
    when ``allowed`` is None; ``k`` must be in ``[1, number of those rows]``.

    Each chunk of rows keeps a max-heap of its k best keys; the chunks' heaps are
    merged at the end.
    """
    n = codes.shape[0]
    n_chunks = max(1, min(256, n // 65536))
    heaps = np.empty((n_chunks, k), dtype=np.int64)
    sizes = np.zeros(n_chunks, dtype=np.int64)
    for c in nb.prange(n_chunks):
        first, last = c * n // n_chunks, (c + 1) * n // n_chunks
        sizes[c] = _knn_rows(codes, query, k, heaps[c], first, last, allowed)
    return _merge_heaps(heaps, sizes, k)


knn_serial, knn_kernel = serial_and_parallel(_knn)


@nb.njit(inline="always")
def _knn_rows(codes, query, k, heap, first, last, allowed):
    """Keep the k smallest keys of rows ``first..last`` in max-heap ``heap`` (of
    the rows ``allowed`` holds nonzero, when given)."""
    d = codes.shape[1]
    size = 0
    for i in range(first, last):
        if allowed is not None and allowed[i] == 0:
            continue
        acc = np.int64(0)
        for j in range(d):
            diff = np.int32(codes[i, j]) - np.int32(query[j])
            acc += diff * diff
        size = keep_smallest(heap, size, k, (acc << 32) | np.int64(i))
    return size


@nb.njit(inline="always")
def keep_smallest(heap, size, k, key):
    """Offer ``key`` to the max-heap ``heap`` holding the ``size`` smallest keys
    seen (at most ``k``); returns the new size."""
    if size < k:
        p = size
        while p > 0:
            parent = (p - 1) // 2
            if heap[parent] >= key:
                break
            heap[p] = heap[parent]
            p = parent
        heap[p] = key
        return size + 1
    if key < heap[0]:
        heap[0] = key
        _sift_down(heap, k)
    return size


@nb.njit(inline="always")
def _box_mask(cols, dims, n, lo, hi, mask) -> int:
    """Set ``mask[i]`` (uint8 ``(N,)``) to 1 where row ``i`` of ``cols`` (uint8
    ``(D, N)``) lies in the box, 0 elsewhere; return how many rows do. One
    branch-free pass per dim: ``lo <= v <= hi`` is ``uint8(v - lo) <= uint8(hi -
    lo)``."""
    mask[:] = 1
    for j in range(n):
        a, c = max(lo[j], 0), min(hi[j], 255)
        if a > c:
            mask[:] = 0
            return 0
        low, span = np.uint8(a), np.uint8(c - a)
        col = cols[dims[j]]
        for i in range(mask.shape[0]):
            mask[i] &= np.uint8(col[i] - low) <= span
    held = 0
    for i in range(mask.shape[0]):
        held += mask[i]
    return held


@nb.njit(inline="always")
def _entry_time(cols, i, dims, n, lo, hi, seed) -> float:
    """The smallest ``t`` in [0, 1] at which row ``i`` lies in the box scaled by
    ``t`` about ``seed`` (a point of the box)."""
    t = 0.0
    for j in range(n):
        v = np.int32(cols[dims[j], i])
        if v < seed[j]:
            t = max(t, (seed[j] - v) / (seed[j] - lo[j]))
        elif v > seed[j]:
            t = max(t, (v - seed[j]) / (hi[j] - seed[j]))
    return t


@parallel_kernel
def shrink_boxes_kernel(cols, box_dims, box_len, lo, hi, seed, limit):
    """``(lo, hi)`` int32 ``(B, max_len)``: each box (``lo``/``hi`` int32, inclusive)
    holding more than ``limit[b]`` of the rows of ``cols`` (uint8 ``(D, N)``: the
    codes transposed, so that a box reads only its dims) shrunk about the point
    ``seed[b]`` (int32 ``(B, max_len)``, inside the box). Scaled by ``t`` in
    [0, 1], a box spans ``seed - floor(t (seed - lo))`` to ``seed + floor(t (hi -
    seed))`` per dim, and a row enters at ``t_i``, the largest over dims of its
    distance from the seed over the box's reach that way: the box scaled by ``t``
    holds exactly the rows with ``t_i <= t``. The kept ``t`` is the largest
    ``t_i`` below the ``limit[b]``-th smallest (0 if none): the smallest box
    holding the rows that any scaling within the limit can hold."""
    out_lo = lo.copy()
    out_hi = hi.copy()
    n_rows = cols.shape[1]
    for b in nb.prange(box_dims.shape[0]):
        dims, n, lo_b, hi_b, seed_b = box_dims[b], box_len[b], lo[b], hi[b], seed[b]
        mask = np.empty(n_rows, dtype=np.uint8)
        held = _box_mask(cols, dims, n, lo_b, hi_b, mask)
        if held <= limit[b]:
            continue
        times = np.empty(held, dtype=np.float64)
        k = 0
        for i in range(n_rows):
            if mask[i]:
                times[k] = _entry_time(cols, i, dims, n, lo_b, hi_b, seed_b)
                k += 1
        # the limit-th smallest entry is the first left out; the box keeps the
        # largest entry below it (every row entering with it goes too)
        times = np.partition(times, limit[b])
        first_out = times[limit[b]]
        t = 0.0
        for k in range(limit[b]):
            if times[k] < first_out:
                t = max(t, times[k])
        # t (s - lo) is a fraction whose denominator is at most 255: 1e-9 only
        # absorbs the division's rounding
        for j in range(n):
            s, down, up = seed_b[j], seed_b[j] - lo_b[j], hi_b[j] - seed_b[j]
            out_lo[b, j] = s - np.int32(np.floor(t * down + 1e-9))
            out_hi[b, j] = s + np.int32(np.floor(t * up + 1e-9))
    return out_lo, out_hi


@nb.njit(cache=True, nogil=True)
def _merge_heaps(heaps, sizes, k):
    total = 0
    for c in range(sizes.shape[0]):
        total += sizes[c]
    cand = np.empty(total, dtype=np.int64)
    t = 0
    for c in range(sizes.shape[0]):
        for i in range(sizes[c]):
            cand[t] = heaps[c, i]
            t += 1
    cand.sort()
    return cand[:k]


@parallel_kernel
def rows_per_box_kernel(cols, box_dims, box_len, lo, hi):
    """int64 ``(B,)``: rows of ``cols`` (uint8 ``(D, N)``, the codes transposed)
    inside each box (``lo``/``hi`` int32 ``(B, max_len)``, inclusive; a box with
    ``lo > hi`` holds none)."""
    out = np.zeros(box_dims.shape[0], dtype=np.int64)
    for b in nb.prange(box_dims.shape[0]):
        mask = np.empty(cols.shape[1], dtype=np.uint8)
        out[b] = _box_mask(cols, box_dims[b], box_len[b], lo[b], hi[b], mask)
    return out
