"""member_share: the share of the random negatives that belong to the class."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.member_share import FOLDS, member_share


@pytest.fixture
def clusters(broad_concept):
    """20 clusters of 32-dim codes (6000 rows) and a generator for the draws."""
    return broad_concept.codes, broad_concept.label, np.random.default_rng(2)


@pytest.mark.parametrize("n_classes", [1, 4, 8, 12])
def test_the_estimate_follows_the_members_among_the_random_rows(clusters, n_classes):
    codes, label, rng = clusters
    member = label < n_classes
    pos = rng.choice(np.flatnonzero(member), 100, replace=False)
    rest = np.setdiff1d(np.arange(codes.shape[0]), pos)
    random_rows = rng.choice(rest, 1500, replace=False)
    truth = member[random_rows].mean()
    estimate = member_share(codes[pos], codes[random_rows])
    assert abs(estimate - truth) < 0.05 + 0.25 * truth


def test_a_class_labelled_whole_leaves_no_members_to_find(clusters):
    codes, label, rng = clusters
    member = label == 3
    random_rows = rng.choice(np.flatnonzero(~member), 1500, replace=False)
    assert member_share(codes[member], codes[random_rows]) < 0.02


def test_too_few_positives_or_no_random_rows_estimate_nothing(clusters):
    codes, _, _ = clusters
    assert member_share(codes[: FOLDS - 1], codes[100:600]) == 0.0
    assert member_share(codes[:50], codes[:0]) == 0.0
