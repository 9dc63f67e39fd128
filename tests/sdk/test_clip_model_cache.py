"""CLIP models are loaded once per process, however many threads ask at once."""

from __future__ import annotations

import threading

import pytest
from user_path import TINY_CLIP_NAME

from fiftyone_clipbranches.sdk import embeddings


def test_concurrent_first_uses_share_one_model(tiny_clip_checkpoint):
    key = (TINY_CLIP_NAME, str(tiny_clip_checkpoint))
    with embeddings._models_lock:
        embeddings._models.pop(key, None)
    start = threading.Barrier(4)
    got = []

    def use():
        start.wait()
        got.append(embeddings.get_clip_model(*key))

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(got) == 4
    assert all(model is got[0] for model in got)
    assert embeddings.get_clip_model(*key) is got[0]
    assert not embeddings._loading


def test_a_failed_load_leaves_no_lock_behind(tmp_path):
    """A load that raised (offline weights, say) kept its lock in ``_loading``."""
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    key = ("ViT-B-32", str(broken))
    for _ in range(2):
        with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
            embeddings.get_clip_model(*key)
    assert key not in embeddings._loading
