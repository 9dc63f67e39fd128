"""The class ball: exact distances, the left-out distances, the positive-unlabelled
estimate of a class's share of the catalogue and the ball it sizes."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine import reach, reach_kernels


def clustered(n_class: int, n_rest: int, seed: int = 0, spread: float = 10.0):
    """uint8 codes: a class of ``n_class`` rows around one center, the rest
    around 9 others; returns ``(codes, is_class)``."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(50, 206, (10, 32))
    label = np.concatenate([np.zeros(n_class, int), rng.integers(1, 10, n_rest)])
    codes = np.clip(centres[label] + rng.normal(0, spread, (label.size, 32)), 0, 255)
    return codes.astype(np.uint8), label == 0


@pytest.mark.parametrize("parallel_min_rows", [0, 1 << 16])
def test_squared_distances_are_exact(monkeypatch, parallel_min_rows):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (9000, 32)).astype(np.uint8)
    center = rng.integers(-255, 511, 32)
    expected = np.array(
        [sum((int(a) - int(b)) ** 2 for a, b in zip(row, center)) for row in codes]
    )
    monkeypatch.setattr(reach_kernels, "PARALLEL_MIN_ROWS", parallel_min_rows)
    np.testing.assert_array_equal(reach.squared_distances_to(codes, center), expected)
    rows = np.array([8999, 0, 17, 17])
    np.testing.assert_array_equal(
        reach.squared_distances_to(codes, center, rows), expected[rows]
    )


def test_left_out_distances_use_the_centre_of_the_others():
    rng = np.random.default_rng(2)
    positives = rng.integers(0, 256, (5, 32)).astype(np.uint8)
    mean = rng.uniform(0, 255, 32)
    expected = []
    for i in range(5):
        others = np.delete(positives, i, axis=0).astype(float).mean(axis=0)
        center = np.rint(2 * others - mean).astype(np.int64)
        expected.append(int(((positives[i].astype(np.int64) - center) ** 2).sum()))
    np.testing.assert_array_equal(
        reach.left_out_distances(positives, mean), sorted(expected)
    )


def test_best_share_on_hand_made_distances():
    catalogue = np.arange(1, 101, dtype=np.int64)  # one row at each distance 1..100
    # positives at 10, 20 (of 2): F = .10, .20; pi = min(.1 / .5, .2 / 1) = .2
    # F1 = 2 pi G / (F + pi): .2 / .3 = .667 at 10, .4 / .4 = 1.0 at 20
    assert reach.best_share(np.array([10, 20]), catalogue) == pytest.approx(0.2)
    # no catalogue row within the positives' distances: the ball of the nearest
    assert reach.best_share(np.array([0, 0]), catalogue) == 0.0


def test_radius_for_share():
    catalogue = np.array([3, 5, 8, 13], np.int64)
    assert reach.radius_for_share(catalogue, 0.5) == 5
    assert reach.radius_for_share(catalogue, 1.0) == 13
    assert reach.radius_for_share(catalogue, 3.0) == 13  # a ball past the catalogue
    assert reach.radius_for_share(catalogue, 0.1) == -1


def test_neighbour_positives_count_as_known_members():
    codes, is_class = clustered(300, 3000)
    members = np.flatnonzero(is_class)
    positives, neighbours = codes[members[:3]], codes[members[3:40]]
    center, alone = reach.class_ball(positives, codes, 1.0)
    same_center, with_them = reach.class_ball(positives, codes, 1.0, neighbours)
    np.testing.assert_array_equal(center, same_center)
    mean = codes.mean(axis=0, dtype=np.float64)
    known = np.sort(
        np.concatenate(
            [
                reach.left_out_distances(positives, mean),
                reach.squared_distances_to(neighbours, center),
            ]
        )
    )
    catalogue_sq = np.sort(reach.squared_distances_to(codes, center))
    share = reach.best_share(known, catalogue_sq)
    assert with_them == reach.radius_for_share(catalogue_sq, share)
    assert with_them != alone
    # the class is the whole catalogue and the reach goes past it: every row
    own_center, everything = reach.class_ball(codes[members[:8]], codes[members], 50.0)
    farthest = reach.squared_distances_to(codes[members], own_center).max()
    assert everything == farthest


@pytest.mark.parametrize("n_class, n_positives", [(100, 4), (300, 8), (600, 16)])
def test_the_ball_holds_about_the_class(n_class, n_positives):
    codes, is_class = clustered(n_class, 4000)
    rng = np.random.default_rng(n_class)
    positives = codes[rng.choice(np.flatnonzero(is_class), n_positives, replace=False)]
    center, radius_sq = reach.class_ball(positives, codes, 1.0)
    inside = reach.squared_distances_to(codes, center) <= radius_sq
    assert 0.5 * n_class <= inside.sum() <= 1.5 * n_class
    assert is_class[inside].mean() > 0.9
    _, half = reach.class_ball(positives, codes, 0.5)
    assert 0 <= half < radius_sq
    # the share alone, as neighbour_rows asks for it: the ball's share at reach 1
    share = reach.estimated_share(positives, codes)
    catalogue_sq = np.sort(reach.squared_distances_to(codes, center))
    assert reach.radius_for_share(catalogue_sq, share) == radius_sq
