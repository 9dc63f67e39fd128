"""Kernels compiled serial and parallel from one body give the same answers."""

from __future__ import annotations

import numba as nb
import numpy as np

from fiftyone_clipbranches.engine import branches as branches_module
from fiftyone_clipbranches.engine import index as index_module
from fiftyone_clipbranches.engine.branches import DecisionBranches
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.jit import serial_and_parallel


def test_twins_compile_one_body_with_and_without_threads():
    from fiftyone_clipbranches.engine import branches_kernels as k

    assert k.fit_branches.targetoptions.get("parallel") is None
    assert k.fit_branches_parallel.targetoptions["parallel"] is True
    # distinct names keep their on-disk cache entries apart
    assert k.fit_branches.py_func.__qualname__ != (
        k.fit_branches_parallel.py_func.__qualname__
    )
    serial, parallel = serial_and_parallel(_double)
    assert serial(np.arange(4.0)).tolist() == parallel(np.arange(4.0)).tolist()


def _double(x):
    out = np.empty_like(x)
    for i in nb.prange(x.shape[0]):
        out[i] = 2 * x[i]
    return out


def test_serial_and_parallel_fit_and_query_agree(monkeypatch):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (60_000, 12), dtype=np.uint8)
    y = (codes[:, 0] < 40) & (codes[:, 3] > 100)
    rows = np.concatenate([np.flatnonzero(y)[:60], rng.choice(len(codes), 900)])
    index = CodeIndex.build(codes)
    results = []
    for work, min_rows in ((10**12, 10**12), (1, 1)):  # all serial, then all parallel
        monkeypatch.setattr(branches_module, "PARALLEL_WORK", work)
        monkeypatch.setattr(index_module, "PARALLEL_MIN_ROWS", min_rows)
        model = DecisionBranches(random_state=3).fit(
            codes[rows], y[rows], subsets=index.subsets
        )
        results.append((model.boxes_, index.query_boxes(model.boxes_)))
    (boxes_a, (ids_a, hit_a)), (boxes_b, (ids_b, hit_b)) = results
    for name in ("subset_ids", "lo", "hi"):
        np.testing.assert_array_equal(getattr(boxes_a, name), getattr(boxes_b, name))
    assert len(boxes_a) > 0 and ids_a.size > 0
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(hit_a, hit_b)
