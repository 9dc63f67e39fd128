"""Apply a trained model to a whole catalogue and rank every row it classifies positive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .branches import DecisionBranches
from .ensemble import DecisionBranchesEnsemble
from .scan import scan_boxes

#: Rows per chunk when a model without boxes is applied by scanning the catalogue.
DEFAULT_CHUNK_ROWS = 1 << 20


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
        order = np.lexsort((ids, -scores))
        return cls(ids[order], scores[order])


def is_index_aware(model) -> bool:
    return isinstance(model, (DecisionBranches, DecisionBranchesEnsemble))


def apply_model(
    model, index, *, use_index: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Ranking:
    """Every catalogue row that ``model`` classifies positive, ranked.

    Decision branches and ensembles answer their boxes with ``index.query_boxes`` (or,
    with ``use_index=False``, the full parallel scan :func:`~.scan.scan_boxes`, which
    returns the same rows); ensembles keep rows whose member vote passes
    ``vote_threshold`` (the index counts distinct members per row while it merges
    the box results); only passing rows are scored with ``decision_function``. Models with
    ``search(codes)`` (the top-k ``NearestNeighbours`` and ``Rocchio``, and
    ``LinearClassifier``'s scan) search the codes themselves, exactly; any other
    model with ``predict``/``decision_function`` is applied in chunks of
    ``chunk_rows`` rows.

    Args:
        model: a fitted model.
        index: a :class:`~.index.CodeIndex` (anything with ``codes``, ``subsets`` and
            ``query_boxes``).
        use_index: use the index's trees (True) or a scan (False) for box models.

    Returns:
        :class:`Ranking`, equal to ranking ``model.predict(index.codes)`` rows by
        ``model.decision_function`` (descending, ties by ascending id).
    """
    codes = index.codes
    if is_index_aware(model):
        model._check_fitted()
        if model.subsets_ != index.subsets:
            raise ValueError(
                "the model was trained on other feature subsets than the index has:"
                " fit it with subsets=index.subsets"
            )
        if model.n_features_in_ != codes.shape[1]:
            raise ValueError(
                f"the model expects {model.n_features_in_} dims, the index has"
                f" {codes.shape[1]}"
            )
        if use_index:
            ids, hits = index.query_boxes(model.boxes_)
        else:
            ids, hits = scan_boxes(codes, index.subsets, model.boxes_)
        if isinstance(model, DecisionBranchesEnsemble):
            ids = ids[model.accept(hits, codes, ids)]
        scores = model.decision_function(codes[ids]) if ids.size else np.zeros(0)
        return Ranking.from_unsorted(ids, scores)
    if hasattr(model, "search"):
        ids, scores = model.search(codes)
        return Ranking.from_unsorted(ids, scores)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)):
        raise TypeError("chunk_rows must be an int")
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    all_ids, all_scores = [], []
    for start in range(0, codes.shape[0], chunk_rows):
        chunk = np.asarray(codes[start : start + chunk_rows])
        hit = np.flatnonzero(np.asarray(model.predict(chunk), dtype=bool))
        if hit.size:
            all_ids.append(hit.astype(np.int64) + start)
            all_scores.append(
                np.asarray(model.decision_function(chunk[hit]), np.float64)
            )
    if not all_ids:
        return Ranking(np.zeros(0, np.int64), np.zeros(0))
    return Ranking.from_unsorted(np.concatenate(all_ids), np.concatenate(all_scores))
