"""Samples a request names that the index lacks, and searches within a view, on an
index built the user's way (images on disk, a tiny random CLIP, ``build_index``)."""

import fiftyone as fo
import numpy as np
import pytest
from user_path import build_user_index, images_dataset

from fiftyone_clipbranches import sdk


@pytest.fixture(scope="module")
def indexed(cifar_dir, tiny_clip_checkpoint, tmp_path_factory):
    """10 images of each class plus one unreadable file, indexed as a user would."""
    broken = tmp_path_factory.mktemp("broken") / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    ds = images_dataset(cifar_dir, 10)
    (broken_id,) = ds.add_samples([fo.Sample(filepath=str(broken))], progress=False)
    build_user_index(ds, tiny_clip_checkpoint, skip_missing=True)
    yield ds, broken_id
    ds.delete()


def _brute_force_nearest(ds, query_code, rows_allowed, k):
    _, bundle = sdk.load_index(ds, "clip")
    codes = np.asarray(bundle.index.codes, np.int64)
    d = ((codes - query_code.astype(np.int64)) ** 2).sum(1)
    rows = np.flatnonzero(rows_allowed)
    rows = rows[np.lexsort((rows, d[rows]))][:k]
    return bundle.rowmap.ids_of(rows), d[rows]


def test_a_search_in_a_view_returns_the_nearest_samples_of_the_view(indexed):
    ds, _ = indexed
    cats = ds.match(fo.ViewField("ground_truth.label") == "cat")
    query = ds.match(fo.ViewField("ground_truth.label") == "dog").first().id
    ids, dists = sdk.search_ids(cats, sample_ids=[query], k=7, index_key="clip")
    _, bundle = sdk.load_index(ds, "clip")
    allowed = np.zeros(len(bundle.index), bool)
    allowed[bundle.rowmap.rows_of(cats.values("id"))[0]] = True
    code = bundle.index.codes[bundle.rowmap.rows_of([query])[0][0]]
    want_ids, want_d = _brute_force_nearest(ds, code, allowed, 7)
    assert ids == list(want_ids) and dists.tolist() == want_d.tolist()
    view = sdk.search(cats, sample_ids=[query], k=7, index_key="clip")
    assert view.values("id") == ids
    assert set(view.values("ground_truth.label")) == {"cat"}
    # more than the view holds: all of it, nearest first
    assert (
        len(sdk.search_ids(cats, sample_ids=[query], k=500, index_key="clip")[0]) == 10
    )
    # the whole dataset is searched as before
    everywhere, _ = sdk.search_ids(ds, sample_ids=[query], k=7, index_key="clip")
    assert everywhere == list(
        _brute_force_nearest(ds, code, np.ones_like(allowed), 7)[0]
    )


def test_a_query_id_of_no_sample_is_named_as_such(indexed):
    ds, _ = indexed
    with pytest.raises(sdk.SampleIdsError, match="not (a sample|samples) of dataset"):
        sdk.search_ids(ds, sample_ids=["0" * 24], k=3, index_key="clip")


def test_an_unreadable_image_is_named_and_as_a_negative_left_out(indexed):
    ds, broken_id = indexed
    assert broken_id in sdk.index_info(ds, "clip").freshness.unreadable
    cats = ds.match(fo.ViewField("ground_truth.label") == "cat").values("id")
    dogs = ds.match(fo.ViewField("ground_truth.label") == "dog").values("id")
    for call, advice in (
        (
            lambda: sdk.refine(ds, positives=[*cats[:3], broken_id], index_key="clip"),
            "Remove its positive label",
        ),
        (
            lambda: sdk.search_ids(ds, sample_ids=[broken_id], k=3, index_key="clip"),
            "Leave it out of the query ids",
        ),
    ):
        with pytest.raises(sdk.SampleIdsError, match="could not be read") as err:
            call()
        assert "broken.jpg" in str(err.value) and "retry_failed" in str(err.value)
        assert advice in str(err.value)
    without = sdk.refine_ranking(
        ds, positives=cats[:3], negatives=dogs[:3], index_key="clip", seed=0
    )
    with_it = sdk.refine_ranking(
        ds, positives=cats[:3], negatives=[*dogs[:3], broken_id], index_key="clip",
        seed=0,
    )  # fmt: skip
    assert with_it.stats["n_neg"] == 3 and with_it.stats["n_unreadable_neg"] == 1
    assert without.stats["n_unreadable_neg"] == 0
    from fiftyone_clipbranches.sdk.messages import round_summary

    with_it.stats["n_results"] = len(with_it.rows)
    assert round_summary(with_it.stats).endswith(
        "/ 3 negatives (1 unreadable negative left out)"
    )
    assert with_it.rows.tolist() == without.rows.tolist()
    # an unreadable image is not a sample "added since the build"
    assert with_it.stats["n_unindexed"] == 0
    assert sdk.unsearched_count(ds, "clip") == 0


def test_preloading_loads_the_index_and_its_clip_model_in_the_background(indexed):
    from fiftyone_clipbranches.sdk import embeddings
    from fiftyone_clipbranches.sdk.bundle import cached_bundles, forget_bundle
    from fiftyone_clipbranches.sdk.search import preload_index

    ds, _ = indexed
    config, _ = sdk.load_index(ds, "clip")
    forget_bundle(config.index_dir)
    with embeddings._models_lock:
        embeddings._models.clear()
    key = (config.clip_model["name"], config.clip_model["pretrained"])
    assert embeddings._cached_model(key) is None
    thread = preload_index(ds, "clip")
    thread.join(120)
    assert embeddings._cached_model(key) is not None
    pinned, lru = cached_bundles()
    assert any(str(config.index_dir) in p for p in pinned + lru)
    assert preload_index(ds, "no-such-index") is None


def test_labels_of_deleted_samples_are_refused_and_nothing_is_lost(indexed):
    ds, _ = indexed
    cats = ds.match(fo.ViewField("ground_truth.label") == "cat").values("id")
    dogs = ds.match(fo.ViewField("ground_truth.label") == "dog").values("id")
    kept = ds.select(cats[-1:]).clone()  # the sample back afterwards, same id
    ds.delete_samples(cats[-1:])
    try:
        for labels in (
            dict(positives=cats[:3] + cats[-1:]),
            dict(positives=cats[:3], negatives=dogs[:2] + cats[-1:]),
        ):
            with pytest.raises(sdk.SampleIdsError, match="deleted from dataset") as e:
                sdk.refine(ds, index_key="clip", **labels)
            what = "positive" if "negatives" not in labels else "negative"
            assert cats[-1] in str(e.value)
            assert f"leave it out of the {what} ids" in str(e.value)
        # the live labels alone still refine, and the deleted sample is not returned
        result = sdk.refine(ds, positives=cats[:3], index_key="clip", score_field=None)
        assert set(cats[:3]) <= set(result.ids) and cats[-1] not in result.ids
    finally:
        ds.add_collection(kept, include_info=False)
        kept.delete()
    assert cats[-1] in ds.values("id")


def test_samples_and_views_are_labels_and_queries_like_their_ids(indexed):
    ds, _ = indexed
    cats_view = ds.match(fo.ViewField("ground_truth.label") == "cat").limit(3)
    dogs = ds.match(fo.ViewField("ground_truth.label") == "dog").limit(2)
    cats, dog_ids = cats_view.values("id"), dogs.values("id")
    by_ids = sdk.refine_ranking(
        ds, positives=cats, negatives=dog_ids, index_key="clip", seed=0
    )
    for positives, negatives in (
        (cats_view, dogs),  # views
        ([s for s in cats_view], [ds[i] for i in dog_ids]),  # samples
    ):
        ranking = sdk.refine_ranking(
            ds, positives=positives, negatives=negatives, index_key="clip", seed=0
        )
        assert ranking.rows.tolist() == by_ids.rows.tolist()
    one = sdk.search_ids(ds, sample_ids=cats[0], k=5, index_key="clip")[0]
    assert list(
        sdk.search_ids(ds, sample_ids=ds[cats[0]], k=5, index_key="clip")[0]
    ) == list(one)
    assert list(
        sdk.search_ids(ds, sample_ids=cats_view.limit(1), k=5, index_key="clip")[0]
    ) == list(one)
    # ObjectIds, and the patches of samples, stand for their samples
    from bson import ObjectId

    for query in (ObjectId(cats[0]), [ObjectId(cats[0])]):
        assert list(
            sdk.search_ids(ds, sample_ids=query, k=5, index_key="clip")[0]
        ) == list(one)
    box = fo.Detections(detections=[fo.Detection(label="cat", bounding_box=[0] * 4)])
    ds.set_values("boxes", {cats[0]: box}, key_field="id")
    try:
        patches = ds.to_patches("boxes")
        assert patches.values("id") != [cats[0]]
        assert list(
            sdk.search_ids(ds, sample_ids=patches, k=5, index_key="clip")[0]
        ) == list(one)
    finally:
        ds.delete_sample_field("boxes")
    with pytest.raises(sdk.SampleIdsError, match="not in a dataset yet"):
        sdk.search_ids(ds, sample_ids=fo.Sample(filepath="new.jpg"), index_key="clip")
    # anything else is named briefly, not printed whole
    with pytest.raises(sdk.SampleIdsError, match="must be FiftyOne sample ids") as err:
        sdk.refine(ds, positives=[{"id": cats[0], "blob": "x" * 500}], index_key="clip")
    assert len(str(err.value)) < 300
