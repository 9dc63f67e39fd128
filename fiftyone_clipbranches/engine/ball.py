"""The query ball: relevance feedback that moves the search query and learns its reach.

A text search ranks the catalogue by the distance of each code to the query's code;
the user labels the top of that ranking. The ball's centre first moves where
Rocchio's relevance feedback puts the query, with the textbook weights (query 1,
mean of the labelled positives 0.75, mean of the labelled negatives 0.15): the
labels pull it towards the class without letting it forget the query. What the
labels add next is where the class ends around that centre: a radius. The ball
learns it with a weighted logistic regression of the label on the distance to the
centre (:class:`~.linear.LinearClassifier` on that one feature, random negatives
included), and accepts every code inside: the moved query's ranking, cut at the
depth the labels support.

It is applied by one exact scan of squared distances (:mod:`.ball_kernels`), like
the k-NN search it refines.
"""

from __future__ import annotations

import numpy as np

from .ball_kernels import squared_distances
from .codes import as_query
from .linear import LinearClassifier
from .model import RefinementModel
from .scan import SEARCH_CHUNK_ROWS, search_chunks
from .validation import (
    check_codes,
    check_positive_number,
    check_row_mask,
    check_training,
)

#: Most dims for which squared distances of uint8 codes fit in int32.
MAX_BALL_DIMS = (2**31 - 1) // 255**2


class QueryBall(RefinementModel):
    """Codes within a learned squared distance of a query code.

    ``fit`` moves the centre to Rocchio's point, then regresses the labels on the
    distance ``||x - center_||`` (balanced class
    weights, L2 penalty ``C``, random negatives that score above ``relabel_margin``
    left out and the fit repeated, as in :class:`~.linear.LinearClassifier`). The
    fitted model accepts a row exactly when its integer squared distance to
    ``center_`` is at most ``radius_sq_``.

    Args:
        center: uint8 ``(D,)``, the code of the search query (the text query's code
            for a text search).
        C: float > 0, inverse regularisation strength.
        class_weight: ``"balanced"`` or None.
        relabel_margin: float, or None to keep every random negative.
        max_iter, tol: Newton iterations at most, and gradient tolerance.
        alpha, beta, gamma: Rocchio's weights of the query, of the (weighted) mean
            of the positives and of the mean of the negatives: the centre is
            ``(alpha * center + beta * m_pos - gamma * m_neg) / (alpha + beta -
            gamma)`` (a term without rows is dropped), rounded into the uint8 code
            range. Floats, ``alpha > gamma >= 0``, ``beta >= 0``; ``beta = gamma = 0``
            keeps the query's code as the centre.

    Attributes (after ``fit``):
        center_: uint8 ``(D,)``, the centre the ball was fitted around.
        radius_sq_: int, the largest squared distance accepted (-1: none).
        coef_: float < 0, the logit's slope per unit of distance.
        intercept_: float, the logit at distance 0.
        n_relabelled_: int, random negatives left out as likely matches.
    """

    def __init__(
        self,
        center=None,
        C=1.0,
        class_weight="balanced",
        relabel_margin=0.0,
        max_iter=100,
        tol=1e-6,
        alpha=1.0,
        beta=0.75,
        gamma=0.15,
    ):
        self.center = center
        self.C = C
        self.class_weight = class_weight
        self.relabel_margin = relabel_margin
        self.max_iter = max_iter
        self.tol = tol
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma

    def _center(self, n_dims: int) -> np.ndarray:
        if self.center is None:
            raise ValueError(
                "QueryBall needs center=, the code of the search query it refines"
            )
        if n_dims > MAX_BALL_DIMS:
            raise ValueError(f"QueryBall supports at most {MAX_BALL_DIMS} dims")
        return as_query(self.center, n_dims)

    def _rocchio_weights(self) -> tuple[float, float, float]:
        weights = [
            check_positive_number(getattr(self, name), name, allow_zero=True)
            for name in ("alpha", "beta", "gamma")
        ]
        if not weights[0] > weights[2]:
            raise ValueError(
                f"alpha ({weights[0]}) must exceed gamma ({weights[2]}): the query"
                " must outweigh the negatives"
            )
        return weights[0], weights[1], weights[2]

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
        """Fit on uint8 codes ``X (n, D)`` and labels ``y`` in {0, 1}.

        Args:
            sample_weight: optional float ``(n,)``.
            unlabelled: optional bool ``(n,)``, the negatives drawn at random: they
                train the radius, not the centre (not judged by the user).
            subsets, neighbours, catalogue_sample: ignored (the ball is scanned,
                and learns a centre and a radius from the labels).

        Raises:
            ValueError: bad inputs, or labels that put the positives no nearer the
                (moved) query than the negatives (a ball around it cannot separate
                them: refine with another model, or search again).
        """
        X, y, w = check_training(X, y, sample_weight)
        center = self._center(X.shape[1])
        judged = ~check_row_mask(unlabelled, y.shape, "unlabelled")
        center = rocchio_center(
            center, X[judged], y[judged], w[judged], *self._rocchio_weights()
        )
        distance = np.sqrt(_squared(X, center).astype(np.float64))[:, None]
        logistic = LinearClassifier(
            C=self.C,
            class_weight=self.class_weight,
            relabel_margin=self.relabel_margin,
            max_iter=self.max_iter,
            tol=self.tol,
        ).fit(distance, y, w, unlabelled=unlabelled)
        slope = float(logistic.coef_[0])
        if not slope < 0:
            raise ValueError(
                "the labelled positives are no nearer the query (moved by the labels)"
                " than the negatives (labelled and random), so no distance from it"
                " separates them: refine"
                " with another model (e.g. 'linear'), or search with a query closer"
                " to the positives"
            )
        radius = -logistic.intercept_ / slope
        self.center_ = center
        self.coef_ = slope
        self.intercept_ = float(logistic.intercept_)
        self.radius_sq_ = int(np.ceil(radius * radius)) - 1 if radius > 0 else -1
        self.n_relabelled_ = logistic.n_relabelled_
        self.n_features_in_ = X.shape[1]
        return self

    def _scores(self, sq: np.ndarray) -> np.ndarray:
        # the logit, with its zero moved onto the integer radius: > 0 exactly inside
        edge = np.sqrt(self.radius_sq_ + 0.5)
        return self.coef_ * (np.sqrt(sq.astype(np.float64)) - edge)

    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: squared distance to the center ``<= radius_sq_``."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        return _squared(X, self.center_) <= self.radius_sq_

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)``, decreasing with the distance, > 0 exactly inside."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        return self._scores(_squared(X, self.center_))

    def search(self, codes, chunk_rows: int = SEARCH_CHUNK_ROWS):
        """Every row of ``codes`` inside the ball: int64 ids and float64 scores."""
        self._check_fitted()

        def score_chunk(chunk, out):
            squared_distances(chunk, self.center_, out)
            hit = np.flatnonzero(out <= self.radius_sq_)
            return hit, self._scores(out[hit])

        return search_chunks(codes, self.n_features_in_, score_chunk, chunk_rows)


def rocchio_center(query, X, y, w, alpha, beta, gamma) -> np.ndarray:
    """uint8 ``(D,)``: Rocchio's point ``(alpha * query + beta * m_pos - gamma *
    m_neg) / (alpha + beta - gamma)`` for uint8 ``query (D,)`` and the ``w``-weighted
    means of the rows of ``X`` labelled 1 and 0 in ``y`` (a term without rows is
    dropped), rounded and clipped to ``[0, 255]``."""
    point = alpha * query.astype(np.float64)
    total = alpha
    for label, weight in ((1, beta), (0, -gamma)):
        rows = (y == label) & (w > 0)
        if weight and rows.any():
            mean = np.average(X[rows].astype(np.float64), axis=0, weights=w[rows])
            point += weight * mean
            total += weight
    return np.clip(np.rint(point / total), 0, 255).astype(np.uint8)


def _squared(X: np.ndarray, center: np.ndarray) -> np.ndarray:
    out = np.empty(X.shape[0], dtype=np.int32)
    squared_distances(X, center, out)
    return out
