"""On-disk format of a :class:`~.index.CodeIndex`: one directory, written atomically.

Layout::

    <path>/manifest.json     format name and version, N, D, subsets, leaf size, depth,
                             for every file its size, dtype, shape and checksums,
                             and a ``save_id`` of its own (readers tell saves apart)
    <path>/<name>.npy        the arrays, loaded with ``mmap_mode="r"``
    <path>/extra/<name>      opaque files of the layers above (sample ids, encoder)

Checksums: every file gets a full ``sha256`` and a ``sample_sha256`` over at most
~2.3 MiB (the first and last MiB and 64 evenly spaced 4 KiB blocks; the whole file
when it is under 4 MiB). ``verify="full"`` re-hashes everything (about 1-2 GB/s, so
seconds per 10M rows); ``verify="fast"`` checks sizes, ``.npy`` headers and the sample
hashes in O(1) time: it catches truncation, version and shape mismatches and any
change within the sampled blocks (the whole of a file under 4 MiB), but not a
change between the sampled blocks of a large file (``"full"`` does). A directory is
written under a temporary name in the same parent and renamed into place; an
existing index is renamed aside first and deleted last (never a directory or file
that is no index: ``check_replaceable``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from .errors import IndexAccessError, IndexFormatError

FORMAT_NAME = "clipbranches-code-index"
#: The top manifest's format of an index split into shards (``shard_format``).
SHARDED_FORMAT_NAME = "clipbranches-sharded-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EXTRA_DIR = "extra"
_BLOCK = 8 << 20
_SAMPLE_EDGE = 1 << 20
_SAMPLE_BLOCK = 4096
_SAMPLE_COUNT = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def shard_name(number: int) -> str:
    """The folder of shard ``number`` in a sharded index (``shard_format``)."""
    return f"shard-{number:04d}"


def shard_count(path) -> int:
    """Shards of the index at ``path`` as its top manifest records them, else (the
    manifest unreadable) as many as its shard folders; 1 for a ``CodeIndex``.
    Nothing is verified."""
    try:
        raw = json.loads((Path(path) / MANIFEST).read_text())
        if raw.get("format") == SHARDED_FORMAT_NAME:
            return max(1, len(raw["shards"]))
        return 1
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    n = 0
    while (Path(path) / shard_name(n)).is_dir():
        n += 1
    return max(1, n)


REBUILD = (
    "rebuild the index (CodeIndex.build(...).save(path)) or restore it from a backup"
)


def access_error(p: Path, e: OSError) -> IndexAccessError:
    """The error for a file that exists but cannot be read (not corruption)."""
    if isinstance(e, PermissionError):
        return IndexAccessError(
            f"cannot read {p}: permission denied; fix its permissions"
        )
    return IndexAccessError(
        f"cannot read {p}: {e.strerror or e}; check the disk and retry"
    )


def check_file(p: Path, entry: dict, verify: str) -> None:
    """Check one file against its manifest ``entry`` (``size``, ``sha256`` and
    optionally ``sample_sha256``) at level ``"none"`` (size only), ``"fast"`` (size
    and the sampled hash, or the full one when no sampled hash is recorded) or
    ``"full"`` (size and full sha256).

    Raises:
        IndexFormatError: missing, wrong size or checksum mismatch.
        IndexAccessError: the file exists but cannot be read.
    """
    if not p.is_file():
        raise IndexFormatError(f"{p} is missing; {REBUILD}")
    size = p.stat().st_size
    if size != entry.get("size"):
        raise IndexFormatError(
            f"{p} has {size} bytes, its manifest says {entry.get('size')}"
            f" (truncated or replaced); {REBUILD}"
        )
    if verify == "none":
        return
    key = "sample_sha256" if verify == "fast" and "sample_sha256" in entry else "sha256"
    try:
        digest = sample_sha256(p) if key == "sample_sha256" else full_sha256(p)
    except OSError as e:
        raise access_error(p, e) from e
    if digest != entry.get(key):
        raise IndexFormatError(
            f"{p} is corrupted (its {key} does not match the manifest); {REBUILD}"
        )


def file_entry(p: Path) -> dict:
    """``{"size", "sha256", "sample_sha256"}`` of file ``p``, for a manifest."""
    return {
        "size": p.stat().st_size,
        "sha256": full_sha256(p),
        "sample_sha256": sample_sha256(p),
    }


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name == MANIFEST:
        raise ValueError(
            f"invalid file name {name!r}: use letters, digits, '_', '-', '.'"
            " (no path separators)"
        )
    return name


def full_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_BLOCK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def sample_sha256(path: Path) -> str:
    size = path.stat().st_size
    if size <= 4 * _SAMPLE_EDGE:
        return full_sha256(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_SAMPLE_EDGE))
        inner = size - 2 * _SAMPLE_EDGE - _SAMPLE_BLOCK
        for i in range(_SAMPLE_COUNT):
            f.seek(_SAMPLE_EDGE + inner * i // (_SAMPLE_COUNT - 1))
            h.update(f.read(_SAMPLE_BLOCK))
        f.seek(size - _SAMPLE_EDGE)
        h.update(f.read(_SAMPLE_EDGE))
    return h.hexdigest()


def npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the header of a ``.npy`` file.

    Raises:
        ValueError: the header is garbled (numpy's parser raises syntax and
            tokenizer errors too; all become this).
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(f)
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(f)
        except OSError:
            raise
        except Exception as e:
            raise ValueError(f"garbled .npy header ({type(e).__name__}: {e})") from e
        raise ValueError(f"unsupported .npy version {version}")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def being_replaced(path: Path) -> bool:
    """Whether a writer is replacing the directory at ``path`` now (its old one
    moved aside, or its new one staged, beside it)."""
    try:
        return any(
            p.name.startswith((f".{path.name}.old-", f".{path.name}.tmp-"))
            for p in path.parent.iterdir()
        )
    except OSError:
        return False


def move_into_place(tmp: Path, path: Path, replaceable=None) -> None:
    """Rename the finished directory ``tmp`` to ``path``, replacing what is there
    (moved aside under a name of its own, then deleted) once ``replaceable(path)``
    accepts it. Writers racing for one path all succeed, the last one's directory
    staying: one that finds another's directory put in place after it moved the
    old one aside moves that one aside too. Should the rename fail otherwise, the
    directory moved aside goes back."""
    asides, placed = [], False
    try:
        for _ in range(100):
            if path.exists():
                if replaceable is not None:
                    replaceable(path)
                aside = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
                with contextlib.suppress(FileNotFoundError):  # moved by another
                    os.replace(path, aside)
                    asides.append(aside)
            try:
                os.replace(tmp, path)
                placed = True
                break
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        else:
            raise OSError(errno.EBUSY, f"{path} keeps being replaced by other writers")
    except BaseException:
        if asides and not path.exists():
            os.replace(asides.pop(), path)
        raise
    finally:
        # a save that did not land keeps what it moved aside (refused on a later
        # pass: something else was put there meanwhile), as a hidden sibling
        for aside in asides if placed else ():
            shutil.rmtree(aside, ignore_errors=True)


def refuse_to_replace_other(path: Path, marker: str, formats, noun: str) -> None:
    """Raise ``FileExistsError`` when ``path`` holds something a save must not
    replace: a file, or a non-empty directory whose JSON file ``marker`` names no
    format of ``formats`` (``noun``: what the save writes, in the message).
    Nothing there, or gone meanwhile (another writer moved it), is fine."""
    misses = 0
    for attempt in range(50):  # another writer may swap the directory under us
        try:
            if path.is_symlink() or path.is_file():
                break
            if not path.exists():
                return
            if not any(path.iterdir()):
                return
            raw = json.loads((path / marker).read_text())
        except ValueError:
            break
        except (FileNotFoundError, NotADirectoryError):
            # the directory moved away as it was read, or holds no marker: the
            # latter only when it keeps missing
            misses += 1
            if misses >= 5 and path.is_dir() and not (path / marker).exists():
                break
            time.sleep(0.001 * attempt)
            continue
        except OSError:  # unreadable (permissions): not known to be one of ours
            break
        if isinstance(raw, dict) and raw.get("format") in formats:
            return
        break
    if not path.exists() and not path.is_symlink():
        return
    what = (
        f"a directory whose {marker} cannot be read as a {noun}'s (damaged? remove"
        " it, or restore it from a backup)"
        if (path / marker).exists()
        else "a directory of other files"
        if path.is_dir()
        else "a file"
    )
    raise FileExistsError(
        f"{path} is {what}, not a {noun}: nothing was replaced; save the {noun} at"
        " another path (or remove what is there yourself)"
    )


def check_replaceable(path: Path) -> None:
    """Refuse to write an index at ``path`` where something that is no index is
    (a save replaces an index there, never anything else)."""
    refuse_to_replace_other(
        path, MANIFEST, (FORMAT_NAME, SHARDED_FORMAT_NAME), "clipbranches index"
    )


class IndexWriter:
    """Stage the files of one index directory and move them into place atomically.

    Use as a context manager: on an exception the staging directory is removed and
    an existing index at ``path`` is left untouched.
    """

    def __init__(self, path):
        self.path = Path(path)
        check_replaceable(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:12]
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{token}"
        self.tmp.mkdir()
        self.arrays: dict[str, dict] = {}
        self.extras: dict[str, dict] = {}
        self._open: dict[str, np.memmap] = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._open.clear()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def open_array(self, name: str, shape, dtype) -> np.memmap:
        """A writable ``.npy`` memmap to fill in place (for builds larger than RAM)."""
        check_name(name)
        arr = np.lib.format.open_memmap(
            self.tmp / f"{name}.npy",
            mode="w+",
            dtype=dtype,
            shape=tuple(int(x) for x in shape),
        )
        self._open[name] = arr
        return arr

    def add_array(self, name: str, arr: np.ndarray) -> None:
        check_name(name)
        np.save(self.tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)

    def add_extra(self, name: str, data: bytes) -> None:
        check_name(name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"extra file {name!r} must be bytes")
        (self.tmp / EXTRA_DIR).mkdir(exist_ok=True)
        p = self.tmp / EXTRA_DIR / name
        p.write_bytes(bytes(data))
        self.extras[name] = {"size": p.stat().st_size, "sha256": full_sha256(p)}

    def commit(self, manifest: dict) -> dict:
        """Checksum, write ``manifest.json``, fsync and rename into place."""
        for arr in self._open.values():
            arr.flush()
        self._open.clear()
        files = {}
        for p in sorted(self.tmp.glob("*.npy")):
            shape, _, dtype = npy_header(p)
            files[p.name] = {
                "size": p.stat().st_size,
                "dtype": dtype.str,
                "shape": list(shape),
                "sha256": full_sha256(p),
                "sample_sha256": sample_sha256(p),
            }
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
        manifest = dict(manifest)
        manifest.update(
            format=FORMAT_NAME,
            format_version=FORMAT_VERSION,
            files=files,
            extra_files=self.extras,
            # one per save: a load tells a directory saved again at the path (an
            # inode number reused) from the one it began to read
            save_id=uuid.uuid4().hex,
        )
        text = json.dumps(manifest, indent=1, sort_keys=True)
        with open(self.tmp / MANIFEST, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.tmp)
        move_into_place(self.tmp, self.path, check_replaceable)
        _fsync_dir(self.path.parent)
        return manifest


def read_manifest(path) -> dict:
    """Read and check ``manifest.json`` (format name and version)."""
    path = Path(path)
    mpath = path / MANIFEST
    try:
        is_dir, is_file = path.is_dir(), mpath.is_file()
    except OSError as e:  # a directory on the way is not searchable
        raise access_error(Path(e.filename or path), e) from e
    if not is_dir:
        raise IndexFormatError(f"no index directory at {path}: {REBUILD}")
    if not is_file:
        raise IndexFormatError(f"{mpath} is missing: not a complete index; {REBUILD}")
    try:
        manifest = json.loads(mpath.read_text())
    except OSError as e:
        raise access_error(mpath, e) from e
    except ValueError as e:
        raise IndexFormatError(f"{mpath} is not valid JSON ({e}); {REBUILD}") from e
    if isinstance(manifest, dict) and manifest.get("format") == SHARDED_FORMAT_NAME:
        raise IndexFormatError(
            f"{mpath.parent} is an index split into shards, not one CodeIndex: open"
            " it with engine.shards.open_index(path) (or ShardedIndex.load)"
        )
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        if (mpath.parent / "index" / "manifest.json").is_file():
            raise IndexFormatError(
                f"{mpath.parent} is the directory of a dataset's index, not its trees:"
                f" open {mpath.parent / 'index'}"
            )
        raise IndexFormatError(f"{mpath} does not describe a {FORMAT_NAME}; {REBUILD}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(
            f"{mpath} has format version {version!r}, this release reads version"
            f" {FORMAT_VERSION}; {REBUILD}"
        )
    for key in ("files", "extra_files"):
        if not isinstance(manifest.get(key), dict):
            raise IndexFormatError(f"{mpath} lacks its '{key}' table; {REBUILD}")
    return manifest


def _check_checksum(p: Path, entry: dict, verify: str) -> None:
    key = "sha256" if verify == "full" else "sample_sha256"
    try:
        digest = full_sha256(p) if verify == "full" else sample_sha256(p)
    except OSError as e:
        raise access_error(p, e) from e
    if digest != entry.get(key):
        raise IndexFormatError(
            f"{p} is corrupted (its {key} does not match the manifest.json beside"
            f" it); {REBUILD}"
        )


def load_array(path, manifest: dict, name: str, *, verify: str, mmap: bool):
    """Check one ``.npy`` file against the manifest and open it (read-only memmap)."""
    p = Path(path) / f"{name}.npy"
    entry = manifest["files"].get(p.name)
    if entry is None:
        raise IndexFormatError(
            f"manifest.json in {path} does not list {p.name}; {REBUILD}"
        )
    if not p.is_file():
        raise IndexFormatError(f"{p} is missing; {REBUILD}")
    size = p.stat().st_size
    if size != entry.get("size"):
        raise IndexFormatError(
            f"{p} has {size} bytes, the manifest.json beside it says {entry.get('size')}"
            f" (truncated or replaced); {REBUILD}"
        )
    try:
        shape, fortran, dtype = npy_header(p)
    except OSError as e:
        raise access_error(p, e) from e
    except ValueError as e:
        raise IndexFormatError(f"{p} has no valid .npy header ({e}); {REBUILD}") from e
    if fortran or list(shape) != entry.get("shape") or dtype.str != entry.get("dtype"):
        raise IndexFormatError(
            f"{p} holds {dtype.str}{list(shape)}, the manifest.json beside it says"
            f" {entry.get('dtype')}{entry.get('shape')}; {REBUILD}"
        )
    if verify != "none":
        _check_checksum(p, entry, verify)
    try:
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except PermissionError as e:
        raise access_error(p, e) from e
    except (ValueError, OSError) as e:
        raise IndexFormatError(f"{p} cannot be read ({e}); {REBUILD}") from e


def read_extra(path, name: str) -> bytes:
    """Bytes of extra file ``name`` after checking its size and sha256."""
    check_name(name)
    manifest = read_manifest(path)
    entry = manifest["extra_files"].get(name)
    if entry is None:
        raise KeyError(f"index at {path} has no extra file {name!r}")
    p = Path(path) / EXTRA_DIR / name
    if not p.is_file():
        raise IndexFormatError(f"{p} is missing; {REBUILD}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise access_error(p, e) from e
    if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get(
        "sha256"
    ):
        raise IndexFormatError(f"{p} is truncated or corrupted; {REBUILD}")
    return data
