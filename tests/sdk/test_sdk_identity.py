"""The CLIP identity of an embeddings field: from records only, never a default.

Zoo-computed fields are made by FiftyOne itself: ``dataset.compute_embeddings``
with the zoo's ``open-clip-torch`` model loaded from the tiny local checkpoint
(``pretrained=<file>``: no download), and ``fob.compute_similarity(model=
"open-clip-torch", model_kwargs=...)``, which records ``model`` on its brain run.
``clip-vit-base32-torch`` cannot be loaded offline, so its run is registered
with FiftyOne's own ``SklearnSimilarityConfig`` holding the metadata
``compute_similarity`` writes for it (``model``, ``embeddings_field``,
``supports_prompts``).
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.zoo as foz
import pytest
from fiftyone.brain.internal.core.sklearn import SklearnSimilarityConfig
from user_path import (
    TINY_CLIP_NAME,
    build_user_index,
    images_dataset,
    write_tiny_clip_checkpoint,
)

import fiftyone_clipbranches as cb
from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk import embeddings
from fiftyone_clipbranches.sdk.claims import key_claim
from fiftyone_clipbranches.sdk.errors import (
    IdentityConflictError,
    IndexBusyError,
    UnknownModelError,
)
from fiftyone_clipbranches.sdk.identity import field_model_identity, zoo_identity
from fiftyone_clipbranches.similarity import register_similarity_backend


@pytest.fixture
def zoo_field(cifar_dir, tiny_clip_checkpoint):
    """A dataset whose ``zoo_emb`` field was computed by FiftyOne's zoo model."""
    ds = images_dataset(cifar_dir, 5)
    model = foz.load_zoo_model(
        "open-clip-torch",
        clip_model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
    )
    ds.compute_embeddings(model, embeddings_field="zoo_emb", progress=False)
    yield ds, {"name": TINY_CLIP_NAME, "pretrained": str(tiny_clip_checkpoint)}
    ds.delete()


def test_zoo_names_map_to_open_clip():
    assert zoo_identity("clip-vit-base32-torch") == {
        "name": "ViT-B-32",
        "pretrained": "openai",
    }
    assert zoo_identity("open-clip-torch") == {
        "name": "ViT-B-32",
        "pretrained": "openai",
    }
    kwargs = {"clip_model": "ViT-L-14", "pretrained": "datacomp_xl_s13b_b90k"}
    assert zoo_identity("open-clip-torch", kwargs) == {
        "name": "ViT-L-14",
        "pretrained": "datacomp_xl_s13b_b90k",
    }
    assert zoo_identity("mobilenet-v2-imagenet-torch") is None


def test_unknown_field_builds_but_refuses_text(zoo_field):
    ds, _ = zoo_field
    found = field_model_identity(ds, "zoo_emb")
    assert found.identity is None and "nothing records" in found.reason
    info = cb.build_index(
        ds, "zoo", embeddings_field="zoo_emb", code_method="pca", progress=False
    )
    assert info.clip_model is None and not info.supports_text
    ids = ds.values("id")
    assert (
        cb.search(ds, sample_ids=[ids[0]], k=3, index_key="zoo").values("id")[0]
        == ids[0]
    )
    with pytest.raises(UnknownModelError) as err:
        cb.search(ds, text="a cat", index_key="zoo")
    message = str(err.value)
    assert (
        "does not know the CLIP model of the embeddings in field 'zoo_emb'" in message
    )
    # its vectors are 64 long: ViT-B-32 (512) would be refused, so it is no example
    assert "ViT-B-32" not in message.split("(FiftyOne")[0]
    assert (
        "build_index(dataset, 'zoo', embeddings_field='zoo_emb', model=MODEL,"
        " pretrained=WEIGHTS, overwrite=True)" in message
    )
    assert "the open_clip CLIP that made its 64-d vectors" in message
    # the query ball refines that text: another model is a way out too
    first = ds.values("id")[:2]
    with pytest.raises(UnknownModelError) as err:
        cb.refine(ds, model="ball", query="a cat", positives=first, index_key="zoo")
    assert "or refine with another model (model 'ball' refines the text" in str(
        err.value
    )
    assert "choose another model than the query ball" in err.value.in_app
    assert "clipbranches_clip_model" in message


def test_compute_similarity_run_records_the_model(zoo_field, tiny_clip_checkpoint):
    ds, expected = zoo_field
    fob.compute_similarity(
        ds,
        model="open-clip-torch",
        model_kwargs={
            "clip_model": TINY_CLIP_NAME,
            "pretrained": str(tiny_clip_checkpoint),
        },
        embeddings="zoo_emb",
        brain_key="sk",
    )
    found = field_model_identity(ds, "zoo_emb")
    assert found.identity == expected and found.source == "brain run 'sk'"
    info = cb.build_index(
        ds, "zoo", embeddings_field="zoo_emb", code_method="pca", progress=False
    )
    assert info.clip_model == expected
    assert len(cb.search(ds, text="a cat", k=4, index_key="zoo")) == 4
    with pytest.raises(IdentityConflictError, match="holds embeddings of"):
        cb.build_index(
            ds,
            "other",
            embeddings_field="zoo_emb",
            model="ViT-B-32",
            pretrained="laion2b_s34b_b79k",
            code_method="pca",
            progress=False,
        )


def test_zoo_model_through_the_clipbranches_backend(zoo_field, tiny_clip_checkpoint):
    ds, expected = zoo_field
    register_similarity_backend()
    index = fob.compute_similarity(
        ds,
        model="open-clip-torch",
        model_kwargs={
            "clip_model": TINY_CLIP_NAME,
            "pretrained": str(tiny_clip_checkpoint),
        },
        backend="clipbranches",
        brain_key="zsim",
        code_method="pca",
    )
    assert index.supports_prompts and index.total_index_size == len(ds)
    assert cb.index_info(ds, "zsim").clip_model == expected
    assert len(ds.sort_by_similarity("a cat", k=4, brain_key="zsim")) == 4


def test_clip_vit_base32_run_maps_to_openai_vit_b_32(zoo_field):
    ds, _ = zoo_field
    config = SklearnSimilarityConfig(
        embeddings_field="zoo_emb", model="clip-vit-base32-torch", supports_prompts=True
    )
    config.build().register_run(ds, "openai_sim")
    found = field_model_identity(ds, "zoo_emb")
    assert found.identity == {"name": "ViT-B-32", "pretrained": "openai"}
    info = cb.build_index(
        ds, "zoo", embeddings_field="zoo_emb", code_method="pca", progress=False
    )
    assert info.clip_model == {"name": "ViT-B-32", "pretrained": "openai"}


def test_non_clip_run_is_no_identity(zoo_field):
    ds, _ = zoo_field
    SklearnSimilarityConfig(
        embeddings_field="zoo_emb", model="resnet50-imagenet-torch"
    ).build().register_run(ds, "resnet")
    found = field_model_identity(ds, "zoo_emb")
    assert found.identity is None and "resnet50-imagenet-torch" in found.reason


def test_sdk_computed_field_records_its_model(zoo_field, tiny_clip_checkpoint):
    ds, expected = zoo_field
    sdk.compute_embeddings(
        ds,
        "own",
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        progress=False,
    )
    found = field_model_identity(ds, "own")
    assert (
        found.identity["name"] == TINY_CLIP_NAME
        and found.source == "info of field 'own'"
    )
    # samples added later are embedded with the model the field records
    ds.add_sample(fo.Sample(filepath=ds.first().filepath))
    out = sdk.compute_embeddings(ds, "own", progress=False)
    assert out["n_embedded"] == 1 and out["clip_model"] == found.identity


def test_filling_a_field_of_unknown_model_records_no_guess(
    zoo_field, tiny_clip_checkpoint
):
    """Vectors of an unknown model already in the field: the missing ones are
    computed, but the field is not labelled with the model that computed them."""
    ds, _ = zoo_field
    ds.select(ds.values("id")[:3]).set_field("zoo_emb", None).save()
    out = sdk.compute_embeddings(
        ds,
        "zoo_emb",
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        progress=False,
    )
    assert out["n_embedded"] == 3
    assert field_model_identity(ds, "zoo_emb").identity is None
    info = cb.build_index(
        ds, "filled", embeddings_field="zoo_emb", code_method="pca", progress=False
    )
    assert info.clip_model is None


@pytest.mark.filterwarnings("ignore:load_clip.*RANDOM weights:UserWarning")
def test_computing_other_weights_into_a_recorded_field_is_refused(
    zoo_field, tiny_clip_checkpoint
):
    ds, _ = zoo_field
    sdk.compute_embeddings(
        ds,
        "own",
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        progress=False,
    )
    with pytest.raises(IdentityConflictError, match="mixing models") as err:
        sdk.compute_embeddings(
            ds, "own", model=TINY_CLIP_NAME, pretrained=None, progress=False
        )
    assert "embed with its model (leave out model= and pretrained=" in str(err.value)
    # before loading: these weights are not on this machine, and are not looked for
    with pytest.raises(IdentityConflictError, match="mixing models"):
        sdk.compute_embeddings(
            ds, "own", model="ViT-B-32", pretrained="laion2b_s34b_b79k", progress=False
        )


def test_half_declarations_are_refused(zoo_field):
    ds, _ = zoo_field
    with pytest.raises(ValueError, match="pass both model= and pretrained="):
        cb.build_index(ds, "half", embeddings_field="zoo_emb", pretrained="openai")
    with pytest.raises(ValueError, match="pass both model= and pretrained="):
        cb.build_index(ds, "half", embeddings_field="zoo_emb", model="ViT-B-32")
    with pytest.raises(
        ValueError, match=r"pass pretrained= \(CLI: --pretrained\) for model 'ViT-B-16'"
    ):
        cb.build_index(ds, "half", model="ViT-B-16")
    assert cb.list_indexes(ds) == []


def _forget_loaded_models():
    """What a new process sees: no CLIP model loaded yet."""
    with embeddings._models_lock:
        embeddings._models.clear()


def test_a_replaced_or_moved_checkpoint_is_refused_not_mixed(
    cifar_dir, tmp_path, capsys, monkeypatch
):
    import os
    import shutil

    monkeypatch.chdir(os.getcwd())  # put back after the chdir below

    import open_clip
    import torch

    checkpoint = write_tiny_clip_checkpoint(tmp_path / "model")
    ds = images_dataset(cifar_dir, 8)
    try:
        build_user_index(ds, checkpoint)
        # a second index on the same embeddings records the same checkpoint
        sdk.build_index(ds, "second", embeddings_field="clip_embedding",
                        code_method="pca", progress=False)  # fmt: skip
        original = shutil.copy(checkpoint, tmp_path / "original.pt")
        recorded = field_model_identity(ds, "clip_embedding").identity
        assert recorded["checkpoint_sha256"]
        assert len(cb.search(ds, text="a cat", k=3, index_key="clip")) == 3

        # the user saves other weights (a new fine-tune) over the same file
        torch.manual_seed(1)
        other = open_clip.create_model(TINY_CLIP_NAME, pretrained=None, device="cpu")
        torch.save(other.state_dict(), checkpoint)
        _forget_loaded_models()
        new = shutil.copy(ds.first().filepath, tmp_path / "added.png")
        ds.add_sample(fo.Sample(filepath=str(new)))
        with pytest.raises(IdentityConflictError, match="has changed since") as err:
            sdk.update_index(ds, "clip", progress=False)
        assert "restore the checkpoint file" in str(err.value)
        # nothing of the new weights was written or recorded
        assert field_model_identity(ds, "clip_embedding").identity == recorded
        assert ds.count("clip_embedding") == len(ds) - 1
        with pytest.raises(UnknownModelError, match="has changed since"):
            cb.search(ds, text="a cat", index_key="clip")

        checkpoint.rename(tmp_path / "moved.pt")
        _forget_loaded_models()
        for work, call in (
            ("embed queries", lambda: cb.search(ds, text="a cat", index_key="clip")),
            ("embed added or changed samples", lambda: sdk.update_index(ds, "clip")),
        ):
            with pytest.raises(UnknownModelError, match="not there any more") as err:
                call()
            assert f"cannot {work}" in str(err.value)
            assert "put it back at that path" in str(err.value)
            assert f"clipbranches build-index {ds.name} --key NEW_KEY" in str(err.value)
            assert f"relocate-checkpoint {ds.name} --key clip" in str(err.value)
        assert ds.count("clip_embedding") == len(ds) - 1
        # the listing says so too
        from fiftyone_clipbranches.cli import main as cli_main

        assert cli_main(["indexes", ds.name]) == 0
        listed = capsys.readouterr().out
        assert "  text search unavailable: index 'clip' cannot embed queries" in listed
        assert f"relocate-checkpoint {ds.name} --key clip --pretrained NEW" in listed
        # told where the original file lives now, the index searches again and
        # the field records it too; the moved file holds other weights: refused
        with pytest.raises(IdentityConflictError, match="is not the checkpoint"):
            sdk.relocate_checkpoint(ds, tmp_path / "moved.pt", index_key="clip")
        # the original bytes without the architecture's config beside them would
        # load in no new process: refused, saying which file to copy
        with pytest.raises(ValueError, match="its config is not beside it") as err:
            sdk.relocate_checkpoint(ds, original, index_key="clip")
        assert f"copy {TINY_CLIP_NAME}.json from beside the old file" in str(err.value)
        shutil.copy(tmp_path / "model" / f"{TINY_CLIP_NAME}.json", tmp_path)
        # an index another process updates is not changed under it: refused,
        # nothing recorded
        before = sdk.index_info(ds, "clip", check=False).clip_model
        busy = pytest.raises(IndexBusyError, match="second")
        with key_claim(ds, "second", "update"), busy:
            sdk.relocate_checkpoint(ds, original, index_key="clip")
        assert sdk.index_info(ds, "clip", check=False).clip_model == before
        relocate = ["relocate-checkpoint", ds.name, "--key", "clip"]
        os.chdir(original.parent)  # a path relative to the working folder
        assert cli_main([*relocate, "--pretrained", original.name]) == 0
        out = capsys.readouterr().out
        assert f"checkpoint recorded at {str(original)!r} by:" in out
        assert "by: index:clip, index:second, field:clip_embedding" in out
        _forget_loaded_models()
        assert len(cb.search(ds, text="a cat", k=3, index_key="clip")) == 3
        assert field_model_identity(ds, "clip_embedding").identity == dict(
            recorded, pretrained=str(original)
        )
        assert len(sdk.update_index(ds, "clip", progress=False).key) > 0
        assert ds.count("clip_embedding") == len(ds)  # the added sample embedded
    finally:
        _forget_loaded_models()
        ds.delete()


def test_a_field_of_another_models_vectors_is_not_taken_for_the_declared_one(
    cifar_dir, tiny_clip_checkpoint
):
    import numpy as np

    ds = images_dataset(cifar_dir, 4)
    try:
        own = list(np.random.default_rng(0).normal(size=(len(ds), 32)).astype("f4"))
        ds.set_values("own", own[:30] + [None] * (len(ds) - 30))
        clip = {"model": TINY_CLIP_NAME, "pretrained": str(tiny_clip_checkpoint)}
        with pytest.raises(ValueError, match="holds vectors of length 32") as err:
            sdk.compute_embeddings(ds, "own", progress=False, **clip)
        assert "gives 64" in str(err.value)
        assert len(ds.exists("own")) == 30  # no vector of the other length added

        ds.set_values("own", own)
        with pytest.raises(ValueError, match="holds vectors of length 32") as err:
            cb.build_index(
                ds, "own", embeddings_field="own", code_method="pca",
                progress=False, **clip,
            )  # fmt: skip
        assert cb.list_indexes(ds) == []
        # declared by hand on the field (as a zoo run records it), text search says
        field = ds.get_field("own")
        field.info = {"clipbranches_clip_model": {"name": TINY_CLIP_NAME,
                      "pretrained": str(tiny_clip_checkpoint)}}  # fmt: skip
        field.save()
        cb.build_index(
            ds, "own", embeddings_field="own", code_method="pca", progress=False
        )
        with pytest.raises(UnknownModelError) as err:
            cb.search(ds, text="a cat", index_key="own")
        assert "gives 64-dim vectors, but it was built from 32-dim vectors" in str(
            err.value
        )
        one = ds.first().id
        assert (
            cb.search(ds, sample_ids=[one], k=2, index_key="own").values("id")[0] == one
        )
    finally:
        ds.delete()


def test_text_search_without_the_models_weights_says_what_a_search_can_do(cifar_dir):
    import numpy as np

    from fiftyone_clipbranches.sdk.errors import CheckpointUnavailableError
    from fiftyone_clipbranches.sdk.messages import user_message

    ds = images_dataset(cifar_dir, 4)
    try:
        vectors = np.random.default_rng(0).normal(size=(len(ds), 512)).astype("f4")
        ds.set_values("theirs", list(vectors))
        cb.build_index(
            ds, "theirs", embeddings_field="theirs", model="ViT-B-32",
            pretrained="laion2b_s34b_b79k", code_method="pca", progress=False,
        )  # fmt: skip
        with pytest.raises(CheckpointUnavailableError) as err:
            cb.search(ds, text="a cat", index_key="theirs")
        message = str(err.value)
        assert "index 'theirs' cannot embed queries: CLIP weights 'ViT-B-32'" in message
        assert "HF_HOME" in message and "search by sample ids or a vector" in message
        assert "load_clip" not in message and "pretrained=" not in message
        in_app = user_message(err.value, in_app=True)
        assert "search by similarity to selected samples" in in_app
        # the query ball refines that text: the same error class says so
        ids = ds.values("id")
        with pytest.raises(CheckpointUnavailableError, match="another model"):
            cb.refine(
                ds, positives=ids[:3], negatives=ids[3:5], model="ball",
                query="a cat", index_key="theirs", score_field=None,
            )  # fmt: skip
        one = ds.first().id
        found = cb.search(ds, sample_ids=[one], k=2, index_key="theirs")
        assert found.values("id")[0] == one
    finally:
        ds.delete()


def test_a_checkpoint_without_its_config_beside_it_is_refused(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """This process knew the architecture (another checkpoint's config, or one
    registered by hand), so the build went through, and every other process (the
    CLI, the service, the App) failed on the index: refused before embedding."""
    import shutil

    alone = tmp_path / "alone" / tiny_clip_checkpoint.name
    alone.parent.mkdir()
    shutil.copy(tiny_clip_checkpoint, alone)
    ds = images_dataset(cifar_dir, 4)
    try:
        with pytest.raises(ValueError, match="config is not beside the checkpoint"):
            cb.build_index(
                ds, "clip", model=TINY_CLIP_NAME, pretrained=str(alone),
                code_method="pca", progress=False,
            )  # fmt: skip
        assert not ds.has_sample_field("clip_embedding") and cb.list_indexes(ds) == []
        with pytest.raises(ValueError, match="did you mean 'ViT-B-32'"):  # a typo
            cb.build_index(
                ds, "clip", model="ViT-B-3", pretrained=str(alone), code_method="pca"
            )
        # the config put beside it, as the words say: it builds
        shutil.copy(tiny_clip_checkpoint.with_suffix(".json"), alone.parent)
        info = cb.build_index(
            ds, "clip", model=TINY_CLIP_NAME, pretrained=str(alone),
            code_method="pca", progress=False,
        )  # fmt: skip
        assert info.clip_model["pretrained"] == str(alone)
    finally:
        ds.delete()


def test_a_checkpoint_path_from_the_users_home_is_recorded_whole(
    cifar_dir, tiny_clip_checkpoint, tmp_path, monkeypatch
):
    """'~/...' was expanded by the load only: the build embedded every image, then
    refused its own vectors (their record named the expanded path); a declared
    one was recorded as '~/...', another user's home for another process."""
    import shutil

    home = tmp_path / "home"
    (home / "ck").mkdir(parents=True)
    for suffix in (".pt", ".json"):
        shutil.copy(tiny_clip_checkpoint.with_suffix(suffix), home / "ck")
    monkeypatch.setenv("HOME", str(home))
    given = f"~/ck/{tiny_clip_checkpoint.name}"
    ds = images_dataset(cifar_dir, 4)
    try:
        info = cb.build_index(
            ds, "clip", model=TINY_CLIP_NAME, pretrained=given, code_method="pca",
            progress=False,
        )  # fmt: skip
        assert info.clip_model["pretrained"] == str(
            home / "ck" / tiny_clip_checkpoint.name
        )
        assert len(cb.search(ds, text="a cat", k=3, index_key="clip")) == 3
        # declared over a field of vectors stored by hand
        ds.set_values("hand", ds.values("clip_embedding"))
        info = cb.build_index(
            ds, "hand", embeddings_field="hand", model=TINY_CLIP_NAME,
            pretrained=given, code_method="pca", progress=False,
        )  # fmt: skip
        assert info.clip_model["pretrained"].startswith(str(home))
        assert len(cb.search(ds, text="a cat", k=3, index_key="hand")) == 3
    finally:
        ds.delete()
