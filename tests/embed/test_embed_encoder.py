"""CodeEncoder and fit_code_encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embed_testdata import clustered

from fiftyone_clipbranches.embed import CodeEncoder, FixedQuantizer, fit_code_encoder

IDENTITY = {
    "name": "ViT-B-32",
    "pretrained": "x",
    "checkpoint_sha256": None,
    "embedding_dim": 128,
}


@pytest.fixture(scope="module")
def data():
    return clustered(n=400, d=128, k=10)[0]


@pytest.mark.parametrize("method", ["pca", "head"])
def test_save_load_round_trip(data, tmp_path, method):
    kwargs = {"steps": 20, "hidden": (64,)} if method == "head" else {}
    enc = fit_code_encoder(
        data, method=method, clip_identity=IDENTITY, progress=False, **kwargs
    )
    codes = enc.encode(data)
    assert codes.dtype == np.uint8 and codes.shape == (400, 32)
    enc.save(tmp_path / "enc", metadata={"index_key": "k"})
    loaded = CodeEncoder.load(tmp_path / "enc")
    np.testing.assert_array_equal(loaded.encode(data), codes)
    assert loaded.clip_identity == IDENTITY and loaded.metadata == {"index_key": "k"}
    # a single query is encoded exactly like its catalogue row, scale of input irrelevant
    np.testing.assert_array_equal(loaded.encode(3.0 * data[5]), codes[5])
    # and far from 1: float32 squares overflow (1e20) or underflow (1e-25), which
    # gave every such row one code
    scaled = np.concatenate([data[:50] * np.float32(1e20), data[50:100] * 1e-25])
    far = loaded.encode(scaled.astype(np.float32))
    assert np.unique(far, axis=0).shape[0] == np.unique(codes[:100], axis=0).shape[0]
    assert np.abs(far.astype(int) - codes[:100]).max() <= 1  # float rounding only
    # saving again replaces the directory atomically
    enc.save(tmp_path / "enc")
    assert CodeEncoder.load(tmp_path / "enc").metadata == {}


def test_fixed_quantizer_encoder(data):
    enc = fit_code_encoder(data, method="pca")
    fixed = CodeEncoder(enc.head, FixedQuantizer(32).fit())
    assert fixed.encode(data).shape == (400, 32)


def test_bad_inputs_raise(data, tmp_path):
    enc = fit_code_encoder(data, method="pca")
    with pytest.raises(ValueError, match="128 columns"):
        enc.encode(data[:, :64])
    zero = data.copy()
    zero[2] = 0
    with pytest.raises(ValueError, match=r"1 row\(s\) of zeros only \(e.g. row 2\)"):
        enc.encode(zero)
    with pytest.raises(ValueError, match="method"):
        fit_code_encoder(data, method="lsh")
    with pytest.raises(ValueError, match="takes no"):
        fit_code_encoder(data, method="pca", steps=3)
    for method in ("pca", "head"):  # vectors narrower than the codes
        with pytest.raises(ValueError, match="have 7 dims, fewer than the 32"):
            fit_code_encoder(data[:, :7], method=method)
    with pytest.raises(TypeError, match="quantizer"):
        CodeEncoder(enc.head, "uint8")
    with pytest.raises(ValueError, match="width"):
        CodeEncoder(enc.head, FixedQuantizer(16).fit())
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        CodeEncoder.load(tmp_path / "nothing")
    enc.save(tmp_path / "enc")
    manifest = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    manifest["version"] = 99
    (tmp_path / "enc" / "encoder.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="version"):
        CodeEncoder.load(tmp_path / "enc")


def test_saves_replace_encoders_only_and_threads_may_race(data, tmp_path):
    """An encoder's save replaces an encoder, never a user's directory or file;
    threads saving one path all succeed (their aside names collided, and the
    loser's leftover failed every later save of the process)."""
    import threading

    enc = fit_code_encoder(data, method="pca")
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a code encoder"):
        enc.save(mine)
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"]
    errors = []

    def save_many():
        for _ in range(10):
            try:
                enc.save(tmp_path / "enc")
            except Exception as e:  # collected: the assertion shows them
                errors.append(e)

    threads = [threading.Thread(target=save_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    enc.save(tmp_path / "enc")
    np.testing.assert_array_equal(
        CodeEncoder.load(tmp_path / "enc").encode(data[:5]), enc.encode(data[:5])
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc", "project"]
