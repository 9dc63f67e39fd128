"""Decision branches: a union of axis-aligned boxes over indexed feature subsets."""

from __future__ import annotations

import numpy as np

from . import branches_kernels as _k
from .boxes import Boxes
from .scan import contains_any
from .validation import (
    EstimatorParams,
    check_codes,
    check_end_extension,
    check_int,
    check_margin,
    check_training,
    resolve_candidates,
    resolve_subsets,
    seed_from,
)

#: Weight of the depth term in the ranking score (see ``DecisionBranches``).
MARGIN_EPS = 0.01
#: Training rows x candidate subsets above which candidates are grown in parallel.
PARALLEL_WORK = 200_000


def selective_boxes(purity: np.ndarray) -> np.ndarray:
    """bool ``(B,)``: boxes holding at least as much positive as negative weight.

    Sequential covering can end with a box around a lone positive that no tighter box
    separates from the negatives; a box whose training points are mostly negative
    would classify mostly negatives as positive (in the worst case most of the
    catalogue), so it is dropped, as a decision-tree leaf would predict negative.
    """
    return np.asarray(purity) >= 0.5 - 1e-12


class DecisionBranches(EstimatorParams):
    """A union of closed integer boxes, each over one feature subset of the codes.

    Training (sequential covering): repeatedly draw an uncovered positive as seed,
    grow a box around it in ``max_candidates`` randomly drawn subsets by coordinate
    descent on the weighted Gini of the inside/outside split of the still uncovered
    points (one sorted 256-value sweep per bound; ties keep the tighter bound), keep
    the best box (lowest Gini, then fewer dims), move each bound ``bound_margin`` of
    the way from the last included to the first excluded value, and remove every
    point it covers. Boxes only use the given subsets, so an index built on them
    answers each box with one range query. At most ``min(max_boxes, #positives)``
    boxes; every box holds its seed positive.

    Args:
        max_boxes: int >= 1, at most this many boxes (default 30).
        max_candidates: subsets tried per box: int >= 1, float fraction in (0, 1],
            ``"sqrt"`` (ceil of the square root of the number of subsets) or ``"all"``
            (default; the default 10 subsets make this cheap).
        min_samples_box: int >= 1, a box must cover at least this many of the still
            uncovered training points (default 1).
        max_passes: int >= 1, coordinate-descent walks over a subset's dims (default 3).
        bound_margin: float in [0, 1): how far each bound moves into the gap towards
            the nearest excluded training point (default 0.5, the midpoint; 0 keeps
            the bounds on the outermost included values).
        end_extension: where no training point lies beyond a bound (inside the slab
            of the other dims), move it out by this many mean spacings of the box's
            points, ``(hi - lo) / (n_inside - 1)`` (default 1.0; 0 keeps it on the
            outermost value), or ``"open"``: to the end of the code range (0 / 255),
            as the reference does. Open ends generalise best on well separated
            classes but let boxes swallow large, sparsely sampled regions of the
            catalogue; the default is a compromise measured on synthetic CLIP-like
            codes (see the model-layer report).
        random_state: int, numpy Generator or None (= 0); same seed, same model.

    Attributes (after ``fit``):
        boxes_: :class:`Boxes` with ``member == 0``.
        subsets_: the :class:`FeatureSubsets` the boxes live in.
        box_purity_: float64 ``(B,)``, weighted fraction of positives among all
            training points inside each box.
        seed_rows_: int64 ``(B,)``, training row each box was grown around.
        n_features_in_: ``D``.

    ``decision_function(x)``: inside at least one box, ``max_b (purity_b + 0.01 *
    depth_b(x))`` with ``depth_b(x) = min_j (min(x_j - lo_j, hi_j - x_j) + 1) /
    ((hi_j - lo_j) / 2 + 1)`` in ``(0, 1]`` (1 at the centre); outside all boxes,
    ``-dist(x, nearest box) / 255`` (Euclidean, in code units). So the score is
    positive exactly where ``predict`` is True, ranks purer boxes first, then deeper
    points, and ranks outside points by closeness.
    """

    def __init__(
        self,
        max_boxes=30,
        max_candidates="all",
        min_samples_box=1,
        max_passes=3,
        bound_margin=0.5,
        end_extension=1.0,
        random_state=0,
    ):
        self.max_boxes = max_boxes
        self.max_candidates = max_candidates
        self.min_samples_box = min_samples_box
        self.max_passes = max_passes
        self.bound_margin = bound_margin
        self.end_extension = end_extension
        self.random_state = random_state

    def _checked_params(self, n_subsets: int) -> tuple:
        return (
            check_int(self.max_boxes, "max_boxes", 1),
            resolve_candidates(self.max_candidates, n_subsets),
            check_int(self.min_samples_box, "min_samples_box", 1),
            check_int(self.max_passes, "max_passes", 1),
            check_margin(self.bound_margin),
            check_end_extension(self.end_extension),
        )

    def fit(self, X, y, sample_weight=None, subsets=None) -> DecisionBranches:
        """Fit on uint8 codes ``X (n, D)``, labels ``y (n,)`` in {0, 1}.

        Args:
            sample_weight: float ``(n,)`` >= 0 (default ones); rows of weight 0 are
                ignored. Weights enter the Gini counts (no row repetition).
            subsets: FeatureSubsets of ``D`` dims; default ``make_subsets(D)``.
        """
        X, y, w = check_training(X, y, sample_weight)
        subsets = resolve_subsets(subsets, X.shape[1])
        max_boxes, n_cand, min_samples, passes, margin, end_ext = self._checked_params(
            len(subsets)
        )
        seed = seed_from(self.random_state).integers(0, 2**63, dtype=np.uint64)
        # Parallel regions pay a barrier per box: only worth it on large training sets
        # (and harmful on a loaded machine), so small sets run serially.
        fit = (
            _k.fit_branches_parallel
            if X.shape[0] * n_cand >= PARALLEL_WORK
            else _k.fit_branches
        )
        sub, lo, hi, seed_rows = fit(
            X, y, w, subsets.dims, subsets.lengths, max_boxes, n_cand, min_samples,
            passes, margin, end_ext, np.uint64(seed),
        )  # fmt: skip
        self.boxes_ = Boxes(sub, lo, hi, np.zeros(sub.shape[0], np.int32))
        self.subsets_ = subsets
        self.seed_rows_ = seed_rows
        self.n_features_in_ = X.shape[1]
        wp, wn = _k.box_weights(
            X, y, w[None, :], np.zeros(sub.shape[0], np.int32), subsets.dims,
            subsets.lengths, sub, lo, hi,
        )  # fmt: skip
        self.box_purity_ = wp / np.maximum(wp + wn, 1e-300)
        keep = selective_boxes(self.box_purity_)
        if not keep.all():
            b = self.boxes_
            self.boxes_ = Boxes(
                b.subset_ids[keep], b.lo[keep], b.hi[keep], b.member[keep]
            )
            self.seed_rows_ = self.seed_rows_[keep]
            self.box_purity_ = self.box_purity_[keep]
        return self

    def _check_fitted(self):
        if not hasattr(self, "boxes_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted: call fit first"
            )

    def _score(self, X):
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        b = self.boxes_
        starts = np.array([0, len(b)], dtype=np.int64)
        s = self.subsets_
        return _k.score_points(
            X, s.dims, s.lengths, b.subset_ids, b.lo, b.hi, starts, self.box_purity_,
            MARGIN_EPS, False,
        )  # fmt: skip

    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: True where some box holds the row (parallel scan)."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        return contains_any(X, self.subsets_, self.boxes_)

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)`` ranking score (see the class docstring); > 0 iff predicted."""
        return self._score(X)[1]

    @property
    def n_members_(self) -> int:
        return 1

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
