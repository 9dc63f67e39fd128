"""Journey (e): ``build_index`` and ``update_index`` killed (SIGKILL) in another
process, mid-write and after random delays. Afterwards everything loads, the old
index answers as before, and ``clipbranches gc`` finds what the crash left."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from fiftyone_clipbranches import cli, sdk
from fiftyone_clipbranches.sdk.gc import collect_garbage

# The child pauses right after writing sample_ids.npy into its temp directory when
# given a pause file, so that the kill lands mid-write every time.
CHILD = textwrap.dedent(
    """
    import pathlib, sys, time
    import fiftyone as fo
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk import bundle

    name, action, pause_file = sys.argv[1:4]
    if pause_file != "-":
        save = bundle.SampleRowMap.save

        def save_then_pause(self, path):
            save(self, path)
            pathlib.Path(pause_file).write_text("writing")
            time.sleep(300)

        bundle.SampleRowMap.save = save_then_pause
        # a deletion pauses once the files are removed
        from fiftyone_clipbranches.sdk import runs

        rmtree = runs.shutil.rmtree

        def rmtree_then_pause(path, *args, **kwargs):
            rmtree(path, *args, **kwargs)
            pathlib.Path(pause_file).write_text("removed")
            time.sleep(300)

        runs.shutil.rmtree = rmtree_then_pause
    ds = fo.load_dataset(name)
    if action == "delete":
        sdk.delete_index(ds, "second")
    elif action == "build":
        sdk.build_index(
            ds, "second", embeddings_field="clip_embedding", code_method="pca",
            progress=False,
        )
    else:
        sdk.update_index(ds, "clip", progress=False)
    """
)


def _start(ds, action, pause_file=None):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, ds.name, action, str(pause_file or "-")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )


def _kill_when(proc, pause_file, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not pause_file.exists():
        assert proc.poll() is None, "the child ended before writing"
        assert time.monotonic() < deadline, "the child never reached the write"
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)


def _search(ds):
    return sdk.search_ids(ds, text="a photo of a ship", k=10, index_key="clip")[0]


def _own_leftovers(ds):
    folder = Path(sdk.index_info(ds, "clip", check=False).index_dir).parent
    return [i for i in collect_garbage().leftovers if Path(i.path).parent == folder]


@pytest.fixture
def persistent_index(make_user_index):
    ds = make_user_index(n_per_class=4, name=f"cb-crash-{uuid.uuid4().hex[:8]}")
    ds.persistent = True
    return ds


@pytest.mark.slow
def test_kill_mid_write_of_build_and_update(persistent_index, tmp_path):
    ds = persistent_index
    index_dir = sdk.index_info(ds, "clip").index_dir
    before = _search(ds)

    proc = _start(ds, "build", tmp_path / "build")
    _kill_when(proc, tmp_path / "build")
    assert sdk.list_indexes(ds) == ["clip"]
    assert _search(ds) == before

    gone = ds.values("id")[:3]
    ds.delete_samples(gone)
    expected = [s for s in before if s not in gone]
    proc = _start(ds, "update", tmp_path / "update")
    _kill_when(proc, tmp_path / "update")
    assert sdk.index_info(ds, "clip").index_dir == index_dir
    sdk.verify_index(ds, "clip", level="full")
    assert _search(ds)[: len(expected)] == expected

    leftovers = _own_leftovers(ds)
    assert len(leftovers) == 2 and {i.kind for i in leftovers} == {"temp"}
    assert all("writer process is gone" in i.reason for i in leftovers)
    # the killed update's claim on the key is found as well
    claim = f"{ds._doc.id}:clip"
    (dead,) = [i for i in collect_garbage().leftovers if i.path == claim]
    assert dead.kind == "claim" and "is gone" in dead.reason
    assert cli.main(["gc", "--delete"]) == 0
    assert _own_leftovers(ds) == [] and Path(index_dir).is_dir()
    assert claim not in [i.path for i in collect_garbage().leftovers]

    info = sdk.update_index(ds, "clip", progress=False)  # the retry succeeds
    assert not info.freshness.is_stale and info.n_samples == len(ds)

    # a deletion killed once its files are gone leaves no index without files
    sdk.build_index(
        ds, "second", embeddings_field="clip_embedding", code_method="pca",
        progress=False,
    )  # fmt: skip
    proc = _start(ds, "delete", tmp_path / "delete")
    _kill_when(proc, tmp_path / "delete")
    ds.reload()
    assert sdk.list_indexes(ds) == ["clip"]
    assert _search(ds)  # the other index answers


@pytest.mark.slow
def test_kill_after_random_delays_never_breaks_the_old_index(persistent_index):
    ds = persistent_index
    before = _search(ds)
    rng = random.Random(14)
    for delay in sorted(rng.uniform(2.0, 8.0) for _ in range(3)):
        proc = _start(ds, "build")
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=30)
        assert _search(ds) == before
        sdk.verify_index(ds, "clip", level="full")
        keys = sdk.list_indexes(ds)
        if "second" in keys:  # the build finished before the kill: a whole index
            sdk.verify_index(ds, "second", level="full")
            sdk.delete_index(ds, "second")
        assert all(i.kind == "temp" for i in _own_leftovers(ds))
    collect_garbage(delete=True)
    assert _own_leftovers(ds) == []
