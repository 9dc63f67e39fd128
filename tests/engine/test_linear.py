"""Linear classifier: the fit equals scikit-learn's, the scan equals brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.linear import LinearClassifier
from fiftyone_clipbranches.engine.search import apply_model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (3000, 12)).astype(np.uint8)
    direction = rng.normal(size=12)
    logit = (codes.astype(float) - 127.5) @ direction / 300.0
    y = (logit + rng.normal(0, 1.0, 3000) > 1.5).astype(np.int8)
    rows = rng.choice(3000, 600, replace=False)
    weights = rng.uniform(0.5, 2.0, 600)
    return codes, codes[rows], y[rows], weights


@pytest.mark.parametrize("class_weight", ["balanced", None])
def test_fit_equals_sklearn_logistic_regression(data, class_weight):
    _, X, y, w = data
    model = LinearClassifier(C=0.5, class_weight=class_weight).fit(X, y, w)
    mean, std = X.mean(axis=0), X.std(axis=0)
    reference = LogisticRegression(
        C=0.5, class_weight=class_weight, tol=1e-10, max_iter=10_000
    ).fit((X - mean) / std, y, sample_weight=w)
    np.testing.assert_allclose(
        model.coef_, reference.coef_[0] / std, rtol=1e-4, atol=1e-7
    )
    agree = model.predict(X) == reference.predict((X - mean) / std)
    assert agree.mean() > 0.99


def test_predict_is_the_integer_rule_and_search_finds_exactly_its_rows(data):
    codes, X, y, w = data
    model = LinearClassifier().fit(X, y, w)
    raw = codes.astype(np.int64) @ model.weights_.astype(np.int64)
    expected = np.flatnonzero(raw > model.threshold_)
    assert 0 < expected.size < codes.shape[0]
    np.testing.assert_array_equal(np.flatnonzero(model.predict(codes)), expected)
    ids, scores = model.search(codes, chunk_rows=257)
    np.testing.assert_array_equal(ids, expected)
    assert (scores > 0).all()
    np.testing.assert_array_equal(scores, model.decision_function(codes[ids]))
    for bad, error in ((0, ValueError), (-5, ValueError), (2.5, TypeError)):
        with pytest.raises(error, match="chunk_rows must be"):
            model.search(codes, chunk_rows=bad)


def test_apply_model_ranks_the_scan_result(data):
    codes, X, y, w = data
    model = LinearClassifier(C=1.0).fit(X, y, w)
    index = CodeIndex.build(codes, leaf_size=32)
    ranking = apply_model(model, index)
    positive = np.flatnonzero(model.predict(codes))
    assert sorted(ranking.ids.tolist()) == positive.tolist()
    assert (np.diff(ranking.scores) <= 0).all()


def test_decision_function_orders_like_the_logit(data):
    _, X, y, w = data
    model = LinearClassifier().fit(X, y, w)
    logit = X.astype(float) @ model.coef_ + model.intercept_
    score = model.decision_function(X)
    assert np.corrcoef(logit, score)[0, 1] > 0.9999
    assert np.array_equal(score > 0, model.predict(X))


def test_float_features_are_accepted(data):
    _, X, y, w = data
    model = LinearClassifier().fit(X.astype(np.float32) / 255.0, y, w)
    assert model.predict(X.astype(np.float32) / 255.0).any()


def test_constant_features_give_a_constant_answer():
    X = np.full((20, 4), 7, np.uint8)
    y = np.r_[np.ones(5), np.zeros(15)].astype(np.int8)
    model = LinearClassifier(class_weight=None).fit(X, y)
    assert not model.predict(X).any()
    assert (model.weights_ == 0).all()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"C": 0}, "C must be"),
        ({"C": float("nan")}, "C must be"),
        ({"tol": -1.0}, "tol must be"),
        ({"class_weight": "auto"}, "class_weight"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_parameters_are_refused_at_fit(data, params, match):
    _, X, y, w = data
    with pytest.raises(ValueError, match=match):
        LinearClassifier(**params).fit(X, y, w)


def test_training_without_negatives_or_positives_is_refused(data):
    _, X, _, _ = data
    with pytest.raises(ValueError, match="no negative"):
        LinearClassifier().fit(X, np.ones(X.shape[0], np.int8))
    with pytest.raises(ValueError, match="no positive"):
        LinearClassifier().fit(X, np.zeros(X.shape[0], np.int8))


def test_unfitted_and_mismatched_inputs_are_refused(data):
    codes, X, y, w = data
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearClassifier().predict(codes)
    model = LinearClassifier().fit(X, y, w)
    with pytest.raises(ValueError, match="dims"):
        model.predict(codes[:, :5])


def _mislabelled_cluster():
    rng = np.random.default_rng(5)
    positives = rng.normal(200, 12, (40, 6))
    background = rng.uniform(0, 255, (400, 6))
    hidden = rng.normal(200, 12, (40, 6))  # matches drawn as random negatives
    X = np.clip(np.vstack([positives, background, hidden]), 0, 255).astype(np.uint8)
    y = np.r_[np.ones(40), np.zeros(440)].astype(np.int8)
    return X, y


def test_unlabelled_negatives_on_the_positive_side_are_left_out():
    X, y = _mislabelled_cluster()
    unlabelled = y == 0
    once = LinearClassifier(relabel_margin=None).fit(X, y, unlabelled=unlabelled)
    twice = LinearClassifier(relabel_margin=0.0).fit(X, y, unlabelled=unlabelled)
    assert once.n_relabelled_ == 0
    first = once.decision_function(X)
    assert twice.n_relabelled_ == int(np.count_nonzero(unlabelled & (first > 0)))
    assert twice.n_relabelled_ > 0
    hidden = slice(440, 480)
    assert twice.decision_function(X[hidden]).mean() > first[hidden].mean() + 1.0


def test_labelled_negatives_are_never_left_out():
    X, y = _mislabelled_cluster()
    model = LinearClassifier().fit(X, y, unlabelled=np.zeros(y.shape, bool))
    assert model.n_relabelled_ == 0
    with pytest.raises(ValueError, match="unlabelled must be"):
        LinearClassifier().fit(X, y, unlabelled=np.zeros(3, bool))


def test_serial_and_parallel_scores_agree():
    from fiftyone_clipbranches.engine.linear_kernels import (
        linear_scores_parallel,
        linear_scores_serial,
    )

    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, (70_001, 32)).astype(np.uint8)
    weights = rng.integers(-32767, 32768, 32).astype(np.int32)
    serial = np.empty(codes.shape[0], np.int32)
    parallel = np.empty(codes.shape[0], np.int32)
    linear_scores_serial(codes, weights, serial)
    linear_scores_parallel(codes, weights, parallel)
    np.testing.assert_array_equal(serial, parallel)
    np.testing.assert_array_equal(
        serial, codes.astype(np.int64) @ weights.astype(np.int64)
    )


def test_sqrt_class_weight_is_sklearn_with_inverse_sqrt_class_totals(data):
    codes, X, y, w = data
    model = LinearClassifier(C=0.5, class_weight="sqrt").fit(X, y, w)
    totals = np.bincount(y, weights=w, minlength=2)
    scale = 1.0 / np.sqrt(totals)
    factor = scale * totals.sum() / (scale * totals).sum()
    mean, std = X.mean(axis=0), X.std(axis=0)
    reference = LogisticRegression(
        C=0.5, class_weight={0: factor[0], 1: factor[1]}, tol=1e-10, max_iter=10_000
    ).fit((X - mean) / std, y, sample_weight=w)
    np.testing.assert_allclose(
        model.coef_, reference.coef_[0] / std, rtol=1e-4, atol=1e-7
    )
    # between no weighting and balanced weighting in how much it accepts
    accepted = {
        cw: LinearClassifier(C=0.5, class_weight=cw).fit(X, y, w).predict(codes).sum()
        for cw in (None, "sqrt", "balanced")
    }
    assert accepted[None] <= accepted["sqrt"] <= accepted["balanced"]
