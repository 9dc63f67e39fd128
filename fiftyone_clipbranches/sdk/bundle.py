"""One index directory on disk: the code index, the encoder and the sample-id order.

Layout of ``<root>/<dataset id>/<uuid>/``::

    manifest.json       format version, size, code method, CLIP identity, the id of
                        the dataset that wrote it (``dataset_id``), a ``files`` table
                        (size, sha256, sampled sha256 of every other file outside
                        ``index/`` plus ``index/manifest.json``) and
                        ``manifest_sha256``, the checksum of the manifest itself
    sample_ids.npy      (N,) S24 sample ids in row order
    unembeddable.json   {sample id: {"filepath", "error"}} of samples whose image
                        could not be embedded (absent when there are none)
    path_digests.npy    (N,) uint64 digests of the filepath each row was embedded
                        from, in row order (absent for indexes built from codes,
                        and in directories written before they were recorded)
    index/              CodeIndex.save(...) (its own manifest checksums its arrays), or
                        a sharded index (engine/shard_format.py: S CodeIndex
                        directories under a manifest checksumming theirs)
    encoder/            CodeEncoder.save(...) (absent for indexes built from codes)

A directory is written under a temporary name (``.tmp-<uuid>``, holding a
``.writer`` file naming the writing process while it is written) and renamed into
place, so a crash never leaves a half-written index under a real name. Directories
are immutable once written: updates write a new one, so loaded bundles can be
cached by path.

Verification levels (``load_bundle(path, verify=...)``, :func:`verify_bundle`):
``"full"`` re-hashes every byte of every file; ``"fast"`` (the default) checks every
file's size, the manifests' own checksums, the ``.npy`` headers and a sampled hash
(the whole file under 4 MiB, else the first and last MiB and 64 spread 4 KiB
blocks); ``"none"`` checks sizes and headers only. Format 1 directories (written
before the top-level files had checksums) still load; their ``index/`` files are
verified and the rest are reported as unchecked.

Loaded bundles are kept per process: the last ``$CLIPBRANCHES_INDEX_CACHE_SIZE``
(default 4) in an LRU, plus any number pinned with :func:`pin_bundle` (a service
pins every index it serves so that none is reloaded per request).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.sdk.errors import (
    REBUILD,
    IndexCorruptedError,
    IndexFilesMissingError,
    IndexPermissionError,
    StaleIndexError,
    engine_errors,
)
from fiftyone_clipbranches.sdk.rowmap import SampleRowMap
from fiftyone_clipbranches.sdk.settings import (
    INDEX_ROOT_ENV,
    index_cache_size,
    index_root,
)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
SAMPLE_IDS = "sample_ids.npy"
UNEMBEDDABLE = "unembeddable.json"
PATH_DIGESTS = "path_digests.npy"
INDEX_DIR = "index"
ENCODER_DIR = "encoder"
TMP_PREFIX = ".tmp-"
WRITER_FILE = ".writer"
VERIFY_LEVELS = ("none", "fast", "full")

_cache: OrderedDict[str, IndexBundle] = OrderedDict()
_pinned: dict[str, IndexBundle] = {}
#: The directory each owner (an index of a dataset: ``(dataset id, key)``) last
#: loaded: an update elsewhere gives it another, and the old one's files, deleted,
#: must not stay open here (their disk space is freed once nothing maps them).
_owned: dict[tuple, str] = {}
_cache_lock = threading.Lock()


@dataclass
class IndexBundle:
    """A loaded index directory.

    Attributes:
        path: the directory.
        index: the ``CodeIndex`` (codes memory-mapped).
        rowmap: sample ids of the index rows.
        encoder: the ``CodeEncoder`` turning 512-d embeddings into codes, or None.
        manifest: the parsed ``manifest.json``.
        unembeddable: ``{sample id: {"filepath", "error"}}`` of samples left out.
        path_digests: uint64 ``(N,)`` digests of the rows' filepaths
            (``freshness.path_digests``), or None where not recorded.
    """

    path: Path
    index: object
    rowmap: SampleRowMap
    encoder: object | None
    manifest: dict = field(default_factory=dict)
    unembeddable: dict = field(default_factory=dict)
    verified: str = "none"
    path_digests: np.ndarray | None = None

    @property
    def dataset_id(self) -> str | None:
        """Id of the dataset that wrote (and owns) this directory."""
        return self.manifest.get("dataset_id")


@dataclass
class VerifyReport:
    """What :func:`verify_bundle` checked.

    Attributes:
        path: the index directory.
        level: ``"none"``, ``"fast"`` or ``"full"``.
        checked: files checked (relative paths).
        unchecked: files present without a checksum (format 1 directories).
        n_bytes: bytes of the checked files.
        seconds: time taken.
    """

    path: str
    level: str
    checked: list[str]
    unchecked: list[str]
    n_bytes: int
    seconds: float

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "level": self.level,
            "checked": list(self.checked),
            "unchecked": list(self.unchecked),
            "n_bytes": self.n_bytes,
            "seconds": self.seconds,
        }


def write_bundle(
    parent,
    index,
    rowmap: SampleRowMap,
    encoder,
    meta: dict,
    unembeddable=None,
    path_digests=None,
) -> Path:
    """Write a new index directory under ``parent``; returns its final path.

    ``index``: a ``CodeIndex``, or ``fn(path) -> CodeIndex`` building one straight
    into the directory ``path`` (``CodeIndex.build(..., path=path)``).
    ``unembeddable``: ``{sample id: {"filepath": str, "error": str}}`` of samples
    left out because their image could not be embedded. ``path_digests``: uint64
    ``(N,)`` digests of the rows' filepaths, or None (not recorded).
    """
    parent = Path(parent)
    name = uuid.uuid4().hex
    tmp = parent / f"{TMP_PREFIX}{name}"
    final = parent / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        writer = {"pid": os.getpid(), "host": socket.gethostname(), "at": time.time()}
        (tmp / WRITER_FILE).write_text(json.dumps(writer))
        if callable(index):
            index = index(tmp / INDEX_DIR)
        else:
            index.save(tmp / INDEX_DIR)
        if len(rowmap) != len(index):
            raise ValueError(
                f"index has {len(index)} rows but {len(rowmap)} sample ids were given"
            )
        if encoder is not None:
            encoder.save(tmp / ENCODER_DIR)
        rowmap.save(tmp / SAMPLE_IDS)
        if path_digests is not None:
            digests = np.asarray(path_digests, dtype="<u8")
            if digests.shape != (len(rowmap),):
                raise ValueError(
                    f"{digests.shape} path digests for {len(rowmap)} sample ids"
                )
            np.save(tmp / PATH_DIGESTS, digests)
        if unembeddable:
            (tmp / UNEMBEDDABLE).write_text(json.dumps(unembeddable, sort_keys=True))
        manifest = {
            "format": "clipbranches-fiftyone-index",
            "format_version": FORMAT_VERSION,
            "n_samples": len(rowmap),
            "has_encoder": encoder is not None,
            "n_unembeddable": len(unembeddable or {}),
            **meta,
            "files": _files_table(tmp),
        }
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        with open(tmp / MANIFEST, "w") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        # gc knows a dead writer's directory by this file until the very end
        (tmp / WRITER_FILE).unlink()
        tmp.rename(final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise where_indexes_cannot_go(e, parent) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


#: Errors of a folder that cannot take an index, and what to do about each.
_UNWRITABLE = {
    errno.ENOSPC: "free space there",
    errno.EDQUOT: "free space there (a disk quota is full)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "fix its permissions",
    errno.EPERM: "fix its permissions",
    errno.ENOTDIR: "a file is in the way on that path",
}


def where_indexes_cannot_go(error: OSError, folder) -> OSError:
    """``error`` (writing an index under ``folder``) told with the folder and the
    way out (space, permissions, ``$CLIPBRANCHES_INDEX_ROOT``); other errors as
    they are."""
    if not isinstance(error, OSError) or error.errno not in _UNWRITABLE:
        return error
    return type(error)(
        error.errno,
        f"cannot write the index under {folder}: {error.strerror}"
        f" ({_UNWRITABLE[error.errno]}, or set ${INDEX_ROOT_ENV} to a folder that"
        " can take it)",
    )


def _files_table(directory: Path) -> dict:
    """Checksums of every file of ``directory`` but the top-level manifest, the
    writer's record and the arrays of ``index/`` (which ``index/manifest.json``,
    listed here, checksums)."""
    from fiftyone_clipbranches.engine.index_io import file_entry

    table = {}
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).as_posix()
        if not p.is_file() or rel in (MANIFEST, WRITER_FILE):
            continue
        if rel.startswith(f"{INDEX_DIR}/") and rel != f"{INDEX_DIR}/{MANIFEST}":
            continue
        table[rel] = file_entry(p)
    return table


def _manifest_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, indent=2, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(path) -> dict:
    """The checked top-level ``manifest.json`` of index directory ``path``.

    Raises:
        IndexFilesMissingError: the directory or its manifest is missing.
        IndexPermissionError: the manifest cannot be read.
        IndexCorruptedError: it is not valid JSON, of an unknown format version, or
            does not match its own checksum.
    """
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        what = (
            f"its {MANIFEST} is missing"
            if path.is_dir()
            else "the directory is gone; if the index root was moved, set"
            f" ${INDEX_ROOT_ENV} to its new place (now {index_root()}); a dataset"
            " exported and imported brings no index files"
        )
        raise IndexFilesMissingError(
            f"index files are missing at {path} ({what}); {REBUILD}"
        )
    try:
        text = mpath.read_bytes()
    except PermissionError as e:
        raise IndexPermissionError(
            f"cannot read {mpath}: permission denied; fix its permissions"
        ) from e
    except OSError as e:
        raise IndexPermissionError(f"cannot read {mpath}: {e}; check the disk") from e
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise IndexCorruptedError(
            f"{mpath} is garbled (not valid JSON: {e}); {REBUILD}"
        ) from e
    if not isinstance(manifest, dict):
        raise IndexCorruptedError(f"{mpath} is garbled (not a JSON object); {REBUILD}")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise StaleIndexError(
            f"index at {path} has format version {version!r}, this version reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}; rebuild the index"
        )
    if version >= 2:
        if manifest.get("manifest_sha256") != _manifest_digest(manifest):
            raise IndexCorruptedError(
                f"{mpath} is corrupted (it does not match its own checksum); {REBUILD}"
            )
        if not isinstance(manifest.get("files"), dict):
            raise IndexCorruptedError(f"{mpath} lacks its 'files' table; {REBUILD}")
    return manifest


def verify_bundle(path, level: str = "full") -> VerifyReport:
    """Check every file of index directory ``path`` at ``level`` without loading it.

    Raises:
        IndexCorruptedError: a file is missing, truncated or does not match its
            checksum (the message names it).
        IndexPermissionError: a file cannot be read.
        IndexFilesMissingError: the directory is gone.
    """
    started = time.perf_counter()
    path = Path(path)
    manifest = read_manifest(path)
    checked, unchecked, n_bytes = _verify_files(path, manifest, level)
    from fiftyone_clipbranches.engine.shards import open_index

    index = _engine_call(lambda: open_index(path / INDEX_DIR, verify=level))
    for name in sorted(index.manifest.get("files", {})):
        checked.append(f"{INDEX_DIR}/{name}")
        n_bytes += int(index.manifest["files"][name].get("size", 0))
    if manifest.get("format_version", 1) < 2:
        checked.append(f"{INDEX_DIR}/{MANIFEST} (format only)")
    return VerifyReport(
        str(path),
        level,
        checked,
        unchecked,
        n_bytes,
        round(time.perf_counter() - started, 4),
    )


def _verify_files(path: Path, manifest: dict, level: str):
    """Check the files of the top-level ``files`` table; ``(checked, unchecked,
    n_bytes)``."""
    from fiftyone_clipbranches.engine.index_io import check_file

    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify level must be one of {VERIFY_LEVELS}; got {level!r}")
    checked = [MANIFEST] if manifest.get("format_version", 1) >= 2 else []
    unchecked = [] if checked else [MANIFEST]
    n_bytes = 0
    table = manifest.get("files")
    if isinstance(table, dict):
        for rel, entry in sorted(table.items()):
            if not isinstance(entry, dict) or ".." in Path(rel).parts:
                raise IndexCorruptedError(
                    f"{path / MANIFEST} has a garbled 'files' table; {REBUILD}"
                )
            _engine_call(
                lambda rel=rel, entry=entry: check_file(path / rel, entry, level)
            )
            checked.append(rel)
            n_bytes += int(entry.get("size", 0))
    else:
        unchecked += [SAMPLE_IDS] + sorted(
            p.relative_to(path).as_posix()
            for p in (path / ENCODER_DIR).rglob("*")
            if p.is_file()
        )
    return checked, unchecked, n_bytes


def _engine_call(fn):
    """Run ``fn`` turning the engine's file errors into the SDK's."""
    with engine_errors():
        return fn()


def load_bundle(path, verify: str = "fast", owner: tuple | None = None) -> IndexBundle:
    """Load (or fetch from the in-process cache) the index directory ``path``.

    ``verify``: ``"fast"`` (default), ``"full"`` or ``"none"`` (module docstring).
    A cached bundle asked for a stronger level than it was loaded with is checked
    again on disk at that level. ``owner`` (``(dataset id, index key)``): the index
    whose directory ``path`` is now; the directory it had before leaves the cache
    (:func:`let_go`).
    """
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}; got {verify!r}")
    path = Path(path)
    key = _key(path)
    if owner is not None:
        let_go(owner, now=key)
    with _cache_lock:
        bundle = _pinned.get(key) or _cache.get(key)
        if bundle is not None and key in _cache:
            _cache.move_to_end(key)
    if bundle is not None:
        if _stronger(verify, bundle.verified):
            verify_bundle(path, verify)
            bundle.verified = verify
        return bundle
    size = index_cache_size()
    bundle = _read_bundle(path, verify)
    dropped = []
    with _cache_lock:
        held = _pinned.get(key) or _cache.get(key)  # read by another thread too
        if held is not None:
            dropped.append(bundle)
            bundle = held
        elif size > 0:
            _cache[key] = bundle
        while len(_cache) > size:
            dropped.append(_cache.popitem(last=False)[1])
    _release(*dropped)
    return bundle


def let_go(owner: tuple, now: str | None = None) -> None:
    """Record that index ``owner`` is at the directory ``now`` (a resolved path;
    None: deleted), and drop the directory it had before from the cache unless
    another owner is there too (a clone's index) or it is pinned."""
    dropped = None
    with _cache_lock:
        before = _owned.pop(owner, None) if now is None else _owned.get(owner)
        if now is not None:
            # a directory has one key per dataset: another key of this dataset
            # there is the index's name before a rename
            for other in [
                o for o, d in _owned.items() if d == now and o[0] == owner[0]
            ]:
                del _owned[other]
            _owned[owner] = now
        if before is not None and before != now and before not in _owned.values():
            dropped = _cache.pop(before, None)
    _release(dropped)


def pin_bundle(path) -> IndexBundle:
    """Load ``path`` and keep it loaded until :func:`unpin_bundle` or
    :func:`forget_bundle`, whatever the cache size."""
    path = Path(path)
    key = _key(path)
    with _cache_lock:
        bundle = _pinned.get(key) or _cache.pop(key, None)
    if bundle is None:
        bundle = _read_bundle(path, "fast")
    with _cache_lock:
        pinned = _pinned.setdefault(key, bundle)
    if pinned is not bundle:  # pinned by another thread meanwhile
        _release(bundle)
    return pinned


def unpin_bundle(path) -> None:
    """Let ``path`` leave memory again (it is dropped, not moved to the LRU)."""
    with _cache_lock:
        dropped = _pinned.pop(_key(Path(path)), None)
    _release(dropped)


def cached_bundles() -> tuple[list[str], list[str]]:
    """``(pinned paths, LRU paths oldest first)`` held by this process."""
    with _cache_lock:
        return list(_pinned), list(_cache)


def forget_bundle(path) -> None:
    """Drop ``path`` from the in-process cache (before deleting its files)."""
    key = _key(Path(path))
    with _cache_lock:
        dropped = _cache.pop(key, None), _pinned.pop(key, None)
    _release(*dropped)


def forget_sharded_bundles() -> None:
    """Load every sharded index of the in-process cache again, so that it is
    answered through the executor configured now (``sharding.use_ray``): those
    in the LRU at their next use, pinned ones (a service's) now, pinned still."""
    from fiftyone_clipbranches.engine.shards import ShardedIndex

    def sharded(held) -> list[str]:
        return [k for k, b in held.items() if isinstance(b.index, ShardedIndex)]

    with _cache_lock:
        dropped = [_cache.pop(key) for key in sharded(_cache)]
        repin = sharded(_pinned)
        dropped += [_pinned.pop(key) for key in repin]
    _release(*dropped)
    for key in repin:
        try:
            pin_bundle(key)
        except Exception:  # its files gone or damaged: its next use says so
            continue


def _release(*bundles) -> None:
    """Let the indexes of bundles that left the cache free what they hold between
    queries (a sharded index's Ray actors); a caller still holding one can query
    it (it takes them again)."""
    for bundle in bundles:
        release = getattr(getattr(bundle, "index", None), "release", None)
        if release is not None:
            release()


def _key(path: Path) -> str:
    return str(path.resolve())


def _stronger(level: str, than: str) -> bool:
    return VERIFY_LEVELS.index(level) > VERIFY_LEVELS.index(than)


def _read_bundle(path: Path, verify: str) -> IndexBundle:
    manifest = read_manifest(path)
    _verify_files(path, manifest, verify)
    from fiftyone_clipbranches.sdk.sharding import open_code_index

    index = _engine_call(lambda: open_code_index(path / INDEX_DIR, verify=verify))
    try:
        rowmap = SampleRowMap.load(path / SAMPLE_IDS)
    except PermissionError as e:
        raise IndexPermissionError(
            f"cannot read {path / SAMPLE_IDS}: permission denied; fix its permissions"
        ) from e
    except (OSError, ValueError) as e:
        raise IndexCorruptedError(
            f"{path / SAMPLE_IDS} cannot be read ({e}); {REBUILD}"
        ) from e
    encoder = None
    if manifest.get("has_encoder"):
        from fiftyone_clipbranches.embed.encoder import CodeEncoder

        try:
            encoder = CodeEncoder.load(path / ENCODER_DIR)
        except PermissionError as e:
            raise IndexPermissionError(
                f"cannot read {e.filename}: permission denied; fix its permissions"
            ) from e
        except Exception as e:
            raise IndexCorruptedError(
                f"the encoder in {path / ENCODER_DIR} cannot be loaded ({e}); {REBUILD}"
            ) from e
    unembeddable = {}
    if (path / UNEMBEDDABLE).is_file():
        try:
            unembeddable = json.loads((path / UNEMBEDDABLE).read_text())
        except (OSError, ValueError) as e:
            raise IndexCorruptedError(
                f"{path / UNEMBEDDABLE} cannot be read ({e}); {REBUILD}"
            ) from e
    digests = None
    if (path / PATH_DIGESTS).is_file():
        try:
            digests = np.load(path / PATH_DIGESTS, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise IndexCorruptedError(
                f"{path / PATH_DIGESTS} cannot be read ({e}); {REBUILD}"
            ) from e
        if digests.shape != (len(rowmap),) or digests.dtype != np.dtype("<u8"):
            raise IndexCorruptedError(
                f"{path / PATH_DIGESTS} holds {digests.dtype} {digests.shape}, not"
                f" one digest per row of the index's {len(rowmap)}; {REBUILD}"
            )
    if len(rowmap) != len(index) or manifest.get("n_samples", len(rowmap)) != len(
        rowmap
    ):
        raise IndexCorruptedError(
            f"index at {path} is inconsistent ({len(index)} rows, {len(rowmap)} ids, "
            f"manifest says {manifest.get('n_samples')}); {REBUILD}"
        )
    return IndexBundle(
        path, index, rowmap, encoder, manifest, unembeddable, verify, digests
    )
