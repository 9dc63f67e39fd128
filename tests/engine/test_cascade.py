"""BranchesCascade: the index answer equals the scan and the brute-force rule."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.cascade import BranchesCascade
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.search import apply_model
from fiftyone_clipbranches.engine.subsets import make_subsets
from fiftyone_clipbranches.engine.training_set import make_training_set


@pytest.fixture(scope="module")
def catalogue():
    rng = np.random.default_rng(11)
    centres = rng.integers(60, 196, (5, 32))
    label = rng.integers(0, 5, 4000)
    codes = np.clip(centres[label] + rng.normal(0, 16, (4000, 32)), 0, 255)
    codes = codes.astype(np.uint8)
    index = CodeIndex.build(codes, make_subsets(32), leaf_size=64)
    truth = label == 3
    pos = np.flatnonzero(truth)[:8]
    ts = make_training_set(
        codes, pos, (), n_random_negatives=400, seed=0, neighbours_per_positive=4
    )
    return codes, index, truth, ts


def fit(ts, index, catalogue_sample=None, **params):
    model = BranchesCascade(n_estimators=9, random_state=3, **params)
    return model.fit(
        ts.X, ts.y, ts.sample_weight, subsets=index.subsets,
        unlabelled=ts.unlabelled, neighbours=ts.neighbours,
        catalogue_sample=catalogue_sample,
    )  # fmt: skip


def tree_walk_proba(model, codes):
    """The forest's mean leaf value, walking the flattened trees in Python."""
    out = np.zeros(codes.shape[0])
    for i, x in enumerate(codes):
        for root in model.forest_roots_:
            node = root
            while model.forest_feature_[node] >= 0:
                go_left = (
                    x[model.forest_feature_[node]] <= model.forest_threshold_[node]
                )
                node = (model.forest_left_ if go_left else model.forest_right_)[node]
            out[i] += model.forest_value_[node]
    return out / model.forest_roots_.shape[0]


def brute_force_accept(model, codes):
    inside = model.boxes_.contains(codes, model.subsets_)
    votes = np.zeros(codes.shape[0], np.int64)
    for e in range(model.n_members_):
        votes += inside[:, model.boxes_.member == e].any(axis=1)
    proba = tree_walk_proba(model, codes)
    by_vote = votes / model.n_members_ > model.vote_threshold
    needed = min(model.candidate_votes, model.n_members_)
    by_forest = (votes >= needed) & (proba > model.forest_threshold)
    if model.vote_min_forest:
        by_vote &= proba >= model.arbiter_min_forest
    accepted = (by_vote & model.vote_accepts) | by_forest
    if model.arbiter_ is not None:
        logit = model.arbiter_.decision_function(codes)
        if model.broad_:  # any row a member holds, the arbiter's own boundary
            by_arbiter = (votes >= 1) & (logit > 0)
            accepted |= by_arbiter & (proba >= model.broad_min_forest)
        else:
            by_arbiter = (votes >= model.arbiter_min_votes) & (
                logit > model.arbiter_margin
            )
            accepted |= by_arbiter & (proba >= model.arbiter_min_forest)
    if model.ball_radius_sq_ >= 0:
        diff = codes.astype(np.int64) - model.ball_center_
        inside = (diff**2).sum(axis=1) <= model.ball_radius_sq_
        accepted |= (votes >= min(model.ball_votes, model.n_members_)) & inside
    return accepted


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"arbiter_margin": None},
        {"vote_min_forest": False},
        {"arbiter_min_forest": 0.0, "arbiter_margin": 0.5},
        {"candidate_votes": 1},
        {"candidate_votes": 5, "vote_accepts": False},
        {"candidate_votes": 50},  # more than the 9 members: all of them
        {"forest_threshold": 0.2},
        {"forest_threshold": 0.9, "arbiter_margin": 1.0, "arbiter_min_votes": 2},
        {"sample": True},
        {"sample": True, "ball_reach": 2.0, "candidate_votes": 1},
        {"sample": True, "ball_votes": 3},
        {"sample": True, "ball_votes": 50, "candidate_votes": 2},
        {"sample": True, "ball_reach": 0.25, "arbiter_margin": None},
        {"sample": True, "box_reach": 0.15},  # boxes larger than that shrunk
        {"broad_share": 0.01},  # a concept this broad: the arbiter's own boundary
        {"broad_share": 0.01, "broad_min_forest": 0.0, "arbiter_margin": 9.0},
        {"broad_share": None},
    ],
)
def test_index_answer_equals_scan_and_brute_force(catalogue, params):
    codes, index, truth, ts = catalogue
    params = dict(params)
    sample = codes if params.pop("sample", False) else None
    model = fit(ts, index, sample, **params)
    assert (model.ball_radius_sq_ >= 0) == (sample is not None)
    if params.get("broad_share", 0.1) != 0.1:
        assert model.broad_ == (params["broad_share"] is not None)
    expected = np.flatnonzero(brute_force_accept(model, codes))
    assert expected.size > 0
    np.testing.assert_array_equal(np.flatnonzero(model.predict(codes)), expected)
    for use_index in (True, False):
        ranking = apply_model(model, index, use_index=use_index)
        np.testing.assert_array_equal(np.sort(ranking.ids), expected)
        np.testing.assert_allclose(
            ranking.scores, model.decision_function(codes[ranking.ids]), rtol=1e-12
        )
    scores = model.decision_function(codes)
    assert scores.min() >= 0.0 and 0.5 < scores.max() < 1.0
    # the highest a row can reach (forest 1, every vote, the top tie-break) < 1
    m = model.n_members_
    model.forest_proba = lambda X: np.ones(len(X))
    model._member_scores = lambda X, squash: (
        np.full(len(X), m),
        np.full(len(X), 0.999),
    )
    assert 0.999 < model.decision_function(codes[:3]).max() < 1.0
    assert truth[expected].mean() > 0.8


def test_the_numba_forest_equals_a_tree_walk_and_sklearn(catalogue):
    codes, index, _, ts = catalogue
    model = fit(ts, index)
    proba = model.forest_proba(codes)
    np.testing.assert_allclose(proba, tree_walk_proba(model, codes), atol=1e-12)
    rows = np.array([5, 0, 3999, 5], np.int64)
    np.testing.assert_array_equal(model.forest_proba(codes, rows), proba[rows])
    for n in (1, 2, 3, 5, 7, 20_001):  # rows walked four at a time; many: threads
        rows = np.random.default_rng(n).integers(0, len(codes), n)
        np.testing.assert_array_equal(model.forest_proba(codes, rows), proba[rows])
    import pickle

    copy = pickle.loads(pickle.dumps(model))  # as shards receive it
    np.testing.assert_array_equal(copy.forest_proba(codes), proba)
    del copy._layout  # pickled by a version before the layout
    np.testing.assert_array_equal(copy.forest_proba(codes), proba)
    copy.set_params(random_state=11).fit(
        ts.X, 1 - ts.y, ts.sample_weight, subsets=index.subsets
    )  # a refit walks its own trees, not the layout of the last
    np.testing.assert_allclose(
        copy.forest_proba(codes), tree_walk_proba(copy, codes), atol=1e-12
    )
    from sklearn.ensemble import RandomForestClassifier

    seed = int(np.random.default_rng(3).integers(0, 2**31 - 1))
    X, y, w = ts.X.astype(np.float32), ts.y, ts.sample_weight
    # random negatives the trees that did not draw them value above 0.25 leave
    out_of_bag = RandomForestClassifier(
        n_estimators=25, random_state=seed, n_jobs=1, oob_score=True
    ).fit(X, y, sample_weight=w)
    likely = ts.unlabelled & (
        np.nan_to_num(out_of_bag.oob_decision_function_[:, 1]) > 0.25
    )
    assert model.n_relabelled_ == likely.sum() > 0
    reference = RandomForestClassifier(n_estimators=25, random_state=seed, n_jobs=1)
    reference.fit(X[~likely], y[~likely], sample_weight=w[~likely])
    expected = reference.predict_proba(codes.astype(np.float32))[:, 1]
    np.testing.assert_allclose(proba, expected, atol=1e-9)


def test_random_negatives_likely_in_the_class_are_relabelled_only_when_labels_are_few(
    catalogue,
):
    codes, index, truth, ts = catalogue
    # the forest's own relabelling alone (the class, a fifth of the rows, is
    # estimated just below broad_share: pinned off, the test does not hang on it)
    relabelled = fit(ts, index, broad_share=None)
    kept = fit(ts, index, forest_relabel=None, broad_share=None)
    assert kept.n_relabelled_ == 0
    # the class is a fifth of the rows: 80 of the 400 random negatives belong to it
    drawn = ts.rows[ts.unlabelled]
    assert truth[drawn].sum() > 50
    assert relabelled.n_relabelled_ > 20
    recall = [truth[m.predict(codes)].sum() / truth.sum() for m in (kept, relabelled)]
    assert recall[1] > 1.2 * recall[0]  # the forest no longer cuts the class short
    # labels that cover the class (no neighbour positives below 32) are trusted
    no_neighbours = ts.neighbours.copy()
    no_neighbours[:] = False
    covered = BranchesCascade(n_estimators=9, random_state=3, broad_share=None).fit(
        ts.X, ts.y, ts.sample_weight, subsets=index.subsets,
        unlabelled=ts.unlabelled, neighbours=no_neighbours,
    )  # fmt: skip
    assert covered.n_relabelled_ == 0
    # as are more than relabel_max_positives labelled positives
    many = fit(ts, index, relabel_max_positives=4, broad_share=None)
    assert many.n_relabelled_ == 0


def test_relabelling_leaves_out_no_more_rows_than_the_class_can_hold(catalogue):
    codes, index, truth, ts = catalogue
    uncapped = fit(ts, index)
    # a catalogue where the class is one row in a thousand: at most one random
    # negative of the 400 can be a member, however many the trees value high
    rare = np.concatenate([codes[~truth], codes[truth][: int(truth.sum() // 500)]])
    capped = fit(ts, index, catalogue_sample=rare)
    step = -(-rare.shape[0] // (1 << 15))
    share = np.mean(capped.forest_proba(rare[::step]) > 0.5)
    assert capped.n_relabelled_ <= max(1, np.ceil(400 * share)) < uncapped.n_relabelled_
    # the class's own catalogue, where it is a fifth of the rows, allows more
    assert fit(ts, index, catalogue_sample=codes).n_relabelled_ > capped.n_relabelled_


def test_rows_no_member_holds_are_never_accepted(catalogue):
    codes, index, _, ts = catalogue
    model = fit(ts, index, candidate_votes=4, forest_threshold=0.0, arbiter_margin=None)
    votes = model.votes(codes)
    accepted = model.predict(codes)
    assert accepted.any()
    assert not (accepted & (votes < 4)).any()


def test_the_forest_can_leave_out_the_neighbour_positives(catalogue):
    codes, index, _, ts = catalogue
    assert ts.neighbours.any()
    with_them = fit(ts, index)
    without = fit(ts, index, forest_neighbours=False)
    np.testing.assert_array_equal(with_them.boxes_.lo, without.boxes_.lo)
    assert not np.array_equal(
        with_them.forest_proba(codes), without.forest_proba(codes)
    )


def test_one_class_training_gives_a_constant_forest(catalogue):
    codes, index, _, ts = catalogue
    y = np.zeros_like(ts.y)
    y[0] = 1
    model = BranchesCascade(n_estimators=3).fit(
        ts.X, y, np.where(y == 1, 0.0, 1.0) + (y == 1), subsets=index.subsets
    )
    # only negatives carry weight besides the one positive: the forest sees both
    assert model.forest_proba(codes).max() <= 1.0
    only_neg = BranchesCascade(n_estimators=3)
    only_neg._fit_forest(ts.X[:5], np.zeros(5, np.int8), np.ones(5), 3, 0)
    only_neg.n_features_in_ = 32
    np.testing.assert_array_equal(only_neg.forest_proba(codes[:4]), np.zeros(4))


@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"candidate_votes": 0}, ValueError, "candidate_votes"),
        ({"candidate_votes": 2.5}, TypeError, "candidate_votes"),
        ({"n_trees": 0}, ValueError, "n_trees"),
        ({"forest_threshold": 1.0}, ValueError, "forest_threshold"),
        ({"forest_threshold": "high"}, TypeError, "forest_threshold"),
        ({"vote_accepts": 1}, TypeError, "vote_accepts"),
        ({"arbiter_min_forest": 1.5}, ValueError, "arbiter_min_forest"),
        ({"vote_min_forest": "yes"}, TypeError, "vote_min_forest"),
        ({"ball_reach": 0}, ValueError, "ball_reach"),
        ({"ball_reach": "far"}, TypeError, "ball_reach"),
        ({"ball_min_positives": 1}, ValueError, "ball_min_positives"),
        ({"ball_votes": 0}, ValueError, "ball_votes"),
        ({"ball_min_positives": 8, "ball_max_positives": 7}, ValueError, "ball_max"),
        ({"forest_relabel": 1.0}, ValueError, "forest_relabel"),
        ({"forest_relabel": "yes"}, TypeError, "forest_relabel"),
        ({"relabel_max_positives": -1}, ValueError, "relabel_max_positives"),
        ({"broad_share": 0.0}, ValueError, "broad_share"),
        ({"broad_share": "wide"}, TypeError, "broad_share"),
        ({"broad_min_forest": 1.5}, ValueError, "broad_min_forest"),
        ({"broad_min_forest": None}, TypeError, "broad_min_forest"),
    ],
)
def test_bad_params(catalogue, params, exc, match):
    _, index, _, ts = catalogue
    with pytest.raises(exc, match=match):
        fit(ts, index, **params)


def test_unfitted():
    with pytest.raises(RuntimeError, match="fit first"):
        BranchesCascade().forest_proba(np.zeros((2, 32), np.uint8))


def test_the_class_ball_reaches_what_the_boxes_miss(catalogue):
    """With 8 labelled positives of a class of ~800 rows, the boxes and the forest
    stay near the positives; the class ball, sized on the catalogue, adds
    members of the class, only among rows ``ball_votes`` members hold."""
    codes, index, truth, ts = catalogue
    # the sample also caps the forest's relabelling: off, so only the ball differs
    without = fit(ts, index, forest_relabel=None)
    with_ball = fit(ts, index, codes, forest_relabel=None)
    before, after = without.predict(codes), with_ball.predict(codes)
    assert not (before & ~after).any()
    added = after & ~before
    assert added.sum() >= 20
    assert truth[added].mean() > 0.9
    votes = with_ball.votes(codes)
    assert (votes[added] >= 1).all()
    assert (votes[added] < with_ball.candidate_votes).any()  # past the candidates
    np.testing.assert_array_equal(with_ball.ball_reads(votes), votes >= 1)
    narrow = fit(
        ts, index, codes, ball_votes=with_ball.candidate_votes, forest_relabel=None
    )
    np.testing.assert_array_equal(narrow.ball_reads(votes), votes >= 3)
    assert (votes[narrow.predict(codes) & ~before] >= narrow.candidate_votes).all()
    assert (narrow.predict(codes) & ~before).sum() < added.sum()
    np.testing.assert_array_equal(
        with_ball.forest_proba(codes), without.forest_proba(codes)
    )


def test_the_class_ball_needs_a_sample_and_enough_positives(catalogue):
    codes, index, _, ts = catalogue
    n_labelled = int(((ts.y == 1) & ~ts.neighbours).sum())
    assert fit(ts, index, codes).ball_radius_sq_ >= 0
    assert fit(ts, index).ball_radius_sq_ == -1
    assert fit(ts, index, codes, ball_reach=None).ball_radius_sq_ == -1
    alone = BranchesCascade(n_estimators=9, random_state=3, ball_max_positives=64)
    alone.fit(
        ts.X, ts.y, ts.sample_weight, subsets=index.subsets,
        unlabelled=ts.unlabelled, catalogue_sample=codes,
    )  # fmt: skip
    assert alone.ball_radius_sq_ == -1  # no neighbour positives: labels cover it
    few = fit(ts, index, codes, ball_min_positives=n_labelled + 1)
    many = fit(ts, index, codes, ball_max_positives=n_labelled - 1)
    assert few.ball_radius_sq_ == many.ball_radius_sq_ == -1
    assert not few.in_ball(codes).any()
    assert not few.ball_reads(np.full(4000, 9)).any()
    with pytest.raises(ValueError, match="catalogue_sample has 16 dims"):
        fit(ts, index, codes[:, :16])
    with pytest.raises(ValueError, match="catalogue_sample has 16 dims"):
        fit(ts, index, codes[:, :16], ball_reach=None)  # checked even when unused
    with_ball = fit(ts, index, codes)
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 4000\)"):
        with_ball.in_ball(codes, [3999, 4000])
    with pytest.raises(ValueError, match="rows must lie"):
        with_ball.forest_proba(codes, [-1])
    wide = fit(ts, index, codes, ball_reach=50.0)
    assert wide.ball_radius_sq_ > with_ball.ball_radius_sq_


def test_boxes_larger_than_the_class_can_be_are_shrunk_about_their_seeds(catalogue):
    from fiftyone_clipbranches.engine.scan import shrink_boxes

    codes, index, truth, ts = catalogue
    loose = fit(ts, index, codes, box_reach=None)
    assert 0.0 < loose.class_share_ < 1.0
    held = loose.boxes_.contains(codes, loose.subsets_).sum(axis=0)
    limit = int(0.15 * loose.class_share_ * codes.shape[0])
    assert (held > limit).any() and (held <= limit).any()
    capped = fit(ts, index, codes, box_reach=0.15)
    assert capped.class_share_ == loose.class_share_
    # every box stays, with its member; those over the limit are shrunk about the
    # training row each was grown around, to at most the limit
    now = capped.boxes_.contains(codes, capped.subsets_)
    seeds = ts.X[loose.seed_rows_]
    expected = shrink_boxes(
        codes, loose.subsets_, loose.boxes_, seeds, np.full(len(held), limit)
    )
    for name in ("subset_ids", "lo", "hi", "member"):
        np.testing.assert_array_equal(
            getattr(capped.boxes_, name), getattr(expected, name)
        )
    kept = held <= limit
    np.testing.assert_array_equal(capped.boxes_.lo[kept], loose.boxes_.lo[kept])
    assert (now.sum(axis=0)[~kept] <= limit).mean() > 0.9  # seeds' duplicates aside
    assert (now.sum(axis=0)[~kept] < held[~kept]).all()
    assert capped.boxes_.contains(seeds, capped.subsets_)[
        np.arange(len(held)), np.arange(len(held))
    ].all()
    assert capped.n_members_ == loose.n_members_
    np.testing.assert_array_equal(capped.n_boxes_, loose.n_boxes_)
    # the forest and the ball do not change
    np.testing.assert_array_equal(capped.forest_value_, loose.forest_value_)
    assert capped.ball_radius_sq_ == loose.ball_radius_sq_
    # without a sample (no estimate of the class's share) nothing changes
    alone = fit(ts, index, None, box_reach=0.15)
    assert np.isnan(alone.class_share_)
    np.testing.assert_array_equal(
        alone.boxes_.hi, fit(ts, index, None, box_reach=None).boxes_.hi
    )
    with pytest.raises(ValueError, match="box_reach"):
        fit(ts, index, codes, box_reach=0.0)
    with pytest.raises(ValueError, match="box_reach"):  # checked even when unused
        fit(ts, index, None, box_reach=-5.0)
    # a share estimated below one row of the sample counts as one row
    loose.class_share_, loose.box_reach = 0.0, 3.0
    loose._cap_boxes(ts.X, codes)
    assert (loose.boxes_.contains(codes, loose.subsets_).sum(axis=0) <= 3).mean() > 0.9


def test_a_broad_concept_is_found_whole_and_a_narrow_class_is_not_taken_for_one(
    broad_concept,
):
    """Trained as negatives, the random negatives' members of a broad concept
    confine the boxes and the forest to the labels. The cascade finds that a
    linear model accepts many of them, trains without them and lets the arbiter's
    boundary reach the concept (docs/quality.md, "Broad concepts")."""
    codes, label, concept = (
        broad_concept.codes,
        broad_concept.label,
        broad_concept.concept,
    )
    index, ts = broad_concept.index, broad_concept.ts
    found = {}
    for name, params in (
        ("default", {}),
        ("off", {"broad_share": None}),
        ("no arbiter", {"arbiter_margin": None}),
    ):
        model = fit(ts, index, codes, **params)
        ids = apply_model(model, index).ids
        np.testing.assert_array_equal(
            np.sort(ids), np.flatnonzero(model.predict(codes))
        )
        found[name] = (concept[ids].sum() / concept.sum(), concept[ids].mean(), model)
    recall, precision, model = found["default"]
    assert model.broad_ and model.n_relabelled_ >= model.n_broad_ > 400
    assert recall > 0.9 and precision > 0.9
    assert found["off"][0] < 0.7 * recall and not found["off"][2].broad_
    # the arbiter's own boundary accepts rows fewer members hold than the forest reads
    votes = model.votes(codes)
    accepted = model.predict(codes)
    assert (accepted & (votes < model.candidate_votes)).sum() > 10
    assert found["no arbiter"][0] < recall
    # random rows that are labelled positives stay positives
    flagged = ts.unlabelled | (ts.y == 1)
    both = BranchesCascade(n_estimators=9, random_state=3).fit(
        ts.X, ts.y, ts.sample_weight, subsets=index.subsets, unlabelled=flagged,
        catalogue_sample=codes,
    )  # fmt: skip
    assert both.broad_ and both.predict(codes[ts.rows[ts.y == 1]]).mean() > 0.9
    # one cluster (5% of the rows) from 8 positives: not a broad concept
    narrow = make_training_set(
        codes, np.flatnonzero(label == 9)[:8], (), n_random_negatives=500, seed=0,
        neighbours_per_positive="auto",
    )  # fmt: skip
    model = fit(narrow, index, codes)
    assert not model.broad_ and model.n_broad_ == 0


def test_every_parameter_is_checked_before_the_broad_step_fits(catalogue, monkeypatch):
    import fiftyone_clipbranches.engine.ensemble as ensemble

    _, index, _, ts = catalogue

    def fitted_first(*args):
        pytest.fail("a model was fitted before the parameters were checked")

    monkeypatch.setattr(ensemble, "member_share", fitted_first)
    for params, match in (
        ({"max_boxes": 0}, "max_boxes"),
        ({"vote_threshold": 2.0}, "vote_threshold"),
        ({"arbiter_min_votes": 0}, "arbiter_min_votes"),
        ({"max_samples": -1}, "max_samples"),
        ({"broad_share": "wide"}, "broad_share"),
    ):
        with pytest.raises((ValueError, TypeError), match=match):
            fit(ts, index, **params)
