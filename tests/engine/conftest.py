"""Catalogues shared by the engine's model tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.subsets import make_subsets
from fiftyone_clipbranches.engine.training_set import make_training_set


@pytest.fixture(scope="session")
def broad_concept():
    """A concept that is a union of 8 of 20 clusters (40% of 6000 rows), 20
    labelled positives in each of its clusters, 20 labelled negatives and the
    cascade's random negatives (2400, at most 30% of the unlabelled rows): they
    hold hundreds of its members. ``codes``, ``label``, ``concept``, ``index``
    and ``ts`` (the training set)."""
    rng = np.random.default_rng(5)
    centres = rng.integers(40, 216, (20, 32))
    label = rng.integers(0, 20, 6000)
    codes = np.clip(centres[label] + rng.normal(0, 14, (6000, 32)), 0, 255)
    codes = codes.astype(np.uint8)
    concept = label < 8
    pos = np.concatenate(
        [rng.choice(np.flatnonzero(label == c), 20, replace=False) for c in range(8)]
    )
    neg = rng.choice(np.flatnonzero(~concept), 20, replace=False)
    ts = make_training_set(
        codes, pos, neg, n_random_negatives=2400, seed=0, max_random_fraction=0.3
    )
    assert concept[ts.rows[ts.unlabelled]].sum() > 500
    index = CodeIndex.build(codes, make_subsets(32), leaf_size=64)
    return SimpleNamespace(
        codes=codes, label=label, concept=concept, index=index, ts=ts
    )
