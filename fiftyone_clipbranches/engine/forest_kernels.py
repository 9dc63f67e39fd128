"""Numba kernel of the cascade's forest: tree votes on selected rows of uint8 codes.

The trees are flattened into plain arrays (all trees' nodes one after the other,
child indices absolute); a node with ``feature < 0`` is a leaf.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .jit import serial_and_parallel

#: Below this many rows the forest runs on the calling thread.
PARALLEL_MIN_ROWS = 1 << 14


def _forest_proba(codes, rows, roots, feature, threshold, left, right, value, out):
    """``out[i]`` = mean over trees of the leaf value that ``codes[rows[i]]`` reaches.

    Args:
        codes: uint8 ``(N, D)``.
        rows: int64 ``(m,)``, the rows to score.
        roots: int32 ``(T,)``, each tree's root node.
        feature: int32 ``(nodes,)``, the split dimension, -1 at a leaf.
        threshold: int32 ``(nodes,)``: a row goes left when ``code <= threshold``.
        left, right: int32 ``(nodes,)``, absolute child nodes.
        value: float64 ``(nodes,)``, a leaf's fraction of positive training weight.
        out: float64 ``(m,)``, written.
    """
    n_trees = roots.shape[0]
    for i in nb.prange(rows.shape[0]):
        r = rows[i]
        acc = 0.0
        for t in range(n_trees):
            node = roots[t]
            while feature[node] >= 0:
                if np.int32(codes[r, feature[node]]) <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            acc += value[node]
        out[i] = acc / n_trees


forest_proba_serial, forest_proba_parallel = serial_and_parallel(_forest_proba)


def forest_proba(codes, rows, roots, feature, threshold, left, right, value, out):
    """:func:`_forest_proba` on one thread for few rows, on all for many."""
    kernel = (
        forest_proba_serial
        if rows.shape[0] < PARALLEL_MIN_ROWS
        else forest_proba_parallel
    )
    kernel(codes, rows, roots, feature, threshold, left, right, value, out)
