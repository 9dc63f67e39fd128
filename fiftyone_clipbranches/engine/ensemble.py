"""Bagged decision branches with a true per-member majority vote."""

from __future__ import annotations

import numbers

import numpy as np

from . import branches_kernels as _k
from .branch_model import BranchModel
from .linear import LinearClassifier
from .member_share import member_share
from .validation import check_int, check_row_mask, seed_from


class DecisionBranchesEnsemble(BranchModel):
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
            end_extension, random_state (keywords): how each member grows its
            boxes, as in :class:`~.branches.DecisionBranches` (their shared base,
            :class:`~.branch_model.BranchModel`, validates them);
            ``max_candidates`` defaults to 0.5 (half of the subsets per box) for
            member diversity.
        arbiter_margin: float, or None for a pure vote. A linear arbiter
            (:class:`~.linear.LinearClassifier`, fit on the training rows without
            their neighbour positives) also accepts rows that at least
            ``arbiter_min_votes`` members hold but the vote rejects, when its logit
            exceeds this margin (default 4.0: docs/quality.md, "Linear arbiter").
            It only reads rows the boxes already found, so the ensemble is still
            answered by the index.
        arbiter_min_votes: int >= 1 (default 3).
        broad_share: float in (0, 1] (default 0.1), or None: when the random
            negatives (``unlabelled`` at ``fit``) are estimated to be at least
            this share members of the class
            (:func:`~.member_share.member_share`, from the labelled positives and
            the random rows alone), the concept is *broad* (a union of classes,
            a large share of the catalogue: "any animal"). The random negatives a
            linear model (fitted on the labels and them) accepts then leave the
            training set (``n_broad_``, also in ``n_relabelled_``), and the arbiter (fitted on the rows
            left; ``arbiter_margin`` None: none) accepts any row a member holds
            where its logit is above 0, in place of ``arbiter_margin`` and
            ``arbiter_min_votes``. Trained on those members as negatives, the
            boxes find little beyond the labels (docs/quality.md, "Broad
            concepts": recall 0.01-0.35 with 200 positives of a concept of 15-60%
            of the rows). Single classes of the four catalogues of
            docs/quality.md are estimated at 0.005-0.016 on average, 0.1 or more
            in 12 of 2,288 draws (all at 8-16 positives). The estimate takes 5
            logistic fits at each ``fit`` (8 ms with 16 positives and 500 random
            rows of 32 bytes, 18 ms with 200 and 3,000; 38 ms with 64-byte
            codes, 2 shared cores).

    Attributes (after ``fit``): ``arbiter_`` (the fitted arbiter or None),
    ``member_share_`` float (the share of the random negatives estimated members;
    NaN: not estimated), ``broad_`` bool and ``n_broad_`` int (random negatives
    left out for a broad concept), and those
    of :class:`~.branch_model.BranchModel`: ``boxes_`` (all members' boxes, grouped
    by member), ``subsets_``, ``n_boxes_`` int64 ``(n_estimators,)``,
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
        *,
        max_candidates=0.5,
        arbiter_margin=4.0,
        arbiter_min_votes=3,
        broad_share=0.1,
        **branch_params,
    ):
        super().__init__(max_candidates=max_candidates, **branch_params)
        self.n_estimators = n_estimators
        self.vote_threshold = vote_threshold
        self.max_samples = max_samples
        self.arbiter_margin = arbiter_margin
        self.arbiter_min_votes = arbiter_min_votes
        self.broad_share = broad_share

    def _vote_threshold(self) -> float:
        t = self.vote_threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError("vote_threshold must be a float in [0, 1)")
        if not 0.0 <= float(t) < 1.0:
            raise ValueError(f"vote_threshold must be in [0, 1), got {t}")
        return float(t)

    def _arbiter_params(self) -> tuple[float | None, int]:
        """Validated ``(arbiter_margin or None, arbiter_min_votes)``."""
        min_votes = check_int(self.arbiter_min_votes, "arbiter_min_votes", 1)
        margin = self.arbiter_margin
        if margin is None:
            return None, min_votes
        if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
            raise TypeError(f"arbiter_margin must be a float or None, got {margin!r}")
        if not np.isfinite(margin):
            raise ValueError(f"arbiter_margin must be finite, got {margin}")
        return float(margin), min_votes

    def _arbiter_rule(self):
        margin, min_votes = self._arbiter_params()
        if margin is None or getattr(self, "arbiter_", None) is None:
            return None
        if getattr(self, "broad_", False):  # its own boundary, any row held
            return self.arbiter_, 0.0, 1
        return self.arbiter_, margin, min_votes

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
        self,
        X,
        y,
        sample_weight=None,
        *,
        subsets=None,
        unlabelled=None,
        neighbours=None,
        catalogue_sample=None,
    ) -> DecisionBranchesEnsemble:
        """Fit on uint8 codes ``X (n, D)``, labels ``y (n,)`` in {0, 1}; see the class.

        Args:
            sample_weight: float ``(n,)`` >= 0 (default ones).
            subsets: FeatureSubsets of ``D`` dims; default ``make_subsets(D)``.
            unlabelled: optional bool ``(n,)``, the random negatives (the arbiter
                leaves out those it finds likely matches).
            neighbours: optional bool ``(n,)``, the neighbour positives (the
                arbiter does not train on them).
            catalogue_sample: ignored (accepted as every model does).
        """
        X, y, w, subsets, growth = self._prepare(X, y, sample_weight, subsets)
        unlabelled = check_row_mask(unlabelled, y.shape, "unlabelled")
        neighbours = check_row_mask(neighbours, y.shape, "neighbours")
        self._check_member_params(X.shape[0])
        X, y, w, unlabelled, neighbours = self._without_broad_members(
            X, y, w, unlabelled, neighbours
        )
        return self._fit_members(X, y, w, subsets, growth, unlabelled, neighbours)

    def _check_member_params(self, n_rows: int) -> None:
        """Check the parameters :meth:`_fit_members` reads (before any fit)."""
        self._arbiter_params()
        check_int(self.n_estimators, "n_estimators", 1)
        self._vote_threshold()
        self._n_draws(n_rows)
        self._broad_share()

    def _without_broad_members(self, X, y, w, drawn, near):
        """``(X, y, w, drawn, near)`` (checked training arrays and masks), less
        the random negatives a linear model (:class:`~.linear.LinearClassifier`,
        fitted on the rows that are not neighbour positives) accepts when the
        concept is broad (``broad_share``); sets ``member_share_``, ``broad_`` and
        ``n_broad_``."""
        self.broad_ = False
        self.n_broad_ = 0
        self.member_share_ = float("nan")
        share = self._broad_share()
        own = ~near & (w > 0)
        random = drawn & own & (y == 0)
        if share is None or not random.any() or not (own & (y == 1)).any():
            return X, y, w, drawn, near
        self.member_share_ = member_share(X[own & (y == 1)], X[random])
        if self.member_share_ < share:
            return X, y, w, drawn, near
        linear = LinearClassifier().fit(X[own], y[own], w[own], unlabelled=drawn[own])
        likely = random & (linear.decision_function(X) > 0)
        self.broad_ = True
        self.n_broad_ = int(np.count_nonzero(likely))
        keep = ~likely
        return X[keep], y[keep], w[keep], drawn[keep], near[keep]

    def _broad_share(self) -> float | None:
        share = self.broad_share
        if share is None:
            return None
        if isinstance(share, bool) or not isinstance(share, numbers.Real):
            raise TypeError(f"broad_share must be a float or None, got {share!r}")
        if not 0.0 < float(share) <= 1.0:
            raise ValueError(f"broad_share must be in (0, 1], got {share}")
        return float(share)

    def _fit_members(self, X, y, w, subsets, growth, unlabelled, neighbours):
        """Grow the members' boxes and fit the arbiter on checked arrays."""
        arbiter_margin, _ = self._arbiter_params()
        n_est = check_int(self.n_estimators, "n_estimators", 1)
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
            X, y, W, subsets.dims, subsets.lengths, *growth, seeds
        )
        keep = np.arange(growth.max_boxes)[None, :] < n_boxes[:, None]
        member = np.broadcast_to(np.arange(n_est, dtype=np.int32)[:, None], keep.shape)
        self._set_boxes(
            X, y, W, subsets, subs[keep], los[keep], his[keep], member[keep],
            seed_rows[keep], n_est,
        )  # fmt: skip
        self.n_relabelled_ = self.n_broad_
        self.arbiter_ = None
        own = ~neighbours
        if arbiter_margin is not None and (w[own & (y == 0)] > 0).any():
            self.arbiter_ = LinearClassifier().fit(
                X[own], y[own], w[own], unlabelled=unlabelled[own]
            )
        return self

    def score_rows(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(votes int32, decision_function float64)`` of the rows of ``X``."""
        votes, tie = self._member_scores(X, squash=True)
        m = self.n_members_
        return votes, votes / m + tie / (2 * m)

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)``: vote fraction plus a tie-break below ``1 / (2 M)``."""
        return self.score_rows(X)[1]
