"""Apply a trained model to a whole catalogue and rank every row it classifies positive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import RefinementModel
from .scan import SEARCH_CHUNK_ROWS
from .sort_kernels import radix_descending_order

#: Below this many scores numpy's stable sort beats the radix kernel's fixed cost.
RADIX_MIN_ROWS = 1 << 12


def descending_order(scores: np.ndarray) -> np.ndarray:
    """int64 positions of float64 ``scores`` (no NaN) by descending score, equal
    scores in ascending position: ``np.argsort(-scores, kind="stable")``."""
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    if scores.shape[0] < RADIX_MIN_ROWS:
        return np.argsort(-scores, kind="stable")
    return radix_descending_order(scores)


@dataclass(frozen=True, eq=False)
class Ranking:
    """Rows a model classifies positive, best first.

    Attributes:
        ids: int64 ``(R,)`` catalogue rows, by descending score then ascending id.
        scores: float64 ``(R,)`` the model's ``decision_function`` of each row.
    """

    ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def top(self, k: int) -> Ranking:
        """The first ``k`` rows (all of them when ``k >= len(self)``)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k must be an int >= 0, got {k!r}")
        return Ranking(self.ids[:k], self.scores[:k])

    @classmethod
    def from_unsorted(cls, ids, scores) -> Ranking:
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        order = ranking_order(ids, scores)
        return cls(ids[order], scores[order])


def ranking_order(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """int64 positions of int64 ``ids`` (distinct) and float64 ``scores`` by
    descending score, then ascending id."""
    if ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return descending_order(scores)  # ties already by ascending id
    return np.lexsort((ids, -scores))


def merged_order(scores: np.ndarray) -> np.ndarray:
    """int64 positions of the k-way merge of rankings concatenated into float64
    ``scores``: sources holding increasing rows, in row order, each ranked by
    descending score then ascending row. The merge keeps that order.

    numpy's stable sort of floats is a timsort: it merges the presorted runs in
    linear time (faster here than the radix sort of unsorted rankings)."""
    return np.argsort(-scores, kind="stable")


def first_positions(ids: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` positions of :func:`ranking_order`, found by a partition of
    the scores; only the rows tied with the ``n``-th are sorted."""
    total = ids.shape[0]
    if n >= total:
        return ranking_order(ids, scores)
    if n <= 0:
        return np.zeros(0, np.int64)
    nth = np.partition(scores, total - n)[total - n]  # the n-th largest score
    candidates = np.flatnonzero(scores >= nth)  # n rows and those tied with the n-th
    order = np.lexsort((ids[candidates], -scores[candidates]))[:n]
    return candidates[order]


def apply_model(
    model: RefinementModel,
    index,
    *,
    use_index: bool = True,
    chunk_rows: int = SEARCH_CHUNK_ROWS,
) -> Ranking:
    """Every catalogue row that ``model`` classifies positive, ranked.

    Dispatches on ``model.answered_by`` (:class:`~.model.RefinementModel`): box
    models (``"index"``) answer their boxes with ``index.query_boxes``, which counts
    the distinct members holding each row while it merges the box results, and keep
    the rows their ``accept`` rule passes (``answer_hits``; with ``use_index=False``,
    the full parallel scan ``model.search``, which returns the same rows); only
    accepted rows are scored. Every other model searches the codes itself
    (``model.search(codes, chunk_rows=chunk_rows)``): exact scans of the linear
    classifier and the query ball, the top-k ``NearestNeighbours`` and ``Rocchio``,
    and ``predict`` / ``decision_function`` over chunks of ``chunk_rows`` rows.

    Args:
        model: a fitted :class:`~.model.RefinementModel`.
        index: a :class:`~.index.CodeIndex` (anything with ``codes``, ``subsets`` and
            ``query_boxes``), or a :class:`~.shards.ShardedIndex` (its
            ``apply_model``: every shard ranks its rows, merged exactly).
        use_index: use the index's trees (True) or a scan (False) for box models.
        chunk_rows: int >= 1, rows per chunk for models scanned in chunks.

    Returns:
        :class:`Ranking`, equal to ranking ``model.predict(index.codes)`` rows by
        ``model.decision_function`` (descending, ties by ascending id).
    """
    check_model(model, index)
    if hasattr(index, "apply_model"):  # a ShardedIndex ranks shard by shard (shards.py)
        return index.apply_model(model, use_index=use_index, chunk_rows=chunk_rows)
    return Ranking.from_unsorted(*answer_rows(model, index, use_index, chunk_rows))


def answer_rows(model, index, use_index: bool, chunk_rows: int):
    """``(ids int64, scores float64)``: the rows of one index (``codes``,
    ``query_boxes``) that a checked ``model`` accepts and their scores, unranked."""
    codes = index.codes
    if model.answered_by == "index" and use_index:
        ids, hits = index.query_boxes(model.boxes_)
        ids, scores = model.answer_hits(ids, hits, codes)
    else:
        ids, scores = model.search(codes, chunk_rows=chunk_rows)
    return np.asarray(ids, np.int64), np.asarray(scores, np.float64)


def check_model(model, index) -> None:
    """A fitted engine model whose box models fit ``index``'s space."""
    if not isinstance(model, RefinementModel):
        raise TypeError(
            "model must be an engine model (engine.model.RefinementModel), got"
            f" {type(model).__name__}"
        )
    model._check_fitted()
    if model.answered_by == "index":
        _check_same_space(model, index)


def _check_same_space(model, index) -> None:
    if model.subsets_ != index.subsets:
        raise ValueError(
            "the model was trained on other feature subsets than the index has:"
            " fit it with subsets=index.subsets"
        )
    if model.n_features_in_ != index.codes.shape[1]:
        raise ValueError(
            f"the model expects {model.n_features_in_} dims, the index has"
            f" {index.codes.shape[1]}"
        )
