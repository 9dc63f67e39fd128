"""Decision branches: a union of axis-aligned boxes over indexed feature subsets."""

from __future__ import annotations

import numpy as np

from . import branches_kernels as _k
from .branch_model import MARGIN_EPS, BranchModel, selective_boxes
from .validation import seed_from

__all__ = ["MARGIN_EPS", "PARALLEL_WORK", "DecisionBranches", "selective_boxes"]

#: Training rows x candidate subsets above which candidates are grown in parallel.
PARALLEL_WORK = 200_000


class DecisionBranches(BranchModel):
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
    ) -> DecisionBranches:
        """Fit on uint8 codes ``X (n, D)``, labels ``y (n,)`` in {0, 1}.

        Args:
            sample_weight: float ``(n,)`` >= 0 (default ones); rows of weight 0 are
                ignored. Weights enter the Gini counts (no row repetition).
            subsets: FeatureSubsets of ``D`` dims; default ``make_subsets(D)``.
            unlabelled, neighbours, catalogue_sample: ignored (random negatives
                and neighbour positives train as the other rows); accepted as every
                model does.
        """
        X, y, w, subsets, growth = self._prepare(X, y, sample_weight, subsets)
        seed = seed_from(self.random_state).integers(0, 2**63, dtype=np.uint64)
        # Parallel regions pay a barrier per box: only worth it on large training sets
        # (and harmful on a loaded machine), so small sets run serially.
        fit = (
            _k.fit_branches_parallel
            if X.shape[0] * growth.n_candidates >= PARALLEL_WORK
            else _k.fit_branches
        )
        sub, lo, hi, seed_rows = fit(
            X, y, w, subsets.dims, subsets.lengths, *growth, np.uint64(seed)
        )
        member = np.zeros(sub.shape[0], np.int32)
        self._set_boxes(X, y, w[None, :], subsets, sub, lo, hi, member, seed_rows, 1)
        return self

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)`` ranking score (see the class docstring); > 0 iff predicted."""
        return self._member_scores(X, squash=False)[1]
