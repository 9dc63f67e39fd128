"""apply_model: index == scan == brute-force predict/decision_function, for every model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fiftyone_clipbranches.engine import baselines
from fiftyone_clipbranches.engine.baselines import (
    ForestModel,
    NearestNeighbours,
    Rocchio,
    TreeModel,
)
from fiftyone_clipbranches.engine.branches import DecisionBranches
from fiftyone_clipbranches.engine.ensemble import DecisionBranchesEnsemble
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.search import RADIX_MIN_ROWS, Ranking, apply_model
from fiftyone_clipbranches.engine.sort_kernels import (
    radix_descending_order,
    radix_sorted,
)
from fiftyone_clipbranches.engine.subsets import FeatureSubsets, make_subsets
from fiftyone_clipbranches.engine.training_set import make_training_set


@pytest.fixture(scope="module")
def catalogue():
    rng = np.random.default_rng(0)
    centres = rng.integers(50, 206, (5, 32))
    label = rng.integers(0, 5, 4000)
    codes = np.clip(centres[label] + rng.normal(0, 12, (4000, 32)), 0, 255)
    codes = codes.astype(np.uint8)
    index = CodeIndex.build(codes, make_subsets(32), leaf_size=64)
    pos = np.flatnonzero(label == 1)[:25]
    neg = np.flatnonzero(label == 3)[:5]
    ts = make_training_set(codes, pos, neg, n_random_negatives=300, seed=0)
    return codes, index, ts


def brute_force_ranking(model, codes):
    ids = np.flatnonzero(model.predict(codes))
    scores = model.decision_function(codes)[ids]
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


MODELS = {
    "branches": lambda: DecisionBranches(random_state=1),
    "ensemble": lambda: DecisionBranchesEnsemble(n_estimators=7, random_state=1),
    "tree": lambda: TreeModel(),
    "forest": lambda: ForestModel(n_estimators=5),
    "nn": lambda: NearestNeighbours(k=20),
    "rocchio": lambda: Rocchio(k=150),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_apply_model_is_exact(catalogue, name):
    codes, index, ts = catalogue
    model = MODELS[name]()
    kwargs = {"subsets": index.subsets} if name in ("branches", "ensemble") else {}
    model.fit(ts.X, ts.y, ts.sample_weight, **kwargs)
    ranking = apply_model(model, index)
    ids, scores = brute_force_ranking(model, codes)
    assert ranking.ids.dtype == np.int64 and ranking.scores.dtype == np.float64
    assert len(ranking) > 0
    np.testing.assert_array_equal(ranking.ids, ids)
    np.testing.assert_allclose(ranking.scores, scores, rtol=1e-12)
    scan = apply_model(model, index, use_index=False)
    np.testing.assert_array_equal(scan.ids, ranking.ids)
    np.testing.assert_array_equal(scan.scores, ranking.scores)


def test_chunked_scan_equals_one_pass(catalogue, monkeypatch):
    codes, index, ts = catalogue
    model = TreeModel().fit(ts.X, ts.y, ts.sample_weight)
    whole = apply_model(model, index)
    monkeypatch.setattr(baselines, "CHUNK_ROWS", 333)
    chunked = apply_model(model, index, chunk_rows=1000)
    np.testing.assert_array_equal(whole.ids, chunked.ids)
    np.testing.assert_array_equal(whole.scores, chunked.scores)


def test_ensemble_keeps_only_voted_rows(catalogue):
    codes, index, ts = catalogue
    model = DecisionBranchesEnsemble(n_estimators=5, vote_threshold=0.5, random_state=2)
    model.fit(ts.X, ts.y, ts.sample_weight, subsets=index.subsets)
    ranking = apply_model(model, index)
    votes = model.votes(codes)
    np.testing.assert_array_equal(np.sort(ranking.ids), np.flatnonzero(votes >= 3))
    assert np.any((votes > 0) & (votes < 3))


def test_ranking_order_and_top(catalogue):
    _, index, ts = catalogue
    model = DecisionBranches().fit(ts.X, ts.y, ts.sample_weight, subsets=index.subsets)
    r = apply_model(model, index)
    key = list(zip((-r.scores).tolist(), r.ids.tolist()))
    assert key == sorted(key)
    top = r.top(10)
    np.testing.assert_array_equal(top.ids, r.ids[:10])
    assert len(r.top(10**9)) == len(r)
    with pytest.raises(ValueError, match="k must be"):
        r.top(-1)


def test_ranking_from_unsorted_breaks_ties_by_id():
    r = Ranking.from_unsorted([5, 2, 9, 1], [0.5, 0.9, 0.5, 0.5])
    np.testing.assert_array_equal(r.ids, [2, 1, 5, 9])


def test_subsets_must_match_the_index(catalogue):
    _, index, ts = catalogue
    other = FeatureSubsets.from_lists([[0, 1, 2], [3, 4]], 32)
    model = DecisionBranches().fit(ts.X, ts.y, subsets=other)
    with pytest.raises(ValueError, match="subsets=index.subsets"):
        apply_model(model, index)


def test_unfitted_model_is_refused(catalogue):
    with pytest.raises(RuntimeError, match="not fitted"):
        apply_model(DecisionBranches(), catalogue[1])


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31), levels=st.integers(2, 12), n=st.integers(3, 300))
def test_exact_on_tiny_catalogues_with_duplicates(seed, levels, n):
    rng = np.random.default_rng(seed)
    codes = (rng.integers(0, levels, (n, 8)) * (255 // (levels - 1))).astype(np.uint8)
    sub = FeatureSubsets.from_lists([[0, 1, 2], [3, 4], [5, 6, 7], [1, 6]], 8)
    index = CodeIndex.build(codes, sub, leaf_size=4)
    y = (rng.random(n) < 0.3).astype(np.int8)
    y[rng.integers(n)] = 1
    for model in (
        DecisionBranches(max_candidates=2, random_state=seed),
        DecisionBranchesEnsemble(n_estimators=3, max_candidates=2, random_state=seed),
    ):
        model.fit(codes, y, subsets=sub)
        ids, scores = brute_force_ranking(model, codes)
        for use_index in (True, False):
            r = apply_model(model, index, use_index=use_index)
            np.testing.assert_array_equal(r.ids, ids)
            np.testing.assert_allclose(r.scores, scores, rtol=1e-12)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.8])
def test_ensemble_apply_is_exact_at_every_threshold(catalogue, threshold):
    codes, index, ts = catalogue
    model = DecisionBranchesEnsemble(
        n_estimators=6, vote_threshold=threshold, end_extension="open", random_state=4
    )
    model.fit(ts.X, ts.y, ts.sample_weight, subsets=index.subsets)
    ids, scores = brute_force_ranking(model, codes)
    for use_index in (True, False):
        ranking = apply_model(model, index, use_index=use_index)
        np.testing.assert_array_equal(ranking.ids, ids)
        np.testing.assert_allclose(ranking.scores, scores, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.sampled_from([-np.inf, -2.5, -1e-300, -0.0, 0.0, 5e-324, 0.25, 7.0, np.inf])
        | st.floats(allow_nan=False, width=64),
        max_size=300,
    )
)
def test_radix_order_equals_numpy_stable_sort(values):
    """The radix kernel ranks exactly like numpy's stable sort of -scores: extremes,
    subnormals, signed zeros (equal) and ties in input order included."""
    scores = np.asarray(values, dtype=np.float64)
    want = np.argsort(-scores, kind="stable")
    np.testing.assert_array_equal(radix_descending_order(scores), want)


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(0, 2**40), max_size=300),
    extra_bits=st.integers(0, 22),
)
def test_radix_sorted_is_np_sort(keys, extra_bits):
    """The pair keys' sort (``index.query_boxes``): any bound from the largest
    key up (one to three passes), repeats and an empty array included."""
    keys = np.asarray(keys, dtype=np.int64)
    top = int(keys.max()) if keys.size else 0
    np.testing.assert_array_equal(
        radix_sorted(keys, top << extra_bits | top), np.sort(keys)
    )


def test_ranking_uses_the_radix_path_above_its_threshold():
    rng = np.random.default_rng(3)
    n = RADIX_MIN_ROWS * 3
    ids = np.sort(rng.choice(10 * n, n, replace=False))
    scores = rng.integers(0, 40, n) / 8.0  # many ties
    scores[:5] = -0.0
    got = Ranking.from_unsorted(ids, scores)
    order = np.lexsort((ids, -scores))
    np.testing.assert_array_equal(got.ids, ids[order])
    np.testing.assert_array_equal(got.scores, scores[order])
    shuffled = rng.permutation(n)  # ids not ascending: the lexsort path
    again = Ranking.from_unsorted(ids[shuffled], scores[shuffled])
    np.testing.assert_array_equal(again.ids, got.ids)
