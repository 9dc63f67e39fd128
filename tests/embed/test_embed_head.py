"""Training and persisting the code head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from embed_testdata import clustered, overlap, top_k

from fiftyone_clipbranches.embed import CodeHead, train_head
from fiftyone_clipbranches.embed.losses import koleo

SMALL = {"hidden": (128,), "steps": 120, "batch_size": 256, "progress": False}


@pytest.fixture(scope="module")
def data():
    return clustered(n=600, d=128, k=20)


@pytest.fixture(scope="module")
def head(data):
    x, _ = data
    return train_head(x, **SMALL)


def test_training_reduces_loss_and_outputs_unit_vectors(head, data):
    info = head.training_info
    assert info["loss_last"] < info["loss_first"]
    z = head.project(data[0])
    assert z.shape == (600, 32) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_head_keeps_neighbourhoods_better_than_random_projection(head, data):
    x, _ = data
    truth = top_k(x, 10)
    rng = np.random.default_rng(0)
    random_proj = x @ rng.standard_normal((x.shape[1], 32)).astype(np.float32)
    kept_head = overlap(top_k(head.project(x), 10), truth)
    kept_random = overlap(top_k(random_proj, 10), truth)
    assert kept_head > kept_random + 0.1


def test_text_vocabulary_and_caption_pairs_are_used(data):
    x, labels = data
    text = x[:40] + 0.05
    pairs = (x[:100], x[100:200])
    h = train_head(x, text_emb=text, captions_pairs=pairs, **dict(SMALL, steps=20))
    assert h.training_info["with_text"] and h.training_info["with_captions"]


def test_training_is_deterministic(data, head):
    again = train_head(data[0], **SMALL)
    np.testing.assert_array_equal(again.project(data[0]), head.project(data[0]))


def test_save_load_round_trip(head, data, tmp_path):
    path = tmp_path / "head.pt"
    head.save(path, metadata={"note": "test"})
    loaded = CodeHead.load(path)
    np.testing.assert_array_equal(loaded.project(data[0]), head.project(data[0]))
    assert loaded.training_info["note"] == "test"
    assert loaded.training_info["steps"] == SMALL["steps"]
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable code head"):
        CodeHead.load(tmp_path / "junk.pt")


def test_koleo_prefers_spread_points():
    torch.manual_seed(0)
    spread = torch.nn.functional.normalize(torch.randn(64, 8), dim=1)
    bunched = torch.nn.functional.normalize(
        torch.ones(64, 8) + 0.01 * torch.randn(64, 8), dim=1
    )
    assert koleo(spread) < koleo(bunched)


def test_bad_inputs_raise(data):
    x, _ = data
    with pytest.raises(ValueError, match="at least"):
        train_head(x[:10], **SMALL)
    with pytest.raises(ValueError, match="2-d"):
        train_head(x[0], **SMALL)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        train_head(bad, **SMALL)
    with pytest.raises(ValueError, match="128 columns"):
        train_head(x, text_emb=x[:, :64], **SMALL)
    with pytest.raises(ValueError, match="steps or epochs"):
        train_head(x, epochs=2, **SMALL)
    with pytest.raises(ValueError, match="hidden"):
        CodeHead(128, 32, hidden=(0,))
