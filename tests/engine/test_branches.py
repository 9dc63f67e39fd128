"""DecisionBranches: box invariants, exact prediction, scores, weights, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fiftyone_clipbranches.engine.branches import DecisionBranches
from fiftyone_clipbranches.engine.ensemble import DecisionBranchesEnsemble
from fiftyone_clipbranches.engine.subsets import FeatureSubsets, make_subsets


def clusters(n=3000, d=32, k=6, sigma=10.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.integers(50, 206, (k, d))
    label = rng.integers(0, k, n)
    codes = np.clip(centres[label] + rng.normal(0, sigma, (n, d)), 0, 255)
    return codes.astype(np.uint8), label


@pytest.fixture(scope="module")
def data():
    codes, label = clusters()
    rng = np.random.default_rng(1)
    truth = label == 2
    pos = rng.choice(np.flatnonzero(truth), 30, replace=False)
    neg = rng.choice(np.flatnonzero(~truth), 300, replace=False)
    rows = np.sort(np.concatenate([pos, neg]))
    return codes, truth, codes[rows], truth[rows].astype(np.int8)


@pytest.fixture(scope="module")
def model(data):
    _, _, X, y = data
    return DecisionBranches(random_state=3).fit(X, y)


def test_boxes_hold_their_seed_and_use_indexed_subsets(model, data):
    _, _, X, y = data
    boxes = model.boxes_
    assert 1 <= len(boxes) <= 30
    assert model.subsets_ == make_subsets(32)
    boxes.validate(model.subsets_)
    assert np.all(boxes.member == 0)
    assert np.all(y[model.seed_rows_] == 1)
    inside = boxes.contains(X[model.seed_rows_], model.subsets_)
    assert np.all(np.diagonal(inside))
    for b in range(len(boxes)):
        n = model.subsets_.lengths[boxes.subset_ids[b]]
        assert np.all(boxes.lo[b, :n] <= boxes.hi[b, :n])
        assert boxes.lo[b, :n].min() >= 0 and boxes.hi[b, :n].max() <= 255


def test_predict_is_the_union_of_boxes(model, data):
    codes = data[0]
    rand = np.random.default_rng(5).integers(0, 256, (500, 32)).astype(np.uint8)
    for X in (codes, rand):
        expected = model.boxes_.contains(X, model.subsets_).any(axis=1)
        np.testing.assert_array_equal(model.predict(X), expected)


def brute_force_score(model, X):
    boxes, subsets = model.boxes_, model.subsets_
    out = np.full(X.shape[0], -np.inf)
    for i, x in enumerate(X.astype(np.int64)):
        best_in, best_d = -np.inf, np.inf
        for b in range(len(boxes)):
            dims = subsets.subset(int(boxes.subset_ids[b]))
            lo = boxes.lo[b, : len(dims)].astype(np.int64)
            hi = boxes.hi[b, : len(dims)].astype(np.int64)
            v = x[dims]
            excess = np.maximum(lo - v, 0) + np.maximum(v - hi, 0)
            if excess.any():
                best_d = min(best_d, np.sqrt((excess**2).sum()))
            else:
                depth = ((np.minimum(v - lo, hi - v) + 1) / ((hi - lo) / 2 + 1)).min()
                best_in = max(best_in, model.box_purity_[b] + 0.01 * depth)
        out[i] = best_in if best_in > -np.inf else -best_d / 255
    return out


def test_decision_function_matches_its_definition(model, data):
    codes = data[0][:400]
    score = model.decision_function(codes)
    assert score.dtype == np.float64
    np.testing.assert_allclose(score, brute_force_score(model, codes), rtol=1e-12)
    np.testing.assert_array_equal(score > 0, model.predict(codes))


def test_box_purity_is_weighted_fraction_of_positives(model, data):
    _, _, X, y = data
    inside = model.boxes_.contains(X, model.subsets_)
    for b in range(len(model.boxes_)):
        assert model.box_purity_[b] == pytest.approx(y[inside[:, b]].mean())


def test_every_training_positive_is_covered_when_boxes_suffice(data):
    _, _, X, y = data
    m = DecisionBranches(max_boxes=1000).fit(X, y)
    assert m.predict(X)[y == 1].all()


def test_max_boxes_is_respected(data):
    _, _, X, y = data
    rng = np.random.default_rng(0)
    y_noisy = y.copy()
    y_noisy[rng.choice(len(y), 40, replace=False)] = 1
    m = DecisionBranches(max_boxes=3, max_candidates=2).fit(X, y_noisy)
    assert 1 <= len(m.boxes_) <= 3


def test_no_box_is_less_pure_than_the_training_set():
    # Noise labels: most boxes can only isolate a lone positive; none may be kept
    # that holds more negative than positive weight (it could select most of a
    # catalogue).
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, size=(600, 32), dtype=np.uint8)
    y = (rng.random(600) < 0.3).astype(np.int8)
    for model in (DecisionBranches(), DecisionBranchesEnsemble(n_estimators=5)):
        model.fit(X, y)
        assert np.all(model.box_purity_ >= 0.5)
        assert model.predict(X).mean() < 0.9


def test_deterministic_given_random_state(data):
    _, _, X, y = data
    a = DecisionBranches(random_state=7, max_candidates="sqrt").fit(X, y)
    b = DecisionBranches(random_state=7, max_candidates="sqrt").fit(X, y)
    assert a.boxes_.to_dict() == b.boxes_.to_dict()
    np.testing.assert_array_equal(a.seed_rows_, b.seed_rows_)


@pytest.mark.parametrize("end_extension", [1.0, "open"])
def test_separable_clusters_give_high_f1(data, end_extension):
    codes, truth, X, y = data
    p = DecisionBranches(end_extension=end_extension).fit(X, y).predict(codes)
    tp = np.count_nonzero(p & truth)
    f1 = 2 * tp / (p.sum() + truth.sum())
    assert f1 > 0.7 if end_extension == 1.0 else f1 > 0.95


def heavy_negative_problem():
    rng = np.random.default_rng(0)
    pos = rng.integers(100, 121, (40, 4))
    negs = np.concatenate(
        [rng.integers(0, 90, (100, 4)), rng.integers(131, 256, (100, 4))]
    )
    X = np.concatenate([pos, negs, [[110, 110, 110, 110]]]).astype(np.uint8)
    y = np.r_[np.ones(40), np.zeros(201)].astype(np.int8)
    return X, y, FeatureSubsets.from_lists([[0, 1, 2, 3]], 4)


def test_a_heavy_negative_is_excluded():
    X, y, sub = heavy_negative_problem()
    w = np.ones(len(X))
    light = DecisionBranches().fit(X, y, w, subsets=sub)
    assert light.predict(X[-1:])[0]
    w[-1] = 1000.0
    heavy = DecisionBranches().fit(X, y, w, subsets=sub)
    assert not heavy.predict(X[-1:])[0]
    assert heavy.predict(X[y == 1]).all()


def test_zero_weight_rows_are_ignored(data):
    _, _, X, y = data
    rng = np.random.default_rng(2)
    extra = rng.integers(0, 256, (50, 32)).astype(np.uint8)
    X2 = np.concatenate([X[:100], extra, X[100:]])
    y2 = np.concatenate([y[:100], rng.integers(0, 2, 50).astype(np.int8), y[100:]])
    w2 = np.r_[np.ones(100), np.zeros(50), np.ones(len(X) - 100)]
    a = DecisionBranches(random_state=4).fit(X, y)
    b = DecisionBranches(random_state=4).fit(X2, y2, w2)
    assert a.boxes_.to_dict() == b.boxes_.to_dict()


def test_only_given_subsets_are_used(data):
    _, _, X, y = data
    sub = FeatureSubsets.from_lists([[0, 5, 9], [1, 2], [30, 31]], 32)
    m = DecisionBranches().fit(X, y, subsets=sub)
    assert m.subsets_ is sub
    assert set(m.boxes_.subset_ids.tolist()) <= {0, 1, 2}
    np.testing.assert_array_equal(m.predict(X), m.boxes_.contains(X, sub).any(axis=1))


def test_end_extension_without_excluded_points():
    X = np.array([[10, 20], [12, 26], [200, 200]], np.uint8)
    y = [1, 1, 0]
    sub = FeatureSubsets.from_lists([[0, 1]], 2)
    # dims are loosened in turn: dim 0 opens, then the negative bounds dim 1
    m = DecisionBranches(end_extension="open").fit(X, y, subsets=sub)
    np.testing.assert_array_equal(m.boxes_.lo, [[0, 0]])
    np.testing.assert_array_equal(m.boxes_.hi, [[255, 26 + (200 - 26) // 2]])
    # two points inside: one mean spacing is the whole range
    m = DecisionBranches(end_extension=1.0).fit(X, y, subsets=sub)
    np.testing.assert_array_equal(m.boxes_.lo, [[8, 14]])
    np.testing.assert_array_equal(m.boxes_.hi, [[14, 32]])
    m = DecisionBranches(end_extension=0.0).fit(X, y, subsets=sub)
    np.testing.assert_array_equal(m.boxes_.lo, [[10, 20]])
    np.testing.assert_array_equal(m.boxes_.hi, [[12, 26]])


def test_bound_margin_places_bounds_in_the_gap():
    X = np.array([[100], [110], [90], [130]], np.uint8)
    y = np.array([1, 1, 0, 0], np.int8)
    sub = FeatureSubsets.from_lists([[0]], 1)
    for margin, lo, hi in [(0.5, 95, 120), (0.0, 100, 110), (0.9, 91, 128)]:
        m = DecisionBranches(bound_margin=margin).fit(X, y, subsets=sub)
        assert (m.boxes_.lo[0, 0], m.boxes_.hi[0, 0]) == (lo, hi)
    m = DecisionBranches().fit(X[[0, 2]], [1, 0], subsets=sub)
    assert m.boxes_.lo[0, 0] == 95  # gap of 10: half-way


def test_conflicting_duplicates_follow_the_weighted_majority():
    X = np.array([[5, 5], [5, 5], [5, 5], [200, 200]], np.uint8)
    one_subset = FeatureSubsets.from_lists([[0, 1]], 2)
    # one positive among identical negatives: a box around it would be mostly negative
    y = np.array([1, 0, 0, 0], np.int8)
    m = DecisionBranches().fit(X, y, subsets=one_subset)
    assert len(m.boxes_) == 0 and not m.predict(X).any()
    # weighted, the positive outweighs its duplicates: its box holds the seed
    w = np.array([3.0, 1.0, 1.0, 1.0])
    m = DecisionBranches().fit(X, y, sample_weight=w, subsets=one_subset)
    assert m.predict(X[:1])[0] and m.seed_rows_.tolist() == [0]
    assert not m.predict(X[3:])[0]


@pytest.mark.parametrize("max_candidates", [1, 3, 0.3, 1.0, "sqrt", "all", 1000])
def test_max_candidates_forms(data, max_candidates):
    _, _, X, y = data
    m = DecisionBranches(max_candidates=max_candidates).fit(X, y)
    assert len(m.boxes_) >= 1


def test_min_samples_box_can_reject_every_box():
    X, y, sub = heavy_negative_problem()
    m = DecisionBranches(min_samples_box=10_000).fit(X, y, subsets=sub)
    assert len(m.boxes_) == 0
    assert not m.predict(X).any()
    assert np.all(m.decision_function(X) < 0)


def test_params_are_validated_in_fit_not_init(data):
    _, _, X, y = data
    m = DecisionBranches(max_boxes=0)
    with pytest.raises(ValueError, match="max_boxes"):
        m.fit(X, y)


@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"max_boxes": 0}, ValueError, "max_boxes"),
        ({"max_boxes": 2.5}, TypeError, "max_boxes"),
        ({"max_boxes": True}, TypeError, "max_boxes"),
        ({"max_candidates": 0}, ValueError, "max_candidates"),
        ({"max_candidates": 1.5}, ValueError, "max_candidates"),
        ({"max_candidates": "log2"}, ValueError, "max_candidates"),
        ({"max_candidates": None}, TypeError, "max_candidates"),
        ({"min_samples_box": 0}, ValueError, "min_samples_box"),
        ({"max_passes": 0}, ValueError, "max_passes"),
        ({"bound_margin": 1.0}, ValueError, "bound_margin"),
        ({"bound_margin": "half"}, TypeError, "bound_margin"),
        ({"end_extension": -1.0}, ValueError, "end_extension"),
        ({"end_extension": "closed"}, ValueError, "end_extension"),
        ({"end_extension": None}, TypeError, "end_extension"),
        ({"random_state": "x"}, TypeError, "random_state"),
        ({"random_state": -1}, ValueError, "random_state"),
    ],
)
def test_bad_params(data, params, exc, match):
    _, _, X, y = data
    with pytest.raises(exc, match=match):
        DecisionBranches(**params).fit(X, y)


def test_bad_training_inputs():
    X = np.random.default_rng(0).integers(0, 256, (20, 32)).astype(np.uint8)
    y = np.r_[np.ones(5), np.zeros(15)].astype(np.int8)
    m = DecisionBranches()
    cases = [
        ((X, np.zeros(20)), ValueError, "no positive"),
        ((X.astype(np.float32), y), TypeError, "uint8"),
        ((np.full((20, 32), np.nan), y), ValueError, "NaN"),
        ((X.astype(np.int32) + 300, y), ValueError, "outside"),
        ((X[0], y), ValueError, "2-d"),
        ((X[:0], y[:0]), ValueError, "empty"),
        ((X, y[:5]), ValueError, "shape"),
        ((X, y * 2), ValueError, "0 .*and 1"),
        ((X, np.where(y == 1, np.nan, 0)), ValueError, "NaN"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            m.fit(*args)
    for w, match in [(-np.ones(20), ">= 0"), (np.full(20, np.inf), "NaN or inf"),
                     (np.ones(3), "shape"), (np.zeros(20), "weight 0")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            m.fit(X, y, sample_weight=w)
    with pytest.raises(ValueError, match="subsets index 8 dims"):
        m.fit(X, y, subsets=make_subsets(8, {4: 2}))
    with pytest.raises(TypeError, match="FeatureSubsets"):
        m.fit(X, y, subsets=[[0, 1]])


def test_predict_needs_fit_and_matching_dims(model):
    with pytest.raises(RuntimeError, match="not fitted"):
        DecisionBranches().predict(np.zeros((1, 32), np.uint8))
    with pytest.raises(ValueError, match="dims"):
        model.predict(np.zeros((1, 16), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        model.decision_function(np.zeros((1, 32), np.float64))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(2, 60),
    levels=st.integers(2, 256),
    n_pos=st.integers(1, 10),
)
def test_random_problems_keep_the_invariants(seed, n, levels, n_pos):
    rng = np.random.default_rng(seed)
    X = (rng.integers(0, levels, (n, 6)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    y = np.zeros(n, np.int8)
    y[rng.choice(n, min(n_pos, n), replace=False)] = 1
    w = rng.choice([0.5, 1.0, 3.0], n)
    sub = FeatureSubsets.from_lists([[0, 1], [2, 3, 4], [1, 5]], 6)
    m = DecisionBranches(max_candidates=2, random_state=seed).fit(X, y, w, subsets=sub)
    inside = m.boxes_.contains(X, sub)
    assert np.all(inside[m.seed_rows_, np.arange(len(m.boxes_))])
    np.testing.assert_array_equal(m.predict(X), inside.any(axis=1))
    np.testing.assert_array_equal(m.decision_function(X) > 0, inside.any(axis=1))


def test_get_and_set_params():
    m = DecisionBranches(max_boxes=5)
    assert m.get_params()["max_boxes"] == 5
    assert m.set_params(max_boxes=7, end_extension="open") is m
    assert m.max_boxes == 7 and "end_extension='open'" in repr(m)
    with pytest.raises(ValueError, match="unknown parameter"):
        m.set_params(depth=3)
