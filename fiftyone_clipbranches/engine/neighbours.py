"""Neighbour positives: rows of the cluster around a few positives, which train as
positives too.

With a handful of positives a box can only hug them; the rows of the dense group
they lie in are mostly of the same class, so they let the boxes reach it
(docs/quality.md, "Neighbour positives").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codes import as_codes
from .local_cluster import cluster_order, graph_rows, rows_per_positive
from .reach import estimated_share
from .scan import knn_scan

#: With P labelled positives, up to ``round(NEIGHBOUR_BUDGET / P)`` rows per positive
#: of the cluster around them join the positives ("auto"), for P below
#: :data:`NEIGHBOUR_MAX_POSITIVES`; ``round(DIFFUSE_NEIGHBOUR_BUDGET / P)`` when the
#: cluster shows no boundary (a class larger or more diffuse than the graph shows).
NEIGHBOUR_BUDGET = 32
DIFFUSE_NEIGHBOUR_BUDGET = 48
NEIGHBOUR_MAX_POSITIVES = 64
#: From this many positives on, neighbours join only while the class is estimated
#: (:func:`.reach.estimated_share` over the pool) to hold at least
#: ``NEIGHBOUR_COVER`` times the positives: with many labels, only a large class
#: (a pet breed of 100 rows, not a texture of 36) still lies mostly unlabelled.
NEIGHBOUR_COVER_FROM = 32
NEIGHBOUR_COVER = 2.5
#: From this many positives on, a neighbour also lies no farther from a positive than
#: the positives typically lie from each other (see :func:`neighbour_rows`); fewer
#: positives measure that spacing too roughly (docs/quality.md).
NEIGHBOUR_SPACING_FROM = 8
#: No neighbours join when more than this fraction of the positives lie at least as
#: close to another positive as to any unlabelled row (see :func:`neighbour_rows`).
NEIGHBOUR_COVERED_FRACTION = 0.5
#: Larger catalogues are searched for neighbours in this many rows only: evenly spaced
#: contiguous blocks of ``NEIGHBOUR_BLOCK`` rows. A full scan costs 13 ms per positive
#: at 10M rows; the sample keeps it under 1.5 ms (docs/benchmarks.md). The blocks are
#: small (16 rows, 512 bytes of 32-byte codes) so that a catalogue stored class by
#: class (images imported folder by folder) has every class of more than
#: ``N / 2^14`` rows in the sample, about as often as it is in the catalogue.
NEIGHBOUR_SEARCH_ROWS = 1 << 18
NEIGHBOUR_BLOCK = 1 << 4


def auto_neighbours_per_positive(n_positives: int, diffuse: bool = False) -> int:
    """Neighbours joining each positive under ``"auto"``: ``round(32 / P)`` for P < 64
    (``round(48 / P)`` for a ``diffuse`` cluster, one with no boundary; from 32
    positives, only for a class estimated to hold 2.5 times the positives, see
    :func:`neighbour_rows`).

    With a handful of positives a box can only hug them; the rows of the dense group
    they lie in are mostly of the same class, so they let the boxes reach the class.
    As real positives accumulate, neighbours add more noise than reach, and fewer
    are added (docs/quality.md). The cluster may hold fewer (a small class).
    """
    if n_positives <= 0 or n_positives >= NEIGHBOUR_MAX_POSITIVES:
        return 0
    budget = DIFFUSE_NEIGHBOUR_BUDGET if diffuse else NEIGHBOUR_BUDGET
    return int(round(budget / n_positives))


@dataclass(frozen=True, eq=False)
class NeighbourPool:
    """The rows a neighbour search scans (:func:`neighbour_search_rows`) and their
    codes, read once per index (``CodeIndex.neighbour_pool``): at most
    ``NEIGHBOUR_SEARCH_ROWS`` rows, 8 MiB of 32-byte codes, which a search would
    otherwise gather from the catalogue (or from every shard) each time.

    Attributes:
        rows: int64 ``(m,)`` ascending, or None: every row of the catalogue.
        codes: uint8 ``(m, D)``, the codes of ``rows`` (of every row when None).
    """

    rows: np.ndarray | None
    codes: np.ndarray

    @classmethod
    def of(
        cls,
        codes,
        search_rows: int = NEIGHBOUR_SEARCH_ROWS,
        search_block: int = NEIGHBOUR_BLOCK,
    ) -> NeighbourPool:
        """The pool of ``codes`` (uint8 ``(N, D)`` or a sharded index's codes)."""
        rows = neighbour_search_rows(codes.shape[0], search_rows, search_block)
        if rows is None:
            return cls(None, codes if isinstance(codes, np.ndarray) else codes[:])
        return cls(rows, np.asarray(codes[rows]))

    @classmethod
    def kept_by(cls, index) -> NeighbourPool:
        """The pool of ``index.codes``, made at the first call and kept on
        ``index`` (what ``CodeIndex.neighbour_pool`` and
        ``ShardedIndex.neighbour_pool`` return)."""
        pool = index.__dict__.get("_neighbour_pool")
        if pool is None:
            pool = index._neighbour_pool = cls.of(index.codes)
        return pool

    def codes_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found bool (n,), codes uint8 (found.sum(), D))`` of ``rows`` (int64)."""
        if self.rows is None:
            return np.ones(rows.shape[0], bool), np.asarray(self.codes[rows])
        at = np.minimum(np.searchsorted(self.rows, rows), self.rows.shape[0] - 1)
        found = self.rows[at] == rows
        return found, np.asarray(self.codes[at[found]])


def neighbour_rows(
    codes,
    positives,
    k: int | str,
    exclude=(),
    *,
    search_rows: int = NEIGHBOUR_SEARCH_ROWS,
    search_block: int = NEIGHBOUR_BLOCK,
    pool: NeighbourPool | None = None,
    positive_codes=None,
) -> np.ndarray:
    """Sorted rows of the cluster around ``positives``, at most ``k * P`` of them
    (the walk's first), leaving out ``positives`` and ``exclude``; ``k="auto"`` is
    :func:`auto_neighbours_per_positive` of the P positives and of whether the
    cluster has a boundary.

    The cluster (:func:`.local_cluster.cluster_order`) is found in a graph of the
    positives and their nearest rows (all dims, exact; ``LOCAL_ROWS // P`` per
    positive): the rows a walk from the positives reaches most easily, cut where the
    group thins out. So a small compact class (of more than ``GRAPH_NEIGHBOURS``
    rows) gives fewer than ``k`` per positive, only its own rows, a large one its
    most central rows. From
    ``NEIGHBOUR_SPACING_FROM`` positives on, a neighbour must also lie no farther from
    the nearest positive than the positives typically lie from each other (the
    median over positives of the distance to the nearest other positive). When most
    positives (more than ``NEIGHBOUR_COVERED_FRACTION``) lie at least as close to
    another positive as to any unlabelled row, the labels already cover the class densely (a
    user who labelled a whole small class) and the unlabelled rows beside them are
    more likely outside it: none join. One exact scan per positive (``knn_scan``) of
    the :class:`NeighbourPool` (``pool``, else made here from ``search_rows`` and
    ``search_block``): every row up to ``search_rows`` rows, above it blocks of
    ``search_block`` rows only (docs/benchmarks.md). Ties between rows go to the
    lower row (in the graph, the positives come first).
    ``codes`` may be a sharded index's ``ShardedCodes`` (``engine/shards.py``);
    ``positive_codes`` (uint8, one row per sorted distinct positive) saves reading
    them again.
    """
    sharded = hasattr(codes, "neighbour_pool")  # engine.shards.ShardedCodes
    codes = codes if sharded else as_codes(codes)
    pos = np.unique(np.asarray(positives, dtype=np.int64).reshape(-1))
    auto = isinstance(k, str) and k == "auto"
    if auto:
        k = auto_neighbours_per_positive(pos.size)
    if k <= 0 or pos.size == 0:
        return np.zeros(0, dtype=np.int64)
    pos_codes = np.asarray(codes[pos] if positive_codes is None else positive_codes)
    skip = np.concatenate([pos, np.asarray(exclude, dtype=np.int64).reshape(-1)])
    if pool is None:
        pool = NeighbourPool.of(codes, search_rows, search_block)
    per_positive = rows_per_positive(pos.size, pool.codes.shape[0])
    answers = []
    for q in pos_codes:
        ids, dists = knn_scan(pool.codes, q, per_positive)
        answers.append((ids if pool.rows is None else pool.rows[ids], dists))
    spacing = _nearest_other_sq(pos_codes) if pos.size >= 2 else None
    if spacing is not None:
        covered = 0
        for (ids, dists), to_positive in zip(answers, spacing):
            free = dists[~np.isin(ids, skip)]
            # every row found is labelled: the nearest unlabelled one lies farther
            nearest_free = free[0] if free.size else dists[-1]
            covered += bool(to_positive <= nearest_free)
        if covered > NEIGHBOUR_COVERED_FRACTION * pos.size:
            return np.zeros(0, dtype=np.int64)
    if auto and pos.size >= NEIGHBOUR_COVER_FROM:
        rows = estimated_share(pos_codes, pool.codes) * len(codes)
        if rows < NEIGHBOUR_COVER * pos.size:
            return np.zeros(0, dtype=np.int64)
    # the graph: the positives first (seeds 0..P-1), then the rows found near them
    near = graph_rows([ids for ids, _ in answers], pos)
    _, near_codes = pool.codes_of(near)
    graph_codes = np.concatenate([pos_codes.astype(np.uint8), near_codes])
    order, bounded = cluster_order(graph_codes, np.arange(pos.size, dtype=np.int64))
    if auto and not bounded:
        k = auto_neighbours_per_positive(pos.size, diffuse=True)
    picked = order[order >= pos.size] - pos.size  # positions in ``near``
    picked = picked[~np.isin(near[picked], skip)][: k * pos.size]
    if pos.size >= NEIGHBOUR_SPACING_FROM:
        to_positive = _nearest_sq(near_codes[picked], pos_codes)
        picked = picked[to_positive <= np.median(spacing)]
    return np.sort(near[picked]).astype(np.int64)


def _nearest_sq(x: np.ndarray, y: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """int64 ``(len(x),)``: squared distance from each row of ``x`` to its nearest
    row of ``y`` (in chunks of ``x``, never an ``len(x) x len(y)`` matrix whole)."""
    x, y = x.astype(np.int64), y.astype(np.int64)
    y_sq = (y * y).sum(axis=1)
    out = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        d = (part * part).sum(axis=1)[:, None] + y_sq[None, :] - 2 * (part @ y.T)
        out[start : start + chunk] = d.min(axis=1)
    return out


def _nearest_other_sq(x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """int64 ``(P,)``: squared distance from each row of ``x`` to its nearest other
    row (computed in chunks, so many positives never build a P x P matrix)."""
    x = x.astype(np.int64)
    sq = (x * x).sum(axis=1)
    out = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        part = slice(start, start + chunk)
        d = sq[part, None] + sq[None, :] - 2 * (x[part] @ x.T)
        d[np.arange(d.shape[0]), np.arange(start, start + d.shape[0])] = np.iinfo(
            np.int64
        ).max
        out[part] = d.min(axis=1)
    return out


def neighbour_search_rows(
    n_rows: int,
    search_rows: int = NEIGHBOUR_SEARCH_ROWS,
    block: int = NEIGHBOUR_BLOCK,
) -> np.ndarray | None:
    """The rows a neighbour search scans: None (all) up to ``search_rows``, else
    evenly spaced contiguous blocks of ``block`` rows adding up to about that many
    (int64, ascending; a block is read from one or two pages of a memory-mapped
    catalogue)."""
    if n_rows <= search_rows:
        return None
    block = min(block, search_rows)
    n_blocks = max(1, search_rows // block)
    starts = np.linspace(0, n_rows - block, n_blocks).round().astype(np.int64)
    return (starts[:, None] + np.arange(block, dtype=np.int64)).ravel()
