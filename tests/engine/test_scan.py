"""Scans: member counting with many members, empty inputs, agreement with Boxes.contains."""

from __future__ import annotations

import numpy as np
import pytest

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


def _scaled(seed, lo, hi, t):
    """Brute force: the box ``lo..hi`` scaled by ``t`` about ``seed`` (exact
    fractions)."""
    from fractions import Fraction

    t = Fraction(t)
    return (
        [s - int(t * (s - a)) for s, a in zip(seed, lo)],
        [s + int(t * (b - s)) for s, b in zip(seed, hi)],
    )


def test_shrink_boxes_keeps_the_largest_scaling_within_the_limit():
    from fractions import Fraction

    from fiftyone_clipbranches.engine.scan import rows_per_box, shrink_boxes
    from fiftyone_clipbranches.engine.subsets import make_subsets

    rng = np.random.default_rng(8)
    codes = rng.integers(0, 256, (2000, 32)).astype(np.uint8)
    codes[5:60] = codes[4]  # the seed of box 1 has many duplicates
    subsets = make_subsets(32)
    n = 30
    sid = rng.integers(0, len(subsets), n).astype(np.int32)
    seed_rows = rng.integers(0, codes.shape[0], n)
    seed_rows[1] = 4
    dims = subsets.dims[sid]
    width = subsets.max_len
    at = np.take_along_axis(codes[seed_rows].astype(np.int16), np.maximum(dims, 0), 1)
    lo = np.maximum(at - rng.integers(0, 120, (n, width)), 0).astype(np.int16)
    hi = np.minimum(at + rng.integers(0, 120, (n, width)), 255).astype(np.int16)
    boxes = Boxes(sid, lo, hi, np.arange(n, dtype=np.int32) % 5)
    held = rows_per_box(codes, subsets, boxes)
    limits = np.maximum(held // 3, 10)
    limits[1] = 20
    shrunk = shrink_boxes(codes, subsets, boxes, codes[seed_rows], limits)
    now = rows_per_box(codes, subsets, shrunk)
    np.testing.assert_array_equal(shrunk.subset_ids, boxes.subset_ids)
    np.testing.assert_array_equal(shrunk.member, boxes.member)
    for b in range(n):
        k = int(subsets.lengths[sid[b]])
        seed, old = at[b, :k].tolist(), (lo[b, :k].tolist(), hi[b, :k].tolist())
        new = (shrunk.lo[b, :k].tolist(), shrunk.hi[b, :k].tolist())
        assert shrunk.contains(codes[seed_rows[b] : seed_rows[b] + 1], subsets)[0, b]
        if held[b] <= limits[b]:
            assert new == old and now[b] == held[b]
            continue
        # each row of the old box enters at a fraction t; the new box is the old
        # one scaled by the largest t holding at most the limit
        inside = boxes.contains(codes, subsets)[:, b]
        pts = codes[inside][:, dims[b, :k]].astype(int)
        enter = sorted(
            {
                max(
                    [
                        Fraction(s - v, s - a)
                        for v, s, a in zip(p, seed, old[0])
                        if v < s
                    ]
                    + [
                        Fraction(v - s, c - s)
                        for v, s, c in zip(p, seed, old[1])
                        if v > s
                    ]
                    + [Fraction(0)]
                )
                for p in pts
            }
        )
        count = {
            t: sum(1 for p in pts if _holds(p, *_scaled(seed, *old, t))) for t in enter
        }
        within = [t for t in enter if count[t] <= limits[b]]
        best = max(within) if within else Fraction(0)
        assert list(new) == [list(x) for x in _scaled(seed, *old, best)]
        assert now[b] <= limits[b] or best == 0
    assert now[1] > limits[1]  # 56 copies of its seed: it keeps the seed's point
    assert shrunk.lo[1, 0] == shrunk.hi[1, 0] == at[1, 0]
    assert (now < held).any()


def _holds(p, lo, hi):
    return all(a <= v <= c for v, a, c in zip(p, lo, hi))


def test_shrink_boxes_keeps_the_row_that_sets_the_scaling():
    from fiftyone_clipbranches.engine.scan import shrink_boxes

    subsets = FeatureSubsets.from_lists([[0]], 1)
    codes = np.array([[100], [85], [80], [90]], np.uint8)
    box = Boxes(np.zeros(1, np.int32), [[78]], [[100]], np.zeros(1, np.int32))
    seeds = codes[:1]
    # 85 enters at 15/22, and 15/22 * 22 is 13.99... in floating point
    shrunk = shrink_boxes(codes, subsets, box, seeds, np.array([3]))
    assert (shrunk.lo[0, 0], shrunk.hi[0, 0]) == (85, 100)
    # a box holding exactly its limit stays as it is
    same = shrink_boxes(codes, subsets, box, seeds, np.array([4]))
    assert (same.lo[0, 0], same.hi[0, 0]) == (78, 100)
    with pytest.raises(ValueError, match="limits must be >= 0"):
        shrink_boxes(codes, subsets, box, seeds, np.array([-1]))
    with pytest.raises(ValueError, match="inside its box"):
        shrink_boxes(codes, subsets, box, codes[1:2] * 0 + 120, np.array([1]))
