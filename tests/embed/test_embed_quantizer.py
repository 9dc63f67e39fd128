"""Quantizer, FixedQuantizer and the PCA baseline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fiftyone_clipbranches.embed import (
    FixedQuantizer,
    PCACodes,
    Quantizer,
    quantizer_from_dict,
)


def _unit(n=300, d=32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("scale", ["global", "per_dim"])
def test_round_trip_and_query_identical_to_catalogue(scale):
    x = _unit()
    q = Quantizer(scale=scale).fit(x)
    codes = q.transform(x)
    assert (
        codes.dtype == np.uint8 and codes.shape == x.shape and codes.flags.c_contiguous
    )
    assert codes.min() == 0 and codes.max() == 255
    again = quantizer_from_dict(q.to_dict())
    np.testing.assert_array_equal(again.transform(x), codes)
    # a query is encoded exactly like the same vector in the catalogue
    for i in (0, 17, 299):
        np.testing.assert_array_equal(q.transform(x[i : i + 1])[0], codes[i])
    if scale == "global":
        assert np.unique(q.lo_).size == 1 and np.unique(q.hi_).size == 1


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1, 1, width=32), min_size=32, max_size=32))
def test_bin_centres_within_half_a_bin(values):
    q = Quantizer(clip_quantile=0.0).fit(_unit(50))
    v = np.clip(np.asarray([values], dtype=np.float32), q.lo_, q.hi_)
    err = np.abs(q.inverse_transform(q.transform(v)) - v)
    assert np.all(err <= (q.hi_ - q.lo_) / 256 * 0.5 + 1e-5)


def test_out_of_range_values_clip_and_order_is_kept():
    q = Quantizer().fit(_unit())
    v = np.linspace(-3, 3, 200, dtype=np.float32)[:, None].repeat(32, 1)
    codes = q.transform(v)
    assert codes[0].max() == 0 and codes[-1].min() == 255
    assert np.all(np.diff(codes[:, 0].astype(int)) >= 0)


def test_fixed_quantizer_reference_map():
    q = FixedQuantizer(4).fit()
    v = np.array([[-1.0, 0.0, 1.0, 0.5], [-2.0, 2.0, -0.004, 0.004]], dtype=np.float32)
    expected = np.floor(np.clip(127.5 * v + 128, 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(q.transform(v), expected)
    assert q.transform(v)[0].tolist() == [0, 128, 255, 191]
    np.testing.assert_array_equal(
        quantizer_from_dict(q.to_dict()).transform(v), expected
    )


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="not fitted"):
        Quantizer().transform(_unit())
    with pytest.raises(ValueError, match="scale"):
        Quantizer(scale="log").fit(_unit())
    with pytest.raises(ValueError, match="clip_quantile"):
        Quantizer(clip_quantile=0.7).fit(_unit())
    q = Quantizer().fit(_unit())
    with pytest.raises(ValueError, match="32 columns"):
        q.transform(_unit(d=16))
    with pytest.raises(ValueError, match="2-d"):
        q.transform(_unit()[0])
    bad = _unit()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        q.transform(bad)
    with pytest.raises(ValueError, match="version"):
        Quantizer.from_dict(dict(q.to_dict(), version=99))
    with pytest.raises(ValueError, match="unknown quantizer"):
        quantizer_from_dict({"kind": "lattice"})


def test_pca_codes_keep_the_principal_structure():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 64)).astype(np.float32)
    x[:, :8] *= 10  # eight dominant directions
    pca = PCACodes(n_components=8).fit(x)
    z = pca.project(x)
    assert z.shape == (400, 8) and z.dtype == np.float32
    kept = np.var(z, axis=0).sum() / np.var(x, axis=0).sum()
    assert kept > 0.9
    codes = pca.transform(x)
    assert codes.dtype == np.uint8 and codes.shape == (400, 8)
    with pytest.raises(ValueError, match="more than 8"):
        PCACodes(8).fit(x[:5])
