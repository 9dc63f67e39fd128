"""A build stopped while embedding (Ctrl-C) leaves a field that says which model
its vectors come from: the same command resumes it, another model is refused, and
a build with nothing left to embed loads no model."""

from __future__ import annotations

import types

import pytest
from user_path import TINY_CLIP_NAME, images_dataset

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk import embeddings

# imported before any test stands in for the model loader: a module importing
# ``get_clip_model`` by name during a test would keep the stand-in for good
from fiftyone_clipbranches.sdk import search as _search  # noqa: F401
from fiftyone_clipbranches.sdk.errors import IdentityConflictError
from fiftyone_clipbranches.sdk.identity import field_identity, record_field_identity


@pytest.fixture
def images(cifar_dir):
    ds = images_dataset(cifar_dir, 4)
    yield ds
    ds.delete()


def _stopped_build(ds, monkeypatch, **kwargs):
    """``build_index`` interrupted as Ctrl-C does, after its first chunk of
    embeddings is written."""
    monkeypatch.setattr(embeddings, "_CHUNK", 8)

    def progress(fraction, label):
        if label.startswith("embedded"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sdk.build_index(ds, "clip", code_method="pca", progress=progress, **kwargs)
    monkeypatch.undo()


@pytest.mark.parametrize("field", [None, "emb2"])
def test_a_stopped_build_resumes_with_its_model_and_refuses_another(
    images, monkeypatch, tiny_clip_checkpoint, field
):
    ds = images
    tiny = {"model": TINY_CLIP_NAME, "pretrained": str(tiny_clip_checkpoint)}
    _stopped_build(ds, monkeypatch, embeddings_field=field, **tiny)
    name = field or "clip_embedding"
    assert len(ds.exists(name)) == 8  # the first chunk only
    assert field_identity(ds, name)["pretrained"] == tiny["pretrained"]

    with pytest.raises(IdentityConflictError, match="mixing models"):
        sdk.build_index(
            ds,
            "clip",
            code_method="pca",
            embeddings_field=field,
            model=TINY_CLIP_NAME,
            pretrained=None,
            progress=False,
        )
    assert len(ds.exists(name)) == 8  # nothing of the other model was written

    # the same command again: the missing vectors are embedded, the index built
    info = sdk.build_index(
        ds, "clip", code_method="pca", embeddings_field=field, progress=False, **tiny
    )
    assert info.n_samples == len(ds) == len(ds.exists(name))
    assert info.clip_model["pretrained"] == tiny["pretrained"]


def test_nothing_left_to_embed_loads_no_model(
    images, monkeypatch, tiny_clip_checkpoint
):
    ds = images
    tiny = {"model": TINY_CLIP_NAME, "pretrained": str(tiny_clip_checkpoint)}
    sdk.compute_embeddings(ds, **tiny, progress=False)
    # weights this machine cannot have (no internet): the build must not load them
    offline = {"name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
    record_field_identity(ds, "clip_embedding", offline)
    loads = []
    monkeypatch.setattr(embeddings, "get_clip_model", lambda *a: loads.append(a))
    info = sdk.build_index(ds, "clip", code_method="pca", progress=False)
    assert not loads
    assert info.n_samples == len(ds)
    assert info.clip_model == offline

    # vectors nothing records the model of: the default model is not claimed
    ds.get_field("clip_embedding").info = None
    ds.get_field("clip_embedding").save()
    info = sdk.build_index(ds, "other", code_method="pca", progress=False)
    assert not loads
    assert info.clip_model is None


def test_skip_missing_indexes_only_the_vectors_there(
    images, monkeypatch, tiny_clip_checkpoint
):
    """``skip_missing=True`` over a field this package embedded into (its model
    given) indexes the samples that have a vector and embeds none."""
    ds = images
    tiny = {"model": TINY_CLIP_NAME, "pretrained": str(tiny_clip_checkpoint)}
    sdk.compute_embeddings(ds.limit(36), "emb", **tiny, progress=False)
    loads = []
    monkeypatch.setattr(embeddings, "get_clip_model", lambda *a: loads.append(a))
    info = sdk.build_index(
        ds,
        "clip",
        embeddings_field="emb",
        skip_missing=True,
        code_method="pca",
        progress=False,
        **tiny,
    )
    assert info.n_samples == 36 and not loads
    fresh = sdk.index_info(ds, "clip").freshness
    # this build embedded none of them: said without calling them unreadable
    assert (fresh.n_added, fresh.n_unreadable) == (0, 4)
    assert set(fresh.unreadable.values()) == {
        "no vector in 'emb' when the index was built: the image could not be read"
        " when it was embedded, or it was not embedded yet"
    }
    assert sdk.unsearched_count(ds, "clip") == 0

    # vectors stored since for two of them: not searched yet, and said so (the
    # panel offers the update on that count), which adds them
    monkeypatch.undo()
    sdk.compute_embeddings(ds.skip(36).limit(2), "emb", **tiny, progress=False)
    from fiftyone_clipbranches.sdk import freshness

    monkeypatch.setattr(freshness, "ID_BATCH", 3)  # ids queried in batches
    assert sdk.unsearched_count(ds, "clip") == 2
    fresh = sdk.index_info(ds, "clip").freshness
    assert (fresh.n_added, fresh.n_unreadable) == (2, 2)
    assert set(fresh.added_ids) == set(ds.skip(36).limit(2).values("id"))
    info = sdk.update_index(ds, "clip", progress=False)
    assert info.n_samples == 38 and sdk.unsearched_count(ds, "clip") == 0
    assert info.freshness.n_unreadable == 2


def test_the_random_weights_warning_names_the_users_line(images, tiny_clip_checkpoint):
    """Warned where the user called the SDK, not at the package's own call."""
    import warnings

    from fiftyone_clipbranches.sdk import embeddings as sdk_embeddings

    sdk_embeddings._models.clear()  # loaded anew, so warned anew
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sdk.compute_embeddings(
            images.limit(2),
            "emb",
            model=TINY_CLIP_NAME,
            pretrained=None,
            progress=False,
        )
    (warned,) = [w for w in caught if "RANDOM weights" in str(w.message)]
    assert warned.filename == __file__


def test_vectors_of_an_unknown_model_are_not_filled_with_the_default(
    images, monkeypatch, tiny_clip_checkpoint
):
    """The default field holds vectors nothing records the model of, some samples
    none: the default model would mix with them, so the build asks which model."""
    from fiftyone_clipbranches.sdk.errors import MissingEmbeddingsError

    tiny = {"model": TINY_CLIP_NAME, "pretrained": str(tiny_clip_checkpoint)}
    ds = images
    sdk.compute_embeddings(ds.limit(36), **tiny, progress=False)
    ds.get_field("clip_embedding").info = None  # as FiftyOne's own computation
    ds.get_field("clip_embedding").save()
    loads = []
    monkeypatch.setattr(embeddings, "get_clip_model", lambda *a: loads.append(a))
    with pytest.raises(MissingEmbeddingsError, match="4 of its samples are without"):
        sdk.build_index(ds, "clip", code_method="pca", progress=False)
    assert not loads and sdk.list_indexes(ds) == []
    # as the message says: only those with a vector
    info = sdk.build_index(
        ds,
        "clip",
        embeddings_field="clip_embedding",
        skip_missing=True,
        code_method="pca",
        progress=False,
    )
    assert info.n_samples == 36 and info.clip_model is None


def test_ctrl_c_while_the_kernels_compile_keeps_the_built_index(
    images, monkeypatch, tiny_clip_checkpoint
):
    """The CLI said "interrupted" (exit 130) while the index was complete, and the
    same command then failed on the existing key: Ctrl-C still stops the caller,
    and says the index is built."""
    from fiftyone_clipbranches.sdk import indexes

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(indexes, "refinement_is_warm", lambda: False)
    monkeypatch.setattr(indexes, "warm_refinement_or_warn", interrupted)
    with pytest.raises(KeyboardInterrupt) as stop:
        sdk.build_index(
            images, "clip", code_method="pca", model=TINY_CLIP_NAME,
            pretrained=str(tiny_clip_checkpoint), progress=False,
        )  # fmt: skip
    assert sdk.list_indexes(images) == ["clip"]  # built, and its key free
    assert sdk.index_info(images, "clip").n_samples == len(images)
    assert stop.value.built == (
        f"index 'clip' was built over {len(images)} samples; preparing the"
        " refinement's kernels was interrupted (the first refinement finishes it)"
    )
    # a traceback in a notebook says it too
    assert stop.value.__notes__ == [
        f"{stop.value.built}: it is ready, no need to build it again"
    ]
    from fiftyone_clipbranches.cli import _interrupted

    said = _interrupted(types.SimpleNamespace(command="build-index"), stop.value)
    assert said.startswith("interrupted; index 'clip' was built over")


def test_a_stray_vector_of_another_length_is_embedded_again(
    images, tiny_clip_checkpoint
):
    """One wrong-length vector on the dataset's first sample (a merge gone wrong)
    was taken for the field's length: every later embedding was refused, the
    re-embedding that mends it too. The vectors kept say the field's length."""
    import numpy as np

    ds = images
    tiny = {"model": TINY_CLIP_NAME, "pretrained": str(tiny_clip_checkpoint)}
    sdk.build_index(ds, "clip", code_method="pca", progress=False, **tiny)
    stray = ds.first()
    stray["clip_embedding"] = np.ones(8, np.float32)
    stray.save()
    info = sdk.update_index(ds, "clip", reembed=[stray.id], progress=False)
    assert info.n_samples == len(ds)
    assert np.asarray(ds[stray.id]["clip_embedding"]).size == 64
    stray["clip_embedding"] = np.ones(8, np.float32)
    stray.save()
    sdk.compute_embeddings(ds.select(stray.id), skip_existing=False, progress=False)
    assert np.asarray(ds[stray.id]["clip_embedding"]).size == 64
    # a field all of another length is still refused, whatever sample is first
    ds.set_values("clip_embedding", [np.ones(8, np.float32)] * len(ds))
    with pytest.raises(ValueError, match="holds vectors of length 8 and CLIP"):
        sdk.compute_embeddings(ds.skip(1), skip_existing=False, progress=False)
    # ... when the samples embedded again are the first ones read (a page of
    # them, the query's own pages too), and when one vector has the model's length
    from fiftyone_clipbranches.sdk import embeddings as sdk_embeddings

    for few in (sdk_embeddings.FEW_REPLACED, 0):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sdk_embeddings, "LENGTH_SAMPLE", 8)
            patch.setattr(sdk_embeddings, "FEW_REPLACED", few)
            with pytest.raises(ValueError, match="holds vectors of length 8"):
                sdk.compute_embeddings(
                    ds.limit(12), skip_existing=False, progress=False
                )
    last = ds.last()
    last["clip_embedding"] = np.ones(64, np.float32)
    last.save()
    with pytest.raises(ValueError, match="holds vectors of length 8"):
        sdk.compute_embeddings(ds.limit(2), skip_existing=False, progress=False)
