"""Query ball: the learned radius separates the labels, the scan equals brute force."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.ball import QueryBall
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.search import apply_model


def _squared(codes, center):
    return ((codes.astype(np.int64) - center.astype(np.int64)) ** 2).sum(axis=1)


@pytest.fixture(scope="module")
def data():
    """Codes around a center: the class within distance ~40, the rest spread out."""
    rng = np.random.default_rng(11)
    center = rng.integers(60, 196, 16).astype(np.uint8)
    near = np.clip(rng.normal(center, 8, (300, 16)), 0, 255).astype(np.uint8)
    far = rng.integers(0, 256, (2700, 16)).astype(np.uint8)
    codes = np.vstack([near, far])
    y = np.r_[np.ones(300), np.zeros(2700)].astype(np.int8)
    rows = np.r_[np.arange(40), rng.choice(np.arange(300, 3000), 500, replace=False)]
    return codes, center, rows, y


def test_the_radius_separates_the_labelled_class(data):
    codes, center, rows, y = data
    model = QueryBall(center=center).fit(codes[rows], y[rows])
    inside = model.predict(codes)
    assert inside[:300].mean() > 0.95 and inside[300:].mean() < 0.01
    assert model.coef_ < 0


def test_predict_search_and_scores_are_the_integer_rule(data):
    codes, center, rows, y = data
    model = QueryBall(center=center).fit(codes[rows], y[rows])
    expected = np.flatnonzero(_squared(codes, model.center_) <= model.radius_sq_)
    assert 0 < expected.size < codes.shape[0]
    np.testing.assert_array_equal(np.flatnonzero(model.predict(codes)), expected)
    ids, scores = model.search(codes, chunk_rows=257)
    np.testing.assert_array_equal(ids, expected)
    assert (scores > 0).all()
    np.testing.assert_array_equal(scores, model.decision_function(codes[ids]))
    assert np.array_equal(model.decision_function(codes) > 0, model.predict(codes))


def test_apply_model_ranks_by_distance_to_the_query(data):
    codes, center, rows, y = data
    model = QueryBall(center=center.tolist()).fit(codes[rows], y[rows])
    ranking = apply_model(model, CodeIndex.build(codes, leaf_size=32))
    d = _squared(codes, model.center_)
    assert sorted(ranking.ids.tolist()) == np.flatnonzero(model.predict(codes)).tolist()
    assert (np.diff(d[ranking.ids]) >= 0).all()
    assert (np.diff(ranking.scores) <= 0).all()


def test_random_negatives_inside_the_ball_are_left_out(data):
    codes, center, rows, y = data
    hidden = np.arange(40, 140)  # class members drawn as random negatives
    train = np.r_[rows, hidden]
    labels = np.r_[y[rows], np.zeros(hidden.size, np.int8)]
    unlabelled = labels == 0
    once = QueryBall(center=center, relabel_margin=None).fit(
        codes[train], labels, unlabelled=unlabelled
    )
    twice = QueryBall(center=center).fit(codes[train], labels, unlabelled=unlabelled)
    assert once.n_relabelled_ == 0 and twice.n_relabelled_ > 0
    assert twice.radius_sq_ > once.radius_sq_


def test_labels_that_contradict_the_query_are_refused(data):
    codes, center, rows, y = data
    with pytest.raises(ValueError, match="no nearer the query"):
        QueryBall(center=center, beta=0, gamma=0).fit(codes[rows], 1 - y[rows])


def test_the_centre_follows_the_labels_to_rocchios_point(data):
    codes, center, rows, y = data
    X, labels = codes[rows], y[rows]
    w = np.random.default_rng(5).uniform(0.2, 2.0, labels.shape[0])
    # half the negatives drawn at random: they train the radius, not the centre
    unlabelled = (labels == 0) & (np.arange(labels.shape[0]) % 2 == 0)
    model = QueryBall(center=center).fit(X, labels, w, unlabelled=unlabelled)
    pos, judged = labels == 1, (labels == 0) & ~unlabelled
    m_pos = np.average(X[pos].astype(np.float64), axis=0, weights=w[pos])
    m_neg = np.average(X[judged].astype(np.float64), axis=0, weights=w[judged])
    point = (center + 0.75 * m_pos - 0.15 * m_neg) / 1.6
    expected = np.clip(np.rint(point), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(model.center_, expected)
    assert np.abs(model.center_.astype(int) - center).max() > 0
    unweighted = QueryBall(center=center).fit(X, labels, unlabelled=unlabelled)
    assert not np.array_equal(unweighted.center_, model.center_)
    fixed = QueryBall(center=center, beta=0, gamma=0).fit(codes[rows], y[rows])
    np.testing.assert_array_equal(fixed.center_, center)
    only_negatives = QueryBall(center=center, beta=0).fit(codes[rows], y[rows])
    neg = codes[rows][y[rows] == 0].astype(np.float64)
    point = (center - 0.15 * neg.mean(axis=0)) / 0.85
    np.testing.assert_array_equal(
        only_negatives.center_, np.clip(np.rint(point), 0, 255).astype(np.uint8)
    )
    for bad, err in (
        ({"alpha": "1"}, TypeError),
        ({"beta": -1}, ValueError),
        ({"gamma": 1.0}, ValueError),
        ({"alpha": np.nan}, ValueError),
    ):
        with pytest.raises(err, match="alpha|beta|gamma"):
            QueryBall(center=center, **bad).fit(codes[rows], y[rows])


def test_a_query_beside_the_class_is_moved_onto_it(data):
    codes, center, rows, y = data
    # a query 80 code steps from the class centre in every dim, the class within ~8
    side = np.random.default_rng(3).choice([-1, 1], center.shape[0])
    off = np.clip(center.astype(np.int64) + 80 * side, 0, 255).astype(np.uint8)
    moved = QueryBall(center=off).fit(codes[rows], y[rows]).predict(codes)
    fixed = QueryBall(center=off, beta=0, gamma=0).fit(codes[rows], y[rows])
    kept = fixed.predict(codes)

    def f1(mask):
        tp = (mask & (y == 1)).sum()
        return 2 * tp / (mask.sum() + (y == 1).sum())

    assert f1(moved) > 0.95 and f1(kept) < 0.85


def test_missing_or_mismatched_center_and_unfitted_model_are_refused(data):
    codes, center, rows, y = data
    with pytest.raises(ValueError, match="center="):
        QueryBall().fit(codes[rows], y[rows])
    with pytest.raises(ValueError, match="dims"):
        QueryBall(center=center[:5]).fit(codes[rows], y[rows])
    with pytest.raises(ValueError, match="C must be"):
        QueryBall(center=center, C=0).fit(codes[rows], y[rows])
    with pytest.raises(RuntimeError, match="not fitted"):
        QueryBall(center=center).predict(codes)
    model = QueryBall(center=center).fit(codes[rows], y[rows])
    with pytest.raises(ValueError, match="dims"):
        model.predict(codes[:, :5])


def test_serial_and_parallel_distances_agree():
    from fiftyone_clipbranches.engine.ball_kernels import (
        squared_distances_parallel,
        squared_distances_serial,
    )

    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, (70_001, 32)).astype(np.uint8)
    query = rng.integers(0, 256, 32).astype(np.uint8)
    serial = np.empty(codes.shape[0], np.int32)
    parallel = np.empty(codes.shape[0], np.int32)
    squared_distances_serial(codes, query, serial)
    squared_distances_parallel(codes, query, parallel)
    np.testing.assert_array_equal(serial, parallel)
    np.testing.assert_array_equal(serial, _squared(codes, query))
