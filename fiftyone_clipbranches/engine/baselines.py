"""Baselines against which decision branches are measured: sklearn trees, k-NN, Rocchio.

All follow :class:`~.model.RefinementModel`: they take the same
:class:`~.training_set.TrainingSet` arrays as decision branches (``fit(X, y,
sample_weight=None)`` on uint8 codes; ``subsets``, ``unlabelled`` and ``neighbours``
are accepted and ignored) and share ``predict`` / ``decision_function``. Tree
models classify row by row and are applied by scanning the catalogue in chunks
(uint8 -> float32 per chunk). ``NearestNeighbours`` and ``Rocchio`` are top-k
searches (``answered_by = "top_k"``): they have no per-row rule, so ``predict(X)``
treats ``X`` as the whole catalogue and ``search(codes)`` returns the top-k rows.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from .codes import take_rows
from .model import RefinementModel
from .scan import SEARCH_CHUNK_ROWS, knn_scan
from .validation import check_codes, check_features, check_int, check_training

#: Rows converted to float per chunk when sklearn models predict.
CHUNK_ROWS = 1 << 18


class _SklearnModel(RefinementModel):
    """Shared fit/predict for the sklearn wrappers (chunked float32 prediction).

    They take uint8 codes like every model here, and also float features (e.g.
    embeddings, for quality comparisons in the unquantised space).
    """

    @abstractmethod
    def _make(self):
        """A fresh, unfitted sklearn classifier (parameters validated)."""

    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        subsets=None,
        unlabelled=None,
        neighbours=None,
        catalogue_sample=None,
    ):
        """Fit on uint8 codes (or float features) ``X (n, D)``, labels in {0, 1}."""
        X, y, w = check_training(X, y, sample_weight, allow_float=True)
        self.estimator_ = self._make()
        self.estimator_.fit(X.astype(np.float32), y, sample_weight=w)
        classes = list(self.estimator_.classes_)
        self._pos_col = classes.index(1)
        self.n_features_in_ = X.shape[1]
        self.n_relabelled_ = 0
        return self

    def _proba(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_features(X, n_dims=self.n_features_in_)
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], CHUNK_ROWS):
            chunk = X[start : start + CHUNK_ROWS].astype(np.float32)
            out[start : start + chunk.shape[0]] = self.estimator_.predict_proba(chunk)[
                :, self._pos_col
            ]
        return out

    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: probability of the positive class > 0.5."""
        return self._proba(X) > 0.5

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)``: the predicted probability of the positive class."""
        return self._proba(X)


class TreeModel(_SklearnModel):
    """One sklearn ``DecisionTreeClassifier`` (fully grown by default).

    Args:
        max_depth: None or int >= 1; random_state: int.
    """

    def __init__(self, max_depth=None, random_state=0):
        self.max_depth = max_depth
        self.random_state = random_state

    def _make(self):
        from sklearn.tree import DecisionTreeClassifier

        if self.max_depth is not None:
            check_int(self.max_depth, "max_depth", 1)
        return DecisionTreeClassifier(
            max_depth=self.max_depth, random_state=self.random_state
        )


class ForestModel(_SklearnModel):
    """sklearn ``RandomForestClassifier`` with ``n_estimators`` trees (default 25).

    Args:
        n_estimators: int >= 1; max_depth: None or int >= 1; random_state: int;
        n_jobs: threads for fit/predict (default 1; the service shares its cores).
    """

    def __init__(self, n_estimators=25, max_depth=None, random_state=0, n_jobs=1):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _make(self):
        from sklearn.ensemble import RandomForestClassifier

        check_int(self.n_estimators, "n_estimators", 1)
        if self.max_depth is not None:
            check_int(self.max_depth, "max_depth", 1)
        return RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )


class _TopK(RefinementModel):
    """Shared surface of the top-k searches: ``fit`` validates and hands the
    positive (and negative) rows to ``_fit_rows``."""

    answered_by = "top_k"

    def __init__(self, k=100):
        self.k = k

    def _check_k(self) -> int:
        return check_int(self.k, "k", 1)

    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        subsets=None,
        unlabelled=None,
        neighbours=None,
        catalogue_sample=None,
    ):
        """Fit on uint8 codes ``X (n, D)``, labels in {0, 1}."""
        X, y, w = check_training(X, y, sample_weight)
        self._check_k()
        self._fit_rows(X, y, w)
        self.n_features_in_ = X.shape[1]
        self.n_relabelled_ = 0
        return self

    @abstractmethod
    def _fit_rows(self, X, y, w) -> None:
        """Fit on validated codes, int8 labels and float64 weights."""

    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: the rows of ``X`` that ``search(X)`` returns."""
        X = check_codes(X, n_dims=getattr(self, "n_features_in_", None))
        ids, _ = self.search(X)
        out = np.zeros(X.shape[0], dtype=bool)
        out[ids] = True
        return out


class NearestNeighbours(_TopK):
    """Union of the ``k`` exact nearest neighbours (uint8 Euclidean) of each positive.

    ``decision_function(x) = -min_p ||x - p|| / 255`` over the positives ``p``.
    Negatives and weights are ignored (the paper's NN baseline).
    """

    def _fit_rows(self, X, y, w) -> None:
        self.positives_ = np.unique(X[(y == 1) & (w > 0)], axis=0)

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        best = np.full(X.shape[0], np.iinfo(np.int64).max)
        for start in range(0, X.shape[0], CHUNK_ROWS):
            chunk = X[start : start + CHUNK_ROWS].astype(np.int64)
            part = best[start : start + chunk.shape[0]]
            for p in self.positives_.astype(np.int64):
                np.minimum(part, ((chunk - p) ** 2).sum(axis=1), out=part)
        return -np.sqrt(best) / 255.0

    def search(
        self, codes, chunk_rows: int = SEARCH_CHUNK_ROWS
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64, scores float64)``: the union of each positive's k-NN (one
        exact scan per positive; ``chunk_rows`` is not used)."""
        self._check_fitted()
        codes = check_codes(codes, "codes", self.n_features_in_)
        k = self._check_k()
        found = [knn_scan(codes, p, k)[0] for p in self.positives_]
        ids = np.unique(np.concatenate(found))
        return ids, self.decision_function(take_rows(codes, ids))


class Rocchio(_TopK):
    """Top-``k`` rows nearest to ``2 * mean(positives) - mean(negatives)`` (code space).

    Means are weighted by ``sample_weight``; without negatives the query is the mean
    of the positives. ``decision_function(x) = -||x - q|| / 255``; ties of the k-th
    distance are broken by ascending row id.
    """

    def _fit_rows(self, X, y, w) -> None:
        Xf = X.astype(np.float64)
        pos = (y == 1) & (w > 0)
        neg = (y == 0) & (w > 0)
        q = np.average(Xf[pos], axis=0, weights=w[pos])
        if neg.any():
            q = 2.0 * q - np.average(Xf[neg], axis=0, weights=w[neg])
        self.query_ = q

    def _sq_dist(self, X) -> np.ndarray:
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], CHUNK_ROWS):
            chunk = X[start : start + CHUNK_ROWS].astype(np.float64)
            out[start : start + chunk.shape[0]] = ((chunk - self.query_) ** 2).sum(
                axis=1
            )
        return out

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        return -np.sqrt(self._sq_dist(X)) / 255.0

    def search(
        self, codes, chunk_rows: int = SEARCH_CHUNK_ROWS
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64, scores float64)``: the ``k`` rows nearest to the query
        (``chunk_rows`` is not used: the scan runs in chunks of ``CHUNK_ROWS``)."""
        self._check_fitted()
        codes = check_codes(codes, "codes", self.n_features_in_)
        k = min(self._check_k(), codes.shape[0])
        best_ids = np.zeros(0, np.int64)
        best_d = np.zeros(0)
        for start in range(0, codes.shape[0], CHUNK_ROWS):
            d = self._sq_dist(codes[start : start + CHUNK_ROWS])
            if d.shape[0] > k:
                cut = np.partition(d, k - 1)[k - 1]
                sel = np.flatnonzero(d <= cut)
            else:
                sel = np.arange(d.shape[0])
            ids = np.concatenate([best_ids, sel + start])
            dist = np.concatenate([best_d, d[sel]])
            order = np.lexsort((ids, dist))[:k]
            best_ids, best_d = ids[order], dist[order]
        return best_ids, -np.sqrt(best_d) / 255.0
