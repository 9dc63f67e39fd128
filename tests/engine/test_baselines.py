"""Baselines: sklearn wrappers equal sklearn, exact k-NN union and Rocchio top-k."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine import baselines
from fiftyone_clipbranches.engine.baselines import (
    ForestModel,
    NearestNeighbours,
    Rocchio,
    TreeModel,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # few levels, so that many rows tie in distance
    codes = (rng.integers(0, 6, (2000, 16)) * 40).astype(np.uint8)
    y = np.zeros(200, np.int8)
    y[:12] = 1
    w = np.r_[np.ones(12), np.full(188, 2.0)]
    return codes, codes[:200], y, w


@pytest.mark.parametrize("cls", [TreeModel, ForestModel])
def test_sklearn_wrappers_equal_sklearn(data, cls, monkeypatch):
    codes, X, y, w = data
    model = cls(random_state=3).fit(X, y, w)
    expected = model.estimator_.predict_proba(codes.astype(np.float32))[:, 1]
    np.testing.assert_array_equal(model.decision_function(codes), expected)
    np.testing.assert_array_equal(model.predict(codes), expected > 0.5)
    monkeypatch.setattr(baselines, "CHUNK_ROWS", 77)
    np.testing.assert_array_equal(model.decision_function(codes), expected)


def test_forest_params_reach_sklearn(data):
    _, X, y, _ = data
    m = ForestModel(n_estimators=4, max_depth=3).fit(X, y)
    assert len(m.estimator_.estimators_) == 4
    assert m.estimator_.max_depth == 3


def sq_dists(codes, q):
    return ((codes.astype(np.int64) - np.asarray(q, np.int64)) ** 2).sum(axis=1)


def test_nearest_neighbours_is_the_exact_knn_union(data):
    codes, X, y, w = data
    k = 15
    model = NearestNeighbours(k=k).fit(X, y, w)
    ids, scores = model.search(codes)
    expected = set()
    best = np.full(len(codes), np.inf)
    for p in X[y == 1]:
        d = sq_dists(codes, p)
        order = np.lexsort((np.arange(len(codes)), d))
        expected |= set(order[:k].tolist())
        best = np.minimum(best, d)
    assert set(ids.tolist()) == expected
    np.testing.assert_allclose(scores, -np.sqrt(best[ids]) / 255)
    np.testing.assert_array_equal(model.predict(codes), np.isin(np.arange(2000), ids))


def test_rocchio_query_and_top_k(data, monkeypatch):
    codes, X, y, w = data
    model = Rocchio(k=40).fit(X, y, w)
    q = 2 * X[y == 1].mean(axis=0) - X[y == 0].mean(axis=0)
    np.testing.assert_allclose(model.query_, q)
    d = ((codes.astype(np.float64) - q) ** 2).sum(axis=1)
    expected = np.lexsort((np.arange(len(codes)), d))[:40]
    ids, scores = model.search(codes)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, -np.sqrt(d[expected]) / 255)
    monkeypatch.setattr(baselines, "CHUNK_ROWS", 33)
    ids2, _ = model.search(codes)
    np.testing.assert_array_equal(ids2, expected)


def test_rocchio_without_negatives_is_the_positive_mean(data):
    _, X, y, _ = data
    model = Rocchio(k=3).fit(X[y == 1], y[y == 1])
    np.testing.assert_allclose(model.query_, X[y == 1].mean(axis=0))


@pytest.mark.parametrize("cls", [NearestNeighbours, Rocchio])
def test_top_k_errors(data, cls):
    _, X, y, _ = data
    with pytest.raises(ValueError, match="k must be"):
        cls(k=0).fit(X, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        cls().search(X)


@pytest.mark.parametrize("cls", [TreeModel, ForestModel, NearestNeighbours, Rocchio])
def test_shared_input_validation(data, cls):
    _, X, y, _ = data
    with pytest.raises(ValueError, match="no positive"):
        cls().fit(X, np.zeros_like(y))
    with pytest.raises(ValueError, match="shape"):
        cls().fit(X, y[:3])


@pytest.mark.parametrize("cls", [NearestNeighbours, Rocchio])
def test_top_k_models_take_codes_only(data, cls):
    _, X, y, _ = data
    with pytest.raises(TypeError, match="uint8"):
        cls().fit(X.astype(np.float64), y)


@pytest.mark.parametrize("cls", [TreeModel, ForestModel])
def test_sklearn_wrappers_also_take_float_features(data, cls):
    codes, X, y, _ = data
    model = cls().fit(X.astype(np.float32) / 255, y)
    assert model.predict(codes.astype(np.float32) / 255).shape == (len(codes),)
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((2, 16), np.nan, np.float32))


def test_tree_errors(data):
    _, X, y, _ = data
    with pytest.raises(ValueError, match="max_depth"):
        TreeModel(max_depth=0).fit(X, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        TreeModel().predict(X)
    model = TreeModel().fit(X, y)
    with pytest.raises(ValueError, match="dims"):
        model.predict(X[:, :4])
