"""The CLIP a user names in Python: ``model="demo"`` is the small CLIP the package
ships (as ``--model demo`` in the CLI and the App's forms), the default
architecture named alone takes its default weights."""

from __future__ import annotations

import fiftyone as fo
import pytest
from user_path import images_dataset

import fiftyone_clipbranches as cb
from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.demo.model import ensure_demo_model
from fiftyone_clipbranches.sdk.clip_names import resolve_clip
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
)


def test_names_resolve_to_what_is_loaded():
    assert resolve_clip(DEFAULT_CLIP_MODEL) == (
        DEFAULT_CLIP_MODEL,
        DEFAULT_CLIP_PRETRAINED,
    )
    assert resolve_clip("ViT-B-16", "openai") == ("ViT-B-16", "openai")
    assert resolve_clip("ViT-B-16", None) == ("ViT-B-16", None)  # random weights
    shipped = ensure_demo_model(progress=False)
    assert resolve_clip("demo") == (shipped.name, shipped.checkpoint_path)
    with pytest.raises(ValueError, match="model='demo', the small CLIP"):
        resolve_clip("ViT-B-16")
    with pytest.raises(ValueError, match="leave the pretrained weights empty"):
        resolve_clip("demo", "openai")


def test_build_index_and_embeddings_with_the_shipped_clip(cifar_dir):
    ds = images_dataset(cifar_dir, 8)
    other = images_dataset(cifar_dir, 4)
    try:
        info = cb.build_index(ds, model="demo", progress=False)
        assert info.n_samples == len(ds) and info.supports_text
        result = cb.search(ds, text="a photo of a ship", k=5)
        assert len(result) == 5
        report = sdk.compute_embeddings(other, "emb", model="demo", progress=False)
        assert report["n_embedded"] == len(other)
        assert report["clip_model"]["name"] == ensure_demo_model(progress=False).name
        # vectors of no recorded model, declared as the shipped CLIP's: text works
        other.add_sample_field("own", fo.VectorField)
        other.set_values("own", other.values("emb"))
        info = cb.build_index(
            other, "declared", embeddings_field="own", model="demo",
            code_method="pca", encoder_params={"n_dims": 8}, progress=False,
        )  # fmt: skip
        assert info.clip_model["name"] == ensure_demo_model(progress=False).name
        assert (
            len(cb.search(other, text="a red circle", k=3, index_key="declared")) == 3
        )
    finally:
        ds.delete()
        other.delete()


@pytest.mark.parametrize(
    ("typo", "meant"), [("ViT-B-23", "'ViT-B-32'"), ("dmeo", "'demo'")]
)
def test_a_mistyped_model_is_called_unknown_with_the_names_meant(typo, meant):
    with pytest.raises(ValueError, match=f"unknown CLIP model '{typo}'") as err:
        resolve_clip(typo)
    assert f"did you mean {meant}" in str(err.value)
    assert "pass pretrained=" not in str(err.value)
    with pytest.raises(ValueError, match="pass pretrained="):
        resolve_clip("RN50")  # a real architecture: its weights are what is missing
    with pytest.raises(ValueError, match="pass pretrained="):
        resolve_clip("hf-hub:timm/ViT-B-16-SigLIP")  # open_clip's hub names too
    # FiftyOne's zoo name of open_clip's ViT-B-32 / openai is that model
    assert resolve_clip("clip-vit-base32-torch") == ("ViT-B-32", "openai")
