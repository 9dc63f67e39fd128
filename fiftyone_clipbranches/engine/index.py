"""``CodeIndex``: the k-d tree set over ``(N, D)`` uint8 codes, one tree per feature subset."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from . import index_io
from .boxes import Boxes
from .codes import as_codes
from .errors import IndexFormatError
from .kdtree_build import build_tree, node_ranges, tree_depth
from .kdtree_query import (
    bound_boxes_kernel,
    fill_boxes_parallel,
    fill_boxes_serial,
    merge_dense,
    merge_sorted_pairs,
    pair_keys,
)
from .neighbours import NeighbourPool
from .scan import box_bounds, check_boxes, knn_scan, member_order
from .sort_kernels import radix_sorted
from .subsets import FeatureSubsets, make_subsets

#: Default leaf capacity (chosen by measurement, see benchmarks/bench_index.py).
DEFAULT_LEAF_SIZE = 512
#: Queries whose upper bound on rows to emit or check is below this run on one thread:
#: a parallel region costs little on an idle machine but can cost 100x the work on a
#: busy one (threads waiting for a descheduled peer at the barrier).
PARALLEL_MIN_ROWS = 1 << 22
_ARRAYS = ("codes", "values", "ids", "node_lo", "node_hi")
_VERIFY = ("full", "fast", "none")


#: Reads of an index directory that another writer keeps replacing, at most.
_LOAD_TRIES = 10


def _directory_identity(path: Path) -> tuple | None:
    """``(device, inode, manifest bytes)`` of the index directory at ``path`` (a
    save puts a new one in place; an inode number may be reused, the manifest of
    other arrays differs), or None when there is none."""
    try:
        st = path.stat()
        manifest = (path / index_io.MANIFEST).read_bytes()
    except OSError:
        return None
    return st.st_dev, st.st_ino, manifest


def _value_offsets(n_rows: int, lengths: np.ndarray) -> np.ndarray:
    off = np.zeros(len(lengths) + 1, dtype=np.int64)
    off[1:] = np.cumsum(lengths.astype(np.int64)) * n_rows
    return off


class CodeIndex:
    """A set of k-d trees answering box queries over uint8 codes, plus exact k-NN.

    Each feature subset ``s`` (``m`` dims) has one implicit complete binary tree over
    all ``N`` rows: ``values`` holds the subset's columns in leaf order (row-major
    ``(N, m)`` uint8) and ``ids`` the row id (uint32) of every leaf-ordered row; node
    bounds are the tight min/max of the data below each node. All trees share one
    geometry (depth, node row ranges), which depends only on ``N`` and ``leaf_size``.

    Create with :meth:`build` or :meth:`load`; do not call the constructor directly.

    Attributes:
        codes: uint8 ``(N, D)`` catalogue (memory-mapped after :meth:`load`).
        subsets: the :class:`FeatureSubsets` of the trees.
        leaf_size: maximum rows per leaf; ``depth``: tree depth.
        manifest: dict describing the index (the saved ``manifest.json`` after load).
    """

    def __init__(
        self,
        codes,
        subsets,
        leaf_size,
        depth,
        values,
        ids,
        node_lo,
        node_hi,
        manifest=None,
    ):
        self.codes = codes
        self.subsets = subsets
        self.leaf_size = int(leaf_size)
        self.depth = int(depth)
        self.values = values
        self.ids = ids
        self.node_lo = node_lo
        self.node_hi = node_hi
        self.start, self.end = node_ranges(codes.shape[0], self.depth)
        self.val_off = _value_offsets(codes.shape[0], subsets.lengths)
        self.manifest = dict(manifest) if manifest else self._describe()

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        codes,
        subsets: FeatureSubsets | None = None,
        leaf_size: int = DEFAULT_LEAF_SIZE,
        progress: bool = False,
        path=None,
        extra_files: dict[str, bytes] | None = None,
        extra_manifest: dict | None = None,
    ) -> CodeIndex:
        """Build the tree set.

        Args:
            codes: uint8 ``(N, D)`` (``N < 2**32``); may be a memory map. The
                index keeps a copy (in memory, or in ``path``'s files), so the
                caller may change or reuse the array.
            subsets: feature subsets; default ``make_subsets(D)``.
            leaf_size: maximum rows per leaf (>= 2).
            progress: print one line per tree to stderr.
            path: if given, build straight into an index directory at ``path``
                (arrays are memory-mapped files, so the trees need not fit in RAM;
                peak memory is about ``N * (2 * max|S| + 8)`` bytes) and return the
                loaded index. ``extra_files``/``extra_manifest`` as in :meth:`save`.

        Raises:
            CodesError/ValueError/TypeError on bad input.
        """
        codes = as_codes(codes)
        n_rows, n_dims = codes.shape
        if n_rows >= 2**32 - 1:
            raise ValueError("at most 2**32 - 2 rows can be indexed")
        if subsets is None:
            subsets = make_subsets(n_dims)
        if not isinstance(subsets, FeatureSubsets):
            raise TypeError("subsets must be a FeatureSubsets (see make_subsets)")
        if subsets.n_dims != n_dims:
            raise ValueError(
                f"subsets are for D={subsets.n_dims}, codes have D={n_dims}"
            )
        if isinstance(leaf_size, bool) or not isinstance(leaf_size, (int, np.integer)):
            raise TypeError("leaf_size must be an int")
        if leaf_size < 2:
            raise ValueError(f"leaf_size must be >= 2, got {leaf_size}")
        for name in extra_files or {}:
            index_io.check_name(name)
        if extra_manifest is not None and not isinstance(extra_manifest, dict):
            raise TypeError("extra_manifest must be a dict")
        depth = tree_depth(n_rows, int(leaf_size))
        start, end = node_ranges(n_rows, depth)
        n_nodes = start.shape[0]
        n_sub, width = len(subsets), subsets.max_len
        val_off = _value_offsets(n_rows, subsets.lengths)
        writer = None
        if path is not None:
            writer = index_io.IndexWriter(path)
            writer.__enter__()
        try:
            if writer is None:
                values = np.empty(val_off[-1], dtype=np.uint8)
                ids = np.empty((n_sub, n_rows), dtype=np.uint32)
            else:
                values = writer.open_array("values", (val_off[-1],), np.uint8)
                ids = writer.open_array("ids", (n_sub, n_rows), np.uint32)
            node_lo = np.zeros((n_sub, n_nodes, width), dtype=np.uint8)
            node_hi = np.zeros((n_sub, n_nodes, width), dtype=np.uint8)
            for s in range(n_sub):
                t0 = time.perf_counter()
                dims = subsets.subset(s)
                m = dims.shape[0]
                lo = np.zeros((n_nodes, m), dtype=np.uint8)
                hi = np.zeros((n_nodes, m), dtype=np.uint8)
                build_tree(
                    codes,
                    dims,
                    start,
                    end,
                    depth,
                    values[val_off[s] : val_off[s + 1]],
                    ids[s],
                    lo,
                    hi,
                )
                node_lo[s, :, :m] = lo
                node_hi[s, :, :m] = hi
                if progress:
                    print(
                        f"tree {s + 1}/{n_sub} dims={dims.tolist()} built in"
                        f" {time.perf_counter() - t0:.1f}s",
                        file=sys.stderr,
                        flush=True,
                    )
            if writer is None:  # its own copy: the caller may reuse its array
                return cls(
                    np.array(codes, copy=True), subsets, leaf_size, depth, values,
                    ids, node_lo, node_hi,
                )  # fmt: skip
            index = cls(codes, subsets, leaf_size, depth, values, ids, node_lo, node_hi)
            writer.add_array("node_lo", node_lo)
            writer.add_array("node_hi", node_hi)
            out = writer.open_array("codes", codes.shape, np.uint8)
            for a in range(0, n_rows, 1 << 22):
                out[a : a + (1 << 22)] = codes[a : a + (1 << 22)]
            del out, values, ids, index
            manifest = cls._base_manifest(n_rows, n_dims, subsets, leaf_size, depth)
            _add_extras(writer, manifest, extra_files, extra_manifest)
            writer.commit(manifest)
        except BaseException:
            if writer is not None:
                writer.__exit__(*sys.exc_info())
            raise
        return cls.load(path, verify="none")

    # ----------------------------------------------------------------- queries
    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_dims(self) -> int:
        return int(self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of codes, leaf values, ids and node bounds together."""
        return int(sum(self.nbytes_by_part().values()))

    def nbytes_by_part(self) -> dict[str, int]:
        return {name: int(getattr(self, name).nbytes) for name in _ARRAYS}

    @property
    def bytes_per_point(self) -> float:
        return self.nbytes / max(1, len(self))

    def query_box(self, subset_id: int, lo, hi) -> np.ndarray:
        """int64 ids (ascending) of rows with ``lo[j] <= x[dims[j]] <= hi[j]`` for all j.

        ``dims`` is subset ``subset_id``; ``lo``/``hi`` have one entry per subset dim.
        """
        if isinstance(subset_id, bool) or not isinstance(subset_id, (int, np.integer)):
            raise TypeError("subset_id must be an int")
        if not 0 <= subset_id < len(self.subsets):
            raise ValueError(
                f"subset_id {subset_id} out of range: the index has"
                f" {len(self.subsets)} subsets"
            )
        m = int(self.subsets.lengths[subset_id])
        lo_a = np.asarray(lo)
        hi_a = np.asarray(hi)
        for name, a in (("lo", lo_a), ("hi", hi_a)):
            if a.shape != (m,):
                raise ValueError(
                    f"{name} must have shape ({m},) for subset {subset_id}"
                )
            if a.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integers (uint8 code bounds)")
        clip = lambda a: np.clip(a.astype(np.int64), -1, 256).astype(np.int16)  # noqa: E731
        boxes = Boxes(
            np.array([subset_id], np.int32),
            clip(lo_a).reshape(1, m),
            clip(hi_a).reshape(1, m),
            np.zeros(1, np.int32),
        )
        hits, offsets, counts = self._run(boxes)
        return np.sort(hits[: counts[0]]).astype(np.int64)

    def _run(self, boxes: Boxes):
        lo, hi = box_bounds(boxes, self.subsets)
        args = (
            self.values, self.val_off, self.ids, self.node_lo, self.node_hi,
            self.start, self.end, self.subsets.lengths, boxes.subset_ids, lo, hi,
            (1 << self.depth) - 1,
        )  # fmt: skip
        offsets = bound_boxes_kernel(*args)
        hits = np.empty(offsets[-1], dtype=np.uint32)
        counts = np.zeros(len(boxes), dtype=np.int64)
        parallel = len(boxes) > 1 and offsets[-1] >= PARALLEL_MIN_ROWS
        fill = fill_boxes_parallel if parallel else fill_boxes_serial
        fill(*args, offsets, hits, counts)
        return hits, offsets, counts

    def query_boxes(self, boxes: Boxes) -> tuple[np.ndarray, np.ndarray]:
        """Rows inside the union of ``boxes``.

        Returns:
            ``(ids, members_hit)``: int64 ids ascending; int32 number of distinct
            ``boxes.member`` values with a box containing each id.
        """
        boxes = check_boxes(boxes, self.subsets)
        if len(boxes) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        hits, offsets, counts = self._run(boxes)
        total = int(counts.sum())
        _, member = np.unique(boxes.member, return_inverse=True)
        member = member.astype(np.int64).reshape(-1)
        n_members = int(member.max()) + 1
        if total * 4 >= len(self):  # below, sorting the pairs is faster (measured)
            order, _ = member_order(member)
            return merge_dense(
                hits, offsets, counts, order, member, len(self), total >= 1 << 20
            )
        keys = pair_keys(hits, offsets, counts, member, n_members)
        keys = radix_sorted(keys, len(self) * n_members - 1)
        return merge_sorted_pairs(keys, n_members)

    def knn(self, query, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN over all ``D`` dims (squared Euclidean, int64; ties by id),
        among the rows ``allowed`` (bool ``(N,)``) holds True when given.

        A parallel scan of the codes: in 32 dims a k-d tree prunes almost nothing
        (see docs), and the scan is exact and bandwidth-bound.

        Returns:
            ``(ids int64, sq_dists int64)`` of length ``min(k, N)`` (of the
            allowed rows).
        """
        return knn_scan(self.codes, query, k, allowed)

    def neighbour_pool(self) -> NeighbourPool:
        """The rows neighbour searches scan, with their codes: read at the first
        call, then kept (a few MiB; :class:`~.neighbours.NeighbourPool`)."""
        return NeighbourPool.kept_by(self)

    # ------------------------------------------------------------- persistence
    @staticmethod
    def _base_manifest(n_rows, n_dims, subsets, leaf_size, depth) -> dict:
        return {
            "n_rows": int(n_rows),
            "n_dims": int(n_dims),
            "subsets": subsets.to_dict(),
            "leaf_size": int(leaf_size),
            "depth": int(depth),
            "extra": {},
        }

    def _describe(self) -> dict:
        return self._base_manifest(
            len(self), self.n_dims, self.subsets, self.leaf_size, self.depth
        )

    def save(
        self,
        path,
        extra_files: dict[str, bytes] | None = None,
        extra_manifest: dict | None = None,
    ) -> None:
        """Write the index to directory ``path`` atomically (replacing one there).

        Args:
            extra_files: ``{name: bytes}`` stored under ``extra/`` with checksums;
                read back with :meth:`read_extra`.
            extra_manifest: JSON-serialisable dict stored as ``manifest["extra"]``.
        """
        with index_io.IndexWriter(path) as writer:
            for name in _ARRAYS:
                writer.add_array(name, getattr(self, name))
            manifest = self._describe()
            _add_extras(writer, manifest, extra_files, extra_manifest)
            self.manifest = writer.commit(manifest)

    @classmethod
    def load(cls, path, mmap: bool = True, verify: str = "fast") -> CodeIndex:
        """Open a saved index; large arrays are memory-mapped when ``mmap``.

        Args:
            verify: ``"full"`` re-hashes every file (sha256), ``"fast"`` checks sizes,
                headers and sampled hashes, ``"none"`` only sizes and headers.

        An index replaced at ``path`` while it is read (``save`` renames the new
        directory into place) is read again: one load never mixes the files of
        two indexes, nor takes the swap for corruption.

        Raises:
            IndexFormatError: missing, truncated, corrupted, mismatched or
                wrong-version files; the message names the file.
        """
        if verify not in _VERIFY:
            raise ValueError(f"verify must be one of {_VERIFY}, got {verify!r}")
        path = Path(path)
        for attempt in range(_LOAD_TRIES):
            before = _directory_identity(path)
            try:
                index = cls._load_once(path, mmap, verify)
            except (IndexFormatError, OSError) as e:
                swapped = _directory_identity(path) != before or (
                    before is None and index_io.being_replaced(path)
                )
                if swapped:
                    time.sleep(0.01 * (attempt + 1))  # the writer's rename is next
                    continue
                if isinstance(e, IndexFormatError):
                    raise
                raise index_io.access_error(Path(e.filename or path), e) from e
            if _directory_identity(path) == before:
                return index
        raise IndexFormatError(
            f"{path} was replaced by another writer during each of {_LOAD_TRIES}"
            " reads: load it once that writer is done"
        )

    @classmethod
    def _load_once(cls, path: Path, mmap: bool, verify: str) -> CodeIndex:
        manifest = index_io.read_manifest(path)
        try:
            n_rows = int(manifest["n_rows"])
            n_dims = int(manifest["n_dims"])
            subsets = FeatureSubsets.from_dict(manifest["subsets"])
            leaf_size = int(manifest["leaf_size"])
            depth = int(manifest["depth"])
        except (KeyError, TypeError, ValueError) as e:
            raise IndexFormatError(
                f"{path / index_io.MANIFEST} is incomplete ({e}); {index_io.REBUILD}"
            ) from e
        arrays = {
            name: index_io.load_array(
                path,
                manifest,
                name,
                verify=verify,
                mmap=mmap and name in ("codes", "values", "ids"),
            )
            for name in _ARRAYS
        }
        n_nodes = (1 << (depth + 1)) - 1
        expected = {
            "codes": ((n_rows, n_dims), np.uint8),
            "values": ((int(_value_offsets(n_rows, subsets.lengths)[-1]),), np.uint8),
            "ids": ((len(subsets), n_rows), np.uint32),
            "node_lo": ((len(subsets), n_nodes, subsets.max_len), np.uint8),
            "node_hi": ((len(subsets), n_nodes, subsets.max_len), np.uint8),
        }
        for name, (shape, dtype) in expected.items():
            a = arrays[name]
            if a.shape != shape or a.dtype != dtype:
                raise IndexFormatError(
                    f"{path / (name + '.npy')} has {a.dtype}{a.shape}, expected"
                    f" {np.dtype(dtype)}{shape} for this manifest; {index_io.REBUILD}"
                )
        if depth != tree_depth(n_rows, leaf_size):
            raise IndexFormatError(
                f"{path / index_io.MANIFEST}: depth does not match N and leaf size;"
                f" {index_io.REBUILD}"
            )
        return cls(
            arrays["codes"],
            subsets,
            leaf_size,
            depth,
            arrays["values"],
            arrays["ids"],
            arrays["node_lo"],
            arrays["node_hi"],
            manifest=manifest,
        )

    @staticmethod
    def read_extra(path, name: str) -> bytes:
        """Bytes of an extra file saved with the index (checked against its sha256)."""
        return index_io.read_extra(path, name)

    def __repr__(self) -> str:
        return (
            f"CodeIndex(N={len(self)}, D={self.n_dims}, subsets={self.subsets!r},"
            f" leaf_size={self.leaf_size}, depth={self.depth},"
            f" bytes_per_point={self.bytes_per_point:.1f})"
        )


def _add_extras(writer, manifest, extra_files, extra_manifest) -> None:
    if extra_manifest is not None:
        if not isinstance(extra_manifest, dict):
            raise TypeError("extra_manifest must be a dict")
        manifest["extra"] = dict(extra_manifest)
    for name, data in (extra_files or {}).items():
        writer.add_extra(name, data)
