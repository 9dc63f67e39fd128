"""Datasets with an index, and helpers to run the plugin's operators headlessly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk"))

from sdk_testdata import index_dataset, make_cifar_dataset  # noqa: E402


@pytest.fixture
def indexed_dataset(cifar_dir):
    """200 CIFAR images with cluster codes indexed under key ``cb``."""
    ds = make_cifar_dataset(cifar_dir, 20)
    index_dataset(ds, "cb")
    yield ds
    if not ds.deleted:
        ds.delete()


@pytest.fixture
def image_indexed_dataset(make_user_index):
    """200 CIFAR images embedded by the tiny CLIP and indexed by ``build_index``
    under key ``cb`` (the user's path), for the tests written on
    :func:`indexed_dataset` that a user's index must pass too."""
    return make_user_index(n_per_class=20, index_key="cb")


@pytest.fixture
def make_dataset_no_index(cifar_dir):
    ds = make_cifar_dataset(cifar_dir, 1)
    yield ds
    if not ds.deleted:
        ds.delete()
