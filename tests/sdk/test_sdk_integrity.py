"""Index integrity on real datasets: clones, alive rows, ids, checksums, gc, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from sdk_testdata import cluster_codes, index_dataset

from fiftyone_clipbranches import cli, sdk
from fiftyone_clipbranches.sdk.bundle import forget_bundle, load_bundle
from fiftyone_clipbranches.sdk.gc import collect_garbage
from fiftyone_clipbranches.sdk.index_changes import IndexChanges


def _all_found(ds, key="idx"):
    return sdk.search_ids(ds, sample_ids=ds.values("id")[:1], k=1000, index_key=key)[0]


@pytest.fixture
def clones():
    made = []

    def clone(ds):
        c = ds.clone()
        made.append(c)
        return c

    yield clone
    for c in made:
        if not c.deleted:
            c.delete()


def test_update_and_delete_on_a_clone_leave_the_original_files(
    make_dataset, clones, capsys
):
    ds = make_dataset(3)
    index_dataset(ds, "idx")
    original_dir = Path(sdk.index_info(ds, "idx").index_dir)
    clone = clones(ds)
    clone.delete_samples(clone.values("id")[:5])
    info = sdk.update_index(clone, "idx", progress=False)
    # copy on write: the clone's new directory lives under the clone's own folder
    assert Path(info.index_dir).parent.name == str(clone._doc.id)
    assert original_dir.is_dir()
    assert sdk.delete_index(clone, "idx") is True  # its own copy went
    other = clones(ds)
    other.delete_run("idx")  # FiftyOne's own path: ClipBranchesIndex.cleanup
    third = clones(ds)
    assert cli.main(["delete-index", third.name, "--key", "idx", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said == {"dataset": third.name, "deleted": "idx", "files_deleted": False}
    assert original_dir.is_dir() and not Path(info.index_dir).exists()
    sdk.verify_index(ds, "idx", level="full")
    assert len(_all_found(ds)) == 30
    # the last run pointing at a directory takes its files with it
    fourth = clones(ds)
    assert cli.main(["delete-index", ds.name, "--key", "idx"]) == 0
    assert "its files stay: another index uses them" in capsys.readouterr().out
    assert original_dir.is_dir()
    assert cli.main(["delete-index", fourth.name, "--key", "idx"]) == 0
    assert "and its files" in capsys.readouterr().out
    assert not original_dir.exists()


def test_a_clone_made_after_deletions_returns_only_its_own_samples(
    make_dataset, clones
):
    ds = make_dataset(3)
    index_dataset(ds, "idx")
    ds.delete_samples(ds.values("id")[:6])
    clone = clones(ds)
    assert set(_all_found(clone)) == set(clone.values("id"))
    # samples deleted from the clone after first use are dropped too
    gone = clone.values("id")[:3]
    clone.delete_samples(gone)
    found = _all_found(clone)
    assert len(found) == 21 and not set(found) & set(gone)
    assert len(_all_found(ds)) == 24  # the original's own mask is its own


def test_index_from_codes_refuses_ids_of_other_samples(make_dataset):
    ds, other = make_dataset(1), make_dataset(1)
    ids = ds.values("id")[:8] + other.values("id")[:2]
    with pytest.raises(sdk.SampleIdsError, match=r"2 of 10 sample ids .* \(e\.g\."):
        sdk.build_index_from_codes(ds, np.zeros((10, 32), np.uint8), ids, "x")
    assert sdk.list_indexes(ds) == []


def test_verify_index_reports_every_file_and_catches_a_permutation(make_dataset):
    ds = make_dataset(3)
    index_dataset(ds, "idx")
    path = Path(sdk.index_info(ds, "idx").index_dir)
    report = sdk.verify_index(ds, "idx")
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert set(report.checked) == on_disk and report.unchecked == []
    assert report.level == "full" and report.to_dict()["key"] == "idx"
    ids = np.load(path / "sample_ids.npy")
    ids[[0, 1]] = ids[[1, 0]]
    os.chmod(path / "sample_ids.npy", 0o644)
    np.save(path / "sample_ids.npy", ids)
    forget_bundle(path)
    for level in ("fast", "full"):
        with pytest.raises(sdk.IndexCorruptedError, match="sample_ids.npy"):
            sdk.verify_index(ds, "idx", level=level)
    with pytest.raises(sdk.IndexCorruptedError, match="rebuild the index"):
        sdk.search(ds, sample_ids=ds.values("id")[:1], index_key="idx")


@pytest.mark.parametrize("shards", [1, 2])
def test_damaged_trees_give_the_sdk_advice_not_the_engine_s(make_dataset, shards):
    ds = make_dataset(3)
    index_dataset(ds, "idx", shards=shards)
    path = Path(sdk.index_info(ds, "idx").index_dir)
    trees = sorted((path / "index").rglob("node_lo.npy"))
    os.chmod(trees[-1], 0o644)
    trees[-1].write_bytes(b"garbage")
    forget_bundle(path)
    with pytest.raises(sdk.IndexCorruptedError, match="node_lo.npy") as caught:
        sdk.search(ds, sample_ids=ds.values("id")[:1], index_key="idx")
    assert "build_index(..., overwrite=True)" in str(caught.value)
    assert "CodeIndex" not in str(caught.value)


def test_a_garbled_manifest_is_a_clear_error(make_dataset):
    ds = make_dataset(2)
    index_dataset(ds, "idx")
    path = Path(sdk.index_info(ds, "idx").index_dir)
    manifest = path / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    forget_bundle(path)
    with pytest.raises(sdk.IndexCorruptedError, match="garbled"):
        sdk.index_info(ds, "idx")
    edited = json.loads(text)
    edited["n_samples"] += 1  # valid JSON, but not what was written
    manifest.write_text(json.dumps(edited))
    with pytest.raises(sdk.IndexCorruptedError, match="its own checksum"):
        load_bundle(path)


def test_format_1_directories_still_load_and_say_what_is_unchecked(make_dataset):
    ds = make_dataset(2)
    index_dataset(ds, "idx")
    path = Path(sdk.index_info(ds, "idx").index_dir)
    manifest = json.loads((path / "manifest.json").read_text())
    for key in ("files", "manifest_sha256", "n_unembeddable"):
        manifest.pop(key)
    manifest["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    forget_bundle(path)
    report = sdk.verify_index(ds, "idx")
    assert "sample_ids.npy" in report.unchecked and "index/codes.npy" in report.checked
    assert len(_all_found(ds)) == 20


_AS_NOBODY = textwrap.dedent(
    """
    import os, sys
    from fiftyone_clipbranches.engine.index import CodeIndex
    from fiftyone_clipbranches.engine.errors import IndexAccessError
    os.setgid(65534); os.setuid(65534)  # after the imports: the interpreter's are root's
    try:
        CodeIndex.load(sys.argv[1], verify="full")
    except IndexAccessError as e:
        print(e)
    """
)


@pytest.fixture
def world_readable_dir():
    base = Path(tempfile.mkdtemp(prefix="clipbranches-perm-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base)


def test_unreadable_files_are_permission_errors_not_corruption(world_readable_dir):
    from fiftyone_clipbranches.engine.index import CodeIndex

    path = world_readable_dir / "idx"
    CodeIndex.build(np.zeros((50, 32), np.uint8), path=path)
    for p in [path, *path.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(path / "codes.npy", 0)
    if os.geteuid() == 0:  # root reads anything: ask as an unprivileged user
        out = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        message = out.stdout + out.stderr
    else:
        from fiftyone_clipbranches.engine.errors import IndexAccessError

        with pytest.raises(IndexAccessError) as err:
            CodeIndex.load(path, verify="full")
        message = str(err.value)
    assert "codes.npy: permission denied; fix its permissions" in message
    assert "corrupt" not in message and "rebuild" not in message


def test_gc_finds_crashed_builds_and_unreferenced_dirs_never_used_ones(
    make_dataset, tmp_path, capsys
):
    ds, doomed = make_dataset(2), make_dataset(2)
    for d in (ds, doomed):
        codes = cluster_codes(d.values("ground_truth.label"))
        sdk.build_index_from_codes(d, codes, d.values("id"), "idx", root=tmp_path)
    kept = Path(sdk.index_info(ds, "idx").index_dir)
    orphan = Path(sdk.index_info(doomed, "idx").index_dir)
    doomed.delete()  # FiftyOne leaves the files: no run points at them any more
    crashed = kept.parent / ".tmp-0123abcd"
    crashed.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    writer = {"pid": int(dead.stdout), "host": os.uname().nodename, "at": 0}
    (crashed / ".writer").write_text(json.dumps(writer))
    young = kept.parent / ".tmp-fedcba98"  # a build in progress (writer alive)
    young.mkdir()
    (young / ".writer").write_text(json.dumps({**writer, "pid": os.getpid()}))

    report = collect_garbage(tmp_path, min_age_s=0)
    # (dead claims, database-wide, are another test's: tests/sdk/test_sdk_indexes.py)
    found = {Path(i.path): i.kind for i in report.leftovers if i.kind != "claim"}
    assert found == {crashed: "temp", orphan: "unreferenced"}
    # each named by its dataset's name, where there is one (folders hold ids)
    named = {Path(i.path): i.dataset for i in report.leftovers if i.kind != "claim"}
    assert named == {crashed: ds.name, orphan: None}
    assert report.n_referenced >= 1 and report.removed == []
    gc_args = ["gc", "--root", str(tmp_path), "--min-age-hours", "0", "--delete"]
    assert cli.main([*gc_args[:-1], "--json"]) == 0  # reports only
    said = json.loads(capsys.readouterr().out)
    listed = {Path(i["path"]): i["kind"] for i in said["leftovers"]}
    assert {i["dataset"] for i in said["leftovers"] if Path(i["path"]) == crashed} == {
        ds.name
    }
    assert cli.main(gc_args[:-1]) == 0
    assert f"found: temp of dataset {ds.name!r} {crashed.resolve()}" in (
        capsys.readouterr().out
    )
    assert {crashed: "temp", orphan: "unreferenced"}.items() <= listed.items()
    # kept as young by default: the words say how to include them
    assert cli.main(["gc", "--root", str(tmp_path)]) == 0
    assert "(younger than 1 h or being written: --min-age-hours 0 includes the" in (
        capsys.readouterr().out
    )
    assert cli.main(["gc", "--root", str(tmp_path), "--min-age-hours", "0"]) == 0
    assert "--min-age-hours 0 includes" not in capsys.readouterr().out
    assert said["removed"] == [] and said["n_bytes"] > 0 and crashed.exists()
    assert cli.main(gc_args) == 0
    assert not crashed.exists() and not orphan.exists() and not orphan.parent.exists()
    assert kept.is_dir() and young.is_dir()
    left = [i for i in collect_garbage(tmp_path).leftovers if i.kind != "claim"]
    assert left == []  # an hour's grace for the young one
    shutil.rmtree(young)
    sdk.verify_index(ds, "idx")
    # a root that is no folder (a typo) is said, not reported as "0 leftovers"
    assert cli.main(["gc", "--root", str(tmp_path / "typo")]) != 0
    assert "no folder at" in capsys.readouterr().err


def test_gc_keeps_a_directory_a_build_has_put_in_place_but_not_registered(
    make_dataset, tmp_path, capsys
):
    """A build renames its directory into place, then registers its run: gc with
    no age limit, run in between, removed the new index and the build said it was
    built (3 of 6 delegated builds under a gc loop)."""
    from fiftyone_clipbranches.sdk.claims import key_claim

    ds = make_dataset(2)
    codes = cluster_codes(ds.values("ground_truth.label"))
    sdk.build_index_from_codes(ds, codes, ds.values("id"), "idx", root=tmp_path)
    placed = Path(sdk.index_info(ds, "idx").index_dir).parent / ("a0b1c2d3" * 4)
    shutil.copytree(sdk.index_info(ds, "idx").index_dir, placed)  # not registered
    with key_claim(ds, "next", "build"):  # the build that put it there
        report = collect_garbage(tmp_path, min_age_s=0, delete=True)
        assert str(placed.resolve()) not in [i.path for i in report.leftovers]
        assert placed.is_dir()
        assert (report.n_being_written, report.n_young) == (1, 0)  # not "recent"
        gc_args = ["gc", "--root", str(tmp_path), "--min-age-hours", "0"]
        assert cli.main(gc_args) == 0
        assert "1 directory(ies) of datasets a build or update is running on" in (
            capsys.readouterr().out
        )
    report = collect_garbage(tmp_path, min_age_s=0, delete=True)  # it failed
    assert str(placed.resolve()) in report.removed and not placed.exists()
    sdk.verify_index(ds, "idx")


def test_gc_leaves_the_folders_of_another_database_alone(
    make_dataset, tmp_path, capsys
):
    """Two databases (one per session) may share one index root: gc, run from
    one, never removes the other's indexes, which it cannot see any run of."""
    from fiftyone_clipbranches.sdk.folder_owner import OWNER_FILE, database_id

    ds, doomed = make_dataset(2), make_dataset(2)
    for d in (ds, doomed):
        codes = cluster_codes(d.values("ground_truth.label"))
        sdk.build_index_from_codes(d, codes, d.values("id"), "idx", root=tmp_path)
    mine = Path(sdk.index_info(ds, "idx").index_dir).parent
    orphan = Path(sdk.index_info(doomed, "idx").index_dir)
    owner = json.loads((mine / OWNER_FILE).read_text())
    assert owner == {"database": database_id()}
    doomed.delete()
    # another database's dataset folder (its record names that database), and one
    # made before folders recorded their database, of a dataset not in this one
    theirs = tmp_path / "0123456789abcdef01234567"
    shutil.copytree(orphan.parent, theirs)
    (theirs / OWNER_FILE).write_text(json.dumps({"database": "another"}))
    old = tmp_path / "89abcdef0123456789abcdef"
    shutil.copytree(orphan.parent, old)
    (old / OWNER_FILE).unlink()
    # and a folder of this database's dataset that records none: taken as this one's
    (mine / OWNER_FILE).unlink()

    collect_garbage(tmp_path, min_age_s=0)  # a report writes nothing
    assert not (mine / OWNER_FILE).exists()
    report = collect_garbage(tmp_path, min_age_s=0, delete=True)
    assert [i.path for i in report.leftovers if i.kind != "claim"] == [str(orphan)]
    assert report.n_other_database == 1 and report.unowned == [str(old)]
    assert not orphan.exists() and (theirs / orphan.name).is_dir()
    assert (old / orphan.name).is_dir()
    assert json.loads((mine / OWNER_FILE).read_text()) == owner
    sdk.verify_index(ds, "idx")
    assert cli.main(["gc", "--root", str(tmp_path), "--min-age-hours", "0"]) == 0
    said = capsys.readouterr().out
    assert "1 of another database" in said and str(old) in said
    # an age that is no number of hours is refused, naming the option
    with pytest.raises(SystemExit):
        cli.main(["gc", "--min-age-hours", "-1"])
    assert "--min-age-hours: '-1' is not a number of hours >= 0" in (
        capsys.readouterr().err
    )


def test_cli_verify_lists_what_it_checked_and_fails_on_corruption(make_dataset, capsys):
    other = make_dataset(2)  # a dataset without the index does not fail the run
    ds = make_dataset(2)
    index_dataset(ds, "idx")
    assert cli.main(["verify", "--dataset", ds.name]) == 0
    out = capsys.readouterr().out
    # named, a dataset without an index fails: nothing was verified
    assert cli.main(["verify", other.name]) == 1
    assert f"dataset {other.name!r} has no clipbranches index" in (
        capsys.readouterr().out
    )
    index_dataset(ds, "cli_only_here")
    assert cli.main(["verify", "--index", "cli_only_here"]) == 0
    assert other.name not in capsys.readouterr().out
    assert cli.main(["verify", "--index", "no_such_index"]) == 1
    assert "no dataset has" in capsys.readouterr().out
    assert cli.main(["verify", ds.name, "--key", "idx"]) == 0
    assert f"[ok  ] {ds.name!r} index 'idx'" in capsys.readouterr().out
    # a key the dataset lacks is no failed index: the message lists the real ones
    assert cli.main(["verify", ds.name, "--key", "nope"]) == 1
    said = capsys.readouterr().out
    assert "[FAIL]" not in said
    assert f"dataset {ds.name!r} has no clipbranches index 'nope'" in said
    assert "its indexes: idx, cli_only_here" in said
    assert f"[ok  ] {ds.name!r} index 'idx'" in out and "sample_ids.npy" in out
    assert "encoder" not in out and "index/codes.npy" in out
    path = Path(sdk.index_info(ds, "idx").index_dir) / "index" / "codes.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cli.main(["verify", "--dataset", ds.name, "--index", "idx"]) == 1
    # the dataset positional and --key, as the other commands take them
    assert cli.main(["verify", ds.name, "--key", "idx"]) == 1
    assert cli.main(["verify", ds.name, "--dataset", "another"]) == 2
    out = capsys.readouterr().out
    assert "[FAIL]" in out and "codes.npy is corrupted" in out


def test_unembeddable_samples_are_not_retried_unless_asked(
    make_user_index, tmp_path, capsys
):
    ds = make_user_index(n_per_class=4)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    sid = ds.add_sample(fo.Sample(filepath=str(broken)))
    info = sdk.update_index(ds, "clip", progress=False)
    fresh = info.freshness
    assert (fresh.n_added, fresh.n_unreadable, list(fresh.unreadable)) == (0, 1, [sid])
    again = sdk.update_index(ds, "clip", progress=False)
    assert again.index_dir == info.index_dir  # no re-embedding, no rebuild
    assert sdk.index_info(ds, "clip").freshness.unreadable.keys() == {sid}
    # read again, still broken: said so, and nothing written (each retry rewrote
    # the whole index and said it "was up to date")
    retried = sdk.update_index(ds, "clip", retry_failed=True, progress=False)
    assert retried.index_dir == info.index_dir and retried.freshness.n_unreadable == 1
    assert retried.changes == IndexChanges(unreadable_again=1)
    assert retried.changes.describe() == (
        "nothing changed: 1 sample left out before tried again, still left out"
    )
    named = sdk.update_index(ds, "clip", reembed=[sid], progress=False)
    assert named.index_dir == info.index_dir  # named again: read again, in vain
    assert named.changes.unreadable_again == 1
    assert sdk.index_info(ds, "clip").n_reembed_pending == 0
    assert cli.main(["update-index", ds.name, "--key", "clip", "--retry-failed"]) == 0
    said = capsys.readouterr().out
    assert "index 'clip': nothing changed: 1 sample left out before tried" in said
    assert sdk.index_info(ds, "clip").index_dir == info.index_dir
    good = ds.select(ds.values("id")[:1]).first().filepath
    broken.write_bytes(Path(good).read_bytes()[:300])  # truncated now: recorded
    before = sdk.index_info(ds, "clip").freshness.unreadable[sid]
    recorded = sdk.update_index(ds, "clip", retry_failed=True, progress=False)
    assert recorded.index_dir != info.index_dir
    assert recorded.freshness.unreadable[sid] != before
    # a new filepath is a new image: tried again, and indexed once it reads
    sample = ds[sid]
    sample.filepath = good
    sample.save()
    assert sdk.index_info(ds, "clip").freshness.n_added == 1
    final = sdk.update_index(ds, "clip", progress=False)
    assert final.n_samples == 41 and not final.freshness.n_unreadable


def test_cli_verify_checks_the_encoder_of_an_index_built_from_images(
    make_user_index, capsys
):
    ds = make_user_index(n_per_class=4)
    assert cli.main(["verify", ds.name, "--key", "clip", "--level", "full"]) == 0
    out = capsys.readouterr().out
    assert f"[ok  ] {ds.name!r} index 'clip'" in out and "encoder" in out
    index_dir = Path(sdk.index_info(ds, "clip").index_dir)
    encoder_files = sorted(p for p in (index_dir / "encoder").rglob("*") if p.is_file())
    assert encoder_files, sorted(p.name for p in index_dir.rglob("*"))
    data = bytearray(encoder_files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    encoder_files[0].write_bytes(bytes(data))
    assert cli.main(["verify", "--dataset", ds.name, "--index", "clip"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL]" in out and encoder_files[0].name in out


def test_build_reports_the_unreadable_images_it_leaves_out(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """Images on disk -> build_index computing the embeddings: the progress counts
    only the images embedded, and the last line says how many were left out."""
    from user_path import TINY_CLIP_NAME, images_dataset

    ds = images_dataset(cifar_dir, 4)
    try:
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"not an image")
        sid = ds.add_sample(fo.Sample(filepath=str(broken)))
        labels = []
        info = sdk.build_index(
            ds,
            "clip",
            model=TINY_CLIP_NAME,
            pretrained=str(tiny_clip_checkpoint),
            code_method="pca",
            progress=lambda fraction, label: labels.append(label),
        )
        assert "embedded 40/41, 1 unreadable" in labels
        assert labels[-1].startswith(
            "index 'clip' built over 40 samples; 1 sample left"
        )
        fresh = sdk.index_info(ds, "clip").freshness
        assert list(fresh.unreadable) == [sid] and info.n_samples == 40
    finally:
        ds.delete()


def test_a_missing_manifest_or_directory_is_named(tmp_path):
    from fiftyone_clipbranches.sdk.bundle import read_manifest

    with pytest.raises(sdk.errors.IndexFilesMissingError, match="manifest.json is"):
        read_manifest(tmp_path)  # the directory is there, its manifest is not
    with pytest.raises(sdk.errors.IndexFilesMissingError, match="directory is gone"):
        read_manifest(tmp_path / "gone")


def test_gc_counts_a_clones_index_in_a_deleted_datasets_folder_as_in_use(
    make_user_index, tmp_path, capsys
):
    """A clone's index lies in the folder of the dataset it was cloned from; with
    that dataset deleted and its folder made before folders recorded their
    database, gc listed the folder under "remove by hand" (the clone's index)."""
    from fiftyone_clipbranches.sdk.folder_owner import OWNER_FILE, database_id

    ds = make_user_index(n_per_class=4, index_key="idx", root=tmp_path)
    clone = ds.clone()
    folder = Path(sdk.index_info(clone, "idx").index_dir).parent
    ds.delete()
    (folder / OWNER_FILE).unlink()  # as versions before the record made it
    leftover = folder / "0123456789abcdef0123456789abcdef"
    leftover.mkdir()  # a directory no run points at, of the same dataset
    try:
        report = collect_garbage(tmp_path, min_age_s=0)
        assert report.unowned == [] and report.n_referenced == 1
        assert [i.path for i in report.leftovers if i.kind != "claim"] == [
            str(leftover.resolve())
        ]
        assert cli.main(["gc", "--root", str(tmp_path), "--min-age-hours", "0"]) == 0
        assert "by hand" not in capsys.readouterr().out
        report = collect_garbage(tmp_path, min_age_s=0, delete=True)
        assert not leftover.exists()
        assert json.loads((folder / OWNER_FILE).read_text()) == {
            "database": database_id()
        }
        sdk.verify_index(clone, "idx")
    finally:
        clone.delete()


def test_gc_names_the_dataset_of_a_crashed_build_of_a_user_built_index(
    make_user_index, capsys
):
    """Images -> tiny CLIP -> build_index, then a build that died: gc named only a
    folder of the dataset's id."""
    ds = make_user_index(n_per_class=4, name="gc-named")
    folder = Path(sdk.index_info(ds, "clip").index_dir).parent
    crashed = folder / ".tmp-5eed1e55"
    crashed.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    writer = {"pid": int(dead.stdout), "host": os.uname().nodename, "at": 0}
    (crashed / ".writer").write_text(json.dumps(writer))
    root = str(folder.parent)
    assert cli.main(["gc", "--root", root, "--min-age-hours", "0"]) == 0
    said = capsys.readouterr().out
    assert f"found: temp of dataset 'gc-named' {crashed.resolve()}" in said
    assert cli.main(["gc", "--root", root, "--min-age-hours", "0", "--delete"]) == 0
    assert not crashed.exists()
    sdk.verify_index(ds, "clip")  # the index in use is kept
