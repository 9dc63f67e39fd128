"""A real FiftyOne dataset with a real index, and a real service process serving it.

The dataset (300 samples in three clusters of codes, a few tagged) lives in the
session's private database; the service runs as ``python -m
fiftyone_clipbranches.service`` on a free loopback port, started once per session
and stopped by PID.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from service_helpers import CORS_ORIGIN, DATASET, NEG_TAG, POS_TAG, TOKEN, Http
from service_process import running_service

N_PER_CLUSTER = 100


def make_codes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(codes uint8 (300, 32), cluster int (300,))``: three noisy clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(40, 216, size=(3, 32))
    cluster = np.repeat(np.arange(3), N_PER_CLUSTER)
    noise = rng.integers(-30, 31, size=(cluster.size, 32))
    codes = np.clip(centers[cluster] + noise, 0, 255).astype(np.uint8)
    return codes, cluster


@pytest.fixture(scope="session")
def served_dataset():
    """The dataset: index ``clipbranches`` over its codes; samples 0-4 of cluster 0
    tagged positive, samples 100-104 (cluster 1) tagged negative."""
    import fiftyone as fo

    from fiftyone_clipbranches import sdk

    if fo.dataset_exists(DATASET):
        fo.delete_dataset(DATASET)
    codes, cluster = make_codes()
    ds = fo.Dataset(DATASET)
    samples = []
    for i in range(codes.shape[0]):
        tags = [POS_TAG] if i < 5 else [NEG_TAG] if 100 <= i < 105 else []
        samples.append(
            fo.Sample(filepath=f"/nonexistent/img_{i:04d}.jpg", tags=tags, row=i)
        )
    ids = ds.add_samples(samples)
    sdk.build_index_from_codes(ds, codes, ids, "clipbranches")
    ds.info["cluster"] = cluster.tolist()
    yield ds
    with contextlib.suppress(Exception):
        fo.delete_dataset(DATASET)


@pytest.fixture(scope="session")
def service(served_dataset):
    args = [
        "--dataset",
        DATASET,
        "--compute-workers",
        "2",
        "--threads",
        "8",
        "--timeout",
        "120",
        "--cors-origin",
        CORS_ORIGIN,
    ]
    with running_service(args, TOKEN) as proc:
        yield proc


@pytest.fixture(scope="session")
def call(service) -> Http:
    return Http(service.url, service.token)
