"""Bagged decision branches with a true per-member majority vote."""

from __future__ import annotations

import numbers

import numpy as np

from . import branches_kernels as _k
from .boxes import Boxes
from .branches import MARGIN_EPS, selective_boxes
from .linear import LinearClassifier
from .scan import scan_boxes
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


class DecisionBranchesEnsemble(EstimatorParams):
    """``n_estimators`` decision-branch models on bootstrap samples, voting per member.

    Each member sees a bootstrap sample of the training rows (``max_samples`` draws
    with replacement; the draw counts multiply the sample weights, rows are never
    copied) and its own seed; members are trained in parallel in one numba kernel
    (``prange`` over members). A row's vote is the number of **distinct members** with
    a box that holds it (overlapping boxes of one member count once).

    Args:
        n_estimators: int >= 1 (default 25).
        vote_threshold: float in [0, 1); ``predict`` is ``votes / n_estimators >
            vote_threshold`` (strict: the default 0.5 is a strict majority, 13 of 25).
        max_samples: bootstrap size: float fraction of n in (0, 1] or int >= 1
            (default 1.0, i.e. n draws).
        max_boxes, max_candidates, min_samples_box, max_passes, bound_margin,
            end_extension: per member, as in
            :class:`~.branches.DecisionBranches`; ``max_candidates`` defaults to 0.5
            (half of the subsets per box) for member diversity.
        arbiter_margin: float, or None for a pure vote. A linear arbiter
            (:class:`~.linear.LinearClassifier`, fit on the training rows without
            their neighbour positives) also accepts rows that at least
            ``arbiter_min_votes`` members hold but the vote rejects, when its logit
            exceeds this margin (default 4.0: docs/quality.md, "Linear arbiter").
            It only reads rows the boxes already found, so the ensemble is still
            answered by the index.
        arbiter_min_votes: int >= 1 (default 3).
        random_state: int, numpy Generator or None (= 0).

    Attributes (after ``fit``): ``arbiter_`` (the fitted arbiter or None), ``boxes_`` (all members' boxes, grouped by member,
    ``member`` = owner), ``subsets_``, ``n_boxes_`` int64 ``(n_estimators,)``,
    ``box_purity_`` float64 ``(B,)`` on each member's own bootstrap sample.

    ``decision_function(x) = votes / n_estimators + t(x) / (2 n_estimators)`` with
    ``t(x)`` the mean over members of ``1 / (1 + exp(-4 s_e(x)))``, ``s_e`` member
    ``e``'s :class:`~.branches.DecisionBranches` score; ``t`` lies in ``[0, 1)``, so it
    only orders rows with the same vote count.
    """

    def __init__(
        self,
        n_estimators=25,
        vote_threshold=0.5,
        max_samples=1.0,
        max_boxes=30,
        max_candidates=0.5,
        min_samples_box=1,
        max_passes=3,
        bound_margin=0.5,
        end_extension=1.0,
        arbiter_margin=4.0,
        arbiter_min_votes=3,
        random_state=0,
    ):
        self.n_estimators = n_estimators
        self.vote_threshold = vote_threshold
        self.max_samples = max_samples
        self.max_boxes = max_boxes
        self.max_candidates = max_candidates
        self.min_samples_box = min_samples_box
        self.max_passes = max_passes
        self.bound_margin = bound_margin
        self.end_extension = end_extension
        self.arbiter_margin = arbiter_margin
        self.arbiter_min_votes = arbiter_min_votes
        self.random_state = random_state

    def _check_threshold(self) -> float:
        t = self.vote_threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError("vote_threshold must be a float in [0, 1)")
        if not 0.0 <= float(t) < 1.0:
            raise ValueError(f"vote_threshold must be in [0, 1), got {t}")
        return float(t)

    def _n_draws(self, n: int) -> int:
        ms = self.max_samples
        if isinstance(ms, bool):
            raise TypeError("max_samples must be an int or a float")
        if isinstance(ms, numbers.Integral):
            return check_int(ms, "max_samples", 1)
        if isinstance(ms, numbers.Real):
            if not 0.0 < ms <= 1.0:
                raise ValueError(f"a float max_samples must be in (0, 1], got {ms}")
            return max(1, int(round(ms * n)))
        raise TypeError("max_samples must be an int or a float")

    def fit(
        self, X, y, sample_weight=None, subsets=None, unlabelled=None, neighbours=None
    ) -> DecisionBranchesEnsemble:
        """Fit on uint8 codes ``X (n, D)``, labels ``y (n,)`` in {0, 1}; see the class.

        Args:
            unlabelled: optional bool ``(n,)``, the random negatives (the arbiter
                leaves out those it finds likely matches).
            neighbours: optional bool ``(n,)``, the neighbour positives (the
                arbiter does not train on them).
        """
        X, y, w = check_training(X, y, sample_weight)
        arbiter_margin = self._check_arbiter()
        unlabelled = _row_mask(unlabelled, y.shape, "unlabelled")
        neighbours = _row_mask(neighbours, y.shape, "neighbours")
        subsets = resolve_subsets(subsets, X.shape[1])
        n_est = check_int(self.n_estimators, "n_estimators", 1)
        self._check_threshold()
        max_boxes = check_int(self.max_boxes, "max_boxes", 1)
        n_cand = resolve_candidates(self.max_candidates, len(subsets))
        min_samples = check_int(self.min_samples_box, "min_samples_box", 1)
        passes = check_int(self.max_passes, "max_passes", 1)
        margin = check_margin(self.bound_margin)
        end_ext = check_end_extension(self.end_extension)
        draws = self._n_draws(X.shape[0])
        rng = seed_from(self.random_state)

        usable = np.flatnonzero(w > 0)
        usable_pos = usable[y[usable] == 1]
        W = np.zeros((n_est, X.shape[0]))
        for e in range(n_est):
            counts = np.bincount(rng.choice(usable, size=draws), minlength=X.shape[0])
            if not counts[usable_pos].any():
                counts[rng.choice(usable_pos)] += 1
            W[e] = w * counts
        seeds = rng.integers(0, 2**63, size=n_est, dtype=np.uint64)
        subs, los, his, seed_rows, n_boxes = _k.fit_members(
            X, y, W, subsets.dims, subsets.lengths, max_boxes, n_cand, min_samples,
            passes, margin, end_ext, seeds,
        )  # fmt: skip
        keep = np.arange(max_boxes)[None, :] < n_boxes[:, None]
        member = np.broadcast_to(np.arange(n_est, dtype=np.int32)[:, None], keep.shape)
        self.boxes_ = Boxes(subs[keep], los[keep], his[keep], member[keep])
        self.subsets_ = subsets
        self.n_boxes_ = n_boxes
        self.seed_rows_ = seed_rows[keep]
        self.n_features_in_ = X.shape[1]
        self._starts = np.concatenate([[0], np.cumsum(n_boxes)]).astype(np.int64)
        b = self.boxes_
        wp, wn = _k.box_weights(
            X, y, W, b.member, subsets.dims, subsets.lengths, b.subset_ids, b.lo, b.hi
        )
        self.box_purity_ = wp / np.maximum(wp + wn, 1e-300)
        keep = selective_boxes(self.box_purity_)
        if not keep.all():
            self.boxes_ = Boxes(
                b.subset_ids[keep], b.lo[keep], b.hi[keep], b.member[keep]
            )
            self.seed_rows_ = self.seed_rows_[keep]
            self.box_purity_ = self.box_purity_[keep]
            self.n_boxes_ = np.bincount(self.boxes_.member, minlength=n_est)
            self._starts = np.concatenate([[0], np.cumsum(self.n_boxes_)]).astype(
                np.int64
            )
        self.arbiter_ = None
        own = ~neighbours
        if arbiter_margin is not None and (w[own & (y == 0)] > 0).any():
            self.arbiter_ = LinearClassifier().fit(
                X[own], y[own], w[own], unlabelled=unlabelled[own]
            )
        return self

    def _check_arbiter(self) -> float | None:
        margin = self.arbiter_margin
        check_int(self.arbiter_min_votes, "arbiter_min_votes", 1)
        if margin is None:
            return None
        if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
            raise TypeError(f"arbiter_margin must be a float or None, got {margin!r}")
        if not np.isfinite(margin):
            raise ValueError(f"arbiter_margin must be finite, got {margin}")
        return float(margin)

    def _check_fitted(self):
        if not hasattr(self, "boxes_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted: call fit first"
            )

    @property
    def n_members_(self) -> int:
        self._check_fitted()
        return int(self.n_boxes_.shape[0])

    def votes(self, X) -> np.ndarray:
        """int32 ``(n,)``: number of distinct members with a box holding each row."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        out = np.zeros(X.shape[0], dtype=np.int32)
        ids, hits = scan_boxes(X, self.subsets_, self.boxes_)
        out[ids] = hits
        return out

    def keep_votes(self, members_hit) -> np.ndarray:
        """bool mask of vote counts that pass ``vote_threshold``."""
        thr = self._check_threshold()
        return np.asarray(members_hit) / self.n_members_ > thr

    def accept(self, members_hit, codes, rows=None) -> np.ndarray:
        """bool mask over rows with vote counts ``members_hit``: the vote passes, or
        the arbiter accepts a row that enough members hold.

        Args:
            members_hit: int ``(m,)``, the distinct members holding each row.
            codes: uint8 codes: of those rows (``rows`` None), or of the catalogue
                with ``rows`` int ``(m,)`` giving each row's position in it. Only
                the rows the arbiter decides are read.
        """
        hits = np.asarray(members_hit)
        keep = self.keep_votes(hits)
        if getattr(self, "arbiter_", None) is None:
            return keep
        doubtful = np.flatnonzero(~keep & (hits >= self.arbiter_min_votes))
        if doubtful.size:
            where = doubtful if rows is None else np.asarray(rows)[doubtful]
            logit = self.arbiter_.decision_function(np.asarray(codes[where]))
            keep[doubtful] = logit > self.arbiter_margin
        return keep

    def score_rows(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(votes int32, decision_function float64)`` of the rows of ``X``."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        b = self.boxes_
        s = self.subsets_
        votes, tie = _k.score_points(
            X, s.dims, s.lengths, b.subset_ids, b.lo, b.hi, self._starts,
            self.box_purity_, MARGIN_EPS, True,
        )  # fmt: skip
        m = self.n_members_
        return votes, votes / m + tie / (2 * m)

    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: ``votes / n_estimators > vote_threshold``, or at least
        ``arbiter_min_votes`` votes and an arbiter logit above ``arbiter_margin``."""
        votes = self.votes(X)
        return self.accept(votes, check_codes(X, n_dims=self.n_features_in_))

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)``: vote fraction plus a tie-break below ``1 / (2 M)``."""
        return self.score_rows(X)[1]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _row_mask(mask, shape, name: str) -> np.ndarray:
    if mask is None:
        return np.zeros(shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != shape:
        raise ValueError(f"{name} must be a bool array of shape {shape}")
    return mask
