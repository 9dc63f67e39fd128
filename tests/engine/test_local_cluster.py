"""Local graph clustering: the exact k-nearest-neighbour graph (both kernels, ties)
and the cut at the first local minimum of conductance."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine import local_cluster
from fiftyone_clipbranches.engine.local_cluster import (
    PARALLEL_MIN_ROWS,
    _first_local_minimum,
    cluster_order,
    graph_rows,
    knn_graph,
)


def _brute_graph(codes, k):
    x = codes.astype(np.int64)
    out = []
    for i in range(len(x)):
        d = ((x - x[i]) ** 2).sum(axis=1)
        others = np.flatnonzero(np.arange(len(x)) != i)
        out.append(others[np.lexsort((others, d[others]))[:k]])
    return np.array(out)


@pytest.mark.parametrize("n_rows", [7, 50, PARALLEL_MIN_ROWS + 76])
def test_the_graph_is_the_exact_nearest_rows_with_ties_to_the_lower_row(n_rows):
    # 2 dims of 6 values: most distances tie
    codes = np.random.default_rng(n_rows).integers(0, 6, (n_rows, 2)).astype(np.uint8)
    np.testing.assert_array_equal(knn_graph(codes, 5), _brute_graph(codes, 5))
    assert knn_graph(codes[:1], 5).shape == (1, 0)
    assert knn_graph(codes[:3], 5).shape == (3, 2)


def test_the_cut_is_the_first_local_minimum_over_half_to_twice_its_size():
    values = np.array([9, 8, 7, 6, 5, 4, 5, 6, 7, 8, 9, 9, 2, 9, 9, 9, 9], float)
    # size 6 (value 4) is not the lowest over sizes 3..13: size 13 holds 2
    assert _first_local_minimum(values, 3, 16) == (13, True)
    values[12] = 9  # now it is; size 14 would lie outside its window
    values[13] = 1
    assert _first_local_minimum(values, 3, 16) == (6, True)
    # none: the largest size allowed, not bounded
    assert _first_local_minimum(np.arange(20, 0, -1.0), 2, 8) == (8, False)


def test_the_cluster_of_a_group_is_the_group_whatever_the_seed():
    rng = np.random.default_rng(3)
    centres = rng.integers(20, 236, (12, 8))
    sizes = [40] + [25] * 11
    codes = np.concatenate(
        [c + rng.integers(-6, 7, (n, 8)) for c, n in zip(centres, sizes)]
    ).astype(np.uint8)
    for seeds in ([0], [5, 17], [1, 2, 3, 30]):
        order, bounded = cluster_order(codes, np.array(seeds))
        np.testing.assert_array_equal(np.sort(order), np.arange(40))
        assert bounded
    # the walk ranks its seeds first
    assert set(cluster_order(codes, np.array([5, 17])).rows[:2]) == {5, 17}


def test_a_group_without_a_boundary_is_a_quarter_of_the_graph_unbounded():
    # one uniform cloud: conductance keeps falling as sets grow
    codes = np.random.default_rng(4).integers(0, 256, (400, 8)).astype(np.uint8)
    order, bounded = cluster_order(codes, np.array([0]))
    assert not bounded and order.size == 100


def test_a_graph_of_one_row_is_its_seed(monkeypatch):
    codes = np.zeros((1, 4), np.uint8)
    np.testing.assert_array_equal(cluster_order(codes, np.array([0])).rows, [0])
    monkeypatch.setattr(local_cluster, "MIN_CLUSTER", 1)
    np.testing.assert_array_equal(cluster_order(codes, np.array([0])).rows, [0])


def test_a_graph_too_large_takes_every_positive_s_nearest_rows_rank_by_rank(
    monkeypatch,
):
    nearest = [np.array([10, 11, 12, 13]), np.array([20, 10, 21, 22]), np.array([2])]
    positives = np.array([1, 2, 3])
    np.testing.assert_array_equal(
        graph_rows(nearest, positives), [10, 11, 12, 13, 20, 21, 22]
    )
    monkeypatch.setattr(local_cluster, "GRAPH_MAX_ROWS", 4)
    # ranks 0: 10, 20 (2 is a positive); rank 1: 11 (10 is in), 12 would be rank 2
    np.testing.assert_array_equal(graph_rows(nearest, positives), [10, 11, 12, 20])
    assert graph_rows([], positives).size == 0


def test_the_graph_refuses_codes_it_cannot_pack():
    with pytest.raises(ValueError, match="at most 33000 dims"):
        knn_graph(np.zeros((3, 33001), np.uint8))
