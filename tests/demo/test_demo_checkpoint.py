"""The shipped demo checkpoint: compact format, budgets that never cache a cut-short
model, and the shipped model's retrieval on the demo's own images."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from fiftyone_clipbranches.demo import checkpoint as compact
from fiftyone_clipbranches.demo import model as demo_model
from fiftyone_clipbranches.demo import train as demo_train
from fiftyone_clipbranches.demo.model import (
    DEMO_MODEL_CONFIG,
    INFO_NAME,
    ensure_demo_model,
    sha256_file,
)
from fiftyone_clipbranches.demo.train import DemoTrainConfig

TINY = DemoTrainConfig(
    n_images=48, variants_per_image=4, batch_size=16, steps=3, warmup_steps=1
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_model():
    model, stats = demo_train.train_demo_model(TINY, progress=False)
    return model, stats


def _no_training(*args, **kwargs):
    raise AssertionError("the demo model should not have been trained")


def test_pack_keeps_trained_rows_and_regenerates_the_others(tiny_model):
    model, _ = tiny_model
    state = model.state_dict()
    data = compact.pack(state, demo_train.TOKEN_EMBEDDING_SEED, {"steps": 3})
    assert compact.pack(state, demo_train.TOKEN_EMBEDDING_SEED, {"steps": 3}) == data
    unpacked, meta = compact.unpack(data)
    assert meta == {"steps": 3, "token_seed": demo_train.TOKEN_EMBEDDING_SEED}
    assert unpacked.keys() == state.keys()

    weight = state[compact.TOKEN_EMBEDDING]
    initial = torch.from_numpy(demo_train.initial_token_embedding(tuple(weight.shape)))
    trained = (weight != initial).any(dim=1)
    # only the tokens of the captions moved; the file stores just those rows
    assert 0 < int(trained.sum()) < 1000
    assert len(data) < 4_000_000
    assert torch.equal(unpacked[compact.TOKEN_EMBEDDING][~trained], initial[~trained])
    torch.testing.assert_close(
        unpacked[compact.TOKEN_EMBEDDING][trained],
        weight[trained].half().float(),
        rtol=0,
        atol=0,
    )
    for name, tensor in state.items():
        assert unpacked[name].dtype == tensor.dtype
        if name != compact.TOKEN_EMBEDDING:
            expected = tensor.half().float() if tensor.is_floating_point() else tensor
            assert torch.equal(unpacked[name], expected), name


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],
        lambda b: b"not a checkpoint" + b,
        lambda b: (
            b[: len(compact.MAGIC) + 8] + b"{garbled" + b[len(compact.MAGIC) + 16 :]
        ),
    ],
)
def test_damaged_checkpoint_is_an_error(tiny_model, damage):
    data = compact.pack(tiny_model[0].state_dict(), 1, {})
    with pytest.raises(compact.CheckpointFormatError):
        compact.unpack(damage(data))


def test_tiny_budget_caches_nothing(tmp_path, monkeypatch):
    with pytest.raises(demo_train.DemoTrainingBudgetError, match="nothing was cached"):
        ensure_demo_model(
            data_dir=tmp_path, progress=False, config=TINY, max_minutes=1e-9
        )
    models = tmp_path / "demo" / "models"
    assert not models.exists() or list(models.iterdir()) == []
    # the next call trains in full instead of finding a degraded model
    demo = ensure_demo_model(data_dir=tmp_path, progress=False, config=TINY)
    assert demo.identity["source"] == "trained"
    assert demo.identity["training"]["steps"] == TINY.steps
    # and a cached model is reused whatever the budget
    monkeypatch.setattr(demo_train, "train_demo_model", _no_training)
    again = ensure_demo_model(
        data_dir=tmp_path, progress=False, config=TINY, max_minutes=1e-9
    )
    assert again == demo


def test_cut_short_model_of_older_versions_is_not_reused(tmp_path):
    demo = ensure_demo_model(data_dir=tmp_path, progress=False, config=TINY)
    info_path = tmp_path.joinpath(*demo.checkpoint_path.split("/")[-4:-1]) / INFO_NAME
    info = json.loads(info_path.read_text())
    info["identity"]["training"]["truncated"] = True
    info_path.write_text(json.dumps(info))
    again = ensure_demo_model(data_dir=tmp_path, progress=False, config=TINY)
    assert "truncated" not in again.identity["training"]
    assert json.loads(info_path.read_text())["identity"] == again.identity


def test_shipped_checkpoint_is_the_default_configuration_fully_trained():
    meta = compact.shipped_meta()
    config = DemoTrainConfig()
    assert meta["config_key"] == config.key(DEMO_MODEL_CONFIG)
    assert meta["steps"] == meta["planned_steps"] == config.steps
    assert meta["train_config"] == config.to_dict()
    assert compact.SHIPPED_PATH.stat().st_size < 4_000_000


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("shipped")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_train, "train_demo_model", _no_training)
        return ensure_demo_model(data_dir=data_dir, progress=False, max_minutes=1e-9)


def test_default_model_is_the_shipped_checkpoint(shipped):
    assert shipped.identity["source"] == "shipped"
    assert shipped.identity["compact_sha256"] == sha256_file(compact.SHIPPED_PATH)
    assert shipped.identity["matches_shipped"] is True
    folder = compact.SHIPPED_PATH.parent
    assert sha256_file(folder / "demo_clip.ckpt") == sha256_file(
        demo_model.Path(shipped.checkpoint_path).parent / demo_model.COMPACT_NAME
    )


def test_shipped_model_loads_without_warnings(shipped, caplog):
    with caplog.at_level(logging.WARNING):
        model, preprocess, tokenizer = shipped.load()
    assert caplog.records == []
    saved = torch.load(shipped.checkpoint_path, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_shipped_model_finds_red_circles_among_the_demo_images(shipped):
    from fiftyone_clipbranches.demo.evaluate import embed_scenes, embed_texts
    from fiftyone_clipbranches.demo.generator import make_scenes

    model, preprocess, tokenizer = shipped.load()
    # the first 600 of the demo's 3000 images (seed 0), about 40 with a red circle
    scenes = make_scenes(600, 0, 96)
    relevant = np.array(
        [
            any(o.colour == "red" and o.shape == "circle" for o in s.objects)
            for s in scenes
        ]
    )
    assert 20 <= relevant.sum() <= 80
    scores = (
        embed_texts(model, tokenizer, ["a red circle"])
        @ embed_scenes(model, preprocess, scenes).T
    )
    top = np.argsort(-scores[0], kind="stable")[:20]
    # 19 of 20 here (the demo's report on all 3000 images: precision@20 1.000);
    # chance is about 0.06
    assert relevant[top].mean() >= 0.85


def test_retrain_trains_again_and_says_how_it_compares(tmp_path, monkeypatch):
    from fiftyone_clipbranches.demo import pipeline

    first = ensure_demo_model(data_dir=tmp_path, progress=False, config=TINY)
    calls = []
    train = demo_train.train_demo_model
    monkeypatch.setattr(
        demo_train,
        "train_demo_model",
        lambda *a, **k: calls.append(1) or train(*a, **k),
    )
    notes = []
    name, path = pipeline._demo_model(tmp_path, False, None, TINY, True, notes)
    assert calls == [1] and path == first.checkpoint_path
    # training is deterministic: the same bytes as the first training
    assert sha256_file(path) == first.identity["checkpoint_sha256"]
    assert notes == [
        f"demo model retrained: sha256 {first.identity['compact_sha256'][:16]},"
        " no shipped checkpoint for this configuration"
    ]


def test_cli_demo_retrain_flag_and_no_default_budget():
    from fiftyone_clipbranches.cli import build_parser

    args = build_parser().parse_args(["demo", "--no-app", "--retrain"])
    assert args.retrain is True and args.train_minutes is None
    args = build_parser().parse_args(["demo", "--train-minutes", "2"])
    assert args.retrain is False and args.train_minutes == 2.0
