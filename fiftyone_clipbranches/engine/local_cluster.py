"""The cluster of the catalogue around a few positives (local graph clustering).

A class is a dense group of codes; its size and shape are what a handful of labels
do not say. Around the positives, the nearest rows of the catalogue form a k-nearest
neighbour graph; a random walk that restarts at the positives (personalised
PageRank) ranks the rows by how easily it reaches them, and the prefix of that
ranking whose boundary the walk crosses least (a local minimum of conductance) is
the cluster: rows that are close to the positives *and* to each other, cut where
the group thins out (docs/quality.md, "Neighbour positives from the local cluster").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .local_cluster_kernels import nearest_rows_parallel, nearest_rows_serial
from .scan import MAX_KNN_DIMS

#: Rows of the graph: the nearest rows to the positives, ``LOCAL_ROWS // P`` per
#: positive (at least ``GRAPH_NEIGHBOURS + 1``), their union.
LOCAL_ROWS = 2048
#: The graph holds at most this many rows besides the positives (many positives
#: with an explicit count of neighbours): each positive's nearest rows join in
#: turn, the first of every positive, then the second, until it is full.
GRAPH_MAX_ROWS = 8192
#: Each row of the graph links to this many nearest rows (the links made symmetric).
GRAPH_NEIGHBOURS = 10
#: The walk returns to the positives with this probability at each step.
RESTART = 0.15
#: Steps of the walk (its remaining change is below ``(1 - RESTART) ** STEPS``).
STEPS = 60
#: Graphs of this many rows or more are linked on every thread.
PARALLEL_MIN_ROWS = 1024
#: The cluster holds at least ``max(P, MIN_CLUSTER)`` rows (the positives included)
#: and at most a quarter of the graph when that is more; a graph too small to have
#: a local minimum between the two gives the larger.
MIN_CLUSTER = 5


def rows_per_positive(n_positives: int, n_rows: int) -> int:
    """How many nearest rows of each positive make the graph (see :data:`LOCAL_ROWS`)."""
    per = max(GRAPH_NEIGHBOURS + 1, LOCAL_ROWS // max(1, n_positives))
    return min(per, n_rows)


def graph_rows(nearest: list[np.ndarray], positives: np.ndarray) -> np.ndarray:
    """Sorted rows joining the positives in the graph: the union of ``nearest`` (one
    int64 array per positive, nearest first) less ``positives``, at most
    :data:`GRAPH_MAX_ROWS`, taken rank by rank (every positive's first, then its
    second, ...) when the union is larger."""
    if not nearest:
        return np.zeros(0, dtype=np.int64)
    width = max(len(ids) for ids in nearest)
    ranked = np.full((len(nearest), width), -1, dtype=np.int64)
    for i, ids in enumerate(nearest):
        ranked[i, : len(ids)] = ids
    by_rank = ranked.T.ravel()  # rank 0 of every positive, then rank 1, ...
    by_rank = by_rank[(by_rank >= 0) & ~np.isin(by_rank, positives)]
    rows, first = np.unique(by_rank, return_index=True)
    if rows.size > GRAPH_MAX_ROWS:
        rows = np.sort(by_rank[np.sort(first)[:GRAPH_MAX_ROWS]])
    return rows


def knn_graph(codes: np.ndarray, k: int = GRAPH_NEIGHBOURS) -> np.ndarray:
    """int64 ``(n, min(k, n - 1))``: the nearest other rows of each row of ``codes``
    (uint8 ``(n, D)``, ``D <= 33000``, exact squared distances, ties to the lower
    row)."""
    n = codes.shape[0]
    if codes.shape[1] > MAX_KNN_DIMS:
        raise ValueError(f"the graph supports at most {MAX_KNN_DIMS} dims")
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64)
    kernel = nearest_rows_parallel if n >= PARALLEL_MIN_ROWS else nearest_rows_serial
    return kernel(np.ascontiguousarray(codes, dtype=np.uint8), k)


class LocalCluster(NamedTuple):
    """What :func:`cluster_order` finds: ``rows`` (int64 positions in the graph,
    most central first) and ``bounded`` (False when no boundary was found within a
    quarter of the graph: the rows are then that quarter, a part of a group larger
    or more diffuse than the graph shows)."""

    rows: np.ndarray
    bounded: bool


def cluster_order(codes: np.ndarray, seeds: np.ndarray) -> LocalCluster:
    """The cluster around ``seeds`` among ``codes``, most central row first.

    Args:
        codes: uint8 ``(n, D)``, the rows of the graph.
        seeds: int64 positions in ``codes`` of the positives (distinct, non-empty).

    Returns:
        :class:`LocalCluster`: the rows ranked by the walk's visits (divided by
        their number of links), cut after the first prefix of ``max(P, 5)`` to
        ``max(P, 5, n // 4)`` rows whose conductance is the lowest from half to twice
        its size (``bounded``), else the largest of those sizes (not ``bounded``).
        The seeds are usually among them. A class of at most ``GRAPH_NEIGHBOURS``
        rows has links leaving it from every row, so it is rarely cut out alone.
    """
    n = codes.shape[0]
    seeds = np.asarray(seeds, dtype=np.int64)
    near = knn_graph(codes)
    k = near.shape[1]
    if k == 0:
        return LocalCluster(seeds.copy(), True)
    # symmetric links: i -> j for every j among i's neighbours or having i among its
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = near.ravel()
    pair = np.unique(np.concatenate([src * n + dst, dst * n + src]))
    src, dst = pair // n, pair % n
    degree = np.bincount(src, minlength=n).astype(np.float64)

    restart = np.zeros(n)
    restart[seeds] = 1.0 / seeds.size
    visits = restart.copy()
    for _ in range(STEPS):
        spread = np.bincount(dst, weights=(visits / degree)[src], minlength=n)
        visits = RESTART * restart + (1 - RESTART) * spread
    order = np.lexsort((np.arange(n), -visits / degree))

    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # a link lies inside the prefix of m rows once both its ends do
    inside = np.cumsum(np.bincount(np.maximum(rank[src], rank[dst]), minlength=n))
    volume = np.cumsum(degree[order])
    outside = volume[-1] - volume
    conductance = (volume - inside) / np.maximum(np.minimum(volume, outside), 1.0)
    size, bounded = _first_local_minimum(
        conductance, max(seeds.size, MIN_CLUSTER), n // 4
    )
    return LocalCluster(order[:size], bounded)


def _first_local_minimum(values: np.ndarray, low: int, high: int) -> tuple[int, bool]:
    """``(m, True)`` for the smallest size ``m`` in ``[low, high)`` whose
    ``values[m - 1]`` is the lowest over sizes ``max(low, m // 2)`` to ``2 m + 1``;
    ``(high, False)`` (at most ``len(values)``) when there is none."""
    high = max(low, high)
    for m in range(low, high):
        start = max(low, m // 2)
        stop = min(values.shape[0], 2 * m + 1)
        if values[m - 1] <= values[start - 1 : stop].min():
            return m, True
    return min(high, values.shape[0]), False
