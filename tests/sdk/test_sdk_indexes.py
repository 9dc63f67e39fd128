"""Index lifecycle on real FiftyOne datasets: runs, files, freshness."""

import time
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from sdk_testdata import cluster_codes, index_dataset

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.runs import ClipBranchesIndexConfig


def test_build_registers_a_run_on_the_root_dataset_with_files(make_dataset):
    ds = make_dataset(5)
    view = ds.match_tags("nothing")
    codes = cluster_codes(ds.values("ground_truth.label"))
    info = sdk.build_index_from_codes(view, codes, ds.values("id"), "idx")
    assert sdk.list_indexes(ds) == ["idx"]
    assert ds.list_runs() == ["idx"]
    assert info.n_samples == 50 and info.code_dims == 32
    assert (Path(info.index_dir) / "manifest.json").is_file()
    # the config class is reloaded by its full name from a fresh dataset handle
    config = fo.load_dataset(ds.name).get_run_info("idx").config
    assert isinstance(config, ClipBranchesIndexConfig)
    assert config.index_dir == info.index_dir


def test_existing_key_and_bad_key_are_refused(make_dataset):
    ds = make_dataset(3)
    index_dataset(ds, "idx")
    with pytest.raises(sdk.IndexExistsError, match="already exists") as err:
        index_dataset(ds, "idx")
    assert f"clipbranches update-index {ds.name} --key idx" in str(err.value)
    with pytest.raises(ValueError, match="not valid"):
        index_dataset(ds, "bad key")


def test_one_build_or_update_of_a_key_at_a_time(make_dataset):
    import os
    import subprocess
    import sys
    import time

    import psutil
    from fiftyone.core.odm import get_db_conn

    from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION
    from fiftyone_clipbranches.sdk.processes import this_process

    ds = make_dataset(3)
    claims = get_db_conn()[CLAIMS_COLLECTION]
    # another build, alive: held by another live process (this test's parent)
    parent = psutil.Process(os.getppid())
    live = {
        "_id": f"{ds._doc.id}:idx",
        **this_process(),
        "pid": parent.pid,
        "pid_started": parent.create_time(),
        "work": "build",
    }
    claims.insert_one({**live, "since": time.time()})
    with pytest.raises(
        sdk.IndexBusyError, match=r"'idx' of dataset .*\(build by process"
    ):
        index_dataset(ds, "idx")
    assert sdk.list_indexes(ds) == []
    # meanwhile the key is said to be in progress, not missing
    with pytest.raises(sdk.IndexNotFoundError, match="is being built.*try again"):
        sdk.index_info(ds, "idx")
    with pytest.raises(sdk.IndexBusyError, match="is being built"):  # as an update
        sdk.search(ds, sample_ids=[ds.first().id], index_key="idx")
    # a claim of a process that has died is taken over, and released at the end
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    claims.update_one({"_id": live["_id"]}, {"$set": {"pid": int(ended.stdout)}})
    index_dataset(ds, "idx")
    assert sdk.list_indexes(ds) == ["idx"]
    assert claims.count_documents({"_id": live["_id"]}) == 0  # released
    # an update waits for no one, but is refused while a build or update runs
    claims.insert_one({**live, "work": "update", "since": time.time()})
    with pytest.raises(sdk.IndexBusyError, match="update by process"):
        sdk.update_index(ds, "idx", progress=False)
    from fiftyone_clipbranches.sdk.gc import collect_garbage
    from fiftyone_clipbranches.sdk.index_edits import edit_index_rows

    for work in (
        sdk.delete_index,
        lambda d, k: sdk.rename_index(d, k, "idx2"),
        lambda d, k: edit_index_rows(d, k, remove_ids=d.values("id")[:1]),
    ):
        with pytest.raises(sdk.IndexBusyError):
            work(ds, "idx")
    assert sdk.list_indexes(ds) == ["idx"]
    assert sdk.index_info(ds, "idx").n_samples == len(ds)  # no row was dropped
    # gc keeps a live claim, and removes it once its dataset is gone
    assert live["_id"] not in [i.path for i in collect_garbage().leftovers]
    claims.update_one({"_id": live["_id"]}, {"$set": {"pid": int(ended.stdout)}})
    (item,) = [i for i in collect_garbage().leftovers if i.path == live["_id"]]
    assert item.dataset == ds.name
    assert item.reason.endswith("; the next work that needs it takes it over itself")
    claims.delete_one({"_id": live["_id"]})
    gone = {**live, "_id": "0" * 24 + ":idx", "since": time.time()}
    claims.insert_one(gone)
    report = collect_garbage(delete=True)
    assert gone["_id"] in report.removed
    assert claims.count_documents({"_id": gone["_id"]}) == 0
    # a build another process registered since this one read the dataset is seen
    other = fo.load_dataset(ds.name)
    ds._doc.runs.pop("idx")  # this handle's document, read before that build
    with pytest.raises(sdk.IndexExistsError, match="already exists"):
        index_dataset(ds, "idx")
    assert other.list_runs() == ["idx"]


def test_threads_of_one_process_hold_a_claim_one_at_a_time(make_dataset, monkeypatch):
    """A thread that found another thread's claim before that one was recorded as
    held took it for a claim this process had let go, and both held it."""
    import threading

    from pymongo.collection import Collection

    from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION, waiting_claim

    insert = Collection.insert_one

    def slow_insert(self, doc, *args, **kwargs):  # widens the window it raced in
        out = insert(self, doc, *args, **kwargs)
        if self.name == CLAIMS_COLLECTION:
            time.sleep(0.002)
        return out

    monkeypatch.setattr(Collection, "insert_one", slow_insert)
    ds = make_dataset(3)
    inside, most, lock = [0], [0], threading.Lock()

    def work():
        for _ in range(15):
            with waiting_claim(ds, "scores:probe", "scores", 60.0, "busy"):
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


def test_a_short_claim_of_another_host_is_taken_over_once_stale(make_dataset):
    from fiftyone.core.odm import get_db_conn

    from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION, key_claim

    ds = make_dataset(3)
    claims = get_db_conn()[CLAIMS_COLLECTION]
    foreign = {
        "_id": f"{ds._doc.id}:history:rounds",
        "host": "another-host",
        "pid": 1,
        "pid_started": 0.0,
        "work": "history",
    }
    claims.insert_one({**foreign, "since": time.time() - 5})
    with (
        pytest.raises(sdk.IndexBusyError),
        key_claim(ds, "history:rounds", "history", 30.0),
    ):
        pass
    claims.update_one({"_id": foreign["_id"]}, {"$set": {"since": time.time() - 60}})
    with key_claim(ds, "history:rounds", "history", 30.0):
        assert claims.find_one({"_id": foreign["_id"]})["host"] != "another-host"
    assert claims.find_one({"_id": foreign["_id"]}) is None


def test_a_key_held_by_a_dead_machine_is_unlocked_from_the_shell(make_dataset, capsys):
    import time

    from fiftyone.core.odm import get_db_conn

    from fiftyone_clipbranches.cli import main as cli_main
    from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION
    from fiftyone_clipbranches.sdk.processes import this_process

    ds = make_dataset(3)
    claims = get_db_conn()[CLAIMS_COLLECTION]
    claim = {"_id": f"{ds._doc.id}:idx", "work": "build", "since": time.time()}
    # a process of another machine: refused, with the way out named
    claims.insert_one({**claim, "host": "elsewhere", "pid": 1, "pid_started": 0.0})
    with pytest.raises(sdk.IndexBusyError, match="clipbranches unlock-index"):
        index_dataset(ds, "idx")
    # the key it holds is in progress, and whoever asks for it learns the way out
    with pytest.raises(sdk.IndexNotFoundError, match="try again.*unlock-index"):
        sdk.index_info(ds, "idx")
    assert cli_main(["unlock-index", ds.name, "--key", "idx"]) == 0
    assert "released index 'idx'" in capsys.readouterr().out
    index_dataset(ds, "idx")
    assert sdk.list_indexes(ds) == ["idx"]
    assert cli_main(["unlock-index", ds.name, "--key", "idx"]) == 0
    assert "was not held" in capsys.readouterr().out
    # a mistyped key is said to be no index, with the dataset's own: a failure
    assert cli_main(["unlock-index", ds.name, "--key", "ixd"]) == 1
    said = capsys.readouterr().err
    assert f"dataset {ds.name!r} has no index 'ixd'" in said
    assert "(its indexes: idx)" in said and "not held" not in said
    # a live process of this machine is never unlocked under it
    claims.insert_one({**claim, **this_process()})
    try:
        assert cli_main(["unlock-index", ds.name, "--key", "idx"]) == 75  # busy
        assert "stop that process first" in capsys.readouterr().err
        assert claims.count_documents({"_id": claim["_id"]}) == 1
    finally:
        claims.delete_one({"_id": claim["_id"]})


def test_missing_index_is_a_clear_error(make_dataset):
    ds = make_dataset(2)
    with pytest.raises(sdk.IndexNotFoundError, match="build_index"):
        sdk.search(ds, sample_ids=ds.values("id")[:1], index_key="nope")
    index_dataset(ds, "clip")
    # the dataset's only index is named as the way out, for the SDK and the CLI
    with pytest.raises(sdk.IndexNotFoundError, match="index_key='clip'.*--key clip"):
        sdk.search(ds, sample_ids=ds.values("id")[:1], index_key="nope")
    index_dataset(ds, "other")
    with pytest.raises(
        sdk.IndexNotFoundError, match="its indexes: clip, other.*check the key"
    ):
        sdk.refine(ds, positives=ds.values("id")[:1], index_key="nope")
    # named none among several, none the default: which one is asked for
    with pytest.raises(
        sdk.IndexNotFoundError,
        match="has 2 clipbranches indexes \\(clip, other\\) and none is"
        " 'clipbranches': say which.*index_key='clip'; CLI: --key clip",
    ):
        sdk.search(ds, sample_ids=ds.values("id")[:1])


def test_dataset_too_small_for_the_encoder_is_refused_before_embedding(
    make_dataset,
):
    """Nothing is embedded (no CLIP model is even loaded: the default weights are
    not available offline, so reaching them would fail differently)."""
    ds = make_dataset(4)  # 40 samples: too few for the head, enough for the PCA
    with pytest.raises(ValueError, match="needs at least 64.*--code-method pca"):
        sdk.build_index(ds, "clip")
    assert "clip_embedding" not in ds.get_field_schema()
    small = make_dataset(3)  # 30 samples: too few for either
    with pytest.raises(
        ValueError, match=r"needs at least 33.*add 3 or more samples \(33 "
    ):
        sdk.build_index(small, "clip", code_method="pca")
    assert sdk.list_indexes(ds) == [] and sdk.list_indexes(small) == []
    # no folder of theirs is left under the index root (an empty one was)
    from fiftyone_clipbranches.sdk.settings import index_root

    root = index_root()
    assert not (root / str(ds._doc.id)).exists()
    assert not (root / str(small._doc.id)).exists()


def test_too_few_vectors_in_a_field_name_the_missing_ones(make_dataset, rng):
    """The dataset is large enough: its field lacks vectors, which is the way out."""
    ds = make_dataset(10)  # 100 samples, 10 of them with a vector
    ds.add_sample_field("own", fo.VectorField)
    few = ds.select(ds.values("id")[:10])
    few.set_values("own", list(rng.normal(size=(10, 512)).astype(np.float32)))
    with pytest.raises(
        ValueError,
        match=r"10 samples of 100 with a vector in 'own'; code_method='head' needs"
        r" at least 64 .*compute the 90 missing vectors first",
    ):
        sdk.build_index(ds, "x", embeddings_field="own", skip_missing=True)
    with pytest.raises(ValueError, match="10 samples of 100 .*add 191 or more samples"):
        sdk.build_index(
            ds, "x", embeddings_field="own", skip_missing=True, code_method="pca",
            encoder_params={"n_dims": 200},
        )  # fmt: skip
    assert sdk.list_indexes(ds) == []


def test_too_few_readable_images_are_not_told_to_compute_them(
    make_dataset, tiny_clip_checkpoint, tmp_path
):
    """Computing cannot fill the vectors of images that cannot be read."""
    from user_path import TINY_CLIP_NAME

    ds = make_dataset(7)  # 70 samples, 10 of them broken: 60 < 64 for the head
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    ds.select(ds.values("id")[:10]).set_values("filepath", [str(broken)] * 10)
    with pytest.raises(
        ValueError,
        match=r"60 samples of 70 with a vector in 'clip_embedding' \(10 images could"
        r" not be read\); .*use code_method='pca'",
    ) as raised:
        sdk.build_index(
            ds, "x", model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint),
            progress=False,
        )  # fmt: skip
    assert "compute the" not in str(raised.value)
    assert sdk.list_indexes(ds) == []


def test_empty_saved_view_name_is_refused_before_any_work(make_dataset):
    ds = make_dataset(2)
    for name in ("", "   ", 3):
        with pytest.raises(ValueError, match="saved_view must be"):
            sdk.refine(ds, positives=ds.values("id")[:1], saved_view=name)
    # characters that do not show: a NUL, a line break, a right-to-left override
    for name in ("a\x00b", "two\nlines", "\u202eevil", "a\u2028b", "look\u200balike"):
        with pytest.raises(ValueError, match="does not show"):
            sdk.refine(ds, positives=ds.values("id")[:1], saved_view=name)
    from fiftyone_clipbranches.sdk.views import check_view_name

    check_view_name("\u0646\u0627\u0645\u200c\u0647\u0627")  # a joiner spells words


def test_rename_keeps_files_and_delete_removes_them(make_dataset):
    ds = make_dataset(3)
    index_dataset(ds, "old")
    index_dir = Path(sdk.index_info(ds, "old").index_dir)
    index_dataset(ds, "other")
    with pytest.raises(sdk.IndexExistsError, match="already exists") as e:
        sdk.rename_index(ds, "old", "other")
    assert "update" not in str(e.value)  # a rename is no build: no update hint
    with pytest.raises(sdk.IndexExistsError, match="'old' .* already has that key"):
        sdk.rename_index(ds, "old", "old")
    sdk.delete_index(ds, "other")
    sdk.rename_index(ds, "old", "new")
    assert sdk.list_indexes(ds) == ["new"]
    assert sdk.index_info(ds, "new").index_dir == str(index_dir)
    assert (
        len(sdk.search(ds, sample_ids=ds.values("id")[:1], k=3, index_key="new")) == 3
    )
    sdk.delete_index(ds, "new")
    assert sdk.list_indexes(ds) == [] and not index_dir.exists()
    assert not index_dir.parent.exists()  # the dataset's folder was emptied
    # deleting it again: said, with no build offered as the way out
    with pytest.raises(sdk.IndexNotFoundError) as e:
        sdk.delete_index(ds, "new")
    assert str(e.value) == (
        f"no clipbranches index 'new' on dataset {ds.name!r} (its indexes: none)"
    )


def test_added_and_deleted_samples_are_reported(make_dataset, cifar_dir):
    ds = make_dataset(3)
    index_dataset(ds, "idx")
    assert not sdk.index_info(ds, "idx").freshness.is_stale
    ids = ds.values("id")
    ds.delete_samples(ids[:2])
    path = next(p for p in Path(cifar_dir).rglob("*.jpg"))
    new = ds.add_samples([fo.Sample(filepath=str(path))], progress=False)
    fresh = sdk.index_info(ds, "idx").freshness
    assert (fresh.n_added, fresh.n_deleted, fresh.n_index) == (1, 2, 30)
    assert fresh.added_ids == tuple(new)
    # printed, it says the counts (an import gave a line of 280 ids)
    assert repr(fresh) == (
        "Freshness(n_index=30, n_dataset=29, n_added=1, n_deleted=2,"
        " n_unreadable=0, n_moved=0, n_no_vector=0)"
    )


def test_index_from_codes_cannot_absorb_added_samples(make_dataset, cifar_dir):
    ds = make_dataset(2)
    index_dataset(ds, "idx")
    path = next(p for p in Path(cifar_dir).rglob("*.jpg"))
    ds.add_samples([fo.Sample(filepath=str(path))], progress=False)
    with pytest.raises(sdk.StaleIndexError, match="build_index_from_codes"):
        sdk.update_index(ds, "idx", progress=False)


def test_update_drops_deleted_samples(make_dataset):
    ds = make_dataset(3)
    index_dataset(ds, "idx")
    old_dir = Path(sdk.index_info(ds, "idx").index_dir)
    gone = ds.values("id")[:4]
    ds.delete_samples(gone)
    info = sdk.update_index(ds, "idx", progress=False)
    assert info.n_samples == 26 and not info.freshness.is_stale
    assert not old_dir.exists() and Path(info.index_dir).is_dir()
    found = sdk.search_ids(ds, sample_ids=ds.values("id")[:1], k=100, index_key="idx")[
        0
    ]
    assert len(found) == 26 and not set(found) & set(gone)
    # with every sample deleted, the index is left as it was and the way out named
    ds.delete_samples(ds.values("id"))
    with pytest.raises(sdk.MissingEmbeddingsError, match="no sample .* left") as err:
        sdk.update_index(ds, "idx", progress=False)
    assert "clipbranches delete-index" in str(err.value)
    assert sdk.index_info(ds, "idx", check=False).index_dir == info.index_dir


def test_codes_must_match_sample_ids(make_dataset):
    ds = make_dataset(1)
    with pytest.raises(ValueError, match="sample ids"):
        sdk.build_index_from_codes(
            ds, np.zeros((3, 32), np.uint8), ds.values("id"), "x"
        )
    with pytest.raises(TypeError, match="uint8"):
        sdk.build_index_from_codes(ds, np.zeros((10, 32)), ds.values("id"), "x")


def test_relocating_needs_a_checkpoint_file_recorded(make_dataset, tmp_path):
    ds = make_dataset(3)
    index_dataset(ds, "codes")  # built from codes: no CLIP model recorded
    with pytest.raises(ValueError, match="records no checkpoint file to relocate"):
        sdk.relocate_checkpoint(ds, tmp_path / "x.pt", index_key="codes")
    with pytest.raises(sdk.IndexNotFoundError):
        sdk.relocate_checkpoint(ds, tmp_path / "x.pt", index_key="nope")


def test_opening_an_index_directory_for_its_trees_names_the_trees(make_dataset):
    from fiftyone_clipbranches.engine.errors import IndexFormatError
    from fiftyone_clipbranches.engine.shards import open_index

    ds = make_dataset(3)
    index_dataset(ds, "a")
    index_dir = Path(sdk.index_info(ds, "a").index_dir)
    with pytest.raises(IndexFormatError, match="not its trees: open .*index$"):
        open_index(index_dir)
    assert len(open_index(index_dir / "index")) == len(ds)


def test_files_that_cannot_be_removed_leave_the_run_deleted_and_say_so(
    make_dataset, monkeypatch, caplog, capsys
):
    from fiftyone_clipbranches.sdk import runs

    ds = make_dataset(3)
    index_dataset(ds, "a")
    index_dir = Path(sdk.index_info(ds, "a").index_dir)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(runs, "remove_index_dir", read_only)
    with caplog.at_level("WARNING"):
        assert sdk.delete_index(ds, "a") is False
    assert sdk.list_indexes(ds) == [] and index_dir.is_dir()
    assert "could not be (" in caplog.text and "gc removes them" in caplog.text
    # the shell says so too (it said a clone's index used them)
    from fiftyone_clipbranches.cli import main as cli_main

    index_dataset(ds, "b")
    assert cli_main(["delete-index", ds.name, "--key", "b"]) == 0
    said = capsys.readouterr().out
    assert "could not be removed now: `clipbranches gc --delete`" in said
    assert "clone" not in said


def test_an_index_root_moved_elsewhere_is_found_there(
    make_user_index, tmp_path, monkeypatch, capsys
):
    """The index root moved and $CLIPBRANCHES_INDEX_ROOT set to its new place:
    the indexes answer from there (their runs record the old paths), gc counts
    them as in use (it offered to delete every one), an update records the new
    place, and the words for a root that was not moved say how to point at it."""
    import shutil

    from fiftyone_clipbranches.cli import main as cli_main
    from fiftyone_clipbranches.sdk.bundle import forget_bundle
    from fiftyone_clipbranches.sdk.gc import collect_garbage
    from fiftyone_clipbranches.sdk.settings import INDEX_ROOT_ENV

    ds = make_user_index(n_per_class=4)
    before = sdk.search_ids(ds, text="a cat", k=5, index_key="clip")[0]
    old_dir = Path(sdk.index_info(ds, "clip").index_dir)
    folder = old_dir.parent  # this dataset's folder: what moving the root moves
    moved = tmp_path / "moved-root"
    moved.mkdir()
    shutil.move(str(folder), str(moved / folder.name))
    forget_bundle(str(old_dir))  # as a new process finds it
    with pytest.raises(sdk.StaleIndexError, match=f"set \\${INDEX_ROOT_ENV} to its"):
        sdk.search_ids(ds, text="a cat", k=5, index_key="clip")
    # gc of the new place before the variable is set: in use there too
    report = collect_garbage(moved, min_age_s=0)
    assert report.n_referenced == 1 and not report.leftovers
    monkeypatch.setenv(INDEX_ROOT_ENV, str(moved))
    assert sdk.search_ids(ds, text="a cat", k=5, index_key="clip")[0] == before
    assert sdk.index_info(ds, "clip").index_dir == str(
        moved / folder.name / old_dir.name
    )
    assert cli_main(["gc", "--min-age-hours", "0", "--delete"]) == 0
    assert "removed 0 leftover(s)" in capsys.readouterr().out
    assert (moved / folder.name / old_dir.name).is_dir()
    ds.add_sample(fo.Sample(filepath=ds.first().filepath))
    info = sdk.update_index(ds, "clip", progress=False)
    assert Path(info.index_dir).parent == moved / folder.name
    assert not (moved / folder.name / old_dir.name).exists()  # released


def test_overwrite_builds_an_index_again_in_its_place(
    make_user_index, monkeypatch, caplog
):
    """A notebook run twice failed on the existing key, and the way out for a
    damaged index was delete, then build (nothing to search in between):
    ``overwrite=True`` builds again; the old index answers until the new one
    takes its key, and a clone's index keeps its files."""
    from fiftyone_clipbranches.sdk import indexes

    ds = make_user_index(n_per_class=7)
    old_dir = Path(sdk.index_info(ds, "clip").index_dir)
    clone = ds.clone()
    try:
        with pytest.raises(sdk.IndexExistsError) as refused:
            sdk.build_index(ds, "clip", embeddings_field="clip_embedding")
        assert "overwrite=True" in str(refused.value)
        assert "--overwrite" in str(refused.value)
        before = sdk.search_ids(ds, text="a cat", k=10, index_key="clip")[0]

        def stopped(*args, **kwargs):
            raise KeyboardInterrupt

        with monkeypatch.context() as m:  # stopped while writing the new one
            m.setattr(indexes, "write_bundle", stopped)
            with pytest.raises(KeyboardInterrupt):
                sdk.build_index(
                    ds, "clip", embeddings_field="clip_embedding", code_method="pca",
                    progress=False, overwrite=True,
                )  # fmt: skip
        assert sdk.index_info(ds, "clip").index_dir == str(old_dir)
        assert sdk.search_ids(ds, text="a cat", k=10, index_key="clip")[0] == before

        info = sdk.build_index(
            ds, "clip", embeddings_field="clip_embedding", code_method="head",
            encoder_params={"steps": 20}, progress=False, overwrite=True,
        )  # fmt: skip
        assert info.code_method == "head" and info.n_samples == 70
        assert sdk.list_indexes(ds) == ["clip"]
        new_dir = Path(info.index_dir)
        assert new_dir != old_dir and new_dir.is_dir()
        assert info.clip_model == sdk.index_info(clone, "clip").clip_model
        assert len(sdk.search_ids(ds, text="a cat", k=10, index_key="clip")[0]) == 10
        # the clone's run still points at the old files: kept, and it answers
        assert old_dir.is_dir()
        assert sdk.search_ids(clone, text="a cat", k=10, index_key="clip")[0] == before
    finally:
        clone.delete()

    def unremovable(*args, **kwargs):
        raise PermissionError("read-only")

    with monkeypatch.context() as m, caplog.at_level("WARNING"):
        m.setattr(sdk.runs, "release_index_dir", unremovable)
        kept = sdk.build_index(
            ds, "clip", embeddings_field="clip_embedding", code_method="pca",
            progress=False, overwrite=True,
        )  # fmt: skip
    assert "could not be removed (read-only): clipbranches gc" in caplog.text
    assert sdk.index_info(ds, "clip").index_dir == kept.index_dir != str(new_dir)
    assert sdk.search_ids(ds, text="a cat", k=10, index_key="clip")[0] == before
    assert new_dir.is_dir()  # left to gc
    again = sdk.build_index(
        ds, "clip", embeddings_field="clip_embedding", code_method="pca",
        progress=False, overwrite=True,
    )  # fmt: skip
    assert not Path(kept.index_dir).exists()  # no other run used it
    assert sdk.search_ids(ds, text="a cat", k=10, index_key="clip")[0] == before
    assert again.index_dir != kept.index_dir
    # a key of no index yet: overwrite builds it; a run of another kind is refused
    assert sdk.build_index(
        ds, "fresh", embeddings_field="clip_embedding", code_method="pca",
        progress=False, overwrite=True,
    ).n_samples == 70  # fmt: skip
    ds.register_run("other_run", fo.core.runs.RunConfig())
    with pytest.raises(sdk.IndexExistsError, match="already exists"):
        sdk.build_index(
            ds, "other_run", embeddings_field="clip_embedding", overwrite=True
        )
