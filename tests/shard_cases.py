"""Shared cases of the sharded-index tests: a clustered catalogue, every registered
model trained on it, and the single-index answers a sharded index must equal."""

from __future__ import annotations

import time

import numpy as np

from fiftyone_clipbranches.engine.baselines import NearestNeighbours, Rocchio
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.search import apply_model
from fiftyone_clipbranches.engine.shard_format import build_sharded_index
from fiftyone_clipbranches.engine.shards import open_index
from fiftyone_clipbranches.engine.subsets import make_subsets
from fiftyone_clipbranches.sdk.models import MODELS, fit_on_index, make_model

N_ROWS = 3000
LEAF_SIZE = 64
#: every registered model, plus the engine's top-k baselines (merged differently)
MODEL_NAMES = sorted(MODELS) + ["nn", "rocchio"]


def catalogue(n_rows: int = N_ROWS, seed: int = 0):
    """``(codes uint8 (n, 32), label int (n,))``: 5 clusters of 32-dim codes."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(50, 206, (5, 32))
    label = rng.integers(0, 5, n_rows)
    codes = np.clip(centres[label] + rng.normal(0, 14, (n_rows, 32)), 0, 255)
    return codes.astype(np.uint8), label


def single_index(codes) -> CodeIndex:
    return CodeIndex.build(codes, make_subsets(32), leaf_size=LEAF_SIZE)


def sharded(codes, path, sizes):
    """A sharded index of ``codes`` in ``sizes`` shards at ``path``, opened in this
    process (the single index's subsets and leaf size)."""
    build_sharded_index(codes, path, sizes, make_subsets(32), LEAF_SIZE)
    return open_index(path)


def labels(label, n_pos: int = 6):
    """A few positives of class 1 (so neighbour positives join) and negatives."""
    pos = np.flatnonzero(label == 1)[:n_pos]
    neg = np.flatnonzero(label == 3)[:4]
    return pos, neg


def make(name: str, codes, label):
    if name == "nn":
        return NearestNeighbours(k=25)
    if name == "rocchio":
        return Rocchio(k=120)
    params = {}
    if MODELS[name].needs_query:
        params["center"] = codes[np.flatnonzero(label == 1)[0]]
    return make_model(name, random_state=1, **params)


def refine_once(index, name: str, codes, label, *, use_index: bool = True):
    """What ``sdk.refine_ranking`` does with an index: training set (random and
    neighbour rows drawn over ``index.codes``), fit, apply. Returns
    ``(training set, ranking)``."""
    train, model = fit_once(index, name, codes, label)
    return train, apply_model(model, index, use_index=use_index)


def fit_once(index, name: str, codes, label, n_pos: int = 6):
    """The training set and fitted model of :func:`refine_once` (``n_pos``
    positives)."""
    pos, neg = labels(label, n_pos)
    spec = MODELS.get(name)
    model = make(name, codes, label)
    train = fit_on_index(
        model,
        index,
        pos,
        neg,
        n_random_negatives=spec.random_negatives if spec else 300,
        max_random_fraction=0.9,
        neighbours_per_positive="auto",
        seed=3,
    )
    return train, model


def assert_same_training_set(a, b) -> None:
    for name in ("X", "y", "sample_weight", "rows", "neighbour_rows", "random_rows"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def assert_same_ranking(a, b) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def uneven_sizes(n_rows: int, n_shards: int, seed: int) -> list[int]:
    """``n_shards`` positive sizes adding up to ``n_rows``, far from even (one shard
    may hold a single row)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n_rows), n_shards - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [n_rows]])).astype(int).tolist()


def processes_gone(pids, timeout: float = 30.0) -> bool:
    """Whether every process of ``pids`` has ended within ``timeout`` seconds."""
    import psutil

    deadline = time.monotonic() + timeout
    while any(map(psutil.pid_exists, pids)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
