"""User journey: a dataset exported with its runs is imported into another
database that shares the index root, updated there, and its index deleted there.

Images on disk -> the tiny CLIP -> ``build_index`` on this database; the dataset
exported (``FiftyOneDataset``, runs included) and imported on a second database of
its own. The import's runs point at this database's index directory, which that
database's runs cannot see: its update and its delete-index removed the directory
this database still answers from (found by a walkthrough; verify then failed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import fiftyone as fo

import fiftyone_clipbranches as cb
from fiftyone_clipbranches.private_db import spawn_mongod

ELSEWHERE = textwrap.dedent(
    """
    import sys
    import fiftyone as fo
    import fiftyone_clipbranches as cb

    ds = fo.Dataset.from_dir(sys.argv[1], fo.types.FiftyOneDataset, name="imported")
    assert cb.list_indexes(ds) == ["clip"]
    ds.add_sample(fo.Sample(filepath=sys.argv[2]))
    info = cb.update_index(ds, "clip", progress=False)
    assert info.changes.added == 1, info.changes
    cb.delete_index(ds, "clip")
    print("done")
    """
)


def test_an_import_elsewhere_leaves_this_databases_index_files(
    make_user_index, tmp_path, cifar_dir
):
    ds = make_user_index(n_per_class=4, name="exported-with-runs")
    before = cb.index_info(ds, "clip")
    export = tmp_path / "export"
    ds.export(str(export), dataset_type=fo.types.FiftyOneDataset, export_media=False)
    added = str(next((cifar_dir / "cat").iterdir()))
    mongod = spawn_mongod(tmp_path / "mongod")
    try:
        env = {**os.environ, "FIFTYONE_DATABASE_URI": mongod.uri}
        done = subprocess.run(
            [sys.executable, "-c", ELSEWHERE, str(export), added],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]
    finally:
        mongod.stop()
    report = cb.verify_index(ds, "clip", level="full")
    assert report.checked  # it raises where a file is missing or damaged
    assert cb.index_info(ds, "clip").index_dir == before.index_dir
    assert (
        len(cb.search_ids(ds, sample_ids=ds.values("id")[:1], k=3, index_key="clip")[0])
        == 3
    )
