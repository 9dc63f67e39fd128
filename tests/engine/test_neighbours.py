"""Neighbour positives: agreement with their definition, the cut at a small class,
the automatic count and the sampled search of large catalogues."""

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


def _reference_cluster(codes, positives, k, exclude=(), rows=None):
    """Neighbour positives by their definition, with dense matrices and loops: the
    cluster of the walk from the positives in the graph of their nearest rows."""
    pos = np.unique(positives)
    rows = np.arange(len(codes)) if rows is None else rows
    per = min(max(11, 2048 // pos.size), rows.size)
    near = []
    for p in pos:
        d = _sq_dists(codes, p)[rows]
        near.extend(rows[np.lexsort((rows, d))[:per]])
    near = np.setdiff1d(near, pos)
    nodes = np.concatenate([pos, near])
    if nodes.size < 2:  # a graph of one row: the positive alone
        return np.zeros(0, dtype=np.int64)
    x = codes[nodes].astype(np.int64)
    n = len(nodes)
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    links = np.zeros((n, n), bool)
    for i in range(n):
        others = np.array([j for j in range(n) if j != i], dtype=int)
        nearest = others[np.lexsort((others, dist[i, others]))[: min(10, n - 1)]]
        links[i, nearest] = links[nearest, i] = True
    degree = links.sum(axis=1).astype(float)
    start = np.zeros(n)
    start[: pos.size] = 1 / pos.size
    visits = start.copy()
    for _ in range(60):
        visits = 0.15 * start + 0.85 * links.T.astype(float) @ (visits / degree)
    order = np.lexsort((np.arange(n), -visits / degree))
    conductance = []
    for m in range(1, n + 1):
        inside = np.zeros(n, bool)
        inside[order[:m]] = True
        cut = links[inside][:, ~inside].sum()
        volume = degree[inside].sum()
        conductance.append(cut / max(min(volume, degree.sum() - volume), 1))
    low, size = max(pos.size, 5), None
    high = max(low, n // 4)
    for m in range(low, high):
        window = conductance[max(low, m // 2) - 1 : min(n, 2 * m + 1)]
        if conductance[m - 1] <= min(window):
            size = m
            break
    if k == "auto":  # 32 / P, or 48 / P when no boundary was found
        k = round((32 if size else 48) / pos.size)
    cluster = nodes[order[: size or min(high, n)]]
    cluster = cluster[
        ~np.isin(cluster, np.concatenate([pos, np.asarray(exclude, int)]))
    ]
    cluster = cluster[: k * pos.size]
    if pos.size >= 8:  # and no farther from a positive than their median spacing
        spacing = np.median([np.sort(_sq_dists(codes, p)[pos])[1] for p in pos])
        to_positive = np.array([_sq_dists(codes, r)[pos].min() for r in cluster])
        cluster = cluster[to_positive <= spacing]
    return np.sort(cluster)


@pytest.mark.parametrize(
    "positives", [[3], [3, 50, 51], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 9, 300]]
)
def test_neighbour_rows_match_their_definition(codes, positives):
    positives = np.array(positives)
    unlabelled = neighbour_rows(codes, positives, 4)
    np.testing.assert_array_equal(unlabelled, _reference_cluster(codes, positives, 4))
    # a negative among them leaves, and the next row of the cluster takes its place
    negatives = unlabelled[:1]
    got = neighbour_rows(codes, positives, 4, exclude=negatives)
    want = _reference_cluster(codes, positives, 4, negatives)
    np.testing.assert_array_equal(got, want)
    assert got.size > 0 and negatives[0] not in got
    assert neighbour_rows(codes, positives, 0).size == 0


@pytest.mark.parametrize("positives", [[3], [3, 50, 51], [1, 2, 3, 4, 5, 6, 9, 300]])
def test_auto_neighbours_match_their_definition(codes, positives):
    positives = np.array(positives)
    got = neighbour_rows(codes, positives, "auto")
    np.testing.assert_array_equal(got, _reference_cluster(codes, positives, "auto"))


@pytest.mark.parametrize("n_positives", [1, 3])
def test_auto_takes_more_where_the_cluster_has_no_boundary(monkeypatch, n_positives):
    # a class of 400 rows in a graph of about 1,000: larger than the quarter of the
    # graph a boundary is looked for in, so it has none
    codes = _planted(400)
    positives = np.arange(n_positives)
    more = neighbour_rows(codes, positives, "auto")
    assert more.size == round(48 / n_positives) * n_positives and np.all(more < 400)
    assert neighbour_rows(codes, positives, 5).size == 5 * n_positives  # explicit
    real = neighbours_module.cluster_order

    def bounded(graph, seeds):
        return real(graph, seeds)._replace(bounded=True)

    monkeypatch.setattr(neighbours_module, "cluster_order", bounded)
    fewer = neighbour_rows(codes, positives, "auto")
    assert fewer.size == round(32 / n_positives) * n_positives
    assert set(fewer) <= set(more)  # the walk's first rows of the same cluster


def _planted(size, seed=1):
    """A class of ``size`` rows (the first ones) among 30 classes of 20 rows, each a
    tight group around its own centre."""
    rng = np.random.default_rng(seed)
    sizes = [size] + [20] * 30
    centres = rng.integers(20, 236, (len(sizes), 16))
    rows = [c + rng.integers(-8, 9, (n, 16)) for c, n in zip(centres, sizes)]
    return np.clip(np.concatenate(rows), 0, 255).astype(np.uint8)


def test_a_small_class_gives_its_own_rows_not_the_budget():
    # one positive of a class of 15: its 14 other rows join, not 32 rows
    codes = _planted(15)
    np.testing.assert_array_equal(neighbour_rows(codes, [0], 32), np.arange(1, 15))
    got = neighbour_rows(codes, [0, 5], 16)
    np.testing.assert_array_equal(got, np.setdiff1d(np.arange(15), [0, 5]))


def test_a_large_class_gives_the_budget_from_its_own_rows():
    codes = _planted(200)
    got = neighbour_rows(codes, [0], 32)
    assert got.size == 32 and np.all(got < 200)
    got = neighbour_rows(codes, [0, 1, 2, 3], 8)
    assert got.size == 32 and np.all(got < 200)


def test_a_densely_labelled_class_takes_no_neighbours(monkeypatch):
    # a class of 36 rows among others; a user labels 24 of them
    codes = _planted(36)
    labelled = np.arange(24)
    # most positives lie nearer another positive than any unlabelled row: none join
    assert neighbour_rows(codes, labelled, 3).size == 0
    # without that rule rows beside them would
    monkeypatch.setattr(neighbours_module, "NEIGHBOUR_COVERED_FRACTION", 1.0)
    assert neighbour_rows(codes, labelled, 3).size > 0
    monkeypatch.undo()
    # a few rows of the cloud labelled: its other rows join
    few = neighbour_rows(codes, labelled[:3], 8)
    assert few.size > 0 and np.all(few < 36)


def test_auto_neighbours_fade_with_more_positives():
    grid = (1, 2, 4, 8, 16, 31, 32, 40, 63, 64, 100)
    counts = [auto_neighbours_per_positive(p) for p in grid]
    assert counts == [32, 16, 8, 4, 2, 1, 1, 1, 1, 0, 0]
    assert auto_neighbours_per_positive(0) == 0


def test_from_32_positives_only_a_class_much_larger_than_the_labels_takes_any(
    monkeypatch,
):
    # 32 labelled rows of a class of 400: most of it is unlabelled, neighbours join
    codes = _planted(400)
    large = neighbour_rows(codes, np.arange(32), "auto")
    assert large.size >= 32 and np.all(large < 400)
    # the class estimated just under / over NEIGHBOUR_COVER (2.5) times the labels
    for rows, want in ((79, 0), (81, large.size)):
        monkeypatch.setattr(
            neighbours_module, "estimated_share", lambda p, c, r=rows: r / len(codes)
        )
        assert neighbour_rows(codes, np.arange(32), "auto").size == want
        # below 32 positives the estimate is not asked
        assert neighbour_rows(codes, np.arange(31), "auto").size > 0


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
    np.testing.assert_array_equal(
        got, _reference_cluster(codes, positives, 3, rows=rows)
    )
    assert got.size > 0 and np.isin(got, rows).all()


def test_nearest_other_distance_in_chunks_equals_the_full_matrix(codes):
    x = codes[:300]
    full = np.array([np.sort(_sq_dists(x, i))[1] for i in range(len(x))])
    np.testing.assert_array_equal(_nearest_other_sq(x, chunk=64), full)
    np.testing.assert_array_equal(_nearest_other_sq(x), full)


@pytest.mark.parametrize("n_rows", [1, 2, 3, 6, 12])
def test_tiny_catalogues_give_neighbours_among_their_rows(n_rows):
    codes = np.random.default_rng(n_rows).integers(0, 256, (n_rows, 4)).astype(np.uint8)
    got = neighbour_rows(codes, [0], 32)
    assert np.all((got > 0) & (got < n_rows)) and np.unique(got).size == got.size
    # too small for a cut: the walk's first 5 rows (or all), the positive among them
    np.testing.assert_array_equal(got, _reference_cluster(codes, [0], 32))
    assert got.size == min(n_rows, 5) - 1
