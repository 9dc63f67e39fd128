"""Fixtures for the embed tests: a tiny open_clip architecture and real image files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from user_path import TINY_CLIP_CONFIG

CIFAR = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-test-2000"
)
TINY_NAME = "clipbranches-tiny-test"
#: The user-path tiny CLIP (``tests/user_path.py``) with 16-d embeddings.
TINY_CONFIG = {**TINY_CLIP_CONFIG, "embed_dim": 16}


@pytest.fixture(scope="session")
def tiny_name(tmp_path_factory) -> str:
    """Register a tiny CLIP architecture with open_clip and return its name."""
    import open_clip

    if TINY_NAME not in open_clip.list_models():
        path = tmp_path_factory.mktemp("open_clip_cfg") / f"{TINY_NAME}.json"
        path.write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(path)
    return TINY_NAME


@pytest.fixture(scope="session")
def tiny_model(tiny_name):
    from fiftyone_clipbranches.embed import load_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_clip(tiny_name, pretrained=None, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def cifar_paths() -> list[str]:
    if not CIFAR.is_dir():
        pytest.skip(f"shared evaluation images not found at {CIFAR}")
    classes = sorted(p for p in CIFAR.iterdir() if p.is_dir())
    return [str(sorted(c.glob("*.jpg"))[0]) for c in classes[:6]]
