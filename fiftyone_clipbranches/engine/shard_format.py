"""On-disk format of a sharded code index: S shard directories under one manifest.

Layout::

    <path>/manifest.json     format name and version, N, D, subsets, leaf size, and
                             per shard its directory name, first global row, row
                             count and the sha256 of its own manifest.json
    <path>/shard-0000/       a CodeIndex directory (engine/index_io.py) over global
    <path>/shard-0001/       rows [start, start + n_rows), contiguous, in order
    ...

Every shard shares the top manifest's subsets and leaf size, so one model trained on
the driver applies to every shard. Each shard's manifest checksums its arrays and
the top manifest checksums each shard's manifest, so verifying a shard at any level
(:meth:`CodeIndex.load`'s ``verify``) verifies the whole chain.

Writing (:func:`build_sharded_index`): the shards are built into a staging
directory next to ``path`` (``.<name>.tmp-<token>``), the top manifest is written
last and the staging directory renamed into place, so an interrupted build leaves
nothing that loads. A one-shard index is usually today's format (a plain
``CodeIndex`` directory); :func:`open_index` reads either.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import index_io
from .codes import as_codes
from .errors import IndexFormatError
from .index import DEFAULT_LEAF_SIZE, CodeIndex
from .subsets import FeatureSubsets, make_subsets

FORMAT_NAME = index_io.SHARDED_FORMAT_NAME
FORMAT_VERSION = 1
MANIFEST = index_io.MANIFEST
REBUILD = index_io.REBUILD
shard_name = index_io.shard_name


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a sharded index.

    Attributes:
        number: position of the shard (0-based).
        path: the shard's ``CodeIndex`` directory.
        start: global row of its first row.
        n_rows: rows it holds (global rows ``[start, start + n_rows)``).
        manifest_sha256: sha256 of its ``manifest.json`` (None: not checked).
    """

    number: int
    path: Path
    start: int
    n_rows: int
    manifest_sha256: str | None = None

    def describe(self, n_shards: int) -> str:
        """How error messages name the shard."""
        return f"shard {self.number} of {n_shards} ({self.path})"


@dataclass(frozen=True)
class ShardBuild:
    """One shard to build: ``codes`` uint8 ``(n, D)`` into the directory ``path``."""

    codes: np.ndarray
    path: Path
    subsets: FeatureSubsets
    leaf_size: int


#: ``builder(jobs, progress)`` builds every :class:`ShardBuild` of ``jobs``.
ShardBuilder = Callable[[Sequence[ShardBuild], bool], None]


def shard_sizes(n_rows: int, shards) -> list[int]:
    """Rows per shard: ``shards`` an int S (as even as possible, larger first) or a
    sequence of positive sizes adding up to ``n_rows``."""
    if isinstance(shards, bool):
        raise TypeError("shards must be an int or a list of shard sizes")
    if isinstance(shards, int | np.integer):
        s = int(shards)
        if s < 1:
            raise ValueError(f"shards must be >= 1, got {s}")
        if s > max(n_rows, 1):
            raise ValueError(f"cannot split {n_rows} rows into {s} shards")
        base, extra = divmod(n_rows, s)
        return [base + (i < extra) for i in range(s)]
    sizes = [int(x) for x in shards]
    if not sizes or any(x < 1 for x in sizes) or sum(sizes) != n_rows:
        raise ValueError(
            f"shard sizes must be positive and add up to {n_rows} rows; got {sizes}"
        )
    return sizes


def build_shard(job: ShardBuild) -> None:
    """Build one shard directory (what every builder runs, here or on a worker)."""
    CodeIndex.build(job.codes, job.subsets, job.leaf_size, path=job.path)


def build_in_process(jobs: Sequence[ShardBuild], progress: bool) -> None:
    """The default builder: the shards one after another in this process."""
    from tqdm.auto import tqdm

    for job in tqdm(jobs, desc="building shards", unit="shard", disable=not progress):
        build_shard(job)


def build_sharded_index(
    codes,
    path,
    shards,
    subsets: FeatureSubsets | None = None,
    leaf_size: int = DEFAULT_LEAF_SIZE,
    *,
    builder: ShardBuilder | None = None,
    progress: bool = False,
    extra_manifest: dict | None = None,
) -> Path:
    """Write ``codes`` as a sharded index directory at ``path`` (which must not exist).

    Args:
        codes: uint8 ``(N, D)`` (may be a memory map).
        shards: number of shards, or their sizes (:func:`shard_sizes`).
        subsets, leaf_size: as :meth:`CodeIndex.build`, shared by every shard.
        builder: builds the shard directories (default :func:`build_in_process`;
            ``distributed.ray_shards.ray_builder`` runs them as Ray tasks).
        progress: show a progress bar across shards.
        extra_manifest: JSON-ready dict kept as ``manifest["extra"]``.

    Returns:
        ``path``.
    """
    codes = as_codes(codes)
    n_rows, n_dims = codes.shape
    subsets = make_subsets(n_dims) if subsets is None else subsets
    if not isinstance(subsets, FeatureSubsets) or subsets.n_dims != n_dims:
        raise ValueError(f"subsets must be a FeatureSubsets over D={n_dims} dims")
    sizes = shard_sizes(n_rows, shards)
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: a sharded index is written only once")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        jobs = [
            ShardBuild(
                codes[starts[i] : starts[i + 1]],
                tmp / shard_name(i),
                subsets,
                int(leaf_size),
            )
            for i in range(len(sizes))
        ]
        (builder or build_in_process)(jobs, progress)
        write_top_manifest(tmp, sizes, n_dims, subsets, leaf_size, extra_manifest)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def write_top_manifest(
    path: Path,
    sizes: Sequence[int],
    n_dims: int,
    subsets: FeatureSubsets,
    leaf_size: int,
    extra_manifest: dict | None = None,
) -> None:
    """Write (and fsync) the top manifest of the shard directories already under
    ``path``, shard ``i`` holding ``sizes[i]`` rows; the last step of a build."""
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    entries = [
        {
            "name": shard_name(i),
            "start": int(starts[i]),
            "n_rows": int(n),
            "manifest_sha256": _sha256(path / shard_name(i) / MANIFEST),
        }
        for i, n in enumerate(sizes)
    ]
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "n_rows": int(starts[-1]),
        "n_dims": int(n_dims),
        "subsets": subsets.to_dict(),
        "leaf_size": int(leaf_size),
        "shards": entries,
        "extra": dict(extra_manifest or {}),
    }
    with open(path / MANIFEST, "w") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())


def _sha256(p: Path) -> str:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise IndexFormatError(f"{p} is missing; {REBUILD}") from None
    except OSError as e:
        raise index_io.access_error(p, e) from e


def is_sharded(path) -> bool:
    """Whether ``path`` holds a sharded index (else, presumably, a ``CodeIndex``)."""
    mpath = Path(path) / MANIFEST
    try:
        return json.loads(mpath.read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class ShardedManifest:
    """The checked top manifest of a sharded index."""

    path: Path
    raw: dict
    n_rows: int
    n_dims: int
    subsets: FeatureSubsets
    leaf_size: int
    shards: tuple[ShardSpec, ...]

    @property
    def offsets(self) -> np.ndarray:
        """int64 ``(S + 1,)``: first global row of each shard, then N."""
        return np.array([s.start for s in self.shards] + [self.n_rows], np.int64)


def read_sharded_manifest(path) -> ShardedManifest:
    """Read and check the top manifest (format, version, contiguous row ranges).

    Raises:
        IndexFormatError: missing, garbled or inconsistent (the message names it).
    """
    path = Path(path)
    mpath = path / MANIFEST
    try:
        raw = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise IndexFormatError(
            f"{mpath} is missing: not a complete index; {REBUILD}"
        ) from None
    except OSError as e:
        raise index_io.access_error(mpath, e) from e
    except ValueError as e:
        raise IndexFormatError(f"{mpath} is not valid JSON ({e}); {REBUILD}") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{mpath} does not describe a {FORMAT_NAME}; {REBUILD}")
    if raw.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{mpath} has format version {raw.get('format_version')!r}, this release"
            f" reads version {FORMAT_VERSION}; {REBUILD}"
        )
    try:
        n_rows, n_dims = int(raw["n_rows"]), int(raw["n_dims"])
        subsets = FeatureSubsets.from_dict(raw["subsets"])
        leaf_size = int(raw["leaf_size"])
        entries = raw["shards"]
        n_shards = len(entries)
        specs = tuple(
            ShardSpec(
                i,
                path / str(e["name"]),
                int(e["start"]),
                int(e["n_rows"]),
                str(e["manifest_sha256"]),
            )
            for i, e in enumerate(entries)
        )
    except (KeyError, TypeError, ValueError) as e:
        raise IndexFormatError(f"{mpath} is incomplete ({e}); {REBUILD}") from e
    at = 0
    for spec in specs:
        name = spec.path.name
        if spec.start != at or spec.n_rows < 1 or name != shard_name(spec.number):
            raise IndexFormatError(
                f"{mpath}: {spec.describe(n_shards)} does not continue the row ranges"
                f" (expected rows from {at}); {REBUILD}"
            )
        at += spec.n_rows
    if not specs or at != n_rows:
        raise IndexFormatError(
            f"{mpath}: the shards hold {at} rows, the manifest says {n_rows}; {REBUILD}"
        )
    return ShardedManifest(path, raw, n_rows, n_dims, subsets, leaf_size, specs)


def _check_shard_manifest(spec: ShardSpec, verify: str) -> None:
    checked = spec.manifest_sha256 is not None and verify != "none"
    if checked and _sha256(spec.path / MANIFEST) != spec.manifest_sha256:
        raise IndexFormatError(
            f"{spec.path / MANIFEST} does not match the checksum the sharded"
            f" index records; {REBUILD}"
        )


def load_shard(spec: ShardSpec, n_shards: int, subsets, verify: str) -> CodeIndex:
    """Open one shard read-only and check it against the top manifest.

    Raises:
        IndexFormatError (or ``IndexAccessError``) whose message names the shard.
    """
    where = spec.describe(n_shards)
    try:
        _check_shard_manifest(spec, verify)
        index = CodeIndex.load(spec.path, verify=verify)
    except IndexFormatError as e:
        raise type(e)(f"{where} cannot be opened: {e}") from e
    if len(index) != spec.n_rows or index.subsets != subsets:
        raise IndexFormatError(
            f"{where} holds {len(index)} rows or other subsets than the sharded"
            f" index records; {REBUILD}"
        )
    return index


def load_shard_codes(spec: ShardSpec, n_shards: int, n_dims: int) -> np.ndarray:
    """The codes of one shard, memory-mapped read-only (uint8 ``(n_rows, D)``),
    checked at the ``"fast"`` level (manifest checksum, size, header): what a
    process that only gathers rows opens instead of the whole shard.

    Raises:
        IndexFormatError (or ``IndexAccessError``) whose message names the shard.
    """
    where = spec.describe(n_shards)
    try:
        _check_shard_manifest(spec, "fast")
        manifest = index_io.read_manifest(spec.path)
        codes = index_io.load_array(
            spec.path, manifest, "codes", verify="fast", mmap=True
        )
    except IndexFormatError as e:
        raise type(e)(f"{where} cannot be opened: {e}") from e
    if codes.shape != (spec.n_rows, n_dims):
        raise IndexFormatError(
            f"{where} holds codes of shape {codes.shape}, the sharded index records"
            f" {(spec.n_rows, n_dims)}; {REBUILD}"
        )
    return codes
