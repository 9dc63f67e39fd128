"""load_clip, text and image embedding, resumable runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from fiftyone_clipbranches.embed import ClipModel, WeightsUnavailableError, load_clip


def test_random_weights_warn_once_and_identity(tiny_name, caplog):
    with pytest.warns(UserWarning, match="RANDOM weights"):
        m = load_clip(tiny_name, pretrained=None, device="cpu")
    # open_clip's own "No pretrained weights loaded" would say it a second time
    assert not [r for r in caplog.records if "pretrained weights" in r.getMessage()]
    assert m.identity == {
        "name": tiny_name,
        "pretrained": None,
        "checkpoint_sha256": None,
        "embedding_dim": 16,
    }
    assert m.device.type == "cpu"
    assert m.precision in ("fp32", "bf16")


def test_random_init_is_reproducible(tiny_name, tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_clip(tiny_name, pretrained=None, device="cpu", precision="fp32")
    np.testing.assert_array_equal(
        again.embed_texts(["a photo of a cat"]),
        tiny_model.embed_texts(["a photo of a cat"]),
    )


def test_unavailable_tag_raises_actionable_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        load_clip(
            "ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu", cache_dir=tmp_path
        )
    msg = str(info.value)
    for hint in ("checkpoint", "HF_HOME", "cache_dir", "network"):
        assert hint in msg


def test_an_unreachable_weights_host_is_said_in_words(monkeypatch):
    """No "[Errno -2] Name or service not known": what it means for the user."""
    from fiftyone_clipbranches.embed.weights import _host_reachable

    monkeypatch.setenv("HF_ENDPOINT", "https://weights.invalid")
    said = _host_reachable({"hf_hub": "org/model/"})
    assert said == (
        "cannot reach weights.invalid: its name does not resolve (no network here?)"
    )


def test_bad_arguments_raise(tiny_name):
    with pytest.raises(ValueError, match="unknown open_clip architecture") as e:
        load_clip("no-such-model", pretrained=None)
    # random weights of an architecture of one's own: how to make it known
    assert "open_clip.add_model_config(path)" in str(e.value)
    # a checkpoint path that is not there is named, not taken for the architecture
    for path in ("/no/such/dir/model.pt", "no-such-file.safetensors"):
        with pytest.raises(ValueError, match="no checkpoint file at"):
            load_clip("no-such-model", pretrained=path)
    with pytest.raises(ValueError, match="known open_clip tag"):
        load_clip("ViT-B-32", pretrained="not-a-tag")
    # a misspelt architecture with its weights named: the near names, and no word
    # of a config beside a checkpoint when none was given
    for typo in ("ViT-B-23", "vit-b-32"):
        with pytest.raises(ValueError, match="did you mean 'ViT-B-32'") as e:
            load_clip(typo, pretrained="openai")
        assert "next to the checkpoint" not in str(e.value)
    with pytest.raises(ValueError, match="device"):
        load_clip(tiny_name, pretrained=None, device="tpu")
    with pytest.raises(ValueError, match="precision"):
        load_clip(tiny_name, pretrained=None, device="cpu", precision="int4")


def test_local_checkpoint_round_trip(tiny_name, tiny_model, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model.model.state_dict(), path)
    m = load_clip(tiny_name, pretrained=str(path), device="cpu", precision="fp32")
    assert m.identity["pretrained"] == str(path.resolve())
    assert len(m.identity["checkpoint_sha256"]) == 64
    texts = ["a dog", "a red car"]
    np.testing.assert_allclose(
        m.embed_texts(texts), tiny_model.embed_texts(texts), atol=1e-6
    )
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not load") as e:
        load_clip(tiny_name, pretrained=str(bad), device="cpu")
    assert "is not a PyTorch checkpoint (neither a torch archive" in str(e.value)
    # a torch file holding more than weights: refused without torch's advice to
    # load it unsafely
    import argparse

    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1.0)}, pickled)
    with pytest.raises(ValueError, match="torch's safe loader refused it") as e:
        load_clip(tiny_name, pretrained=str(pickled), device="cpu")
    assert "weights_only" not in str(e.value) and "Unpickler" in str(e.value)
    assert "Please use" not in str(e.value) and "add_safe_globals" not in str(e.value)
    # a truncated archive: torch's first line, and what to check
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="is not truncated") as e:
        load_clip(tiny_name, pretrained=str(truncated), device="cpu")
    assert "\n" not in str(e.value)
    assert ".." not in str(e.value)


def test_embed_texts_normalised(tiny_model: ClipModel):
    out = tiny_model.embed_texts(["a cat", "a dog", "a ship"], batch_size=2)
    assert out.dtype == np.float32 and out.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert tiny_model.embed_texts([]).shape == (0, 16)
    with pytest.raises(TypeError, match="list of strings"):
        tiny_model.embed_texts("a cat")


def _inputs(cifar_paths, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    paths = list(cifar_paths[:3]) + [str(corrupt)] + list(cifar_paths[3:])
    paths.append(str(tmp_path / "missing.jpg"))
    return paths, {3, len(paths) - 1}


@pytest.mark.parametrize("num_workers", [0, 1])
def test_embed_images_records_failures(tiny_model, cifar_paths, tmp_path, num_workers):
    paths, bad = _inputs(cifar_paths, tmp_path)
    res = tiny_model.embed_images(
        paths, batch_size=3, num_workers=num_workers, progress=False
    )
    assert res.vectors.shape == (len(paths), 16) and res.vectors.dtype == np.float32
    assert set(res.errors) == bad
    assert "FileNotFoundError" in res.errors[len(paths) - 1]
    assert res.ok.tolist() == [i not in bad for i in range(len(paths))]
    np.testing.assert_allclose(
        np.linalg.norm(res.vectors[res.ok], axis=1), 1.0, atol=1e-5
    )
    assert not res.vectors[~res.ok].any()
    # each good image gets the same vector alone as within a batch
    alone = tiny_model.embed_images(paths[:1], num_workers=0, progress=False)
    np.testing.assert_allclose(alone.vectors[0], res.vectors[0], atol=1e-5)


def test_embed_images_bad_arguments(tiny_model, cifar_paths):
    with pytest.raises(TypeError, match="list of file paths"):
        tiny_model.embed_images(cifar_paths[0])
    with pytest.raises(ValueError, match="batch_size"):
        tiny_model.embed_images(cifar_paths, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        tiny_model.embed_images(cifar_paths, num_workers=-1)


def test_resume_after_interruption_is_identical(
    tiny_model, cifar_paths, tmp_path, monkeypatch
):
    paths, _ = _inputs(cifar_paths, tmp_path)
    reference = tiny_model.embed_images(
        paths, batch_size=2, num_workers=0, progress=False
    )

    original = ClipModel._encode_pixels
    calls = {"n": 0}

    def failing(self, pixels, normalise=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, pixels, normalise)

    ckpt = tmp_path / "ckpt"
    monkeypatch.setattr(ClipModel, "_encode_pixels", failing)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.embed_images(
            paths, batch_size=2, num_workers=0, progress=False, checkpoint_dir=ckpt
        )
    assert len(list(ckpt.glob("batch_*.npz"))) == 2

    def counting(self, pixels, normalise=None):
        calls["resumed"] = calls.get("resumed", 0) + 1
        return original(self, pixels, normalise)

    monkeypatch.setattr(ClipModel, "_encode_pixels", counting)
    resumed = tiny_model.embed_images(
        paths, batch_size=2, num_workers=0, progress=False, checkpoint_dir=ckpt
    )
    assert calls["resumed"] == -(-len(paths) // 2) - 2
    np.testing.assert_array_equal(resumed.vectors, reference.vectors)
    np.testing.assert_array_equal(resumed.ok, reference.ok)
    assert resumed.errors == reference.errors

    with pytest.raises(ValueError, match="different run"):
        tiny_model.embed_images(
            paths[:-1], batch_size=2, num_workers=0, progress=False, checkpoint_dir=ckpt
        )


def test_custom_architecture_loads_from_config_beside_checkpoint(tiny_model, tmp_path):
    import json

    import open_clip

    name = "clipbranches-test-beside"
    config = open_clip.get_model_config(tiny_model.identity["name"])
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    path = tmp_path / "model.pt"
    torch.save(tiny_model.model.state_dict(), path)
    assert name not in open_clip.list_models()
    m = load_clip(name, pretrained=str(path), device="cpu", precision="fp32")
    np.testing.assert_allclose(
        m.embed_texts(["a red circle"]),
        tiny_model.embed_texts(["a red circle"]),
        atol=1e-6,
    )


def test_uint8_worker_pixels_match_full_preprocessing(tiny_model, cifar_paths):
    from PIL import Image

    from fiftyone_clipbranches.embed.image_loading import split_preprocess

    transform, normalise = split_preprocess(tiny_model.preprocess)
    assert normalise is not None, "open_clip's Compose should split"
    with Image.open(cifar_paths[0]) as img:
        img = img.convert("RGB")
        expected = tiny_model.preprocess(img)
        pixels = transform(img)
    assert pixels.dtype == torch.uint8 and pixels.shape == expected.shape
    got = normalise(pixels[None], torch.float32)[0]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)
    # an unfamiliar preprocessing is left whole
    assert split_preprocess(str.upper) == (str.upper, None)
    # and the embeddings of the split path equal those of the whole preprocessing
    res = tiny_model.embed_images(cifar_paths[:1], num_workers=0, progress=False)
    whole = tiny_model._encode_pixels(expected[None])
    np.testing.assert_allclose(res.vectors, whole, atol=1e-6)


def test_bf16_casts_the_model_and_keeps_embeddings(tiny_name, tiny_model, cifar_paths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = load_clip(tiny_name, pretrained=None, device="cpu", precision="bf16")
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    full = tiny_model.embed_images(cifar_paths, num_workers=0, progress=False)
    got = half.embed_images(cifar_paths, num_workers=0, progress=False)
    assert got.vectors.dtype == np.float32
    cosine = (full.vectors * got.vectors).sum(axis=1)
    assert cosine.min() > 0.99
    texts = half.embed_texts(["a cat", "a ship"])
    ref = tiny_model.embed_texts(["a cat", "a ship"])
    assert (texts * ref).sum(axis=1).min() > 0.99


def test_loading_leaves_the_root_logger_as_it_was(tmp_path):
    """open_clip logs on the root logger; loading a model must not configure it for
    the whole process (FiftyOne's messages would print twice), nor hide a warning."""
    import json
    import subprocess
    import sys

    from user_path import TINY_CLIP_CONFIG

    name = "clipbranches-tiny-logging"
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    script = (
        "import logging, warnings, open_clip\n"
        f"open_clip.add_model_config({str(config)!r})\n"
        "from fiftyone_clipbranches.embed import load_clip\n"
        "warnings.simplefilter('ignore')\n"
        f"load_clip({name!r}, pretrained=None, device='cpu')\n"
        "print(len(logging.getLogger().handlers))\n"
        "logging.getLogger('some.library').warning('still shown')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert done.stderr.strip() == "still shown"


def test_checkpoints_of_one_name_each_load_with_the_config_beside_them(
    tmp_path, monkeypatch
):
    """The first config registered under a name served every checkpoint of that
    name in the process (a service, the App): another shape was refused in torch's
    words, the same shapes gave other vectors without a word."""
    import json

    import open_clip
    from user_path import TINY_CLIP_CONFIG

    name = "clipbranches-tiny-twins"
    text_cfg = {**TINY_CLIP_CONFIG["text_cfg"], "heads": 4}
    variants = {
        "narrow": TINY_CLIP_CONFIG,
        "wide": {**TINY_CLIP_CONFIG, "embed_dim": 128},
        "heads": {**TINY_CLIP_CONFIG, "text_cfg": text_cfg},
    }
    paths = {}
    for label, config in variants.items():
        folder = tmp_path / label
        folder.mkdir()
        (folder / f"{name}.json").write_text(json.dumps(config))
        torch.manual_seed(1)
        paths[label] = folder / f"{name}.pt"
        torch.save(open_clip.CLIP(**config).state_dict(), paths[label])

    def load(label):
        return load_clip(name, pretrained=str(paths[label]), device="cpu")

    def heads(clip):
        return clip.model.transformer.resblocks[0].attn.num_heads

    # weights of another shape under a config: the first shape that differs
    wrong = tmp_path / "wide" / "wrong.pt"
    torch.save(open_clip.CLIP(**variants["narrow"]).state_dict(), wrong)
    with pytest.raises(ValueError, match="size mismatch for text_projection") as e:
        load_clip(name, pretrained=str(wrong), device="cpu")
    assert "!." not in str(e.value)
    narrow, wide, four = load("narrow"), load("wide"), load("heads")
    assert narrow.identity["embedding_dim"] == 64 and heads(narrow) == 2
    assert wide.embed_texts(["a cat"]).shape == (1, 128)
    assert wide.identity["embedding_dim"] == 128
    assert heads(four) == 4
    again = load("narrow")
    assert heads(again) == 2
    np.testing.assert_allclose(
        again.embed_texts(["a cat"]), narrow.embed_texts(["a cat"]), atol=1e-6
    )
    # a path from the user's home, as written in a notebook
    monkeypatch.setenv("HOME", str(tmp_path))
    home = load_clip(name, pretrained=f"~/wide/{name}.pt", device="cpu")
    assert home.identity["pretrained"] == str(paths["wide"])
