"""The first rows of a decision-branches ranking from its deepest rows alone
(engine.first_rows): shrunk boxes hold every code deep enough, and the first rows
equal the head of the full ranking."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from shard_cases import catalogue, single_index

from fiftyone_clipbranches.engine import branches_kernels
from fiftyone_clipbranches.engine.boxes import Boxes
from fiftyone_clipbranches.engine.first_rows import (
    answers_by_depth,
    first_rows,
    shrunk_boxes,
)
from fiftyone_clipbranches.engine.scan import scan_boxes
from fiftyone_clipbranches.engine.search import apply_model
from fiftyone_clipbranches.engine.subsets import FeatureSubsets
from fiftyone_clipbranches.engine.training_set import make_training_set
from fiftyone_clipbranches.sdk.models import fit_model, make_model


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(-40, 250),
    st.integers(0, 300),
    st.floats(0.0, 1.2),
    st.integers(0, 10**6),
)
def test_shrunk_boxes_hold_every_code_deep_enough(n_dims, lo0, width, depth, seed):
    """Box bounds may reach past the codes' range (end extension); the box's depth
    of a code is the scoring kernel's own (purity 0, margin 1)."""
    rng = np.random.default_rng(seed)
    lo = np.clip(lo0 + rng.integers(-5, 6, n_dims), -40, 255)
    hi = lo + rng.integers(0, width + 1, n_dims)
    subsets = FeatureSubsets.from_lists([list(range(n_dims))], n_dims)
    boxes = Boxes(np.zeros(1, np.int32), lo[None], hi[None], np.zeros(1, np.int32))
    X = rng.integers(0, 256, (3000, n_dims)).astype(np.uint8)
    X[:1000] = np.clip(rng.integers(lo, hi + 1, (1000, n_dims)), 0, 255)
    _, deep = branches_kernels.score_points(
        X, subsets.dims, subsets.lengths, boxes.subset_ids, boxes.lo, boxes.hi,
        np.array([0, 1], np.int64), np.zeros(1), 1.0, False,
    )  # fmt: skip
    shrunk = shrunk_boxes(boxes, subsets.lengths[boxes.subset_ids], np.array([depth]))
    if depth > 1.0 + 1e-6:
        assert len(shrunk) == 0 and not np.any(deep >= depth)
        return
    inside = np.zeros(len(X), bool)
    inside[scan_boxes(X, subsets, shrunk)[0]] = True
    assert np.all(inside[deep >= depth])
    # and it stays within the box
    assert np.all(deep[inside] > 0)


def fitted_branches(codes, label, cls, seed, subsets):
    pos = np.flatnonzero(label == cls)[seed : seed + 8]
    train = make_training_set(
        codes, pos, (), n_random_negatives=300, seed=seed, neighbours_per_positive=2
    )
    model = make_model("branches", random_state=seed)
    fit_model(
        model,
        train.X,
        train.y,
        train.sample_weight,
        subsets,
        train.unlabelled,
        train.neighbours,
    )
    return model


def test_first_rows_are_the_head_of_the_ranking():
    codes, label = catalogue(n_rows=6000, seed=4)
    index = single_index(codes)
    answered = 0
    for cls in range(5):
        for seed in (0, 9):
            model = fitted_branches(codes, label, cls, seed, index.subsets)
            assert answers_by_depth(model)
            want = apply_model(model, index)
            for n in (1, 10, 60, 400):
                got = first_rows(model, index, n)
                if got is None:
                    continue
                answered += 1
                np.testing.assert_array_equal(got[0], want.ids[:n])
                np.testing.assert_array_equal(got[1], want.scores[:n])
    assert answered >= 20  # the depths answer most first pages


def test_other_models_rank_every_row():
    codes, label = catalogue()
    index = single_index(codes)
    pos = np.flatnonzero(label == 1)[:8]
    train = make_training_set(codes, pos, (), n_random_negatives=300, seed=1)
    one_member = {"n_estimators": 1, "arbiter_margin": None}
    for name, params in (
        ("ensemble", {}),
        ("cascade", {}),
        ("linear", {}),
        ("ensemble", one_member),  # one member: still another acceptance and score
        ("cascade", one_member),
    ):
        model = make_model(name, random_state=1, **params)
        fit_model(model, train.X, train.y, train.sample_weight, index.subsets)
        assert not answers_by_depth(model)
        assert first_rows(model, index, 10) is None
