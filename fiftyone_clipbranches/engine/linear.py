"""A linear classifier on the codes: L2 logistic regression, applied exactly by a scan.

Decision branches answer through the index but only capture classes that are local
in a few code dimensions. Classes spread along one direction of the code space (an
object shown among varying others, a fine-grained breed) are half-spaces, which a
union of boxes over small subsets approximates badly and a linear model fits.
It has no per-box index query: it is applied by one pass over the ``(N, D)`` codes
(:mod:`.linear_kernels`), about as fast as reading them.

The fitted weights are folded into integers over the raw uint8 codes, so the
catalogue scan, ``predict`` and a brute-force ``codes @ weights_`` agree exactly.
"""

from __future__ import annotations

import numbers

import numpy as np

from .linear_kernels import linear_scores, logistic_terms
from .model import RefinementModel
from .scan import SEARCH_CHUNK_ROWS, search_chunks
from .validation import (
    check_features,
    check_int,
    check_positive_number,
    check_row_mask,
    check_training,
)

_WEIGHT_LIMIT = (1 << 15) - 1
_SUM_LIMIT = (1 << 31) - 1


class LinearClassifier(RefinementModel):
    """Weighted L2-regularised logistic regression on uint8 codes.

    Minimises ``||w||^2 / 2 + C * sum_i s_i * logloss(y_i, w . z_i + b)`` over the
    standardised training features ``z`` (Newton's method), where ``s_i`` is the
    sample weight times the class weight. The result is folded into int32 weights
    ``weights_`` over the raw codes and an int64 threshold ``threshold_``: a row is
    positive when ``codes @ weights_ > threshold_``.

    Random negatives are unlabelled rows, and some belong to the class. When
    ``fit`` is told which negatives are unlabelled, those that the first model
    scores above ``relabel_margin`` (a logit) are left out and the model is fit
    again on the rest.

    Args:
        C: float > 0, inverse regularisation strength (scikit-learn's convention).
        class_weight: ``"balanced"`` (each class weighs as much in total),
            ``"sqrt"`` (each class's total weight scaled by its inverse square
            root: halfway, on a log scale, between None and balanced) or None.
        relabel_margin: float, or None to fit once and keep every negative.
        max_iter: int >= 1, Newton iterations at most.
        tol: float > 0, stop when the largest gradient entry is below it.
    """

    def __init__(
        self,
        C=1.0,
        class_weight="balanced",
        relabel_margin=0.0,
        max_iter=100,
        tol=1e-6,
    ):
        self.C = C
        self.class_weight = class_weight
        self.relabel_margin = relabel_margin
        self.max_iter = max_iter
        self.tol = tol

    def _check_params(self):
        check_positive_number(self.C, "C")
        check_positive_number(self.tol, "tol")
        check_int(self.max_iter, "max_iter", 1)
        margin = self.relabel_margin
        if margin is not None and (
            isinstance(margin, bool)
            or not isinstance(margin, numbers.Real)
            or not np.isfinite(margin)
        ):
            raise ValueError(f"relabel_margin must be a float or None, got {margin!r}")
        if self.class_weight not in ("balanced", "sqrt", None):
            raise ValueError(
                "class_weight must be 'balanced', 'sqrt' or None, got"
                f" {self.class_weight!r}"
            )

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
        """Fit on uint8 codes (or float features) ``X (n, D)``, labels in {0, 1}.

        Args:
            sample_weight: optional float ``(n,)``.
            unlabelled: optional bool ``(n,)``, the negatives drawn at random rather
                than labelled (``TrainingSet.unlabelled``).
            subsets, neighbours, catalogue_sample: ignored (no index query;
                neighbour positives train as the other positives).

        At least one row of each label is required.
        """
        self._check_params()
        X, y, w = check_training(X, y, sample_weight, allow_float=True)
        unlabelled = check_row_mask(unlabelled, y.shape, "unlabelled")
        self.n_relabelled_ = 0
        self._fit_once(X, y, w)
        if self.relabel_margin is None:
            return self
        doubtful = unlabelled & (y == 0)
        doubtful &= self.decision_function(X) > self.relabel_margin
        if doubtful.any() and (w[(y == 0) & ~doubtful] > 0).any():
            self._fit_once(X[~doubtful], y[~doubtful], w[~doubtful])
            self.n_relabelled_ = int(doubtful.sum())
        return self

    def _fit_once(self, X, y, w) -> None:
        if not (w[y == 0] > 0).any():
            raise ValueError(
                "y has no negative (0) label of weight > 0: a linear classifier needs"
                " negatives too"
            )
        if self.class_weight == "balanced":
            totals = np.bincount(y, weights=w, minlength=2)
            w = w * (totals.sum() / (2.0 * totals))[y]
        elif self.class_weight == "sqrt":
            totals = np.bincount(y, weights=w, minlength=2)
            scale = 1.0 / np.sqrt(totals)
            w = w * (scale * totals.sum() / (scale * totals).sum())[y]
        x = X.astype(np.float64)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std == 0] = 1.0
        coef, intercept = _newton_logistic(
            (x - mean) / std,
            y.astype(np.float64),
            w,
            float(self.C),
            self.max_iter,
            self.tol,
        )
        raw = coef / std
        self.coef_ = raw
        self.intercept_ = float(intercept - raw @ mean)
        self.n_features_in_ = X.shape[1]
        self._fold(X.shape[1])

    def _fold(self, n_dims: int) -> None:
        biggest = float(np.abs(self.coef_).max())
        if biggest == 0.0:
            scale = 1.0
        else:
            scale = min(_WEIGHT_LIMIT, _SUM_LIMIT / (255.0 * n_dims)) / biggest
        self.weights_ = np.round(self.coef_ * scale).astype(np.int32)
        self.threshold_ = int(np.floor(-self.intercept_ * scale))
        self.scale_ = scale

    def _raw_scores(self, X) -> np.ndarray:
        X = check_features(X, n_dims=self.n_features_in_)
        if X.dtype == np.uint8:
            out = np.empty(X.shape[0], dtype=np.int32)
            linear_scores(X, self.weights_, out)
            return out.astype(np.int64)
        return X.astype(np.float64) @ self.weights_.astype(np.float64)

    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: ``X @ weights_ > threshold_``."""
        self._check_fitted()
        return self._raw_scores(X) > self.threshold_

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)``, > 0 exactly for the positive rows (the logit, up to the
        rounding of the weights)."""
        self._check_fitted()
        return (self._raw_scores(X) - self.threshold_) / self.scale_

    def search(self, codes, chunk_rows: int = SEARCH_CHUNK_ROWS):
        """Every positive row of the catalogue ``codes``: int64 ids and float64 scores.

        One parallel pass over the codes, ``chunk_rows`` rows at a time.
        """
        self._check_fitted()

        def score_chunk(chunk, out):
            linear_scores(chunk, self.weights_, out)
            hit = np.flatnonzero(out > self.threshold_)
            return hit, (out[hit].astype(np.int64) - self.threshold_) / self.scale_

        return search_chunks(codes, self.n_features_in_, score_chunk, chunk_rows)


def _newton_logistic(z, y, s, C, max_iter, tol):
    """Coefficients and intercept of the weighted L2 logistic regression on ``z``.

    Newton's method with step halving; the intercept is not penalised.
    """
    n_dims = z.shape[1]
    z = np.ascontiguousarray(z)
    beta = np.zeros(n_dims + 1)
    penalty = np.ones(n_dims + 1)
    penalty[-1] = 0.0
    grad = np.empty(n_dims + 1)
    hess = np.empty((n_dims + 1, n_dims + 1))

    def objective(b):
        loss = logistic_terms(z, y, s, b, grad, hess)
        return 0.5 * float(b[:-1] @ b[:-1]) + C * loss

    current = objective(beta)
    for _ in range(max_iter):
        gradient = penalty * beta + C * grad
        if np.abs(gradient).max() < tol:
            break
        hessian = C * hess
        hessian[np.diag_indices_from(hessian)] += penalty + 1e-10
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-8:
            candidate = beta - size * step
            value = objective(candidate)  # also the terms at the candidate
            if value <= current:
                break
            size *= 0.5
        else:
            break
        beta, current = candidate, value
    return beta[:-1], beta[-1]
