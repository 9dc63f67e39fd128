"""One index directory on disk: the code index, the encoder and the sample-id order.

Layout of ``<root>/<dataset id>/<uuid>/``::

    manifest.json     format version, size, code method, CLIP identity
    sample_ids.npy    (N,) S24 sample ids in row order
    index/            CodeIndex.save(...)
    encoder/          CodeEncoder.save(...) (absent for indexes built from codes)

A directory is written under a temporary name and renamed into place, so a
crash never leaves a half-written index under a real name. Directories are
immutable once written: updates write a new one, so loaded bundles can be cached
by path.

Loaded bundles are kept per process: the last ``$CLIPBRANCHES_INDEX_CACHE_SIZE``
(default 4) in an LRU, plus any number pinned with :func:`pin_bundle` (a service
pins every index it serves so that none is reloaded per request).
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from fiftyone_clipbranches.sdk.errors import StaleIndexError
from fiftyone_clipbranches.sdk.rowmap import SampleRowMap
from fiftyone_clipbranches.sdk.settings import index_cache_size

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SAMPLE_IDS = "sample_ids.npy"
INDEX_DIR = "index"
ENCODER_DIR = "encoder"

_cache: OrderedDict[str, IndexBundle] = OrderedDict()
_pinned: dict[str, IndexBundle] = {}
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
    """

    path: Path
    index: object
    rowmap: SampleRowMap
    encoder: object | None
    manifest: dict = field(default_factory=dict)


def write_bundle(parent, index, rowmap: SampleRowMap, encoder, meta: dict) -> Path:
    """Write a new index directory under ``parent``; returns its final path."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    tmp = parent / f".tmp-{name}"
    final = parent / name
    if len(rowmap) != len(index):
        raise ValueError(
            f"index has {len(index)} rows but {len(rowmap)} sample ids were given"
        )
    try:
        tmp.mkdir()
        index.save(tmp / INDEX_DIR)
        if encoder is not None:
            encoder.save(tmp / ENCODER_DIR)
        rowmap.save(tmp / SAMPLE_IDS)
        manifest = {
            "format": "clipbranches-fiftyone-index",
            "format_version": FORMAT_VERSION,
            "n_samples": len(rowmap),
            "has_encoder": encoder is not None,
            **meta,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_bundle(path) -> IndexBundle:
    """Load (or fetch from the in-process cache) the index directory ``path``."""
    path = Path(path)
    key = _key(path)
    with _cache_lock:
        bundle = _pinned.get(key) or _cache.get(key)
        if bundle is not None:
            if key in _cache:
                _cache.move_to_end(key)
            return bundle
    size = index_cache_size()
    bundle = _read_bundle(path)
    with _cache_lock:
        if key in _pinned:
            return _pinned[key]
        if size > 0:
            _cache[key] = bundle
        while len(_cache) > size:
            _cache.popitem(last=False)
    return bundle


def pin_bundle(path) -> IndexBundle:
    """Load ``path`` and keep it loaded until :func:`unpin_bundle` or
    :func:`forget_bundle`, whatever the cache size."""
    path = Path(path)
    key = _key(path)
    with _cache_lock:
        bundle = _pinned.get(key) or _cache.pop(key, None)
    if bundle is None:
        bundle = _read_bundle(path)
    with _cache_lock:
        return _pinned.setdefault(key, bundle)


def unpin_bundle(path) -> None:
    """Let ``path`` leave memory again (it is dropped, not moved to the LRU)."""
    with _cache_lock:
        _pinned.pop(_key(Path(path)), None)


def cached_bundles() -> tuple[list[str], list[str]]:
    """``(pinned paths, LRU paths oldest first)`` held by this process."""
    with _cache_lock:
        return list(_pinned), list(_cache)


def forget_bundle(path) -> None:
    """Drop ``path`` from the in-process cache (before deleting its files)."""
    key = _key(Path(path))
    with _cache_lock:
        _cache.pop(key, None)
        _pinned.pop(key, None)


def _key(path: Path) -> str:
    return str(path.resolve())


def _read_bundle(path: Path) -> IndexBundle:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise StaleIndexError(
            f"index files are missing at {path}; delete the index and build it again"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StaleIndexError(
            f"index at {path} has format version {manifest.get('format_version')}, "
            f"this version reads {FORMAT_VERSION}; rebuild the index"
        )
    from fiftyone_clipbranches.engine.index import CodeIndex

    index = CodeIndex.load(path / INDEX_DIR, mmap=True)
    rowmap = SampleRowMap.load(path / SAMPLE_IDS)
    encoder = None
    if manifest.get("has_encoder"):
        from fiftyone_clipbranches.embed.encoder import CodeEncoder

        encoder = CodeEncoder.load(path / ENCODER_DIR)
    if len(rowmap) != len(index):
        raise StaleIndexError(
            f"index at {path} is inconsistent ({len(index)} rows, {len(rowmap)} ids); "
            "rebuild it"
        )
    return IndexBundle(path, index, rowmap, encoder, manifest)
