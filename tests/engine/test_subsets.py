"""make_subsets / FeatureSubsets: determinism, coverage, validation, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.subsets import (
    DEFAULT_SUBSET_SIZES,
    FeatureSubsets,
    make_subsets,
)


def test_default_subsets_cover_every_dim_and_are_deterministic():
    a = make_subsets()
    assert a == make_subsets(32, DEFAULT_SUBSET_SIZES, seed=0)
    assert len(a) == sum(DEFAULT_SUBSET_SIZES.values())
    lists = a.as_lists()
    assert set().union(*map(set, lists)) == set(range(32))
    assert len({tuple(s) for s in lists}) == len(lists)
    assert all(s == sorted(set(s)) for s in lists)
    assert sorted(map(len, lists)) == sorted(
        size for size, count in DEFAULT_SUBSET_SIZES.items() for _ in range(count)
    )
    assert make_subsets(seed=1) != a


@pytest.mark.parametrize(
    "n_dims, sizes", [(8, {2: 4}), (40, {8: 5, 3: 2}), (1, {1: 1})]
)
def test_other_dimensionalities(n_dims, sizes):
    s = make_subsets(n_dims, sizes, seed=3)
    assert set(np.concatenate([s.subset(i) for i in range(len(s))])) == set(
        range(n_dims)
    )


def test_round_trip_and_padding():
    s = make_subsets(32)
    assert FeatureSubsets.from_dict(s.to_dict()) == s
    assert hash(FeatureSubsets.from_dict(s.to_dict())) == hash(s)
    assert s.dims.dtype == np.int32 and s.lengths.dtype == np.int32
    for i in range(len(s)):
        assert np.all(s.dims[i, s.lengths[i] :] == -1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_dims": 32, "sizes": {4: 2}}, "covered"),
        ({"n_dims": 4, "sizes": {5: 1}}, "subset size"),
        ({"n_dims": 4, "sizes": {4: 2}}, "distinct"),
        ({"n_dims": 0}, "n_dims"),
        ({"n_dims": 4, "sizes": {}}, "at least one"),
    ],
)
def test_make_subsets_refuses(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_subsets(**kwargs)


def test_feature_subsets_validation():
    with pytest.raises(ValueError, match="increasing"):
        FeatureSubsets.from_lists([[2, 1]], 4)
    with pytest.raises(ValueError, match="outside"):
        FeatureSubsets.from_lists([[0, 4]], 4)
    with pytest.raises(ValueError, match="at least one"):
        FeatureSubsets.from_lists([], 4)
    with pytest.raises(TypeError):
        make_subsets(4.0)


def test_default_subsets_cover_codes_of_any_width():
    """The default draws 8 subsets of 6 dims, covering 6 to 48 dims; narrower and
    wider codes (an encoder's n_dims) get subsets of their own, every dim covered
    (64-d codes were refused unless subsets were given)."""
    from fiftyone_clipbranches.engine.index import CodeIndex

    assert make_subsets(32) == make_subsets(32, {6: 8})
    for n_dims, n_subsets in ((1, 1), (4, 1), (6, 1), (7, 7), (48, 8), (64, 11)):
        subsets = make_subsets(n_dims)
        covered = {int(d) for d in subsets.dims.ravel() if d >= 0}
        assert (len(subsets), covered) == (n_subsets, set(range(n_dims)))
    codes = np.random.default_rng(0).integers(0, 256, (500, 64), dtype=np.uint8)
    index = CodeIndex.build(codes)
    assert len(index.subsets) == 11 and index.knn(codes[7], 1)[0].tolist() == [7]
