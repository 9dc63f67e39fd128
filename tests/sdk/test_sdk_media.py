"""Only image samples are indexed: grouped and video datasets and the patches views
and dynamic groups of an image dataset are refused by name, before anything is
written."""

from __future__ import annotations

import fiftyone as fo
import pytest
from user_path import TINY_CLIP_NAME, grouped_images_dataset

from fiftyone_clipbranches import sdk


def _embed_kwargs(checkpoint):
    return {"model": TINY_CLIP_NAME, "pretrained": str(checkpoint), "progress": False}


def test_a_grouped_dataset_is_refused_with_the_way_to_index_a_slice(
    cifar_dir, tiny_clip_checkpoint
):
    ds = grouped_images_dataset(cifar_dir, 3)
    try:
        with pytest.raises(sdk.UnsupportedMediaError, match="grouped dataset") as err:
            sdk.compute_embeddings(ds, "emb", **_embed_kwargs(tiny_clip_checkpoint))
        assert "(slices 'left', 'right')" in str(err.value)
        assert "select_group_slices('left')" in str(err.value)
        with pytest.raises(sdk.UnsupportedMediaError, match="grouped dataset"):
            sdk.build_index(ds, "cb", code_method="pca", progress=False)
        assert ds.get_field("emb") is None and sdk.list_indexes(ds) == []
    finally:
        ds.delete()


def test_a_video_dataset_is_refused_as_no_images(tmp_path, tiny_clip_checkpoint):
    ds = fo.Dataset()
    try:
        ds.add_samples(
            [fo.Sample(filepath=str(tmp_path / f"{i}.mp4")) for i in range(3)],
            progress=False,
        )
        assert ds.media_type == "video"
        with pytest.raises(sdk.UnsupportedMediaError, match="video media, not images"):
            sdk.build_index(ds, "cb", **_embed_kwargs(tiny_clip_checkpoint))
        assert ds.get_field("clip_embedding") is None
    finally:
        ds.delete()


def test_point_clouds_are_refused_without_a_videos_advice(tmp_path):
    ds = fo.Dataset()
    try:
        ds.add_samples(
            [fo.Sample(filepath=str(tmp_path / f"{i}.pcd")) for i in range(3)],
            progress=False,
        )
        with pytest.raises(sdk.UnsupportedMediaError, match="point-cloud media") as e:
            sdk.search(ds, text="a car", index_key="cb")
        assert "frames" not in str(e.value)  # it told to index a video's frames
    finally:
        ds.delete()


def test_a_patches_view_is_refused_and_its_dataset_searched(make_user_index):
    ds = make_user_index(n_per_class=4)
    for sample in ds:
        box = fo.Detection(label="thing", bounding_box=[0.1, 0.1, 0.5, 0.5])
        sample["boxes"] = fo.Detections(detections=[box, box.copy()])
        sample.save()
    patches = ds.to_patches("boxes")
    one = ds.first().id
    for call in (
        lambda: sdk.search(patches, sample_ids=[one], k=3, index_key="clip"),
        lambda: sdk.refine(patches, positives=[one], index_key="clip"),
        lambda: sdk.compute_embeddings(patches, "patch_emb", progress=False),
    ):
        with pytest.raises(sdk.UnsupportedMediaError, match="patches view") as err:
            call()
        assert "its rows are patches, not the dataset's samples" in str(err.value)
        assert "use the dataset" in str(err.value)  # computing, not only searching
    assert ds.get_field("patch_emb") is None
    assert (
        sdk.search(ds, sample_ids=[one], k=3, index_key="clip").values("id")[0] == one
    )
    # a view of dynamic groups: one sample stood for each group, and the answer
    # held whole groups (3 matches, 90 samples shown)
    grouped = ds.group_by("ground_truth.label")
    for call in (
        lambda: sdk.search(grouped, sample_ids=[one], k=3, index_key="clip"),
        lambda: sdk.refine(grouped, positives=[one], index_key="clip"),
    ):
        with pytest.raises(sdk.UnsupportedMediaError, match="groups its samples"):
            call()
    flat = sdk.search(grouped.flatten(), sample_ids=[one], k=len(ds), index_key="clip")
    assert sorted(flat.values("id")) == sorted(ds.values("id"))


def test_images_of_no_known_extension_are_indexed(
    cifar_dir, tmp_path, tiny_clip_checkpoint
):
    import shutil

    from user_path import build_user_index

    names = []
    for i, path in enumerate(sorted(cifar_dir.glob("*/*"))[:40]):
        names.append(str(shutil.copy(path, tmp_path / f"blob{i:03d}")))  # no suffix
    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath=n) for n in names], progress=False)
        assert ds.media_type == "unknown"  # FiftyOne's word for "no known suffix"
        info = build_user_index(ds, tiny_clip_checkpoint)
        assert info.n_samples == 40
        with pytest.raises(ValueError, match="0 samples"):
            sdk.build_index(fo.Dataset(), "cb", progress=False)  # as before: empty
    finally:
        ds.delete()
