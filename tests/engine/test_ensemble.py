"""DecisionBranchesEnsemble: true per-member votes, threshold, scores, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.ensemble import DecisionBranchesEnsemble
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.linear import LinearClassifier
from fiftyone_clipbranches.engine.search import apply_model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.integers(50, 206, (6, 32))
    label = rng.integers(0, 6, 3000)
    codes = np.clip(centres[label] + rng.normal(0, 10, (3000, 32)), 0, 255)
    codes = codes.astype(np.uint8)
    truth = label == 4
    pos = rng.choice(np.flatnonzero(truth), 20, replace=False)
    neg = rng.choice(np.flatnonzero(~truth), 300, replace=False)
    rows = np.sort(np.concatenate([pos, neg]))
    y = truth[rows].astype(np.int8)
    y[rng.choice(np.flatnonzero(y == 0), 3, replace=False)] = 1  # some label noise
    return codes, truth, codes[rows], y


@pytest.fixture(scope="module")
def model(data):
    _, _, X, y = data
    return DecisionBranchesEnsemble(n_estimators=9, random_state=5).fit(X, y)


def brute_force_votes(model, X):
    inside = model.boxes_.contains(X, model.subsets_)
    votes = np.zeros(X.shape[0], np.int64)
    for e in range(model.n_members_):
        votes += inside[:, model.boxes_.member == e].any(axis=1)
    return votes


def test_votes_count_distinct_members(model, data):
    codes = data[0]
    votes = model.votes(codes)
    np.testing.assert_array_equal(votes, brute_force_votes(model, codes))
    assert votes.max() <= model.n_estimators
    assert model.n_boxes_.shape == (9,) and model.n_boxes_.sum() == len(model.boxes_)
    assert np.all(np.diff(model.boxes_.member) >= 0)


def test_overlapping_boxes_of_one_member_count_once(data):
    codes, _, X, _ = data
    y = (np.random.default_rng(3).random(len(X)) < 0.3).astype(np.int8)
    model = DecisionBranchesEnsemble(n_estimators=5, end_extension="open").fit(X, y)
    inside = model.boxes_.contains(codes, model.subsets_)
    box_count = inside.sum(axis=1)
    votes = model.votes(codes)
    assert np.all(votes <= box_count)
    assert np.any(votes < box_count), "fixture should have overlapping boxes"


def test_predict_is_a_strict_vote_threshold(data):
    codes, _, X, y = data
    for thr in (0.0, 0.25, 0.5, 0.75):
        m = DecisionBranchesEnsemble(
            n_estimators=4, vote_threshold=thr, arbiter_margin=None
        ).fit(X, y)
        assert m.arbiter_ is None
        votes = brute_force_votes(m, codes)
        np.testing.assert_array_equal(m.predict(codes), votes / 4 > thr)
    m = DecisionBranchesEnsemble(
        n_estimators=4, vote_threshold=0.5, arbiter_margin=None
    ).fit(X, y)
    votes = m.votes(codes)
    assert np.any(votes == 2) and not m.predict(codes[votes == 2]).any()


@pytest.mark.parametrize("margin", [-2.0, 4.0])
def test_the_arbiter_adds_confident_rows_that_enough_members_hold(data, margin):
    codes, _, X, y = data
    m = DecisionBranchesEnsemble(
        n_estimators=9, random_state=5, arbiter_margin=margin, arbiter_min_votes=2
    ).fit(X, y)
    votes = brute_force_votes(m, codes)
    logit = m.arbiter_.decision_function(codes)
    expected = (votes / 9 > 0.5) | ((votes >= 2) & (logit > margin))
    np.testing.assert_array_equal(m.predict(codes), expected)
    index = CodeIndex.build(codes, subsets=m.subsets_)
    ranked = apply_model(m, index)
    np.testing.assert_array_equal(np.sort(ranked.ids), np.flatnonzero(expected))
    if margin < 0:
        assert (expected & ~(votes / 9 > 0.5)).any(), "the arbiter should add rows"


def test_the_arbiter_trains_without_neighbour_positives(data):
    _, _, X, y = data
    neighbours = np.zeros(len(y), bool)
    neighbours[np.flatnonzero(y == 1)[:10]] = True
    unlabelled = y == 0
    m = DecisionBranchesEnsemble(n_estimators=3).fit(
        X, y, unlabelled=unlabelled, neighbours=neighbours
    )
    own = ~neighbours
    alone = LinearClassifier().fit(X[own], y[own], unlabelled=unlabelled[own])
    np.testing.assert_array_equal(m.arbiter_.weights_, alone.weights_)
    with pytest.raises(ValueError, match="neighbours must be"):
        DecisionBranchesEnsemble(n_estimators=3).fit(X, y, neighbours=neighbours[:5])


def test_decision_function_orders_by_votes_first(model, data):
    codes = data[0]
    score = model.decision_function(codes)
    votes = model.votes(codes)
    np.testing.assert_array_equal(np.floor(score * model.n_estimators), votes)
    assert np.all(score - votes / model.n_estimators < 0.5 / model.n_estimators)


def test_member_boxes_hold_their_seed_positives(data):
    _, _, X, y = data
    m = DecisionBranchesEnsemble(n_estimators=3, max_samples=50, random_state=1)
    m.fit(X, y)
    assert np.all(y[m.seed_rows_] == 1)
    inside = m.boxes_.contains(X[m.seed_rows_], m.subsets_)
    assert np.all(np.diagonal(inside))
    assert set(m.boxes_.member.tolist()) <= {0, 1, 2}


def test_deterministic_given_random_state(data):
    _, _, X, y = data
    a = DecisionBranchesEnsemble(n_estimators=6, random_state=11).fit(X, y)
    b = DecisionBranchesEnsemble(n_estimators=6, random_state=11).fit(X, y)
    assert a.boxes_.to_dict() == b.boxes_.to_dict()


@pytest.mark.parametrize("end_extension", [1.0, "open"])
def test_separable_clusters_give_high_f1(data, end_extension):
    codes, truth, X, y = data
    model = DecisionBranchesEnsemble(n_estimators=15, end_extension=end_extension)
    p = model.fit(X, y).predict(codes)
    tp = np.count_nonzero(p & truth)
    assert 2 * tp / (p.sum() + truth.sum()) > 0.7 if end_extension == 1.0 else 0.95


@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"n_estimators": 0}, ValueError, "n_estimators"),
        ({"vote_threshold": 1.0}, ValueError, "vote_threshold"),
        ({"vote_threshold": -0.1}, ValueError, "vote_threshold"),
        ({"vote_threshold": "half"}, TypeError, "vote_threshold"),
        ({"max_samples": 0}, ValueError, "max_samples"),
        ({"max_samples": 1.5}, ValueError, "max_samples"),
        ({"max_samples": "all"}, TypeError, "max_samples"),
        ({"max_boxes": 0}, ValueError, "max_boxes"),
        ({"max_candidates": "x"}, ValueError, "max_candidates"),
        ({"bound_margin": -0.1}, ValueError, "bound_margin"),
        ({"end_extension": "x"}, ValueError, "end_extension"),
        ({"arbiter_margin": "x"}, TypeError, "arbiter_margin"),
        ({"arbiter_margin": float("nan")}, ValueError, "arbiter_margin"),
        ({"arbiter_min_votes": 0}, ValueError, "arbiter_min_votes"),
    ],
)
def test_bad_params(data, params, exc, match):
    _, _, X, y = data
    with pytest.raises(exc, match=match):
        DecisionBranchesEnsemble(**params).fit(X, y)


def test_bad_inputs_and_unfitted(data):
    _, _, X, y = data
    with pytest.raises(ValueError, match="no positive"):
        DecisionBranchesEnsemble().fit(X, np.zeros_like(y))
    with pytest.raises(RuntimeError, match="not fitted"):
        DecisionBranchesEnsemble().predict(X)


def test_a_broad_concept_trains_without_the_random_members(broad_concept):
    """The ensemble leaves out the random negatives likely members of a broad
    concept, and its arbiter then accepts any row a member holds where its own
    boundary does: index, scan and the rule written out agree."""
    codes, concept, index, ts = (
        broad_concept.codes, broad_concept.concept, broad_concept.index,
        broad_concept.ts,
    )  # fmt: skip
    found = {}
    for share in (0.1, None):
        model = DecisionBranchesEnsemble(
            n_estimators=9, random_state=3, broad_share=share
        ).fit(
            ts.X, ts.y, ts.sample_weight, subsets=index.subsets,
            unlabelled=ts.unlabelled, neighbours=ts.neighbours,
        )  # fmt: skip
        accepted = model.predict(codes)
        for use_index in (True, False):
            ranking = apply_model(model, index, use_index=use_index)
            np.testing.assert_array_equal(
                np.sort(ranking.ids), np.flatnonzero(accepted)
            )
        found[share] = (concept[accepted].mean(), accepted[concept].mean(), model)
    precision, recall, model = found[0.1]
    assert model.broad_ and model.n_relabelled_ == model.n_broad_ > 400
    assert not found[None][2].broad_ and found[None][2].n_relabelled_ == 0
    assert recall > 0.9 and precision > 0.9 and found[None][1] < 0.7 * recall
    votes = model.votes(codes)
    by_arbiter = (votes >= 1) & (model.arbiter_.decision_function(codes) > 0)
    rule = (votes / model.n_members_ > model.vote_threshold) | by_arbiter
    np.testing.assert_array_equal(model.predict(codes), rule)
    assert (rule & (votes < model.arbiter_min_votes)).sum() > 10
