"""CodeIndex box queries and k-NN against brute force (Boxes.contains, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fiftyone_clipbranches.engine.boxes import Boxes
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.kdtree_query import (
    merge_dense,
    merge_sorted_pairs,
    pair_keys,
)
from fiftyone_clipbranches.engine.scan import (
    contains_any,
    knn_scan,
    member_order,
    scan_boxes,
)
from fiftyone_clipbranches.engine.subsets import FeatureSubsets, make_subsets


def random_boxes(rng, subsets, n_boxes, n_members=1, codes=None):
    sids = rng.integers(0, len(subsets), n_boxes).astype(np.int32)
    width = subsets.max_len
    lo = rng.integers(-3, 240, (n_boxes, width))
    hi = lo + rng.integers(-5, 200, (n_boxes, width))
    if codes is not None:
        # centre some boxes on data points so they are not all empty in high dims
        for b in range(0, n_boxes, 2):
            dims = subsets.subset(int(sids[b]))
            x = codes[rng.integers(0, codes.shape[0]), dims].astype(np.int64)
            lo[b, : len(dims)] = x - rng.integers(0, 60, len(dims))
            hi[b, : len(dims)] = x + rng.integers(0, 60, len(dims))
    member = rng.integers(0, n_members, n_boxes).astype(np.int32)
    return Boxes(sids, lo.astype(np.int16), hi.astype(np.int16), member)


def random_subsets(rng, d):
    lists = []
    for _ in range(rng.integers(1, 6)):
        size = int(rng.integers(1, min(8, d) + 1))
        lists.append(sorted(rng.choice(d, size, replace=False).tolist()))
    return FeatureSubsets.from_lists(lists, d)


def brute_force(codes, subsets, boxes):
    inside = boxes.contains(codes, subsets)
    ids = np.flatnonzero(inside.any(axis=1))
    hit = np.array(
        [len(set(boxes.member[inside[i]].tolist())) for i in ids], dtype=np.int32
    )
    return ids, hit


def check_all(codes, subsets, boxes, index):
    ref_ids, ref_hit = brute_force(codes, subsets, boxes)
    ids, hit = index.query_boxes(boxes)
    assert ids.dtype == np.int64 and hit.dtype == np.int32
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(hit, ref_hit)
    s_ids, s_hit = scan_boxes(codes, subsets, boxes)
    np.testing.assert_array_equal(s_ids, ref_ids)
    np.testing.assert_array_equal(s_hit, ref_hit)
    any_ref = np.zeros(codes.shape[0], bool)
    any_ref[ref_ids] = True
    np.testing.assert_array_equal(contains_any(codes, subsets, boxes), any_ref)
    if len(boxes):
        assert hit.max(initial=0) <= len(np.unique(boxes.member))
    for b in range(min(len(boxes), 4)):
        s = int(boxes.subset_ids[b])
        m = int(subsets.lengths[s])
        one = index.query_box(s, boxes.lo[b, :m], boxes.hi[b, :m])
        np.testing.assert_array_equal(
            one, np.flatnonzero(boxes.contains(codes, subsets)[:, b])
        )


@st.composite
def catalogues(draw):
    n = draw(st.integers(1, 600))
    d = draw(st.integers(4, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["uniform", "narrow", "duplicates", "clusters"]))
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        codes = rng.integers(0, 256, (n, d), dtype=np.uint8)
    elif kind == "narrow":
        codes = rng.integers(100, 104, (n, d), dtype=np.uint8)
    elif kind == "duplicates":
        codes = np.repeat(rng.integers(0, 256, (1, d), dtype=np.uint8), n, axis=0)
    else:
        centres = rng.integers(30, 225, (3, d))
        codes = np.clip(
            centres[rng.integers(0, 3, n)] + rng.normal(0, 12, (n, d)), 0, 255
        )
        codes = codes.astype(np.uint8)
    leaf_size = draw(st.sampled_from([2, 3, 8, 33, 1024]))
    return codes, leaf_size, seed


@settings(max_examples=40, deadline=None)
@given(catalogues(), st.integers(0, 12), st.integers(1, 4))
def test_query_boxes_matches_brute_force(cat, n_boxes, n_members):
    codes, leaf_size, seed = cat
    rng = np.random.default_rng(seed + 1)
    d = codes.shape[1]
    subsets = random_subsets(rng, d)
    index = CodeIndex.build(codes, subsets, leaf_size=leaf_size)
    boxes = random_boxes(rng, subsets, n_boxes, n_members, codes)
    check_all(codes, subsets, boxes, index)


def test_default_subsets_targeted_boxes():
    rng = np.random.default_rng(7)
    codes = rng.integers(20, 230, (3000, 32), dtype=np.uint8)
    subsets = make_subsets(32)
    index = CodeIndex.build(codes, subsets, leaf_size=16)
    width = subsets.max_len
    full = Boxes(
        np.arange(len(subsets), dtype=np.int32),
        np.zeros((len(subsets), width), np.int16),
        np.full((len(subsets), width), 255, np.int16),
        np.arange(len(subsets), dtype=np.int32) % 3,
    )
    ids, hit = index.query_boxes(full)
    np.testing.assert_array_equal(ids, np.arange(3000))
    np.testing.assert_array_equal(hit, np.full(3000, 3))
    empty = Boxes(
        np.zeros(2, np.int32),
        np.array([[5] * width, [0] * width], np.int16),
        np.array([[4] * width, [-1] * width], np.int16),
        np.zeros(2, np.int32),
    )
    ids, hit = index.query_boxes(empty)
    assert ids.size == 0 and hit.size == 0
    assert index.query_boxes(Boxes.empty(width))[0].size == 0
    # many boxes of few members, dense merge path (many hits) and sparse path
    for grow, spread in ((120, 500), (0, 10)):
        boxes = random_boxes(rng, subsets, 60, 25, codes)
        lo = boxes.lo.astype(np.int64) - grow
        hi = np.minimum(boxes.hi.astype(np.int64) + grow, lo + spread)
        boxes = Boxes(
            boxes.subset_ids, lo.astype(np.int16), hi.astype(np.int16), boxes.member
        )
        hits = int(index._run(boxes)[2].sum())
        assert (4 * hits >= len(codes)) == (grow > 0)  # the dense merge's case
        check_all(codes, subsets, boxes, index)


def test_single_row_and_tiny_catalogues():
    for n in (1, 2, 5):
        codes = np.arange(n * 8, dtype=np.uint8).reshape(n, 8)
        subsets = FeatureSubsets.from_lists([[0, 1], [2, 3, 4, 5, 6, 7]], 8)
        index = CodeIndex.build(codes, subsets, leaf_size=2)
        assert len(index) == n
        ids = index.query_box(0, [0, 0], [255, 255])
        np.testing.assert_array_equal(ids, np.arange(n))
        np.testing.assert_array_equal(index.query_box(0, [1, 0], [0, 255]), [])
        k_ids, k_d = index.knn(codes[0], 10)
        assert len(k_ids) == n and k_ids[0] == 0 and k_d[0] == 0


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 400),
    st.integers(1, 40),
    st.integers(1, 500),
    st.integers(0, 2**31 - 1),
    st.booleans(),
)
def test_knn_matches_brute_force(n, d, k, seed, few_values):
    rng = np.random.default_rng(seed)
    high = 3 if few_values else 256
    codes = rng.integers(0, high, (n, d), dtype=np.uint8)
    query = rng.integers(0, high, d, dtype=np.uint8)
    dist = ((codes.astype(np.int64) - query.astype(np.int64)) ** 2).sum(axis=1)
    order = np.lexsort((np.arange(n), dist))[:k]
    ids, sq = knn_scan(codes, query, k)
    assert ids.dtype == np.int64 and sq.dtype == np.int64
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(sq, dist[order])


def test_knn_through_index_and_large_chunks():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 4, (200_000, 8), dtype=np.uint8)  # many chunks, many ties
    subsets = FeatureSubsets.from_lists([[0, 1, 2, 3], [4, 5, 6, 7]], 8)
    index = CodeIndex.build(codes, subsets, leaf_size=512)
    query = codes[12345]
    dist = ((codes.astype(np.int64) - query) ** 2).sum(axis=1)
    order = np.lexsort((np.arange(len(codes)), dist))[:300]
    ids, sq = index.knn(query, 300)
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(sq, dist[order])


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 400),
    st.integers(1, 500),
    st.floats(0.0, 1.0),
    st.integers(0, 2**31 - 1),
)
def test_knn_among_allowed_rows_matches_brute_force(n, k, share, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, (n, 6), dtype=np.uint8)  # many ties
    query = rng.integers(0, 3, 6, dtype=np.uint8)
    allowed = rng.random(n) < share
    dist = ((codes.astype(np.int64) - query.astype(np.int64)) ** 2).sum(axis=1)
    rows = np.flatnonzero(allowed)
    order = rows[np.lexsort((rows, dist[rows]))][:k]
    ids, sq = knn_scan(codes, query, k, allowed)
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(sq, dist[order])


def test_knn_among_allowed_rows_in_parallel_and_its_refusals():
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 4, (300_000, 8), dtype=np.uint8)  # the threaded path
    index = CodeIndex.build(codes, leaf_size=512)
    allowed = rng.random(len(codes)) < 0.3
    query = codes[7]
    dist = ((codes.astype(np.int64) - query) ** 2).sum(axis=1)
    rows = np.flatnonzero(allowed)
    order = rows[np.lexsort((rows, dist[rows]))][:200]
    ids, sq = index.knn(query, 200, allowed)
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(sq, dist[order])
    none = np.zeros(len(codes), bool)
    assert [len(a) for a in index.knn(query, 5, none)] == [0, 0]
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        index.knn(query, 5, allowed[:10])
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        index.knn(query, 5, allowed.astype(np.uint8))


def test_index_sizes():
    codes = np.random.default_rng(0).integers(0, 256, (5000, 32), dtype=np.uint8)
    index = CodeIndex.build(codes, leaf_size=256)
    parts = index.nbytes_by_part()
    assert parts["codes"] == 5000 * 32
    assert parts["values"] == 5000 * int(index.subsets.lengths.sum())
    assert parts["ids"] == 5000 * 4 * len(index.subsets)
    assert index.nbytes == sum(parts.values())
    assert index.bytes_per_point == pytest.approx(index.nbytes / 5000)


def test_parallel_fill_path_matches(monkeypatch):
    import fiftyone_clipbranches.engine.index as index_module

    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, (2000, 12), dtype=np.uint8)
    subsets = random_subsets(rng, 12)
    index = CodeIndex.build(codes, subsets, leaf_size=8)
    boxes = random_boxes(rng, subsets, 20, 3, codes)
    serial = index.query_boxes(boxes)
    monkeypatch.setattr(index_module, "PARALLEL_MIN_ROWS", 0)
    parallel = index.query_boxes(boxes)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    check_all(codes, subsets, boxes, index)


@pytest.mark.parametrize("n_members", [1, 7, 254, 255, 300, 70_000])
@pytest.mark.parametrize("parallel", [False, True])
def test_dense_merge_equals_sorted_pairs(n_members, parallel):
    """Both merges of box hits give the same rows and distinct-member counts, for
    every width of the packed per-row state (uint16 / uint32 / uint64) and with the
    rows split between threads; boxes of one member overlap, so repeats occur."""
    rng = np.random.default_rng(n_members)
    n_rows, n_boxes = 5_000, 400
    member = rng.integers(0, n_members, n_boxes).astype(np.int64)
    member[0] = n_members - 1  # the widest tag is used
    counts = rng.integers(0, 300, n_boxes).astype(np.int64)
    offsets = np.zeros(n_boxes + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    hits = np.concatenate(
        [np.sort(rng.choice(n_rows, c, replace=False)) for c in counts]
    ).astype(np.uint32)
    order, _ = member_order(member)
    keys = pair_keys(hits, offsets, counts, member, n_members)
    keys.sort()
    ids, hit = merge_dense(hits, offsets, counts, order, member, n_rows, parallel)
    want_ids, want_hit = merge_sorted_pairs(keys, n_members)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(hit, want_hit)
    assert (hit.max() > 1) == (n_members > 1)
    assert ids.dtype == np.int64 and hit.dtype == np.int32
