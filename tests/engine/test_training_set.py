"""make_training_set: labels, weights, random negatives, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.training_set import (
    auto_neighbours_per_positive,
    make_training_set,
    neighbour_rows,
)


@pytest.fixture(scope="module")
def codes():
    return np.random.default_rng(0).integers(0, 256, (1000, 8)).astype(np.uint8)


def test_rows_labels_weights(codes):
    ts = make_training_set(codes, [5, 3, 900], [7, 1], n_random_negatives=50,
                           negative_weight=4)  # fmt: skip
    assert ts.X.dtype == np.uint8 and ts.y.dtype == np.int8
    assert ts.sample_weight.dtype == np.float64 and ts.rows.dtype == np.int64
    assert np.all(np.diff(ts.rows) > 0)
    np.testing.assert_array_equal(ts.X, codes[ts.rows])
    assert len(ts) == 5 + 50
    assert set(ts.rows[ts.y == 1].tolist()) == {3, 5, 900}
    weight = dict(zip(ts.rows.tolist(), ts.sample_weight.tolist()))
    assert weight[7] == weight[1] == 4.0
    assert weight[3] == 1.0
    rand = set(ts.rows.tolist()) - {1, 3, 5, 7, 900}
    assert len(rand) == 50 and all(weight[r] == 1.0 for r in rand)
    assert ts.n_positives == 3 and ts.n_negatives == 52


def test_duplicates_collapse_and_no_repetition(codes):
    ts = make_training_set(codes, [2, 2, 2], [9, 9], n_random_negatives=0,
                           negative_weight=10)  # fmt: skip
    np.testing.assert_array_equal(ts.rows, [2, 9])
    np.testing.assert_array_equal(ts.sample_weight, [1.0, 10.0])


def test_random_negatives_deterministic_and_exclude_labels(codes):
    a = make_training_set(codes, np.arange(100), np.arange(100, 200), 300, seed=3)
    b = make_training_set(codes, np.arange(100), np.arange(100, 200), 300, seed=3)
    np.testing.assert_array_equal(a.rows, b.rows)
    rand = a.rows[a.rows >= 200]
    assert rand.size == 300 and np.unique(rand).size == 300


def test_large_catalogue_draw_is_distinct():
    big = np.zeros((200_000, 4), np.uint8)
    ts = make_training_set(big, [0, 1], [2], n_random_negatives=500, seed=1)
    rand = ts.rows[ts.rows > 2]
    assert rand.size == 500 and np.unique(rand).size == 500


def test_takes_all_unlabelled_rows_when_too_few(codes):
    small = codes[:20]
    ts = make_training_set(small, [0], [1, 2], n_random_negatives=500)
    np.testing.assert_array_equal(ts.rows, np.arange(20))


def test_random_negative_weight(codes):
    ts = make_training_set(codes, [0], [1], 10, random_negative_weight=0.25)
    assert ts.sample_weight[ts.rows == 1][0] == 1.0
    assert np.all(ts.sample_weight[ts.rows > 1] == 0.25)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"positives": []}, ValueError, "at least one positive"),
        (
            {"positives": [1, 2, 3], "negatives": [3, 4, 2]},
            ValueError,
            r"rows \[2, 3\]",
        ),
        ({"positives": [1000]}, ValueError, "outside"),
        ({"positives": [-1]}, ValueError, "outside"),
        ({"positives": [1.5]}, TypeError, "integer"),
        ({"positives": [True]}, TypeError, "integer"),
        ({"positives": [1], "negative_weight": 0}, ValueError, "> 0"),
        ({"positives": [1], "negative_weight": float("nan")}, ValueError, "> 0"),
        ({"positives": [1], "negative_weight": True}, TypeError, "negative_weight"),
        ({"positives": [1], "n_random_negatives": -1}, ValueError, ">= 0"),
        ({"positives": [1], "n_random_negatives": 2.0}, TypeError, "int"),
        ({"positives": [1], "random_negative_weight": -1}, ValueError, "> 0"),
    ],
)
def test_errors(codes, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_training_set(codes, **kwargs)


def test_float_codes_refused():
    with pytest.raises(ValueError, match="uint8"):
        make_training_set(np.zeros((5, 4), np.float32), [0])


def _sq_dists(codes, row):
    return ((codes.astype(np.int64) - codes[row].astype(np.int64)) ** 2).sum(axis=1)


def _brute_neighbours(codes, positives, k):
    """The k nearest rows of each positive no farther than the median distance from
    a positive to its nearest other positive."""
    radius = np.inf
    if len(positives) > 1:
        gaps = [np.sort(_sq_dists(codes, p)[positives])[1] for p in positives]
        radius = np.median(np.sqrt(gaps))
    out = []
    for p in positives:
        d = _sq_dists(codes, p)
        near = np.lexsort((np.arange(len(codes)), d))[: k + 1]
        out.append(near[np.sqrt(d[near]) <= radius + 1e-9])
    return np.concatenate(out)


@pytest.mark.parametrize("positives", [[3], [3, 50, 51], [1, 2, 3, 4, 5, 6]])
def test_neighbour_rows_match_brute_force(codes, positives):
    positives = np.array(positives)
    negatives = np.array([7])
    got = neighbour_rows(codes, positives, 4, exclude=negatives)
    want = _brute_neighbours(codes, positives, 4)
    want = np.setdiff1d(want, np.concatenate([positives, negatives]))
    np.testing.assert_array_equal(got, want)
    assert neighbour_rows(codes, positives, 0).size == 0


def test_neighbours_stay_within_the_spread_of_the_positives():
    # positives 10 apart; one row 3 from a positive joins, rows 30+ away do not
    rng = np.random.default_rng(1)
    codes = rng.integers(200, 256, (50, 2))
    codes[:4] = [(100, 100), (110, 100), (100, 103), (100, 130)]
    codes = codes.astype(np.uint8)
    np.testing.assert_array_equal(neighbour_rows(codes, [0, 1], 5), [2])
    # a single positive has no spread to compare with: its k neighbours join
    assert neighbour_rows(codes, [0], 5).size == 5


def test_auto_neighbours_fade_with_more_positives():
    counts = [auto_neighbours_per_positive(p) for p in (1, 2, 4, 8, 16, 31, 32, 40)]
    assert counts == [32, 16, 8, 4, 2, 1, 0, 0]
    assert auto_neighbours_per_positive(0) == 0


def test_neighbour_positives_join_the_training_set(codes):
    pos, neg = np.array([10, 20]), np.array([11])
    ts = make_training_set(
        codes,
        pos,
        neg,
        n_random_negatives=40,
        seed=3,
        neighbours_per_positive=5,
        neighbour_weight=0.5,
    )
    near = neighbour_rows(codes, pos, 5, exclude=neg)
    np.testing.assert_array_equal(ts.neighbour_rows, near)
    assert near.size > 0 and not np.isin(near, np.concatenate([pos, neg])).any()
    at = np.searchsorted(ts.rows, near)
    assert (ts.y[at] == 1).all() and np.allclose(ts.sample_weight[at], 0.5)
    assert ts.n_positives == pos.size + near.size
    assert ts.n_negatives == neg.size + 40  # random draws avoid the neighbours
    auto = make_training_set(codes, pos, neg, neighbours_per_positive="auto")
    np.testing.assert_array_equal(
        auto.neighbour_rows, neighbour_rows(codes, pos, 16, exclude=neg)
    )
    none = make_training_set(codes, pos, neg)
    assert none.neighbour_rows.size == 0 and none.n_positives == 2


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"neighbours_per_positive": -1}, ValueError, ">= 0"),
        ({"neighbours_per_positive": "many"}, TypeError, "'auto'"),
        ({"neighbours_per_positive": True}, TypeError, "'auto'"),
        ({"neighbour_weight": 0}, ValueError, "neighbour_weight"),
    ],
)
def test_neighbour_argument_errors(codes, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_training_set(codes, [1], [2], **kwargs)


def test_max_random_fraction_caps_the_draw_after_neighbours(codes):
    ts = make_training_set(
        codes[:100],
        [0, 1],
        [2],
        n_random_negatives=1000,
        neighbours_per_positive=3,
        max_random_fraction=0.5,
    )
    left = 100 - 3 - ts.neighbour_rows.size
    assert ts.n_negatives == 1 + int(0.5 * left)
    with pytest.raises(ValueError, match="max_random_fraction"):
        make_training_set(codes, [1], max_random_fraction=0)


def test_large_catalogues_search_neighbours_in_spread_blocks(codes, monkeypatch):
    from fiftyone_clipbranches.engine import training_set as ts

    assert ts.neighbour_search_rows(len(codes)) is None  # small: every row
    monkeypatch.setattr(ts, "NEIGHBOUR_SEARCH_ROWS", 200)
    monkeypatch.setattr(ts, "NEIGHBOUR_BLOCK", 50)
    rows = ts.neighbour_search_rows(len(codes))
    assert rows.size == 200 and np.all(np.diff(rows) > 0)
    assert rows[0] == 0 and rows[-1] == len(codes) - 1  # spread over the catalogue
    assert np.count_nonzero(np.diff(rows) > 1) == 3  # four contiguous blocks
    positives = np.array([5, 600])
    got = ts.neighbour_rows(codes, positives, 3)
    # brute force within the searched rows
    gap = np.sqrt(_sq_dists(codes, 5)[600])
    want = []
    for p in positives:
        others = rows[rows != p]
        d = _sq_dists(codes, p)[others]
        near = others[np.lexsort((others, d))[:3]]  # the 3 nearest other rows
        want.extend(near[np.sqrt(_sq_dists(codes, p)[near]) <= gap + 1e-9])
    want = np.setdiff1d(want, positives)
    np.testing.assert_array_equal(got, want)
    assert np.isin(got, rows).all()


def test_nearest_other_distance_in_chunks_equals_the_full_matrix(codes):
    from fiftyone_clipbranches.engine.training_set import _nearest_other_sq

    x = codes[:300]
    full = np.array([np.sort(_sq_dists(x, i))[1] for i in range(len(x))])
    np.testing.assert_array_equal(_nearest_other_sq(x, chunk=64), full)
    np.testing.assert_array_equal(_nearest_other_sq(x), full)
