"""What another process does to an index is seen here without reloading the
dataset: FiftyOne keeps the runs it read at load, so an update from the CLI left
this process answering from the old (deleted) files, counting the added sample
as unsearched, and a deleted index still listed."""

from __future__ import annotations

import subprocess
import sys

import fiftyone as fo
import pytest

import fiftyone_clipbranches as cb


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _cli(*args: str) -> None:
    _run([sys.executable, "-m", "fiftyone_clipbranches.cli", *args])


def _held(index_dir) -> tuple[bool, bool]:
    """Whether this process caches the directory, and maps a file of it."""
    import gc
    from pathlib import Path

    from fiftyone_clipbranches.sdk.bundle import cached_bundles

    gc.collect()
    where = str(Path(index_dir).resolve())
    maps = Path("/proc/self/maps").read_text()
    return where in cached_bundles()[1], where + "/" in maps


def test_an_update_rename_and_delete_elsewhere_are_seen_here(
    make_user_index, cifar_dir
):
    ds = make_user_index(n_per_class=5, name="other-process")
    ds.persistent = True  # another process loads it by name
    before = cb.index_info(ds, "clip")
    ds.add_sample(fo.Sample(filepath=str(next((cifar_dir / "dog").iterdir()))))
    assert cb.unsearched_count(ds, "clip") == 1

    ids = ds.values("id")
    cb.search(ds, sample_ids=ids[:1], k=3, index_key="clip")  # loaded here
    _cli("update-index", ds.name, "--key", "clip", "--quiet")
    after = cb.index_info(ds, "clip")
    assert after.index_dir != before.index_dir and after.n_samples == 51
    assert cb.unsearched_count(ds, "clip") == 0
    ids = ds.values("id")
    result = cb.refine(
        ds, positives=ids[:3], negatives=ids[-3:], index_key="clip", score_field=None
    )
    assert result.stats["n_index"] == 51
    # the old directory's files, deleted by the update, are no longer held open
    # here (its disk space stayed taken, by up to 4 old copies per process)
    del result
    assert _held(before.index_dir) == (False, False)
    assert _held(after.index_dir) == (True, True)

    _cli("rename-index", ds.name, "--key", "clip", "--new-key", "renamed")
    assert cb.list_indexes(ds) == ["renamed"]
    # renamed, then updated elsewhere: the directory it had under both names goes
    cb.search(ds, sample_ids=ids[:1], k=3, index_key="renamed")
    ds.add_sample(fo.Sample(filepath=str(next((cifar_dir / "cat").iterdir()))))
    _cli("update-index", ds.name, "--key", "renamed", "--quiet")
    cb.search(ds, sample_ids=ids[:1], k=3, index_key="renamed")
    assert _held(after.index_dir) == (False, False)
    latest = cb.index_info(ds, "renamed").index_dir
    _cli("delete-index", ds.name, "--key", "renamed")
    assert cb.list_indexes(ds) == []
    with pytest.raises(cb.sdk.IndexNotFoundError):
        cb.search(ds, sample_ids=ids[:1], k=3, index_key="renamed")
    assert _held(latest) == (False, False)

    # a brain run made elsewhere takes its key here too (the guards read it)
    script = (
        "import fiftyone as fo, fiftyone.brain as fob;"
        f"ds = fo.load_dataset({ds.name!r});"
        "fob.compute_similarity(ds, embeddings='clip_embedding', backend='sklearn',"
        " brain_key='sk')"
    )
    _run([sys.executable, "-c", script])
    with pytest.raises(cb.sdk.IndexExistsError, match="brain run with key 'sk'"):
        cb.build_index(ds, "sk", embeddings_field="clip_embedding", progress=False)
