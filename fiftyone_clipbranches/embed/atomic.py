"""Atomic file and directory writes (temporary file in the same folder, then rename)."""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _unique_sibling(path)
    # 0o666 less the umask, as a plain open gives (mkstemp's files are 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True).encode("utf-8"))


def write_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to an ``.npz`` file, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def write_dir_atomic(
    path: str | os.PathLike,
    fill: Callable[[Path], None],
    replaceable: Callable[[Path], None] | None = None,
) -> None:
    """Create directory ``path`` by filling a temporary sibling and renaming it.

    An existing directory at ``path`` is replaced only once the new one is
    complete, and only after ``replaceable(path)`` (which raises for what must not
    be replaced) accepts it, before filling and again before the swap.
    """
    from fiftyone_clipbranches.engine.index_io import move_into_place

    path = Path(path)
    if replaceable is not None:
        replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _unique_sibling(path)
    tmp.mkdir()  # the umask's mode, as its siblings (mkdtemp's folders are 0700)
    try:
        fill(tmp)
        move_into_place(tmp, path, replaceable)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _unique_sibling(path: Path) -> Path:
    """A name beside ``path`` that no other writer uses."""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
