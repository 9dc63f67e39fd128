"""What decision branches and their ensemble share: the parameters that grow boxes,
the boxes themselves, and the one rule that accepts a row from the members holding it.

A single :class:`~.branches.DecisionBranches` model is an ensemble of one member.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import branches_kernels as _k
from .boxes import Boxes
from .codes import take_rows
from .model import RefinementModel
from .scan import SEARCH_CHUNK_ROWS, scan_boxes
from .subsets import FeatureSubsets
from .validation import (
    check_codes,
    check_end_extension,
    check_int,
    check_margin,
    check_training,
    resolve_candidates,
    resolve_subsets,
)

#: Weight of the depth term in the ranking score (see ``DecisionBranches``).
MARGIN_EPS = 0.01


def selective_boxes(purity: np.ndarray) -> np.ndarray:
    """bool ``(B,)``: boxes holding at least as much positive as negative weight.

    Sequential covering can end with a box around a lone positive that no tighter box
    separates from the negatives; a box whose training points are mostly negative
    would classify mostly negatives as positive (in the worst case most of the
    catalogue), so it is dropped, as a decision-tree leaf would predict negative.
    """
    return np.asarray(purity) >= 0.5 - 1e-12


class BoxGrowth(NamedTuple):
    """Validated box-growing parameters, in the order the fitting kernels take them."""

    max_boxes: int
    n_candidates: int
    min_samples_box: int
    max_passes: int
    bound_margin: float
    end_extension: float


class BranchModel(RefinementModel):
    """Base of the box models: a union of closed integer boxes per member, each box over
    one feature subset, answered by the index.

    Args (how each member grows its boxes; see :class:`~.branches.DecisionBranches`):
        max_boxes: int >= 1 (default 30).
        max_candidates: int >= 1, float fraction in (0, 1], ``"sqrt"`` or ``"all"``
            (default).
        min_samples_box: int >= 1 (default 1).
        max_passes: int >= 1 (default 3).
        bound_margin: float in [0, 1) (default 0.5).
        end_extension: float >= 0 or ``"open"`` (default 1.0).
        random_state: int, numpy Generator or None (= 0).

    Attributes (after ``fit``):
        boxes_: :class:`Boxes`, grouped by member, ``member`` = owner.
        subsets_: the :class:`FeatureSubsets` the boxes live in.
        n_boxes_: int64 ``(M,)``, boxes per member; ``n_members_`` = ``M``.
        box_purity_: float64 ``(B,)``, weighted fraction of positives among the
            training points of its member inside each box.
        seed_rows_: int64 ``(B,)``, training row each box was grown around.
        n_features_in_, n_relabelled_ (0).

    A row's vote is the number of distinct members with a box holding it;
    :meth:`accept` decides from the votes (and, where a subclass has one, an
    arbiter), so the index answers every member's boxes in one union query.
    """

    answered_by = "index"

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

    def _prepare(
        self, X, y, sample_weight, subsets
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, FeatureSubsets, BoxGrowth]:
        """Validated training arrays, feature subsets and box-growing parameters."""
        X, y, w = check_training(X, y, sample_weight)
        subsets = resolve_subsets(subsets, X.shape[1])
        growth = BoxGrowth(
            check_int(self.max_boxes, "max_boxes", 1),
            resolve_candidates(self.max_candidates, len(subsets)),
            check_int(self.min_samples_box, "min_samples_box", 1),
            check_int(self.max_passes, "max_passes", 1),
            check_margin(self.bound_margin),
            check_end_extension(self.end_extension),
        )
        return X, y, w, subsets, growth

    def _set_boxes(
        self, X, y, W, subsets, subset_ids, lo, hi, member, seed_rows, n_members
    ) -> None:
        """Keep the grown boxes that are selective on their member's training weights
        ``W`` (float64 ``(M, n)``) and set the fitted attributes."""
        wp, wn = _k.box_weights(
            X, y, W, member, subsets.dims, subsets.lengths, subset_ids, lo, hi
        )
        purity = wp / np.maximum(wp + wn, 1e-300)
        self.boxes_ = Boxes(subset_ids, lo, hi, member)
        self.box_purity_ = purity
        self.seed_rows_ = seed_rows
        self.n_boxes_ = np.zeros(n_members, dtype=np.int64)
        self._keep_boxes(selective_boxes(purity))
        self.subsets_ = subsets
        self.n_features_in_ = X.shape[1]
        self.n_relabelled_ = 0

    def _keep_boxes(self, keep: np.ndarray) -> None:
        """Keep the boxes where the bool ``keep (B,)`` is True; every member stays
        a member (one left without boxes holds no row)."""
        b = self.boxes_
        self.boxes_ = Boxes(b.subset_ids[keep], b.lo[keep], b.hi[keep], b.member[keep])
        self.box_purity_ = self.box_purity_[keep]
        self.seed_rows_ = self.seed_rows_[keep]
        n_members = self.n_boxes_.shape[0]
        self.n_boxes_ = np.bincount(self.boxes_.member, minlength=n_members)
        self._starts = np.concatenate([[0], np.cumsum(self.n_boxes_)]).astype(np.int64)

    @property
    def n_members_(self) -> int:
        self._check_fitted()
        return int(self.n_boxes_.shape[0])

    def _vote_threshold(self) -> float:
        """Fraction of the members a row's vote must exceed."""
        return 0.5

    def _arbiter_rule(self):
        """``(arbiter, margin, min_votes)`` when rows the vote rejects may still be
        accepted (an arbiter logit above ``margin`` with ``min_votes`` votes), else
        None."""
        return None

    def accept(self, members_hit, codes, rows=None) -> np.ndarray:
        """bool mask over rows with vote counts ``members_hit``: the vote passes, or
        an arbiter accepts a row that enough members hold.

        Args:
            members_hit: int ``(m,)``, the distinct members holding each row.
            codes: uint8 codes: of those rows (``rows`` None), or of the catalogue
                with ``rows`` int ``(m,)`` giving each row's position in it. Only
                the rows an arbiter decides are read.
        """
        hits = np.asarray(members_hit)
        keep = hits / self.n_members_ > self._vote_threshold()
        rule = self._arbiter_rule()
        if rule is None:
            return keep
        arbiter, margin, min_votes = rule
        doubtful = np.flatnonzero(~keep & (hits >= min_votes))
        if doubtful.size:
            where = doubtful if rows is None else np.asarray(rows)[doubtful]
            logit = arbiter.decision_function(take_rows(codes, where))
            keep[doubtful] = logit > margin
        return keep

    def answer_hits(self, ids, members_hit, codes) -> tuple[np.ndarray, np.ndarray]:
        """The rows among ``ids`` (int64, catalogue rows held by ``members_hit``
        members, as ``index.query_boxes`` returns them) that :meth:`accept` keeps,
        with their ``decision_function`` scores on the catalogue ``codes``."""
        ids = ids[self.accept(members_hit, codes, ids)]
        scores = (
            self.decision_function(take_rows(codes, ids)) if ids.size else np.zeros(0)
        )
        return ids, scores

    def votes(self, X) -> np.ndarray:
        """int32 ``(n,)``: number of distinct members with a box holding each row."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        out = np.zeros(X.shape[0], dtype=np.int32)
        ids, hits = scan_boxes(X, self.subsets_, self.boxes_)
        out[ids] = hits
        return out

    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: the rows :meth:`accept` keeps from their votes (parallel
        scan)."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        return self.accept(self.votes(X), X)

    def search(self, codes, chunk_rows: int = SEARCH_CHUNK_ROWS):
        """Every accepted row of the catalogue ``codes``: one parallel scan of the
        boxes (``chunk_rows`` is not used), the same rows as the index answers."""
        self._check_fitted()
        codes = check_codes(codes, "codes", self.n_features_in_)
        ids, hits = scan_boxes(codes, self.subsets_, self.boxes_)
        return self.answer_hits(ids, hits, codes)

    def _member_scores(self, X, squash: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(votes int32, mean member score float64)`` of the rows of ``X`` (the
        kernel's ``score_points``)."""
        self._check_fitted()
        X = check_codes(X, n_dims=self.n_features_in_)
        b = self.boxes_
        s = self.subsets_
        return _k.score_points(
            X, s.dims, s.lengths, b.subset_ids, b.lo, b.hi, self._starts,
            self.box_purity_, MARGIN_EPS, squash,
        )  # fmt: skip
