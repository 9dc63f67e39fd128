"""``build_index_from_codes(shards=S)`` in process: the same refine and search answers
as one index, argument errors, and a failed build that registers nothing."""

from __future__ import annotations

import numpy as np
import pytest
from sdk_testdata import cluster_codes

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk import sharding


def test_sharded_codes_index_answers_as_one_index(make_dataset):
    ds = make_dataset(20)
    labels = ds.values("ground_truth.label")
    codes, ids = cluster_codes(labels, spread=6.0), ds.values("id")
    sdk.build_index_from_codes(ds, codes, ids, "one")
    sdk.build_index_from_codes(ds, codes, ids, "three", shards=3)
    _, bundle = sdk.load_index(ds, "three")
    assert bundle.index.n_shards == 3
    pos = [i for i, lab in zip(ids, labels) if lab == labels[0]][:4]
    neg = [i for i, lab in zip(ids, labels) if lab != labels[0]][:6]
    for model in ("branches", "ensemble", "tree"):
        a = sdk.refine(ds, pos, neg, model=model, index_key="one", score_field=None)
        b = sdk.refine(ds, pos, neg, model=model, index_key="three", score_field=None)
        assert a.ids == b.ids and len(a.ids) >= len(pos)
        np.testing.assert_array_equal(a.scores, b.scores)
    for key in ("one", "three"):
        assert (
            sdk.search_ids(ds, sample_ids=pos[:2], k=15, index_key=key)[0]
            == (sdk.search_ids(ds, sample_ids=pos[:2], k=15, index_key="one")[0])
        )


def test_shard_arguments_and_a_failed_build(make_dataset, monkeypatch):
    ds = make_dataset(3)
    codes = cluster_codes(ds.values("ground_truth.label"))
    for bad, err in ((0, ValueError), (True, TypeError), (len(ds) + 1, ValueError)):
        with pytest.raises(err):
            sdk.build_index_from_codes(ds, codes, ds.values("id"), "x", shards=bad)
    with pytest.raises(ValueError, match="from 1 to 1024"):
        sdk.build_index_from_codes(ds, codes, ds.values("id"), "x", shards=5000)
    # more shards than samples: refused before any image is embedded
    with pytest.raises(ValueError, match="31 shards for 30 samples would leave") as e:
        sdk.build_index(ds, "x", shards=31, model="none-needed", pretrained=None)
    assert "at most 30 (one sample each)" in str(e.value)
    assert sdk.list_indexes(ds) == []
    # a cluster named for one shard: no distributed build would happen
    for build in (
        lambda: sdk.build_index(ds, "x", ray_address="127.0.0.1:1", model="none"),
        lambda: sdk.build_index_from_codes(
            ds, codes, ds.values("id"), "x", ray_address="127.0.0.1:1"
        ),
    ):
        with pytest.raises(ValueError, match="give the number of shards too"):
            build()
    assert sdk.list_indexes(ds) == [] and ds.get_field("clip_embedding") is None

    def broken(jobs, progress):
        raise OSError("disk full")

    from fiftyone_clipbranches.engine import shard_format

    monkeypatch.setattr(shard_format, "build_in_process", broken)
    with pytest.raises(OSError, match="disk full"):
        sdk.build_index_from_codes(ds, codes, ds.values("id"), "x", shards=2)
    assert sdk.list_indexes(ds) == []
    assert sharding.ray_address() is None


def test_a_ray_cluster_that_cannot_be_reached_fails_before_any_embedding(
    cifar_dir, tiny_clip_checkpoint
):
    from user_path import TINY_CLIP_NAME, images_dataset

    ds = images_dataset(cifar_dir, 2)
    try:
        with pytest.raises(sdk.RayUnavailableError, match="no Ray cluster answers"):
            sdk.build_index(
                ds,
                model=TINY_CLIP_NAME,
                pretrained=str(tiny_clip_checkpoint),
                shards=2,
                ray_address="127.0.0.1:1",
                progress=False,
            )
        assert ds.get_field("clip_embedding") is None and sdk.list_indexes(ds) == []
        # one of the SDK's errors, wherever Ray is asked for
        with pytest.raises(sdk.ShardsUnavailableError, match="no Ray cluster answers"):
            sharding.use_ray("127.0.0.1:1")
        assert sharding.ray_address() is None
    finally:
        ds.delete()


def test_a_sharded_build_from_images_shows_one_progress_bar(make_user_index, capsys):
    """A second bar ('building shards') drew over the build's own."""
    ds = make_user_index(n_per_class=4, index_key="one")
    capsys.readouterr()
    sdk.build_index(ds, "two", shards=2, progress=True, code_method="pca")
    err = capsys.readouterr().err
    assert "building shards" not in err and "index 'two' built" in err
    assert sdk.index_info(ds, "two").n_shards == 2


def test_a_damaged_sharded_index_rebuilt_as_its_error_says_keeps_its_shards(
    make_user_index,
):
    """The damaged shard's advice is a build in place: it kept the answers but made
    one shard of three, silently (SDK and CLI alike)."""
    import shutil
    from pathlib import Path

    from fiftyone_clipbranches.cli import main as cli_main

    ds = make_user_index(n_per_class=4, shards=3)
    ids = ds.values("id")
    before = sdk.refine(ds, ids[:3], ids[-2:], index_key="clip", score_field=None)
    build = ["build-index", ds.name, "--key", "clip", "--overwrite", "--quiet"]
    build += ["--embeddings-field", "clip_embedding", "--code-method", "pca"]
    for rebuild in (
        lambda: sdk.build_index(ds, "clip", overwrite=True, code_method="pca"),
        lambda: cli_main(build),
    ):
        shard = next(Path(sdk.index_info(ds, "clip").index_dir).glob("*/shard-0001"))
        shutil.rmtree(shard)
        with pytest.raises(sdk.IndexCorruptedError, match="shard 1 of 3.*overwrite"):
            sdk.verify_index(ds, "clip", level="fast")
        done = rebuild()  # the SDK's IndexInfo, or the CLI's status
        assert done == 0 if isinstance(done, int) else done.n_shards == 3
        assert sdk.index_info(ds, "clip").n_shards == 3
        # the top manifest damaged: its shard folders still say how many
        top = next(Path(sdk.index_info(ds, "clip").index_dir).glob("*/manifest.json"))
        top.write_text("{ not json")
        with pytest.raises(sdk.IndexCorruptedError, match="overwrite"):
            sdk.verify_index(ds, "clip", level="fast")
        done = rebuild()  # the SDK's IndexInfo, or the CLI's status
        assert done == 0 if isinstance(done, int) else done.n_shards == 3
        assert sdk.index_info(ds, "clip").n_shards == 3
        after = sdk.refine(ds, ids[:3], ids[-2:], index_key="clip", score_field=None)
        assert list(after.ids) == list(before.ids)
    # a number given is a number built
    sdk.build_index(ds, "clip", overwrite=True, code_method="pca", shards=1)
    assert sdk.index_info(ds, "clip").n_shards == 1


def test_a_rebuild_in_place_keeps_the_code_method(make_user_index):
    """``build_index(..., overwrite=True)``, the damaged index's remedy, made head
    codes of a PCA index (refused on a small dataset). Moved and added samples
    are embedded as before."""
    import fiftyone as fo
    import numpy as np

    from fiftyone_clipbranches.cli import main as cli_main

    ds = make_user_index(n_per_class=4)
    ids, paths = ds.values(["id", "filepath"])
    moved = ds[ids[0]]
    moved.filepath = paths[-1]  # now the last sample's image
    moved.save()
    ds.add_sample(fo.Sample(filepath=paths[1]))  # an added sample
    for rebuild in (
        lambda: sdk.build_index(ds, "clip", overwrite=True, progress=False),
        lambda: cli_main(["build-index", ds.name, "--key", "clip", "--overwrite"]),
    ):
        done = rebuild()  # the SDK's IndexInfo, or the CLI's status
        assert done == 0 if isinstance(done, int) else done.code_method == "pca"
        info = sdk.index_info(ds, "clip")
        assert info.code_method == "pca" and info.n_samples == len(ids) + 1
        assert not info.freshness.is_stale
        vectors = dict(zip(*ds.values(["id", "clip_embedding"])))
        np.testing.assert_array_equal(vectors[ids[0]], vectors[ids[-1]])
    # what is given is built
    with pytest.raises(ValueError, match="needs at least 64 embeddings"):
        sdk.build_index(ds, "clip", overwrite=True, code_method="head", progress=False)


def test_a_sharded_index_from_images_searches_a_view_and_looks_further(
    make_user_index,
):
    """On a sharded index built from images, a search within a view and
    ``next_to_label`` rank only the rows they may return (each shard skips the
    others): equal to a brute force over the index's own codes."""
    import numpy as np
    from fiftyone import ViewField as F

    from fiftyone_clipbranches.sdk.bundle import load_bundle

    ds = make_user_index(n_per_class=6, shards=3)
    bundle = load_bundle(sdk.index_info(ds, "clip").index_dir)
    assert bundle.index.n_shards == 3
    codes = np.asarray(bundle.index.codes).astype(np.int64)

    def nearest(query_ids, among, k):
        rows, _ = bundle.rowmap.rows_of(query_ids)
        query = np.clip(np.rint(codes[np.sort(rows)].mean(axis=0)), 0, 255)
        allowed, _ = bundle.rowmap.rows_of(among)
        dists = ((codes[allowed] - query) ** 2).sum(axis=1)
        return bundle.rowmap.ids_of(allowed[np.lexsort((allowed, dists))[:k]])

    labels = dict(zip(*ds.values(["id", "ground_truth.label"])))
    cats = [i for i, label in labels.items() if label == "cat"]
    two = ds.match(F("ground_truth.label").is_in(["cat", "dog"]))
    found, _ = sdk.search_ids(two, sample_ids=cats[:1], k=7, index_key="clip")
    assert found == nearest(cats[:1], two.values("id"), 7)

    seen = set(cats[2:4]) | {i for i, label in labels.items() if label == "dog"}
    further = sdk.next_to_label(
        ds, exclude=list(seen), k=9, positives=cats[:2], index_key="clip"
    ).values("id")
    rest = [i for i in labels if i not in seen | set(cats[:2])]
    assert further == nearest(cats[:2], rest, 9)
