"""Numba kernels that build one implicit k-d tree over the columns of a feature subset.

All trees of an index share one geometry (it depends on ``N`` and the leaf size only):
a complete binary tree in heap order (children of node ``i`` are ``2i+1`` and ``2i+2``)
whose node ``i`` owns the contiguous row range ``[start[i], end[i])`` of the tree's
leaf-ordered arrays. An internal node of ``m`` rows gives its first ``m // 2`` rows to
the left child, so every tree stores its points in the same ranges, only in a
different order. Node bounds are tight (min/max of the data under the node).
"""

from __future__ import annotations

import numba as nb
import numpy as np


def tree_depth(n_rows: int, leaf_size: int) -> int:
    """Smallest depth ``d >= 0`` with ``ceil(n_rows / 2**d) <= leaf_size``."""
    depth = 0
    while -(-n_rows // (1 << depth)) > leaf_size:
        depth += 1
    return depth


def node_ranges(n_rows: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``(start, end)`` arrays of shape ``(2**(depth+1) - 1,)`` in heap order."""
    n_nodes = (1 << (depth + 1)) - 1
    start = np.zeros(n_nodes, dtype=np.int64)
    end = np.zeros(n_nodes, dtype=np.int64)
    end[0] = n_rows
    for node in range((1 << depth) - 1):
        s, e = start[node], end[node]
        mid = s + (e - s) // 2
        start[2 * node + 1], end[2 * node + 1] = s, mid
        start[2 * node + 2], end[2 * node + 2] = mid, e
    return start, end


@nb.njit(parallel=True, cache=True)
def gather_columns(codes, dims, out):
    """``out[j, i] = codes[i, dims[j]]``: the subset's columns, column-major (m, N)."""
    n = codes.shape[0]
    m = dims.shape[0]
    n_chunks = max(1, min(256, n // 65536))
    for c in nb.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for i in range(lo, hi):
            for j in range(m):
                out[j, i] = codes[i, dims[j]]


@nb.njit(parallel=True, cache=True)
def column_bounds(cols, lo_out, hi_out):
    """Tight min/max of every column of ``cols`` (m, N) into ``lo_out``/``hi_out``."""
    m, n = cols.shape
    for j in nb.prange(m):
        lo = 255
        hi = 0
        for i in range(n):
            v = cols[j, i]
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        lo_out[j] = lo
        hi_out[j] = hi


@nb.njit(parallel=True, cache=True)
def split_level(src, src_ids, dst, dst_ids, start, end, first, count, node_lo, node_hi):
    """Split every node ``first .. first+count-1`` of one level at the median.

    The split axis is the widest tight range of the node; the median is found by
    position with a 256-bin histogram (``m // 2`` rows go left, values equal to the
    median fill the left side first, input order is kept on both sides). Rows are
    written to ``dst``/``dst_ids`` and the tight bounds of both children are filled in
    ``node_lo``/``node_hi`` (``(n_nodes, m)`` uint8).
    """
    m = src.shape[0]
    for k in nb.prange(count):
        node = first + k
        s = start[node]
        e = end[node]
        left = 2 * node + 1
        right = left + 1
        for j in range(m):
            node_lo[left, j] = 255
            node_hi[left, j] = 0
            node_lo[right, j] = 255
            node_hi[right, j] = 0
        if e <= s:
            continue
        axis = 0
        widest = -1
        for j in range(m):
            w = np.int32(node_hi[node, j]) - np.int32(node_lo[node, j])
            if w > widest:
                widest = w
                axis = j
        half = (e - s) // 2
        hist = np.zeros(256, dtype=np.int64)
        for i in range(s, e):
            hist[src[axis, i]] += 1
        below = 0
        pivot = 0
        for v in range(256):
            if below + hist[v] > half:
                pivot = v
                break
            below += hist[v]
        take_equal = half - below
        lp = s
        rp = s + half
        for i in range(s, e):
            v = np.int64(src[axis, i])
            if v < pivot or (v == pivot and take_equal > 0):
                if v == pivot:
                    take_equal -= 1
                dest = lp
                lp += 1
                child = left
            else:
                dest = rp
                rp += 1
                child = right
            for j in range(m):
                x = src[j, i]
                dst[j, dest] = x
                if x < node_lo[child, j]:
                    node_lo[child, j] = x
                if x > node_hi[child, j]:
                    node_hi[child, j] = x
            dst_ids[dest] = src_ids[i]


@nb.njit(parallel=True, cache=True)
def write_rows(cols, ids, values_out, ids_out):
    """Transpose column-major ``cols`` (m, N) into row-major flat ``values_out``."""
    m, n = cols.shape
    n_chunks = max(1, min(256, n // 65536))
    for c in nb.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for i in range(lo, hi):
            base = i * m
            for j in range(m):
                values_out[base + j] = cols[j, i]
            ids_out[i] = ids[i]


def build_tree(codes, dims, start, end, depth, values_out, ids_out, node_lo, node_hi):
    """Build the tree of one feature subset in place.

    Args:
        codes: uint8 ``(N, D)`` C-contiguous catalogue (may be memory-mapped).
        dims: int32 ``(m,)`` the subset's dimensions.
        start, end: int64 node row ranges from :func:`node_ranges`.
        depth: tree depth (leaves are the last level).
        values_out: uint8 ``(N * m,)`` receives the rows in leaf order, row-major.
        ids_out: uint32 ``(N,)`` receives the row id of every leaf-ordered row.
        node_lo, node_hi: uint8 ``(n_nodes, m)`` receive the tight node bounds.
    """
    n = codes.shape[0]
    m = dims.shape[0]
    src = np.empty((m, n), dtype=np.uint8)
    gather_columns(codes, dims, src)
    src_ids = np.arange(n, dtype=np.uint32)
    column_bounds(src, node_lo[0], node_hi[0])
    if depth > 0:
        dst = np.empty_like(src)
        dst_ids = np.empty_like(src_ids)
        for level in range(depth):
            first = (1 << level) - 1
            split_level(
                src,
                src_ids,
                dst,
                dst_ids,
                start,
                end,
                first,
                1 << level,
                node_lo,
                node_hi,
            )
            src, dst = dst, src
            src_ids, dst_ids = dst_ids, src_ids
        del dst, dst_ids
    write_rows(src, src_ids, values_out, ids_out)
