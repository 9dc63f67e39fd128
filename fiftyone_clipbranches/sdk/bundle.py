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

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SAMPLE_IDS = "sample_ids.npy"
INDEX_DIR = "index"
ENCODER_DIR = "encoder"

_CACHE_SIZE = 4
_cache: OrderedDict[str, IndexBundle] = OrderedDict()
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
    key = str(path.resolve())
    with _cache_lock:
        bundle = _cache.get(key)
        if bundle is not None:
            _cache.move_to_end(key)
            return bundle
    bundle = _read_bundle(path)
    with _cache_lock:
        _cache[key] = bundle
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return bundle


def forget_bundle(path) -> None:
    """Drop ``path`` from the in-process cache (before deleting its files)."""
    with _cache_lock:
        _cache.pop(str(Path(path).resolve()), None)


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
