"""numba's cache moves to a private temp folder where it has no place of its own
(a service run as another user, HOME unset or read-only): every kernel module
failed to import, and each index was called not loadable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba as nb
import pytest

from fiftyone_clipbranches.engine import numba_cache


@pytest.fixture
def no_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(nb.config, "CACHE_DIR", "")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_numbas_own_places_are_kept_when_writable(no_cache_dir):
    assert numba_cache.can_write(no_cache_dir / "not" / "made" / "yet")
    assert numba_cache.ensure_cache_dir() is None
    assert nb.config.CACHE_DIR == ""


def test_without_a_writable_place_a_private_temp_folder_takes_the_kernels(
    no_cache_dir, monkeypatch
):
    monkeypatch.setattr(numba_cache, "can_write", lambda path: False)
    folder = Path(numba_cache.ensure_cache_dir())
    assert str(folder) == nb.config.CACHE_DIR == os.environ["NUMBA_CACHE_DIR"]
    # the variable too: numba reads its settings from the environment again
    # when one of them changes (not done here: it would reset this process's)
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert folder.parent == no_cache_dir and folder.stat().st_uid == os.getuid()
    assert folder.stat().st_mode & 0o777 == 0o700
    # a folder of that name others can write is not used (code is loaded from it)
    monkeypatch.setattr(nb.config, "CACHE_DIR", "")
    os.chmod(folder, 0o777)
    other = Path(numba_cache.ensure_cache_dir())
    assert other != folder and other.stat().st_mode & 0o777 == 0o700
    # the user's own choice wins
    monkeypatch.setattr(nb.config, "CACHE_DIR", "")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(no_cache_dir / "mine"))
    assert numba_cache.ensure_cache_dir() is None and nb.config.CACHE_DIR == ""
