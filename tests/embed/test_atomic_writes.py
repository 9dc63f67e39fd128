"""Atomic writes leave complete files with the permissions a plain write gives:
an index's encoder was 0600 in a 0700 folder (``mkstemp`` / ``mkdtemp``), so
other users of a shared index root could search by id but not by text."""

from __future__ import annotations

import os
import stat

import pytest

from fiftyone_clipbranches.embed.atomic import write_bytes_atomic, write_dir_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_folders_get_the_umask_mode(tmp_path, umask_022):
    write_bytes_atomic(tmp_path / "a.json", b"{}")
    assert _mode(tmp_path / "a.json") == 0o644
    assert (tmp_path / "a.json").read_bytes() == b"{}"

    write_dir_atomic(tmp_path / "d", lambda d: write_bytes_atomic(d / "f", b"x"))
    assert _mode(tmp_path / "d") == 0o755 and _mode(tmp_path / "d" / "f") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]  # no temps


def test_a_failed_fill_leaves_the_old_folder_and_no_temporary(tmp_path, umask_022):
    write_dir_atomic(tmp_path / "d", lambda d: write_bytes_atomic(d / "f", b"old"))

    def fail(folder):
        write_bytes_atomic(folder / "f", b"new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_dir_atomic(tmp_path / "d", fail)
    assert (tmp_path / "d" / "f").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
