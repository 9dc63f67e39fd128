"""``update_index(reembed=...)``: samples whose image changed are embedded again
and their rows replaced (an update only added new samples and dropped deleted
ones: a changed image kept its old code, with no way but a rebuild)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.cli import main as cli_main


def _code(ds, sample_id):
    _, bundle = sdk.load_index(ds, "clip")
    rows, found = bundle.rowmap.rows_of([sample_id])
    assert found.all()
    return np.asarray(bundle.index.codes)[rows[0]]


def _steps(a, b) -> int:
    """The largest difference between two codes, in quantisation steps."""
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def test_a_changed_filepath_is_seen_and_embedded_again(make_user_index, capsys):
    ds = make_user_index(n_per_class=5, name="moved")
    cat, dog = ds.take(2, seed=1).values("id")
    before = _code(ds, cat)
    assert _steps(before, _code(ds, dog)) > 1
    fresh = sdk.index_info(ds, "clip").freshness
    assert fresh.n_moved == 0 and not fresh.is_stale

    sample = ds[cat]
    sample.filepath = ds[dog].filepath  # the user points it at another file
    sample.save()
    fresh = sdk.index_info(ds, "clip").freshness
    assert (fresh.n_moved, fresh.moved_ids, fresh.n_added) == (1, (cat,), 0)
    assert fresh.is_stale
    assert np.array_equal(_code(ds, cat), before)  # searched as the old image
    assert cli_main(["indexes", ds.name]) == 0
    assert "0 deleted, 1 with another filepath since it was built" in (
        capsys.readouterr().out
    )

    args = ["update-index", ds.name, "--key", "clip", "--quiet"]
    assert cli_main(args) == 0
    assert "0 dropped (deleted from the dataset), 1 sample embedded again" in (
        capsys.readouterr().out
    )
    info = sdk.index_info(ds, "clip")
    assert info.n_samples == 50 and not info.freshness.is_stale
    assert _steps(_code(ds, cat), _code(ds, dog)) <= 1  # the new image's code
    assert np.allclose(ds[cat].clip_embedding, ds[dog].clip_embedding, atol=1e-4)
    # a row kept through an update keeps its digest: nothing is embedded again
    index_dir = sdk.index_info(ds, "clip").index_dir
    assert sdk.update_index(ds, "clip", progress=False).index_dir == index_dir


def test_moved_files_keep_their_rows_when_told(make_user_index, tmp_path, capsys):
    ds = make_user_index(n_per_class=5, name="relocated")
    cat, dog = ds.take(2, seed=2).values("id")
    before = {sid: _code(ds, sid) for sid in (cat, dog)}
    for sid in (cat, dog):  # the media moved: the same images under a new folder
        sample = ds[sid]
        moved = tmp_path / f"{sid}.png"
        shutil.copy(sample.filepath, moved)
        sample.filepath = str(moved)
        sample.save()
    assert sdk.index_info(ds, "clip").freshness.n_moved == 2
    index_dir = sdk.index_info(ds, "clip").index_dir

    info = sdk.update_index(ds, "clip", keep_moved=True, progress=False)
    assert info.changes == sdk.IndexChanges(moved_kept=2)
    assert sdk.index_info(ds, "clip").changes is None  # what an update did
    assert info.index_dir != index_dir  # the new paths are recorded
    assert not info.freshness.is_stale and info.n_samples == 50
    assert all(np.array_equal(_code(ds, s), before[s]) for s in (cat, dog))

    # the CLI's flag, and a checkpoint gone: the refusal names the way out
    sample = ds[cat]
    sample.filepath = str(tmp_path / f"{dog}.png")
    sample.save()
    checkpoint = sdk.index_info(ds, "clip").clip_model["pretrained"]
    hidden = tmp_path / "hidden.pt"
    shutil.move(checkpoint, hidden)
    try:
        with pytest.raises(sdk.errors.CheckpointUnavailableError) as err:
            sdk.update_index(ds, "clip", progress=False)
        assert "1 sample only has another filepath" in str(err.value)
        assert "update with keep_moved=True (CLI: --keep-moved)" in str(err.value)
        args = ["update-index", ds.name, "--key", "clip", "--quiet", "--keep-moved"]
        assert cli_main(args) == 0
        assert "0 dropped (deleted from the dataset), 1 moved sample kept (new" in (
            capsys.readouterr().out
        )
        assert not sdk.index_info(ds, "clip").freshness.is_stale
        assert np.array_equal(_code(ds, cat), before[cat])
    finally:
        shutil.move(hidden, checkpoint)

    # a "move" to a path with no file (a typo) is no move of the same image: its
    # row is not kept for it; it is left out as unreadable until the path is mended
    typo = ds[dog]
    good = typo.filepath
    typo.filepath = good[: -len(".png")] + ".PNG"
    typo.save()
    args = ["update-index", ds.name, "--key", "clip", "--quiet", "--keep-moved"]
    assert cli_main(args) == 0
    said = capsys.readouterr().out
    assert "moved sample" not in said and "1 left out (image unreadable now)" in said
    info = sdk.index_info(ds, "clip")
    assert info.n_samples == 49 and list(info.freshness.unreadable) == [dog]
    typo.filepath = good
    typo.save()
    info = sdk.update_index(ds, "clip", keep_moved=True, progress=False)
    assert info.n_samples == 50 and not info.freshness.is_stale
    assert np.array_equal(_code(ds, dog), before[dog])  # embedded again, the same


def test_an_index_from_codes_records_no_filepaths(make_user_index):
    from sdk_testdata import cluster_codes

    ds = make_user_index(n_per_class=5, name="from-codes")
    codes = cluster_codes(ds.values("ground_truth.label"))
    sdk.build_index_from_codes(ds, codes, ds.values("id"), "codes")
    assert sdk.load_index(ds, "codes")[1].path_digests is None
    sample = ds.first()
    sample.filepath = ds.last().filepath
    sample.save()
    assert sdk.index_info(ds, "codes").freshness.n_moved == 0
    assert sdk.update_index(ds, "codes", progress=False).n_samples == 50


def test_changed_images_are_embedded_again(make_user_index, tmp_path):
    ds = make_user_index(n_per_class=5, name="reembed")
    cat, dog, other = ds.take(3, seed=1).values("id")
    cat_sample, dog_sample = ds[cat], ds[dog]
    before = _code(ds, cat)
    assert _steps(before, _code(ds, dog)) > 1

    image = tmp_path / "cat.png"  # the user's file, later replaced in place
    shutil.copy(cat_sample.filepath, image)
    cat_sample.filepath = str(image)
    cat_sample.save()
    assert sdk.update_index(ds, "clip", progress=False).n_samples == 50
    assert _steps(_code(ds, cat), before) <= 1  # the same image at another path
    shutil.copy(dog_sample.filepath, image)
    assert sdk.update_index(ds, "clip", progress=False).n_samples == 50
    assert _steps(_code(ds, cat), before) <= 1  # a plain update cannot know

    info = sdk.update_index(ds, "clip", reembed=cat, progress=False)
    assert info.n_samples == 50 and not info.freshness.is_stale
    # the same image, embedded in another batch: equal to float rounding
    assert _steps(_code(ds, cat), _code(ds, dog)) <= 1
    assert np.allclose(ds[cat].clip_embedding, ds[dog].clip_embedding, atol=1e-4)

    # an image that cannot be read now is left out, its old vector gone
    sample = ds[other]
    sample.filepath = str(tmp_path / "gone.jpg")
    sample.save()
    view = ds.select(other)
    info = sdk.update_index(ds, "clip", reembed=view, progress=False)
    assert info.n_samples == 49 and info.freshness.n_unreadable == 1
    assert ds[other].clip_embedding is None
    assert sdk.load_index(ds, "clip")[1].rowmap.contains([other]).tolist() == [False]


def test_reembed_is_checked_before_anything_changes(make_user_index, capsys):
    ds = make_user_index(n_per_class=5, name="reembed-checks")
    index_dir = sdk.index_info(ds, "clip").index_dir
    with pytest.raises(sdk.SampleIdsError, match="^reembed must be sample ids"):
        sdk.update_index(ds, "clip", reembed=5, progress=False)
    with pytest.raises(sdk.SampleIdsError, match="^reembed must be FiftyOne sample"):
        sdk.update_index(ds, "clip", reembed=["x" * 24], progress=False)
    with pytest.raises(sdk.SampleIdsError, match="is not a sample of dataset"):
        sdk.update_index(ds, "clip", reembed=["0123456789abcdef01234567"])
    assert sdk.index_info(ds, "clip").index_dir == index_dir

    ids = ds.values("id")[:2]
    ds.save_view("changed", ds.select(ids))
    args = ["update-index", ds.name, "--key", "clip", "--quiet"]
    assert cli_main([*args, "--reembed-view", "nope"]) == 1
    assert "no saved view 'nope'" in capsys.readouterr().err
    assert cli_main([*args, "--reembed-view", "changed", "--reembed", ids[0]]) == 0
    out = capsys.readouterr().out
    assert "2 samples embedded again" in out
    assert sdk.index_info(ds, "clip").index_dir != index_dir

    sample = ds[ids[1]]
    sample.filepath = sample.filepath.replace(".jpg", "-gone.jpg")
    sample.save()
    assert cli_main([*args, "--reembed-view", "changed"]) == 0
    out = capsys.readouterr().out
    assert "0 samples added, 0 dropped (deleted from the dataset), 1 sample" in out
    assert "embedded again, 1 left out (image unreadable now)" in out
    # still unreadable: not counted as added, nor as left out again
    assert cli_main([*args, "--reembed-view", "changed"]) == 0
    out = capsys.readouterr().out
    assert "0 samples added, 0 dropped (deleted from the dataset), 1 sample" in out
    assert "left out (image" not in out
    # scripts read the same counts
    assert cli_main([*args, "--reembed", ids[0], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changes"] == {
        "added": 0,
        "dropped": 0,
        "replaced": 1,
        "lost": 0,
        "left_out": 0,
        "moved_kept": 0,
        "no_vector": 0,
        "unreadable_again": 0,
    }
    assert out["n_samples"] == len(ds) - 1


def test_an_interrupted_reembedding_is_finished_by_the_next_update(
    make_user_index, monkeypatch, capsys
):
    """Ctrl-C while the images were embedded again left new vectors in the field
    and old codes in the index; a plain update did not notice."""
    from fiftyone_clipbranches.sdk import embeddings

    ds = make_user_index(n_per_class=5, name="reembed-stopped")
    ids = ds.take(12, seed=2).values("id")
    donor = next(i for i in ds.values("id") if i not in ids)
    for sid in ids:  # every file replaced by the same other image
        sample = ds[sid]
        sample.filepath = ds[donor].filepath
        sample.save()
    monkeypatch.setattr(embeddings, "_CHUNK", 8)

    def progress(fraction, label):
        if label.startswith("embedded"):  # after the first chunk was written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sdk.update_index(ds, "clip", reembed=ids, progress=progress)
    monkeypatch.undo()
    info = sdk.index_info(ds, "clip")
    assert info.n_reembed_pending == 12 and info.to_dict()["n_reembed_pending"] == 12
    embedded = [sid for sid in ids if _steps(_code(ds, sid), _code(ds, donor)) > 1]
    assert len(embedded) == 12  # the index still holds every old code
    assert cli_main(["indexes", ds.name]) == 0
    assert (
        f"12 samples still to embed again: an update was interrupted while it"
        f" embedded them (`clipbranches update-index {ds.name} --key clip`"
    ) in capsys.readouterr().out

    # an update without --reembed finishes it, and counts what it replaced
    update = ["update-index", ds.name, "--key", "clip", "--quiet", "--json"]
    assert cli_main(update) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changes"] == {
        "added": 0,
        "dropped": 0,
        "replaced": 12,
        "lost": 0,
        "left_out": 0,
        "moved_kept": 0,
        "no_vector": 0,
        "unreadable_again": 0,
    }
    assert out["n_reembed_pending"] == 0 and out["n_samples"] == 50
    assert all(_steps(_code(ds, sid), _code(ds, donor)) <= 1 for sid in ids)
    assert sdk.index_info(ds, "clip").n_reembed_pending == 0
    assert "still to embed again" not in _listing(ds, capsys)

    # a record whose samples are all gone since is dropped by the next update
    from fiftyone_clipbranches.sdk import runs

    config = runs.get_index_config(ds, "clip")
    config.reembed_pending = ["0123456789abcdef01234567"]
    runs.update_index_config(ds, "clip", config)
    assert sdk.index_info(ds, "clip").n_reembed_pending == 1
    assert sdk.update_index(ds, "clip", progress=False).n_reembed_pending == 0
    assert runs.get_index_config(ds, "clip").reembed_pending is None


def _listing(ds, capsys) -> str:
    assert cli_main(["indexes", ds.name]) == 0
    return capsys.readouterr().out


def test_an_update_that_embeds_moved_and_added_samples_shows_steady_progress(
    make_user_index,
):
    """The bar of an update shares its span among the images it embeds: with one
    moved sample and four added, it neither stops at the moved one nor runs back."""
    import fiftyone as fo

    ds = make_user_index(n_per_class=5, name="moved-and-added")
    cat, dog = ds.take(2, seed=3).values("id")
    sample = ds[cat]
    sample.filepath = ds[dog].filepath
    sample.save()
    ds.add_samples([fo.Sample(filepath=ds[dog].filepath) for _ in range(4)])
    seen = []
    info = sdk.update_index(ds, "clip", progress=lambda f, label: seen.append(f))
    assert info.n_samples == 54 and not info.freshness.is_stale
    assert all(b >= a - 1e-9 for a, b in zip(seen, seen[1:])) and seen[-1] == 1.0
    # the moved sample is 1 of the 5 images embedded: a fifth of their span
    assert min(f for f in seen if f > 0) == pytest.approx(0.55 / 5)


def test_merged_vectors_of_another_model_are_named_before_any_change(
    make_user_index, cifar_dir
):
    """Samples merged from a dataset embedded with another model (another length)
    stopped the update with the encoder's "embeddings must have 64 columns"; among
    samples of the right length, the right ones were named as the odd ones out."""
    import fiftyone as fo

    ds = make_user_index(n_per_class=4, name="merged")
    n = sdk.index_info(ds, "clip").n_samples
    width = len(ds.first().clip_embedding)
    files = sorted(p for p in cifar_dir.rglob("*.jpg"))[-3:]
    rng = np.random.default_rng(0)
    good = ds.first().clip_embedding  # the index's model's length
    ds.add_samples(
        [
            fo.Sample(filepath=str(files[0]), clip_embedding=good),
            *[
                fo.Sample(filepath=str(f), clip_embedding=rng.normal(size=width * 8))
                for f in files[1:]
            ],
        ]
    )
    foreign = ds.match(
        fo.ViewField("filepath").is_in([str(f) for f in files[1:]])
    ).values("id")
    with pytest.raises(sdk.MissingEmbeddingsError) as said:
        sdk.update_index(ds, "clip", progress=False)
    message = str(said.value)
    assert sorted(said.value.ids) == sorted(foreign)
    assert f"2 samples of 'clip_embedding' (e.g. {said.value.ids[0]} (length" in (
        message
    )
    assert f"another length than the {width} the index's model makes" in message
    assert "update_index(dataset, 'clip', reembed=error.ids)" in message
    shell = f"clipbranches update-index merged --key clip --reembed {foreign[0]}"
    assert shell in message or shell.replace(foreign[0], foreign[1]) in message
    assert "Embed again the selected samples" in said.value.in_app  # the App's way
    assert "reembed=" not in said.value.in_app
    assert sdk.index_info(ds, "clip").n_samples == n  # nothing changed
    # the way out it names: the index's model embeds them again
    info = sdk.update_index(ds, "clip", reembed=said.value.ids, progress=False)
    assert info.n_samples == n + 3
    assert {len(v) for v in ds.values("clip_embedding")} == {width}


def test_foreign_vectors_in_an_index_of_unknown_model_get_a_way_out(
    make_user_index, cifar_dir
):
    """The words said to embed them again with the model the field records and
    with reembed=, which the same error then refused again: the index knows no
    model (vectors stored by hand)."""
    import fiftyone as fo

    ds = make_user_index(n_per_class=4)
    ds.set_values("hand", ds.values("clip_embedding"))
    sdk.build_index(ds, "hand", embeddings_field="hand", code_method="pca")
    n = sdk.index_info(ds, "hand").n_samples
    (path,) = sorted(p for p in cifar_dir.rglob("*.jpg"))[-1:]
    (odd,) = ds.add_samples([fo.Sample(filepath=str(path), hand=np.ones(32))])
    with pytest.raises(sdk.MissingEmbeddingsError) as said:
        sdk.update_index(ds, "hand", progress=False)
    message = str(said.value)
    assert said.value.ids == [odd]
    assert f"1 sample of 'hand' (e.g. {odd} (length 32)) holds a vector" in message
    assert "does not know the model that made its vectors" in message
    assert "reembed" not in message and "--skip-missing" in message
    # the way out it names
    sample = ds[odd]
    sample["hand"] = None
    sample.save()
    info = sdk.update_index(ds, "hand", skip_missing=True, progress=False)
    assert info.n_samples == n and info.changes.no_vector == 1
