"""Scans: member counting with many members, empty inputs, agreement with Boxes.contains."""

from __future__ import annotations

import numpy as np

from fiftyone_clipbranches.engine.boxes import Boxes
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.scan import contains_any, knn_scan, scan_boxes
from fiftyone_clipbranches.engine.subsets import FeatureSubsets


def test_more_than_255_members_are_counted_exactly():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, (400, 4), dtype=np.uint8)
    subsets = FeatureSubsets.from_lists([[0, 1], [2, 3]], 4)
    n = 600
    lo = rng.integers(0, 2, (n, 2)).astype(np.int16)
    boxes = Boxes(
        rng.integers(0, 2, n).astype(np.int32),
        lo,
        (lo + 2 + rng.integers(0, 2, (n, 2))).astype(np.int16),
        (np.arange(n) // 2 * 7).astype(np.int32),  # 300 sparse member labels
    )
    inside = boxes.contains(codes, subsets)
    ref_ids = np.flatnonzero(inside.any(1))
    ref_hit = [len(set(boxes.member[inside[i]].tolist())) for i in ref_ids]
    assert max(ref_hit) > 255
    for ids, hit in (
        scan_boxes(codes, subsets, boxes),
        CodeIndex.build(codes, subsets, leaf_size=4).query_boxes(boxes),
    ):
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(hit, ref_hit)


def test_empty_inputs():
    subsets = FeatureSubsets.from_lists([[0, 1]], 2)
    codes = np.zeros((0, 2), np.uint8)
    box = Boxes(
        np.zeros(1, np.int32),
        np.zeros((1, 2), np.int16),
        np.full((1, 2), 255, np.int16),
        np.zeros(1, np.int32),
    )
    ids, hit = scan_boxes(codes, subsets, box)
    assert ids.size == 0 and hit.size == 0
    assert contains_any(codes, subsets, box).shape == (0,)
    some = np.ones((5, 2), np.uint8)
    assert contains_any(some, subsets, Boxes.empty(2)).tolist() == [False] * 5
    assert scan_boxes(some, subsets, Boxes.empty(2))[0].size == 0
    assert contains_any(some, subsets, box).all()


def test_knn_k_larger_than_n_and_fortran_input():
    codes = np.asfortranarray(np.array([[3, 3], [0, 0], [1, 1], [0, 0]], np.uint8))
    ids, sq = knn_scan(codes, np.array([0, 0], np.uint8), 10)
    assert ids.tolist() == [1, 3, 2, 0]
    assert sq.tolist() == [0, 0, 2, 18]


def test_parallel_and_serial_scans_agree(monkeypatch):
    import fiftyone_clipbranches.engine.scan as scan_module

    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (70_000, 6), dtype=np.uint8)
    subsets = FeatureSubsets.from_lists([[0, 1, 2], [3, 4], [5]], 6)
    lo = rng.integers(0, 200, (9, 3)).astype(np.int16)
    boxes = Boxes(
        rng.integers(0, 3, 9).astype(np.int32),
        lo,
        (lo + 90).astype(np.int16),
        rng.integers(0, 3, 9).astype(np.int32),
    )
    query = codes[7]
    results = []
    for threshold in (10**9, 0):
        monkeypatch.setattr(scan_module, "PARALLEL_MIN_ROWS", threshold)
        results.append(
            (
                *scan_boxes(codes, subsets, boxes),
                contains_any(codes, subsets, boxes),
                *knn_scan(codes, query, 50),
            )
        )
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[0][2], boxes.contains(codes, subsets).any(1))


def test_rows_per_box_counts_each_box_like_brute_force():
    from fiftyone_clipbranches.engine.boxes import Boxes
    from fiftyone_clipbranches.engine.scan import rows_per_box
    from fiftyone_clipbranches.engine.subsets import make_subsets

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (3000, 32)).astype(np.uint8)
    subsets = make_subsets(32)
    n = 40
    sid = rng.integers(0, len(subsets), n).astype(np.int32)
    lo = rng.integers(0, 200, (n, subsets.max_len)).astype(np.int16)
    hi = (lo + rng.integers(20, 160, lo.shape)).astype(np.int16)
    hi[0, 0] = lo[0, 0] - 1  # an empty box
    boxes = Boxes(sid, lo, hi, np.arange(n, dtype=np.int32) % 7)
    expected = boxes.contains(codes, subsets).sum(axis=0)
    assert expected[0] == 0 and expected.max() > 0
    np.testing.assert_array_equal(rows_per_box(codes, subsets, boxes), expected)
    assert rows_per_box(codes[:0], subsets, boxes).tolist() == [0] * n
