"""Code neighbours of the positives: brute-force agreement, the distance limit, the
automatic count and the sampled search of large catalogues."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine import neighbours as neighbours_module
from fiftyone_clipbranches.engine.neighbours import (
    _nearest_other_sq,
    auto_neighbours_per_positive,
    neighbour_rows,
)


@pytest.fixture(scope="module")
def codes():
    return np.random.default_rng(0).integers(0, 256, (1000, 8)).astype(np.uint8)


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


def test_a_densely_labelled_class_takes_no_neighbours(monkeypatch):
    # one cloud of 36 rows in a sea of spread rows; a user labels 30 of them
    rng = np.random.default_rng(2)
    cloud = rng.integers(120, 136, 16) + rng.integers(-6, 7, (36, 16))
    sea = rng.integers(0, 256, (600, 16))
    codes = np.clip(np.concatenate([cloud, sea]), 0, 255).astype(np.uint8)
    labelled = np.arange(30)
    # most positives lie nearer another positive than any unlabelled row: none join
    assert neighbour_rows(codes, labelled, 3).size == 0
    # without that rule the 6 unlabelled rows of the cloud would
    monkeypatch.setattr(neighbours_module, "NEIGHBOUR_COVERED_FRACTION", 1.0)
    assert np.all(np.isin(neighbour_rows(codes, labelled, 3), np.arange(30, 36)))
    assert neighbour_rows(codes, labelled, 3).size > 0
    monkeypatch.undo()
    # a few rows of the cloud labelled: its other rows join
    few = neighbour_rows(codes, labelled[:3], 8)
    assert few.size > 0 and np.all(few < 36)


def test_auto_neighbours_fade_with_more_positives():
    counts = [auto_neighbours_per_positive(p) for p in (1, 2, 4, 8, 16, 31, 32, 40)]
    assert counts == [32, 16, 8, 4, 2, 1, 0, 0]
    assert auto_neighbours_per_positive(0) == 0


def test_a_class_stored_in_one_run_of_rows_is_in_the_sample_as_in_the_catalogue():
    """Images imported folder by folder are stored class by class: a class of 0.1%
    of 10M rows is one run of 10,000 rows, and a sample of a few large blocks held
    none of it in most places."""
    n = 10_000_000
    rows = neighbours_module.neighbour_search_rows(n)
    share = rows.size / n
    for size in (10_000, 2_000):
        starts = np.random.default_rng(0).integers(0, n - size, 500)
        held = np.searchsorted(rows, starts + size) - np.searchsorted(rows, starts)
        assert held.min() >= 0.5 * share * size and held.max() <= 2 * share * size


def test_large_catalogues_search_neighbours_in_spread_blocks(codes):
    assert (
        neighbours_module.neighbour_search_rows(len(codes)) is None
    )  # small: every row
    rows = neighbours_module.neighbour_search_rows(len(codes), 200, 50)
    assert rows.size == 200 and np.all(np.diff(rows) > 0)
    assert rows[0] == 0 and rows[-1] == len(codes) - 1  # spread over the catalogue
    assert np.count_nonzero(np.diff(rows) > 1) == 3  # four contiguous blocks
    positives = np.array([5, 600])
    got = neighbours_module.neighbour_rows(
        codes, positives, 3, search_rows=200, search_block=50
    )
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
    x = codes[:300]
    full = np.array([np.sort(_sq_dists(x, i))[1] for i in range(len(x))])
    np.testing.assert_array_equal(_nearest_other_sq(x, chunk=64), full)
    np.testing.assert_array_equal(_nearest_other_sq(x), full)
