"""A vector computed from another file than its sample's ``filepath`` now is not
indexed as if it were the new file's: images on disk -> ``compute_embeddings`` (tiny
CLIP) -> a filepath changed -> ``build_index`` from the field."""

import shutil

import fiftyone as fo
import numpy as np
from user_path import TINY_CLIP_NAME, images_dataset

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.cli import main as cli_main


def _embed(ds, checkpoint):
    return sdk.compute_embeddings(
        ds, "clip_embedding", model=TINY_CLIP_NAME, pretrained=str(checkpoint)
    )


def _build(ds, checkpoint, key="clip", **kwargs):
    return sdk.build_index(
        ds, key, model=TINY_CLIP_NAME, pretrained=str(checkpoint),
        code_method="pca", progress=False, **kwargs,
    )  # fmt: skip


def test_a_sample_pointed_at_another_image_is_embedded_again_at_the_build(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """Its old vector went into every index built from the field afterwards:
    found at distance 0 by its old image, not by its new one, and "up to date"."""
    ds = images_dataset(cifar_dir, 5)
    try:
        assert _embed(ds, tiny_clip_checkpoint)["n_embedded"] == 50
        assert "clip_embedding_filepath" in ds.get_field_schema()
        moved, other = ds.first(), ds.last()
        moved.filepath = other.filepath  # now another image
        moved.save()
        _build(ds, tiny_clip_checkpoint)
        moved.reload()
        assert np.allclose(moved.clip_embedding, other.clip_embedding, atol=1e-5)
        assert moved.clip_embedding_filepath == other.filepath
        near = sdk.search(ds, sample_ids=[other.id], k=2, index_key="clip")
        assert set(near.values("id")) == {moved.id, other.id}
        # nothing stale is left: the next embedding has nothing to do
        assert _embed(ds, tiny_clip_checkpoint)["n_embedded"] == 0

        # pointed at a file that cannot be read: its old vector goes, it is left out
        broken = tmp_path / "broken.jpg"
        broken.write_text("no image")
        moved.filepath = str(broken)
        moved.save()
        info = _build(ds, tiny_clip_checkpoint, overwrite=True)
        moved.reload()
        assert moved.clip_embedding is None and info.n_samples == 49
        assert moved.id in info.freshness.unreadable
    finally:
        ds.delete()


def test_an_added_sample_pointed_at_another_image_is_embedded_again_at_the_update(
    cifar_dir, tiny_clip_checkpoint
):
    """Embedded after the build, then pointed at another image: the update took
    its vector as it was (it counted only samples without one)."""
    ds = images_dataset(cifar_dir, 4)
    try:
        _embed(ds, tiny_clip_checkpoint)
        _build(ds, tiny_clip_checkpoint)
        other = ds.last()
        added = ds.first().copy()  # a new sample of another file
        ds.add_sample(added)
        _embed(ds, tiny_clip_checkpoint)  # its vector, of that file
        added.filepath = other.filepath
        added.save()
        changes = sdk.update_index(ds, "clip", progress=False).changes
        added.reload()
        assert changes.added == 1
        assert np.allclose(added.clip_embedding, other.clip_embedding, atol=1e-5)
    finally:
        ds.delete()


def test_files_that_only_moved_keep_their_vectors_and_a_users_field_is_left(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    ds = images_dataset(cifar_dir, 4)
    try:
        _embed(ds, tiny_clip_checkpoint)
        _build(ds, tiny_clip_checkpoint)
        sample = ds.first()
        copy = tmp_path / "same-image.jpg"
        shutil.copy(sample.filepath, copy)
        sample.filepath = str(copy)  # the same image at a new path
        sample.save()
        args = ["update-index", ds.name, "--key", "clip", "--keep-moved", "--quiet"]
        assert cli_main(args) == 0
        sample.reload()
        assert sample.clip_embedding_filepath == str(copy)  # recorded: not stale
        assert _embed(ds, tiny_clip_checkpoint)["n_embedded"] == 0
    finally:
        ds.delete()

    # a field of that name the user made is never written nor read
    ds = images_dataset(cifar_dir, 4)
    try:
        ds.add_sample_field("clip_embedding_filepath", fo.StringField)
        ds.set_values("clip_embedding_filepath", ["mine"] * len(ds))
        _embed(ds, tiny_clip_checkpoint)
        assert set(ds.values("clip_embedding_filepath")) == {"mine"}
        sample = ds.first()
        sample.filepath = ds.last().filepath
        sample.save()
        assert _embed(ds, tiny_clip_checkpoint)["n_embedded"] == 0  # untracked
    finally:
        ds.delete()
