"""A cascade: the ensemble's boxes find candidates through the index, a forest decides."""

from __future__ import annotations

import numbers

import numpy as np

from .codes import take_rows
from .ensemble import DecisionBranchesEnsemble
from .forest_kernels import branch_free_layout, forest_proba
from .neighbours import NEIGHBOUR_MAX_POSITIVES
from .reach import class_ball_share, squared_distances_to
from .scan import shrink_boxes
from .validation import (
    check_codes,
    check_int,
    check_positive_number,
    check_row_mask,
    check_rows,
    seed_from,
)

#: Rows of the catalogue sample on which ``forest_relabel`` estimates the class's
#: share (how many random negatives may be members).
RELABEL_SAMPLE_ROWS = 1 << 15


class BranchesCascade(DecisionBranchesEnsemble):
    """Bagged decision branches propose, a random forest on the codes decides.

    The members' boxes (grown as :class:`~.ensemble.DecisionBranchesEnsemble` grows
    them, without its linear arbiter) are the cascade's only way into the catalogue:
    a row is a *candidate* when at least ``candidate_votes`` members hold it, which
    the index answers with one union of range queries. A random forest trained on the
    same rows then decides on the candidates alone, so the apply cost is the index
    query plus work proportional to the candidates. The rule is exact: the index
    answer equals a scan of the same rule (``search``), and :meth:`predict` applies
    it row by row.

    A row is accepted when it is a candidate and the forest's mean leaf value
    exceeds ``forest_threshold``, or (with ``vote_accepts``) when the members'
    vote passes as in the ensemble, or (with ``arbiter_margin`` set) when the
    ensemble's linear arbiter accepts it; with ``vote_min_forest`` the vote and
    the arbiter accept only where the forest's value is at least
    ``arbiter_min_forest`` (the boxes over-accept once many labels are in). With
    ``ball_reach`` set, between ``ball_min_positives`` and ``ball_max_positives``
    labelled positives and neighbour positives in the training set, a row that at
    least ``ball_votes`` members hold (by default any row the index returns) and
    that lies inside the *class ball* is accepted too: the Rocchio ball around the
    positives that holds ``ball_reach`` times the share of the catalogue the
    class is estimated to hold (:mod:`.reach`, from ``catalogue_sample`` at
    ``fit``). From a few labels the boxes and the forest stay close to the
    positives; the ball gives the answer the class's size (docs/quality.md, "The
    class ball").

    Args:
        n_estimators, vote_threshold, max_samples and the box-growing keywords: as
            in :class:`~.ensemble.DecisionBranchesEnsemble`.
        candidate_votes: int >= 1 (default 3, capped at the number of members):
            members that must hold a row for the forest to look at it. Measured
            against 1 on the four catalogues of docs/quality.md: F1 within 0.01
            at every P, about 3x fewer rows for the forest.
        n_trees: int >= 1 (default 25): trees of the forest (scikit-learn's
            ``RandomForestClassifier``, fully grown, bootstrap, sqrt features).
        forest_threshold: float in [0, 1) (default 0.5): the forest accepts a row
            whose mean positive leaf fraction exceeds it.
        forest_neighbours: bool (default True): whether the forest trains on the
            neighbour positives as well (the boxes always do).
        vote_accepts: bool (default True): a passing member vote accepts a
            candidate whatever the forest says.
        arbiter_margin, arbiter_min_votes: the ensemble's linear arbiter (4.0 and
            3 as there; None turns it off); ``arbiter_min_forest``: float in
            [0, 1] (default 0.35), the forest value below which the arbiter may not
            accept a row: alone, the arbiter over-accepts on small classes
            (docs/quality.md, "The cascade").
        ball_reach: float > 0 (default 1.0), or None for no class ball: the
            ball's share of the catalogue, as a multiple of the class's
            estimated share.
        ball_votes: int >= 1 (default 1, capped at the number of members):
            members that must hold a row for the class ball to accept it. The
            ball reaches past the candidates: on the four catalogues of
            docs/quality.md (every class, 3 seeds), 1 against 3 raised the ratio
            to the best alternative by 0.00-0.04 at 2-8 positives, the worst per
            catalogue from 0.79 / 0.88 / 0.81 / 0.76 to 0.79 / 0.90 / 0.82 / 0.78.
        ball_min_positives, ball_max_positives: ints (default 2 and 63): the
            labelled positives (neighbour positives not counted) between which the
            class ball is fitted; outside, the cascade has none. It also needs
            neighbour positives, which from 32 positives on only a class
            estimated to hold 2.5 times the positives takes (:mod:`.neighbours`).
        forest_relabel: float in (0, 1) (default 0.25), or None: with at most
            ``relabel_max_positives`` labelled positives (default 64), when the
            training set has neighbour positives (the labels do not cover the
            class), random
            negatives (``unlabelled`` at ``fit``) whose out-of-bag forest value
            exceeds it are likely members of the class drawn by chance; they are
            left out and the forest is fitted again (``n_relabelled_``), at most
            as many as the class can hold among them (the random negatives times
            the share of ``catalogue_sample`` that forest accepts). A large
            class holds many of them (one oxford_pets breed is 2-3% of the
            catalogue: 13 of 500 random rows), and a forest trained on them as
            negatives cuts the class short. With many labels (a whole class
            labelled) the random rows beside the class are rarely members, and
            leaving them out over-accepts (docs/quality.md, "Diffuse clusters and
            forest relabelling").
        box_reach: float > 0 (default 3.0), or None: where the class's share of
            the catalogue is estimated (the class ball's estimate: 2-63 labelled
            positives and neighbour positives), a member's box holding more than
            ``box_reach`` times that share of ``catalogue_sample`` (at least
            ``box_reach`` rows) is shrunk about the training row it was grown
            around, by the same fraction of its reach in every dim, as far as it
            holds at most that many (:func:`~.scan.shrink_boxes`).
            In a large catalogue the random negatives sample it sparsely (500
            rows of 10M: one in 20,000), so a box holding none of them may still
            hold many times the class: its far reaches are no region of the
            class, only rows for the index to return and the forest to reject
            (docs/quality.md, "Boxes no larger than the class can be" and
            "Shrunk about their seeds, not left out"). A shrunk box keeps the
            purity (``box_purity_``) of the box it was grown as.
        broad_min_forest: float in [0, 1] (default 0.2): for a broad concept
            (the ensemble's ``broad_share``: the random negatives likely members
            leave every later step, the forest's training too, and count in
            ``n_relabelled_``), the arbiter accepts rows where the forest's value
            is at least this, in place of ``arbiter_min_forest``.

    Attributes (after ``fit``), besides the ensemble's: ``forest_roots_`` int32
    ``(T,)``, ``forest_feature_`` int32 ``(nodes,)`` (-1 at leaves),
    ``forest_threshold_`` int32 ``(nodes,)`` (left when ``code <= threshold``),
    ``forest_left_`` / ``forest_right_`` int32 ``(nodes,)``, ``forest_value_``
    float64 ``(nodes,)`` (positive weight fraction at a leaf), ``ball_center_``
    int64 ``(D,)``, ``ball_radius_sq_`` int (-1: no class ball) and
    ``class_share_`` float (the class's estimated share of the catalogue; NaN: not
    estimated).
    """

    def __init__(
        self,
        n_estimators=25,
        vote_threshold=0.5,
        max_samples=1.0,
        *,
        candidate_votes=3,
        n_trees=25,
        forest_threshold=0.5,
        forest_neighbours=True,
        vote_accepts=True,
        arbiter_margin=4.0,
        arbiter_min_forest=0.35,
        vote_min_forest=True,
        ball_reach=1.0,
        ball_votes=1,
        ball_min_positives=2,
        ball_max_positives=NEIGHBOUR_MAX_POSITIVES - 1,
        forest_relabel=0.25,
        relabel_max_positives=NEIGHBOUR_MAX_POSITIVES,
        box_reach=3.0,
        broad_min_forest=0.2,
        **params,
    ):
        super().__init__(
            n_estimators, vote_threshold, max_samples, arbiter_margin=arbiter_margin,
            **params,
        )  # fmt: skip
        self.candidate_votes = candidate_votes
        self.n_trees = n_trees
        self.forest_threshold = forest_threshold
        self.forest_neighbours = forest_neighbours
        self.vote_accepts = vote_accepts
        self.arbiter_min_forest = arbiter_min_forest
        self.vote_min_forest = vote_min_forest
        self.ball_reach = ball_reach
        self.ball_votes = ball_votes
        self.ball_min_positives = ball_min_positives
        self.ball_max_positives = ball_max_positives
        self.forest_relabel = forest_relabel
        self.relabel_max_positives = relabel_max_positives
        self.box_reach = box_reach
        self.broad_min_forest = broad_min_forest

    def _cascade_params(self) -> tuple[int, int, float, bool, bool]:
        n_est = check_int(self.n_estimators, "n_estimators", 1)
        cand = min(check_int(self.candidate_votes, "candidate_votes", 1), n_est)
        n_trees = check_int(self.n_trees, "n_trees", 1)
        t = self.forest_threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"forest_threshold must be a float, got {t!r}")
        if not 0.0 <= float(t) < 1.0:
            raise ValueError(f"forest_threshold must be in [0, 1), got {t}")
        for name in ("forest_neighbours", "vote_accepts"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False")
        return (
            cand,
            n_trees,
            float(t),
            bool(self.forest_neighbours),
            bool(self.vote_accepts),
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
    ) -> BranchesCascade:
        """Fit on uint8 codes ``X (n, D)``, labels ``y (n,)`` in {0, 1}.

        Args:
            sample_weight: float ``(n,)`` >= 0 (default ones).
            subsets: FeatureSubsets of ``D`` dims; default ``make_subsets(D)``.
            unlabelled: optional bool ``(n,)``, the random negatives (the arbiter
                and ``forest_relabel`` leave out those likely in the class).
            neighbours: optional bool ``(n,)``, the neighbour positives (left out
                of the forest's training when ``forest_neighbours`` is False).
            catalogue_sample: optional uint8 ``(m, D)``, the catalogue's codes or a
                sample spread over it (``index.neighbour_pool().codes``): the class
                ball and the boxes' cap (``box_reach``) are sized on it; without it
                the cascade has neither.
        """
        _, n_trees, _, forest_neighbours, _ = self._cascade_params()
        relabel = self._relabel_threshold()
        self._ball_params()
        self._box_reach()
        self._arbiter_floor()
        self._floor("broad_min_forest")
        self._gate_votes()
        X, y, w, subsets, growth = self._prepare(X, y, sample_weight, subsets)
        near = check_row_mask(neighbours, y.shape, "neighbours")
        drawn = check_row_mask(unlabelled, y.shape, "unlabelled")
        if catalogue_sample is not None:
            catalogue_sample = check_codes(
                catalogue_sample, "catalogue_sample", X.shape[1]
            )
        self._check_member_params(X.shape[0])
        X, y, w, drawn, near = self._without_broad_members(X, y, w, drawn, near)
        self._fit_members(X, y, w, subsets, growth, drawn, near)
        keep = w > 0
        if not forest_neighbours:
            keep &= ~near
        seed = int(seed_from(self.random_state).integers(0, 2**31 - 1))
        self.n_relabelled_ = self.n_broad_
        if relabel is not None and self._labels_are_sparse(y, w, near):
            oob, share = self._out_of_bag(
                X[keep], y[keep], w[keep], n_trees, seed, catalogue_sample
            )
            values = oob[drawn[keep]]
            over = values > relabel
            likely = np.flatnonzero(keep)[drawn[keep]][over]
            if share is not None:  # no more than the class can hold among them
                most = int(np.ceil(np.count_nonzero(drawn) * share))
                likely = likely[np.argsort(-values[over], kind="stable")[:most]]
            keep[likely] = False
            self.n_relabelled_ += int(likely.size)
        self._fit_forest(X[keep], y[keep], w[keep], n_trees, seed)
        self._fit_ball(X, (y == 1) & (w > 0), near, catalogue_sample)
        self._cap_boxes(X, catalogue_sample)
        return self

    def _fit_ball(self, X, positive, near, catalogue_sample) -> None:
        """``ball_center_``, ``ball_radius_sq_`` and ``class_share_`` from the
        labelled positives (``positive & ~near``), the neighbour positives and the
        sample. Without neighbour positives there is no ball: the training set takes
        none when the labels already cover the class densely (a whole small class
        labelled), and the ball, like them, is there to reach what the labels do
        not."""
        reach, low, high = self._ball_params()
        labelled = positive & ~near
        self.ball_center_ = np.zeros(X.shape[1], np.int64)
        self.ball_radius_sq_ = -1
        self.class_share_ = float("nan")
        n_labelled = int(np.count_nonzero(labelled))
        if not low <= n_labelled <= high or not near.any():
            return
        if catalogue_sample is None or not catalogue_sample.shape[0]:
            return
        center, radius_sq, self.class_share_ = class_ball_share(
            X[labelled], catalogue_sample, 1.0 if reach is None else reach,
            X[positive & near],
        )  # fmt: skip
        if reach is not None:
            self.ball_center_, self.ball_radius_sq_ = center, radius_sq

    def _cap_boxes(self, X, catalogue_sample) -> None:
        """With ``box_reach`` and an estimate of the class's share, shrink the
        boxes holding more than ``box_reach`` times that share of
        ``catalogue_sample`` about the training rows they were grown around."""
        reach = self._box_reach()
        if reach is None or np.isnan(self.class_share_):
            return
        # a class estimated below one row of the sample still holds its members
        limit = int(reach * max(self.class_share_ * catalogue_sample.shape[0], 1.0))
        limits = np.full(len(self.boxes_), limit, dtype=np.int64)
        self.boxes_ = shrink_boxes(
            catalogue_sample, self.subsets_, self.boxes_, X[self.seed_rows_], limits
        )

    def _box_reach(self) -> float | None:
        reach = self.box_reach
        return None if reach is None else check_positive_number(reach, "box_reach")

    def _ball_params(self) -> tuple[float | None, int, int]:
        reach = self.ball_reach
        if reach is not None:
            reach = check_positive_number(reach, "ball_reach")
        check_int(self.ball_votes, "ball_votes", 1)
        low = check_int(self.ball_min_positives, "ball_min_positives", 2)
        high = check_int(self.ball_max_positives, "ball_max_positives", 2)
        if high < low:
            raise ValueError(
                f"ball_max_positives ({high}) must be >= ball_min_positives ({low})"
            )
        return reach, low, high

    def in_ball(self, codes, rows=None) -> np.ndarray:
        """bool ``(m,)``: whether ``codes`` (uint8 ``(N, D)``) at ``rows`` (default
        every row) lie in the class ball (none when ``ball_radius_sq_`` is -1)."""
        self._check_fitted()
        codes = check_codes(codes, "codes", self.n_features_in_)
        if rows is not None:
            rows = check_rows(rows, codes.shape[0])
        return self._in_ball(codes, rows)

    def _in_ball(self, codes, rows) -> np.ndarray:
        """:meth:`in_ball` on checked ``codes`` and ``rows`` (``accept``'s rows come
        from the index)."""
        if self.ball_radius_sq_ < 0:
            return np.zeros(codes.shape[0] if rows is None else len(rows), dtype=bool)
        distances = squared_distances_to(codes, self.ball_center_, rows)
        return distances <= self.ball_radius_sq_

    def _labels_are_sparse(self, y, w, near) -> bool:
        """Whether the random negatives may hold members of the class: at most
        ``relabel_max_positives`` labelled positives, and the training set found
        neighbour positives (it takes none when the labels already cover the
        class: a whole small class labelled)."""
        labelled = int(np.count_nonzero((y == 1) & (w > 0) & ~near))
        return labelled <= self.relabel_max_positives and bool(near.any())

    def _relabel_threshold(self) -> float | None:
        check_int(self.relabel_max_positives, "relabel_max_positives", 0)
        t = self.forest_relabel
        if t is None:
            return None
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"forest_relabel must be a float or None, got {t!r}")
        if not 0.0 < float(t) < 1.0:
            raise ValueError(f"forest_relabel must be in (0, 1), got {t}")
        return float(t)

    @staticmethod
    def _out_of_bag(X, y, w, n_trees: int, seed: int, sample=None):
        """``(values, share)``: float64 ``(n,)``, each training row's positive value
        from the trees that did not draw it (0 where every tree drew it, or with
        one class only), and the share of ``sample`` (uint8 codes spread over the
        catalogue; at most ``RELABEL_SAMPLE_ROWS`` of them, evenly strided, are
        read) the forest accepts (None without a sample)."""
        if np.unique(y).shape[0] < 2:
            return np.zeros(y.shape[0]), None
        from sklearn.ensemble import RandomForestClassifier

        X = X.astype(np.float32)
        forest = RandomForestClassifier(
            n_estimators=n_trees, random_state=seed, n_jobs=1
        ).fit(X, y, sample_weight=w)
        pos = list(forest.classes_).index(1)
        # each row valued by the trees whose bootstrap did not draw it (scikit-learn's
        # oob_decision_function_, without its warning for rows every tree drew)
        total, trees = np.zeros(y.shape[0]), np.zeros(y.shape[0])
        for tree, drawn in zip(forest.estimators_, forest.estimators_samples_):
            out = np.ones(y.shape[0], dtype=bool)
            out[drawn] = False
            if out.any():
                total[out] += tree.predict_proba(X[out])[:, pos]
                trees[out] += 1
        share = None
        if sample is not None and sample.shape[0]:
            step = max(1, -(-sample.shape[0] // RELABEL_SAMPLE_ROWS))
            part = np.asarray(sample[::step], dtype=np.float32)
            share = float(np.mean(forest.predict_proba(part)[:, pos] > 0.5))
        return total / np.maximum(trees, 1), share

    def _fit_forest(self, X, y, w, n_trees: int, seed: int) -> None:
        classes = np.unique(y)
        if classes.shape[0] < 2:
            # one class only: every row reaches one leaf of that class
            self.forest_roots_ = np.zeros(1, np.int32)
            self.forest_feature_ = np.full(1, -1, np.int32)
            self.forest_threshold_ = np.zeros(1, np.int32)
            self.forest_left_ = np.full(1, -1, np.int32)
            self.forest_right_ = np.full(1, -1, np.int32)
            self.forest_value_ = np.full(
                1, float(classes[0] == 1) if classes.size else 0.0
            )
            self._forest_layout()
            return
        from sklearn.ensemble import RandomForestClassifier

        forest = RandomForestClassifier(
            n_estimators=n_trees, random_state=seed, n_jobs=1
        )
        forest.fit(X.astype(np.float32), y, sample_weight=w)
        pos = list(forest.classes_).index(1)
        parts, roots, offset = [], [], 0
        for est in forest.estimators_:
            tree = est.tree_
            feature = np.where(tree.feature >= 0, tree.feature, -1).astype(np.int32)
            # integer codes: code <= t exactly when code <= floor(t)
            threshold = np.floor(np.where(feature >= 0, tree.threshold, 0.0))
            value = tree.value[:, 0, :]
            total = value.sum(axis=1)
            frac = np.where(total > 0, value[:, pos] / np.maximum(total, 1e-300), 0.0)
            left = np.where(tree.children_left >= 0, tree.children_left + offset, -1)
            right = np.where(tree.children_right >= 0, tree.children_right + offset, -1)
            parts.append((feature, threshold.astype(np.int32), left, right, frac))
            roots.append(offset)
            offset += tree.node_count
        cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
        self.forest_roots_ = np.asarray(roots, np.int32)
        self.forest_feature_ = cat[0]
        self.forest_threshold_ = cat[1]
        self.forest_left_ = cat[2].astype(np.int32)
        self.forest_right_ = cat[3].astype(np.int32)
        self.forest_value_ = cat[4].astype(np.float64)
        self._forest_layout()  # made once, from the arrays just set

    def forest_proba(self, codes, rows=None) -> np.ndarray:
        """float64 ``(m,)``: the forest's mean positive leaf fraction of ``codes``
        (uint8 ``(N, D)``) at ``rows`` (int ``(m,)``; default every row)."""
        self._check_fitted()
        codes = check_codes(codes, n_dims=self.n_features_in_)
        rows = (
            np.arange(codes.shape[0], dtype=np.int64)
            if rows is None
            else check_rows(rows, codes.shape[0])
        )
        out = np.empty(rows.shape[0])
        forest_proba(codes, rows, self._forest_layout(), out)
        return out

    def _forest_layout(self) -> tuple:
        """The fitted trees' :func:`~.forest_kernels.branch_free_layout`, made at
        the end of each fit (a model pickled by an older version makes it at its
        first use)."""
        fitted = self.forest_feature_
        kept = getattr(self, "_layout", None)
        if kept is None or kept[0] is not fitted:
            layout = branch_free_layout(
                self.forest_roots_, fitted, self.forest_threshold_,
                self.forest_left_, self.forest_right_, self.forest_value_,
            )  # fmt: skip
            kept = self._layout = (fitted, layout)
        return kept[1]

    def accept(self, members_hit, codes, rows=None) -> np.ndarray:
        """bool mask over rows with vote counts ``members_hit`` (see the class):
        only the codes of :meth:`forest_reads` rows, of rows the arbiter asks
        about and of :meth:`ball_reads` rows are read."""
        return self._accept(members_hit, codes, rows)[0]

    def answer_hits(self, ids, members_hit, codes) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`~.branch_model.BranchModel.answer_hits`; the forest values
        :meth:`accept` read are the scores' own, only the other accepted rows' are
        computed."""
        keep, forest = self._accept(members_hit, codes, ids)
        ids, forest = ids[keep], forest[keep]
        if not ids.size:
            return ids, np.zeros(0)
        missing = np.isnan(forest)
        if missing.any():
            forest[missing] = self.forest_proba(codes, ids[missing])
        return ids, self._scores(take_rows(codes, ids), forest)

    def _accept(self, members_hit, codes, rows) -> tuple[np.ndarray, np.ndarray]:
        """``(keep, forest)``: :meth:`accept`'s mask and float64 ``(n,)``, the
        forest values it read (NaN for the rows it did not)."""
        _, _, threshold, _, _ = self._cascade_params()
        gate_votes = self._gate_votes()
        floor = self._arbiter_floor()
        hits = np.asarray(members_hit)
        candidate, voted, forest_reads = self._row_roles(hits)
        keep = np.zeros(hits.shape[0], dtype=bool)
        forest = np.full(hits.shape[0], np.nan)
        ask = np.flatnonzero(forest_reads)
        if ask.size:
            where = ask if rows is None else np.asarray(rows)[ask]
            proba = forest[ask] = self.forest_proba(codes, where)
            vote_floor = floor if gate_votes else 0.0
            keep[ask] = (candidate[ask] & (proba > threshold)) | (
                voted[ask] & (proba >= vote_floor)
            )
        keep |= voted & ~forest_reads
        rule = self._arbiter_rule()
        if rule is not None:
            arbiter, margin, min_votes = rule  # a broad concept's, when broad_
            arbiter_floor = self._floor("broad_min_forest") if self.broad_ else floor
            ask = np.flatnonzero(~keep & (hits >= min_votes))
            if ask.size:
                where = ask if rows is None else np.asarray(rows)[ask]
                logit = arbiter.decision_function(take_rows(codes, where))
                ok = logit > margin
                if arbiter_floor > 0.0 and ok.any():
                    unread = ok & np.isnan(forest[ask])  # candidates were read above
                    if unread.any():
                        forest[ask[unread]] = self.forest_proba(codes, where[unread])
                    ok[ok] = forest[ask[ok]] >= arbiter_floor
                keep[ask] = ok
        if self.ball_radius_sq_ >= 0:
            ask = np.flatnonzero(self.ball_reads(hits) & ~keep)
            if ask.size:
                keep[ask] = self._in_ball(
                    codes, ask if rows is None else np.asarray(rows)[ask]
                )
        return keep, forest

    def ball_reads(self, members_hit) -> np.ndarray:
        """bool mask: the rows (with vote counts ``members_hit``) whose distance
        to the class ball :meth:`accept` may need: at least ``ball_votes``
        members (capped at the members) hold them; none without a ball."""
        needed = min(check_int(self.ball_votes, "ball_votes", 1), self.n_members_)
        hits = np.asarray(members_hit)
        if self.ball_radius_sq_ < 0:
            return np.zeros(hits.shape[0], dtype=bool)
        return hits >= needed

    def forest_reads(self, members_hit) -> np.ndarray:
        """bool mask: the rows (with vote counts ``members_hit``) whose forest value
        :meth:`accept` needs: the candidates, and with ``vote_min_forest`` every
        row the vote passes."""
        return self._row_roles(members_hit)[2]

    def _row_roles(self, members_hit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """bool masks ``(candidate, voted, forest_reads)`` over the rows."""
        cand, _, _, _, vote_accepts = self._cascade_params()
        hits = np.asarray(members_hit)
        candidate = hits >= min(cand, self.n_members_)
        voted = (
            hits / self.n_members_ > self._vote_threshold()
            if vote_accepts
            else np.zeros(hits.shape[0], dtype=bool)
        )
        reads = candidate | voted if self._gate_votes() else candidate
        return candidate, voted, reads

    def _gate_votes(self) -> bool:
        if not isinstance(self.vote_min_forest, (bool, np.bool_)):
            raise TypeError("vote_min_forest must be True or False")
        return bool(self.vote_min_forest)

    def _arbiter_floor(self) -> float:
        return self._floor("arbiter_min_forest")

    def _floor(self, name: str) -> float:
        """The forest-value floor ``name`` (a float in [0, 1]), checked."""
        t = getattr(self, name)
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"{name} must be a float, got {t!r}")
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {t}")
        return float(t)

    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)`` in ``[0, 1)``: the mean of the forest's positive
        fraction and the vote fraction, plus the ensemble's tie-break (below
        ``1 / (4 M)``), scaled by ``1 / (1 + 1 / (4 M))``."""
        return self._scores(X, self.forest_proba(X))

    def _scores(self, X, forest) -> np.ndarray:
        """:meth:`decision_function` of the codes ``X`` whose forest values
        ``forest`` (float64 ``(n,)``) are known."""
        votes, tie = self._member_scores(X, squash=True)
        m = self.n_members_
        return (0.5 * (forest + votes / m) + tie / (4 * m)) / (1.0 + 1.0 / (4 * m))
