"""The demo CLIP model: open_clip registration, checkpoint round trip, cache, training."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch

from fiftyone_clipbranches.demo import model as demo_model
from fiftyone_clipbranches.demo import train as demo_train
from fiftyone_clipbranches.demo.model import (
    DEMO_MODEL_NAME,
    INFO_NAME,
    ensure_demo_model,
    register_demo_model,
    sha256_file,
)
from fiftyone_clipbranches.demo.paths import DATA_DIR_ENV, default_data_dir
from fiftyone_clipbranches.demo.train import DemoTrainConfig

TINY = DemoTrainConfig(
    n_images=48, variants_per_image=4, batch_size=16, steps=3, warmup_steps=1
)
PROBE_TEXTS = ["a red circle", "a striped blue background", "something green"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # The suite shares two cores; a second intra-op thread only adds contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo-data")
    return data_dir, ensure_demo_model(data_dir=data_dir, progress=False, config=TINY)


def _probe(model, preprocess, tokenizer):
    from fiftyone_clipbranches.demo.generator import make_scene

    images = torch.stack([preprocess(make_scene(0, i).render()) for i in range(3)])
    with torch.no_grad():
        return (
            model.encode_image(images, normalize=True).numpy(),
            model.encode_text(tokenizer(PROBE_TEXTS), normalize=True).numpy(),
        )


def test_registered_with_open_clip(tiny):
    assert DEMO_MODEL_NAME in open_clip.list_models()
    assert register_demo_model() == DEMO_MODEL_NAME
    config = open_clip.get_model_config(DEMO_MODEL_NAME)
    assert config["embed_dim"] == demo_model.DEMO_MODEL_CONFIG["embed_dim"]


def test_checkpoint_loads_through_open_clip_with_same_identity(tiny):
    data_dir, demo = tiny
    assert demo.name == DEMO_MODEL_NAME
    assert demo.identity["name"] == DEMO_MODEL_NAME
    assert demo.identity["checkpoint_sha256"] == sha256_file(demo.checkpoint_path)
    assert demo.identity["data_seed"] == TINY.seed
    assert demo.identity["train_config"] == TINY.to_dict()

    model, _, preprocess = open_clip.create_model_and_transforms(
        DEMO_MODEL_NAME, pretrained=demo.checkpoint_path
    )
    model.eval()
    saved = torch.load(demo.checkpoint_path, weights_only=True)
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)

    tokenizer = open_clip.get_tokenizer(DEMO_MODEL_NAME)
    images, texts = _probe(model, preprocess, tokenizer)
    images2, texts2 = _probe(*demo.load())
    np.testing.assert_array_equal(images, images2)
    np.testing.assert_array_equal(texts, texts2)
    d = demo_model.DEMO_MODEL_CONFIG["embed_dim"]
    assert images.shape == (3, d) and texts.shape == (3, d)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)


def test_second_call_reuses_the_cache(tiny, monkeypatch):
    data_dir, demo = tiny

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(demo_train, "train_demo_model", no_training)
    again = ensure_demo_model(data_dir=data_dir, progress=False, config=TINY)
    assert again == demo
    other = DemoTrainConfig(**{**TINY.to_dict(), "seed": 1})
    with pytest.raises(AssertionError, match="reused"):
        ensure_demo_model(data_dir=data_dir, progress=False, config=other)


def test_broken_cache_is_retrained(tiny, tmp_path):
    data_dir, demo = tiny
    first = ensure_demo_model(data_dir=tmp_path, progress=False, config=TINY)
    info = tmp_path.joinpath(*first.checkpoint_path.split("/")[-4:-1]) / INFO_NAME
    assert info.is_file()
    info.write_text("{not json")
    again = ensure_demo_model(data_dir=tmp_path, progress=False, config=TINY)
    assert json.loads(info.read_text())["identity"] == again.identity
    # Training is deterministic for a fixed config.
    assert again.identity["checkpoint_sha256"] == demo.identity["checkpoint_sha256"]


def test_cache_folder_holds_only_the_model(tiny):
    data_dir, demo = tiny
    models = data_dir / "demo" / "models"
    folders = list(models.iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith(".")
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(
        [
            INFO_NAME,
            demo_model.CHECKPOINT_NAME,
            demo_model.COMPACT_NAME,
            f"{demo_model.DEMO_MODEL_NAME}.json",  # any process loads the checkpoint
        ]
    )


@pytest.mark.slow
def test_short_training_lowers_the_contrastive_loss():
    config = DemoTrainConfig(
        n_images=96, variants_per_image=4, batch_size=32, steps=40, warmup_steps=4
    )
    _, stats = demo_train.train_demo_model(config, progress=False)
    assert stats["steps"] == 40
    assert stats["final_loss"] < 0.9 * stats["first_loss"]


def test_time_budget_overrun_is_an_error():
    with pytest.raises(demo_train.DemoTrainingBudgetError, match="0 of 3 steps"):
        demo_train.train_demo_model(TINY, progress=False, max_seconds=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_images": 1}, ValueError),
        ({"batch_size": 100, "n_images": 50}, ValueError),
        ({"steps": 0}, ValueError),
        ({"lr": 0.0}, ValueError),
        ({"lr": "fast"}, TypeError),
        ({"steps": 2.0}, TypeError),
    ],
)
def test_bad_config_raises(kwargs, error):
    with pytest.raises(error):
        DemoTrainConfig(**kwargs).validate()


def test_bad_ensure_arguments_raise(tmp_path):
    with pytest.raises(TypeError, match="DemoTrainConfig"):
        ensure_demo_model(data_dir=tmp_path, config={"steps": 3})
    with pytest.raises(ValueError, match="max_minutes"):
        ensure_demo_model(data_dir=tmp_path, config=TINY, max_minutes=0)


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "override"))
    assert default_data_dir() == tmp_path / "override"
    monkeypatch.delenv(DATA_DIR_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "fiftyone-clipbranches"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".local" / "share" / "fiftyone-clipbranches"
    assert default_data_dir() == expected


def test_trimmed_text_encoding_equals_open_clip(tiny):
    model, _, tokenizer = tiny[1].load()
    tokens = tokenizer(["a red circle", "something green", "two shapes"])
    with torch.no_grad():
        full = model.encode_text(tokens, normalize=True)
        trimmed = demo_train.encode_text_trimmed(model, tokens)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)
