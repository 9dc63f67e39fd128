"""FiftyOne datasets of real CIFAR-10 images for the SDK tests."""

from __future__ import annotations

import numpy as np
import pytest
from sdk_testdata import make_cifar_dataset


@pytest.fixture
def make_dataset(cifar_dir):
    """Factory of fresh CIFAR datasets (``n_per_class`` images of each class, label
    in ``ground_truth``); all are deleted after the test."""
    made = []

    def make(n_per_class: int = 20):
        ds = make_cifar_dataset(cifar_dir, n_per_class)
        made.append(ds)
        return ds

    yield make
    for ds in made:
        if not ds.deleted:
            ds.delete()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
