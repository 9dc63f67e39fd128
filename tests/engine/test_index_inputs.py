"""Bad input to as_codes, CodeIndex and the scans gets clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine.boxes import Boxes
from fiftyone_clipbranches.engine.codes import as_codes, as_query
from fiftyone_clipbranches.engine.errors import CodesError
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.scan import contains_any, knn_scan, scan_boxes
from fiftyone_clipbranches.engine.subsets import FeatureSubsets, make_subsets


def test_as_codes_accepts_and_converts():
    codes = np.zeros((3, 4), np.uint8)
    assert as_codes(codes) is codes
    fortran = np.asfortranarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    out = as_codes(fortran)
    assert out.flags.c_contiguous and np.array_equal(out, fortran)
    ints = as_codes(np.array([[0, 255]], dtype=np.int64))
    assert ints.dtype == np.uint8 and ints.tolist() == [[0, 255]]
    assert as_codes(np.zeros((0, 4), np.uint8), allow_empty=True).shape == (0, 4)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 4), np.float32), "quantise"),
        (np.full((3, 4), np.nan), "uint8"),
        (np.array([[0, 256]]), "outside"),
        (np.array([[-1, 3]]), "outside"),
        (np.zeros((3, 4), bool), "dtype"),
        (np.zeros(4, np.uint8), "2-d"),
        (np.zeros((2, 3, 4), np.uint8), "2-d"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.zeros((3, 0), np.uint8), "at least one dimension"),
    ],
)
def test_as_codes_refuses(bad, match):
    with pytest.raises(CodesError, match=match):
        as_codes(bad)
    assert issubclass(CodesError, ValueError)


def test_as_query_and_dims():
    with pytest.raises(CodesError, match="D=4"):
        as_codes(np.zeros((2, 4), np.uint8), n_dims=5)
    with pytest.raises(CodesError, match="dims"):
        as_query(np.zeros(3, np.uint8), 4)
    with pytest.raises(CodesError, match="one code"):
        as_query(np.zeros((2, 4), np.uint8), 4)


@pytest.fixture(scope="module")
def index():
    codes = np.random.default_rng(0).integers(0, 256, (500, 16), dtype=np.uint8)
    return CodeIndex.build(codes, make_subsets(16, sizes={4: 4}), leaf_size=16)


def test_build_refuses_bad_arguments(index):
    codes = np.asarray(index.codes)
    with pytest.raises(ValueError, match="leaf_size"):
        CodeIndex.build(codes, leaf_size=1)
    with pytest.raises(TypeError, match="leaf_size"):
        CodeIndex.build(codes, leaf_size=8.0)
    with pytest.raises(ValueError, match="D=32"):
        CodeIndex.build(codes, make_subsets(32))
    with pytest.raises(TypeError, match="FeatureSubsets"):
        CodeIndex.build(codes, [[0, 1]])
    with pytest.raises(CodesError, match="quantise"):
        CodeIndex.build(codes.astype(np.float32))
    with pytest.raises(CodesError, match="empty"):
        CodeIndex.build(codes[:0])


def test_queries_refuse_bad_arguments(index):
    with pytest.raises(ValueError, match="out of range"):
        index.query_box(4, [0] * 4, [1] * 4)
    with pytest.raises(TypeError, match="subset_id"):
        index.query_box("0", [0] * 4, [1] * 4)
    with pytest.raises(ValueError, match="shape"):
        index.query_box(0, [0] * 3, [1] * 4)
    with pytest.raises(TypeError, match="integers"):
        index.query_box(0, [0.5] * 4, [1] * 4)
    bad = Boxes(
        np.array([7], np.int32),
        np.zeros((1, 4), np.int16),
        np.ones((1, 4), np.int16),
        np.zeros(1, np.int32),
    )
    with pytest.raises(ValueError, match="feature subset"):
        index.query_boxes(bad)
    with pytest.raises(ValueError, match="feature subset"):
        scan_boxes(index.codes, index.subsets, bad)
    with pytest.raises(TypeError, match="Boxes"):
        index.query_boxes([[0, 1]])
    with pytest.raises(TypeError, match="FeatureSubsets"):
        contains_any(index.codes, [[0]], Boxes.empty(4))
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.knn(index.codes[0], 0)
    with pytest.raises(TypeError, match="k must be an int"):
        knn_scan(index.codes, index.codes[0], 2.0)
    with pytest.raises(CodesError, match="dims"):
        index.knn(np.zeros(5, np.uint8), 3)
    with pytest.raises(CodesError, match="expected 16"):
        scan_boxes(np.zeros((3, 8), np.uint8), index.subsets, Boxes.empty(4))


def test_out_of_range_bounds_are_clipped_not_wrapped(index):
    codes = np.asarray(index.codes)
    ids = index.query_box(0, np.array([-1000] * 4), np.array([1000] * 4))
    np.testing.assert_array_equal(ids, np.arange(len(codes)))
    narrow = FeatureSubsets.from_lists([[0]], 16)
    small = CodeIndex.build(codes, narrow, leaf_size=4)
    assert small.query_box(0, [300], [400]).size == 0
