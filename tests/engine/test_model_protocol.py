"""Every engine model follows one protocol: uniform fit, n_relabelled_, ranking."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.ball import QueryBall
from fiftyone_clipbranches.engine.baselines import (
    ForestModel,
    NearestNeighbours,
    Rocchio,
    TreeModel,
)
from fiftyone_clipbranches.engine.branch_model import BranchModel
from fiftyone_clipbranches.engine.branches import DecisionBranches
from fiftyone_clipbranches.engine.ensemble import DecisionBranchesEnsemble
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.linear import LinearClassifier
from fiftyone_clipbranches.engine.model import ANSWERED_BY, RefinementModel
from fiftyone_clipbranches.engine.search import apply_model
from fiftyone_clipbranches.engine.subsets import make_subsets
from fiftyone_clipbranches.engine.training_set import make_training_set


@pytest.fixture(scope="module")
def catalogue():
    rng = np.random.default_rng(7)
    centres = rng.integers(60, 196, (4, 32))
    label = rng.integers(0, 4, 3000)
    codes = np.clip(centres[label] + rng.normal(0, 14, (3000, 32)), 0, 255)
    codes = codes.astype(np.uint8)
    index = CodeIndex.build(codes, make_subsets(32), leaf_size=64)
    pos = np.flatnonzero(label == 2)[:6]
    neg = np.flatnonzero(label == 0)[:4]
    ts = make_training_set(
        codes, pos, neg, n_random_negatives=400, seed=0, neighbours_per_positive=3
    )
    centre = centres[2].astype(np.uint8)
    return codes, index, ts, centre


MODELS = {
    "branches": lambda c: DecisionBranches(random_state=1),
    "ensemble": lambda c: DecisionBranchesEnsemble(n_estimators=7, random_state=1),
    "ensemble_pure_vote": lambda c: DecisionBranchesEnsemble(
        n_estimators=5, arbiter_margin=None, random_state=2
    ),
    "linear": lambda c: LinearClassifier(),
    "ball": lambda c: QueryBall(center=c),
    "tree": lambda c: TreeModel(),
    "forest": lambda c: ForestModel(n_estimators=5),
    "nn": lambda c: NearestNeighbours(k=15),
    "rocchio": lambda c: Rocchio(k=120),
}


def brute_force_ranking(model, codes):
    ids = np.flatnonzero(model.predict(codes))
    scores = model.decision_function(codes)[ids]
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, catalogue):
    codes, index, ts, centre = catalogue
    model = MODELS[request.param](centre)
    out = model.fit(
        ts.X,
        ts.y,
        ts.sample_weight,
        subsets=index.subsets,
        unlabelled=ts.unlabelled,
        neighbours=ts.neighbours,
        catalogue_sample=codes,
    )
    return request.param, model, out


def test_every_model_takes_the_uniform_fit_and_reports_relabelled(fitted):
    name, model, out = fitted
    assert out is model
    assert isinstance(model, RefinementModel)
    assert model.answered_by in ANSWERED_BY
    assert isinstance(model.n_relabelled_, int) and model.n_relabelled_ >= 0
    assert model.n_features_in_ == 32
    if name in ("linear", "ball"):
        assert model.n_relabelled_ > 0, "the fixture should relabel random negatives"
    elif name.startswith("ensemble"):
        # the class is a quarter of the rows: a broad concept, whose random
        # members the ensembles leave out
        assert model.broad_ and model.n_relabelled_ == model.n_broad_ > 0
    else:
        assert model.n_relabelled_ == 0


def test_ranking_equals_brute_force_predict(fitted, catalogue):
    codes, index, _, _ = catalogue
    _, model, _ = fitted
    ids, scores = brute_force_ranking(model, codes)
    assert ids.size > 0
    for use_index in (True, False):
        ranking = apply_model(model, index, use_index=use_index)
        assert ranking.ids.dtype == np.int64 and ranking.scores.dtype == np.float64
        np.testing.assert_array_equal(ranking.ids, ids)
        np.testing.assert_allclose(ranking.scores, scores, rtol=1e-12)
        key = list(zip((-ranking.scores).tolist(), ranking.ids.tolist()))
        assert key == sorted(key)


def test_only_box_models_are_answered_by_the_index(fitted):
    name, model, _ = fitted
    expected = {"nn": "top_k", "rocchio": "top_k"}.get(name, "scan")
    if name in ("branches", "ensemble", "ensemble_pure_vote"):
        expected = "index"
        assert isinstance(model, BranchModel)
    assert model.answered_by == expected


def test_a_single_model_is_an_ensemble_of_one_member(catalogue):
    codes, index, ts, _ = catalogue
    model = DecisionBranches(random_state=3).fit(
        ts.X, ts.y, ts.sample_weight, subsets=index.subsets
    )
    assert model.n_members_ == 1
    assert np.all(model.boxes_.member == 0)
    np.testing.assert_array_equal(model.n_boxes_, [len(model.boxes_)])
    ids, hits = index.query_boxes(model.boxes_)
    assert np.all(hits == 1)
    # the one accept rule, as the ensemble's: one member's vote is a majority
    np.testing.assert_array_equal(model.accept(hits, codes, ids), np.ones(ids.size))
    votes = model.votes(codes)
    np.testing.assert_array_equal(model.accept(votes, codes), model.predict(codes))
    answered, scores = model.answer_hits(ids, hits, codes)
    expected, expected_scores = brute_force_ranking(model, codes)
    order = np.lexsort((answered, -scores))
    np.testing.assert_array_equal(answered[order], expected)
    np.testing.assert_allclose(scores[order], expected_scores, rtol=1e-12)


def test_the_ensemble_arbiter_is_validated_where_it_is_applied(catalogue):
    codes, index, ts, _ = catalogue
    model = DecisionBranchesEnsemble(n_estimators=5, random_state=1).fit(
        ts.X, ts.y, ts.sample_weight, subsets=index.subsets
    )
    assert model.arbiter_ is not None
    votes = model.votes(codes)
    for bad, exc in (("x", TypeError), (float("nan"), ValueError)):
        model.set_params(arbiter_margin=bad)
        with pytest.raises(exc, match="arbiter_margin"):
            model.accept(votes, codes)
    model.set_params(arbiter_margin=4.0, arbiter_min_votes=0)
    with pytest.raises(ValueError, match="arbiter_min_votes"):
        model.accept(votes, codes)
    model.set_params(arbiter_margin=None, arbiter_min_votes=3)
    np.testing.assert_array_equal(model.accept(votes, codes), votes / 5 > 0.5)


def test_branch_parameters_are_shared_and_validated_once():
    single = DecisionBranches().get_params()
    ensemble = DecisionBranchesEnsemble().get_params()
    assert set(single) < set(ensemble)
    assert single["max_candidates"] == "all" and ensemble["max_candidates"] == 0.5
    assert {
        k: v for k, v in ensemble.items() if k in single and k != "max_candidates"
    } == {k: v for k, v in single.items() if k != "max_candidates"}
    clone = DecisionBranchesEnsemble(
        **DecisionBranchesEnsemble(max_boxes=4).get_params()
    )
    assert clone.max_boxes == 4 and "max_boxes=4" in repr(clone)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unfitted_models_are_refused_alike(name, catalogue):
    _, index, _, centre = catalogue
    model = MODELS[name](centre)
    with pytest.raises(RuntimeError, match="not fitted: call fit first"):
        apply_model(model, index)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.decision_function(np.zeros((1, 32), np.uint8))


def test_apply_model_refuses_what_is_not_an_engine_model(catalogue):
    with pytest.raises(TypeError, match="RefinementModel"):
        apply_model(object(), catalogue[1])


def test_masks_are_checked_by_every_model_that_reads_them(catalogue):
    _, index, ts, _ = catalogue
    short = np.zeros(3, bool)
    for model in (DecisionBranchesEnsemble(n_estimators=2), LinearClassifier()):
        with pytest.raises(ValueError, match="unlabelled must be a bool array"):
            model.fit(ts.X, ts.y, unlabelled=short)
    with pytest.raises(ValueError, match="neighbours must be a bool array"):
        DecisionBranchesEnsemble(n_estimators=2).fit(ts.X, ts.y, neighbours=short)
