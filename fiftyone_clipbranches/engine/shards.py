"""A sharded index answered shard by shard and merged exactly.

:class:`ShardedIndex` offers what the models and the SDK use of a
:class:`~.index.CodeIndex` (``codes``, ``subsets``, ``len``, ``query_boxes``,
``knn``) plus :meth:`ShardedIndex.apply_model`, over S shards (global rows
``[start_s, start_s + n_s)``, :mod:`.shard_format`). Every question goes to every
shard through a :class:`ShardExecutor` and the per-shard answers are merged here,
once, whatever runs the shards: :class:`InProcessShards` (this process) or
``distributed.ray_shards.RayShards`` (one Ray actor per shard).

Why the merges are exact:

- rankings of models that decide each row from its own code (``"index"`` and
  ``"scan"``): a row's acceptance and score are the same in its shard as in one
  index, so the answer is the union of the shards' answers; each shard's ranking
  is sorted by (descending score, ascending row) and shards hold increasing row
  ranges, so a stable sort of the concatenation by descending score is the k-way
  merge, ties by ascending global row.
- top-k models (``"top_k"``: nearest neighbours, Rocchio): a row in the global
  top k of a query is in its own shard's top k (the global order restricted to a
  shard is the shard's order), so the shards' answers hold every candidate; the
  model's own ``search`` over the candidates' codes (in global row order) gives
  the global answer.
- k-NN (``knn``): the same argument with (distance, row) order. The neighbour
  positives of a training set are searched in the driver, in the index's
  ``neighbour_pool`` (gathered once).
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from .boxes import Boxes
from .codes import take_rows
from .errors import IndexFormatError
from .model import RefinementModel
from .neighbours import NeighbourPool
from .pages import AnswerCache, HeldAnswer, PagedRanking, held_answer, held_pages
from .scan import SEARCH_CHUNK_ROWS, as_query, check_allowed, knn_scan
from .search import Ranking, merged_order
from .shard_format import (
    ShardSpec,
    is_sharded,
    load_shard,
    read_sharded_manifest,
)


class ShardWorker:
    """One shard opened read-only; what an executor runs for each shard.

    A shard whose files cannot be opened does not fail the constructor: every call
    tries to open it again (its files may have been restored since) and raises its
    error while it cannot (naming the shard), so a Ray actor restarted over broken
    files answers with that error rather than dying again and again, and answers
    again once the files are back.
    """

    def __init__(self, spec: ShardSpec, n_shards: int, subsets, verify: str = "fast"):
        self.spec = spec
        self.start = int(spec.start)
        self._opening = (n_shards, subsets, verify)
        self._error: Exception | None = None
        self._index = None
        self._answers = AnswerCache()
        self._open()

    def _open(self) -> None:
        try:
            self._index = load_shard(self.spec, *self._opening)
            self._error = None
        except IndexFormatError as e:
            self._error = e

    @property
    def index(self):
        if self._error is not None:
            self._open()
        if self._error is not None:
            raise self._error
        return self._index

    def check(self) -> int:
        """Rows of the shard (raises the shard's error when it cannot be opened)."""
        return len(self.index)

    def pid(self) -> int:
        return os.getpid()

    def threads(self) -> int:
        """Threads of this process's parallel kernels (numba), as set for the call."""
        import numba

        return int(numba.get_num_threads())

    def memory(self) -> dict:
        """This process's resident memory in bytes (``rss``; Linux ``/proc``)."""
        rss = 0
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
        except OSError:
            pass
        return {"rss": rss, "pid": os.getpid()}

    def rows(self, local: np.ndarray) -> np.ndarray:
        """uint8 ``(len(local), D)``: the codes of shard rows ``local``."""
        return take_rows(self.index.codes, np.asarray(local, np.int64))

    def row_range(self, a: int, b: int) -> np.ndarray:
        return np.array(self.index.codes[a:b])

    def query_boxes(self, boxes: Boxes):
        """``(global ids ascending, members_hit)`` of the shard."""
        ids, hits = self.index.query_boxes(boxes)
        return ids + self.start, hits

    def knn_many(self, queries: np.ndarray, k: int):
        """Per query ``(global ids, sq_dists)``: its k nearest rows of the shard, by
        (distance, row)."""
        codes = self.index.codes
        out = []
        for q in np.asarray(queries, np.uint8):
            if codes.shape[0] == 0:
                out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            ids, dists = knn_scan(codes, q, min(int(k), codes.shape[0]))
            out.append((ids + self.start, dists))
        return out

    def knn_allowed(self, query: np.ndarray, k: int, packed: np.ndarray):
        """``(global ids, sq_dists)``: the ``k`` nearest rows of the shard among
        those ``packed`` allows (``np.packbits`` of a bool mask of its rows)."""
        codes = self.index.codes
        allowed = np.unpackbits(packed, count=codes.shape[0]).view(np.bool_)
        ids, dists = knn_scan(codes, query, int(k), allowed)
        return ids + self.start, dists

    def apply(self, model: RefinementModel, use_index: bool, chunk_rows: int):
        """The shard's ranking of ``model`` (global rows); for top-k models also the
        codes of the rows, which the driver searches again."""
        from .search import apply_model

        ranking = apply_model(
            model, self.index, use_index=use_index, chunk_rows=chunk_rows
        )
        if model.answered_by == "top_k":
            codes = take_rows(self.index.codes, np.sort(ranking.ids))
            return np.sort(ranking.ids) + self.start, codes
        return ranking.ids + self.start, ranking.scores

    def ranked_rows(
        self, token, model, use_index, chunk_rows, start: int, stop: int, count=True
    ):
        """``(count, global ids, scores)``: how many rows of the shard ``model``
        accepts (None when not counted yet and ``count`` is False) and those of
        ranks ``[start, stop)``. The shard's answer is held under ``token`` for the
        next pages (``engine.pages``), and computed again if it was dropped (an
        evicted answer, a restarted actor)."""
        held = self._held(token, model, use_index, chunk_rows)
        if count:
            held.find()
        ids, scores = held.rows(start, stop)
        return held.count if held.found else None, ids + self.start, scores

    def answer_count(self, token, model, use_index, chunk_rows) -> int:
        """Rows of the shard ``model`` accepts (its answer held under ``token``)."""
        return self._held(token, model, use_index, chunk_rows).count

    def _held(self, token, model, use_index, chunk_rows):
        return self._answers.get(
            token, lambda: held_answer(model, self.index, use_index, chunk_rows)
        )

    def release(self, token) -> None:
        """Drop the answer held under ``token``."""
        self._answers.drop(token)


class ShardExecutor(ABC):
    """Runs :class:`ShardWorker` methods on every shard, answers in shard order."""

    #: int64 ``(S + 1,)``: first global row of each shard, then N.
    offsets: np.ndarray

    @property
    def n_shards(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @abstractmethod
    def map(
        self,
        method: str,
        shared: tuple = (),
        per_shard: Sequence[tuple] | None = None,
        shards: Sequence[int] | None = None,
    ) -> list:
        """``[worker.method(*shared, *per_shard[i]) for each shard i]``.

        ``shared`` arguments are the same for every shard (sent once); ``shards``
        limits the call to those shards (``per_shard`` then follows them).
        """

    def local_codes(self) -> dict[int, np.ndarray]:
        """Shard number -> uint8 ``(n_s, D)`` codes this process reads directly
        (memory maps sharing the page cache of the processes that serve those
        shards); rows of the other shards are gathered through :meth:`map`.
        Default: none."""
        return {}

    def release(self) -> None:  # noqa: B027 - nothing held between queries
        """Free what is held between queries (actors); the next query takes it
        again. Default: nothing."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release the shards (actors, maps)."""


class InProcessShards(ShardExecutor):
    """Every shard opened in this process, asked one after another (each query is
    itself parallel over the process's threads)."""

    def __init__(self, specs: Sequence[ShardSpec], subsets, verify: str = "fast"):
        self.workers = [ShardWorker(s, len(specs), subsets, verify) for s in specs]
        for w in self.workers:
            w.check()
        starts = [s.start for s in specs]
        self.offsets = np.array(starts + [starts[-1] + specs[-1].n_rows], np.int64)

    def local_codes(self) -> dict[int, np.ndarray]:
        return {i: w.index.codes for i, w in enumerate(self.workers)}

    def map(self, method, shared=(), per_shard=None, shards=None):
        chosen = range(self.n_shards) if shards is None else shards
        out = []
        for j, i in enumerate(chosen):
            own = per_shard[j] if per_shard is not None else ()
            out.append(getattr(self.workers[i], method)(*shared, *own))
        return out


def merge_rankings(parts) -> Ranking:
    """k-way merge of per-shard ``(global ids, scores)``, each by descending score
    then ascending id, shards in row order: one ranking in the same order."""
    ids = np.concatenate([np.asarray(p[0], np.int64) for p in parts])
    scores = np.concatenate([np.asarray(p[1], np.float64) for p in parts])
    order = merged_order(scores)
    return Ranking(ids[order], scores[order])


def merge_knn(parts, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-way merge of per-shard ``(global ids, sq_dists)`` (by distance then id,
    shards in row order): the first ``k`` overall."""
    ids = np.concatenate([np.asarray(p[0], np.int64) for p in parts])
    dists = np.concatenate([np.asarray(p[1], np.int64) for p in parts])
    order = np.argsort(dists, kind="stable")[:k]
    return ids[order], dists[order]


class ShardedCodes:
    """The codes of a sharded index seen as one ``(N, D)`` uint8 array: row gathers
    (``codes[rows]``, ``codes[a:b]``), ``np.asarray(codes)`` (every row, in this
    process) and the index's neighbour pool, which ``engine.training_set`` uses for
    the neighbour positives."""

    dtype = np.dtype(np.uint8)
    ndim = 2

    def __init__(self, index: ShardedIndex):
        self._index = index
        self.shape = (len(index), index.n_dims)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, slice):
            a, b, step = key.indices(n)
            if step != 1:
                return self[np.arange(a, b, step, dtype=np.int64)]
            return self._range(a, b)
        if isinstance(key, int | np.integer):
            return self[np.array([key], np.int64)][0]
        rows = np.asarray(key)
        if rows.dtype == bool or rows.dtype.kind not in "iu":
            raise TypeError("sharded codes are indexed by int rows or a slice")
        rows = rows.astype(np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + n, rows)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"row ids outside [0, {n})")
        return self._index.gather(rows)

    def _range(self, a: int, b: int) -> np.ndarray:
        off = self._index.offsets
        shards = [i for i in range(len(off) - 1) if off[i] < b and off[i + 1] > a]
        if not shards:
            return np.zeros((0, self.shape[1]), np.uint8)
        per = [(max(a, off[i]) - off[i], min(b, off[i + 1]) - off[i]) for i in shards]
        parts = self._index.read_shards(
            "row_range", shards, per, lambda codes, a, b: np.array(codes[a:b])
        )
        return np.concatenate(parts)

    def __array__(self, dtype=None, copy=None):
        out = self._range(0, self.shape[0])
        return out if dtype is None else out.astype(dtype)

    def neighbour_pool(self) -> NeighbourPool:
        """The index's :meth:`ShardedIndex.neighbour_pool`."""
        return self._index.neighbour_pool()


class ShardedIndex:
    """S shards answering as one :class:`~.index.CodeIndex` (module docstring).

    Open with :meth:`load` (or :func:`open_index`). Attributes: ``subsets``,
    ``leaf_size``, ``offsets`` (int64 ``(S + 1,)``), ``executor``, ``manifest``
    (the top manifest plus ``files``: every shard file's entry, by relative path),
    ``codes`` (:class:`ShardedCodes`).
    """

    def __init__(self, executor: ShardExecutor, manifest, *, path=None):
        self.executor = executor
        self.path = path
        self.subsets = manifest.subsets
        self.leaf_size = manifest.leaf_size
        self.offsets = np.asarray(executor.offsets, np.int64)
        self._n_dims = manifest.n_dims
        self.manifest = dict(manifest.raw)
        self.manifest["files"] = _shard_files(manifest)
        self.codes = ShardedCodes(self)
        self._closed = False

    @classmethod
    def load(cls, path, verify: str = "fast", executor_factory=None) -> ShardedIndex:
        """Open the sharded index at ``path``.

        Args:
            verify: each shard is opened at this level (``CodeIndex.load``).
            executor_factory: ``fn(specs, subsets, verify) -> ShardExecutor``
                (default :class:`InProcessShards`).

        Raises:
            IndexFormatError: the top manifest or a shard is missing, corrupted or
                inconsistent; a shard's error names the shard.
        """
        manifest = read_sharded_manifest(path)
        factory = executor_factory or InProcessShards
        executor = factory(manifest.shards, manifest.subsets, verify)
        return cls(executor, manifest, path=manifest.path)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_dims(self) -> int:
        return self._n_dims

    @property
    def n_shards(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def nbytes(self) -> int:
        return int(sum(int(f.get("size", 0)) for f in self.manifest["files"].values()))

    @property
    def bytes_per_point(self) -> float:
        return self.nbytes / max(1, len(self))

    def release(self) -> None:
        """Free what the shards hold between queries (their actors); the index
        stays usable (the next query takes them again)."""
        self.executor.release()

    def close(self) -> None:
        self._closed = True
        self.executor.close()

    def _shard_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """uint8 ``(len(rows), D)``: the codes of global ``rows`` (int64)."""
        out = np.empty((rows.shape[0], self.n_dims), np.uint8)
        if rows.size == 0:
            return out
        shard = self._shard_of(rows)
        shards = np.unique(shard).tolist()
        per = [(rows[shard == i] - self.offsets[i],) for i in shards]
        parts = self.read_shards("rows", shards, per, lambda codes, at: codes[at])
        for i, part in zip(shards, parts):
            out[shard == i] = part
        return out

    def read_shards(self, method: str, shards: list[int], per: list[tuple], local):
        """Codes of each of ``shards`` (its arguments in ``per``): ``local(codes,
        *args)`` on the shards the executor maps in this process
        (``ShardExecutor.local_codes``), ``ShardWorker.<method>(*args)`` in one
        round trip on the others; answers in the order of ``shards``."""
        mapped = self.executor.local_codes()
        parts = [
            local(mapped[i], *args) if i in mapped else None
            for i, args in zip(shards, per)
        ]
        remote = [j for j, i in enumerate(shards) if i not in mapped]
        if remote:
            answers = self.executor.map(
                method,
                per_shard=[per[j] for j in remote],
                shards=[shards[j] for j in remote],
            )
            for j, part in zip(remote, answers):
                parts[j] = part
        return parts

    def query_boxes(self, boxes: Boxes) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`CodeIndex.query_boxes` over every shard (global ids)."""
        parts = self.executor.map("query_boxes", shared=(boxes,))
        return (
            np.concatenate([p[0] for p in parts]).astype(np.int64),
            np.concatenate([p[1] for p in parts]).astype(np.int32),
        )

    def knn(self, query, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`CodeIndex.knn`: exact, by (squared distance, row), among the
        rows ``allowed`` (bool ``(N,)``) holds True when given: each shard scans
        its part, sent as bits (N / 8 bytes in all), skipping the rows left out."""
        q = as_query(query, self.n_dims)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if allowed is None:
            return self.knn_many(q[None], int(k))[0]
        allowed = check_allowed(allowed, len(self))
        bounds = zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist())
        parts = [allowed[a:b] for a, b in bounds]
        shards = [i for i, part in enumerate(parts) if part.any()]
        if not shards:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        answers = self.executor.map(
            "knn_allowed",
            shared=(q, int(k)),
            per_shard=[(np.packbits(parts[i]),) for i in shards],
            shards=shards,
        )
        return merge_knn(answers, int(k))

    def neighbour_pool(self) -> NeighbourPool:
        """The rows neighbour searches scan, with their codes: gathered from the
        shards at the first call, then kept here, so a training set's neighbour
        search costs no round trip (``engine.neighbours.NeighbourPool``)."""
        return NeighbourPool.kept_by(self)

    def knn_many(self, queries, k: int):
        """Per query ``(ids int64, sq_dists int64)``: the exact ``k`` nearest rows by
        (distance, row)."""
        queries = np.asarray(queries, np.uint8).reshape(-1, self.n_dims)
        parts = self.executor.map("knn_many", shared=(queries, int(k)))
        return [
            merge_knn([shard[q] for shard in parts], int(k))
            for q in range(queries.shape[0])
        ]

    def apply_model(
        self,
        model: RefinementModel,
        *,
        use_index: bool = True,
        chunk_rows: int = SEARCH_CHUNK_ROWS,
    ) -> Ranking:
        """As ``engine.search.apply_model`` on one index: the model is sent once to
        every shard, which ranks its rows, and the rankings are merged exactly
        (module docstring)."""
        parts = self.executor.map("apply", shared=(model, use_index, chunk_rows))
        if model.answered_by != "top_k":
            return merge_rankings(parts)
        rows = np.concatenate([p[0] for p in parts])
        codes = np.concatenate([p[1] for p in parts])
        ids, scores = model.search(codes, chunk_rows=chunk_rows)
        return Ranking.from_unsorted(rows[ids], scores)

    def rank_pages(
        self,
        model: RefinementModel,
        *,
        first: int,
        count: bool = True,
        use_index: bool = True,
        chunk_rows: int = SEARCH_CHUNK_ROWS,
    ) -> PagedRanking:
        """As ``engine.pages.rank_pages`` on one index: one round trip gives every
        shard's first ``first`` rows (and count, with ``count``); each shard holds
        its answer for the next pages until the ranking is closed."""
        if model.answered_by == "top_k":  # k rows at most: ranked here at once
            ranking = self.apply_model(
                model, use_index=use_index, chunk_rows=chunk_rows
            )
            return held_pages(HeldAnswer(ranking.ids, ranking.scores), first)
        token = uuid.uuid4().hex
        shared = (token, model, use_index, chunk_rows)
        parts = self.executor.map(
            "ranked_rows",
            shared=shared,
            per_shard=[(0, first, count)] * self.n_shards,
        )

        def fetch(spans):
            answers = self.executor.map(
                "ranked_rows",
                shared=shared,
                per_shard=[(a, b, False) for _, a, b in spans],
                shards=[s for s, _, _ in spans],
            )
            return [(ids, scores) for _, ids, scores in answers]

        def counter(shards):
            return self.executor.map("answer_count", shared=shared, shards=shards)

        return PagedRanking(
            [p[0] for p in parts],
            [(p[1], p[2]) for p in parts],
            first,
            fetch,
            counter=counter,
            release=lambda: self._release(token),
        )

    def _release(self, token: str) -> None:
        if not self._closed:  # a closed index's shards hold nothing any more
            self.executor.map("release", shared=(token,))

    def __repr__(self) -> str:
        return (
            f"ShardedIndex(N={len(self)}, D={self.n_dims}, shards={self.n_shards},"
            f" executor={type(self.executor).__name__})"
        )


def _shard_files(manifest) -> dict:
    """Every shard file's manifest entry, keyed ``<shard dir>/<file>``."""
    import json

    files = {}
    for spec in manifest.shards:
        try:
            shard = json.loads((spec.path / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        for name, entry in (shard.get("files") or {}).items():
            files[f"{spec.path.name}/{name}"] = entry
    return files


def open_index(path, verify: str = "fast", executor_factory=None):
    """The index at ``path``: a :class:`ShardedIndex` (through
    ``executor_factory``, see :meth:`ShardedIndex.load`) or a ``CodeIndex``."""
    from .index import CodeIndex

    if is_sharded(path):
        return ShardedIndex.load(path, verify, executor_factory)
    return CodeIndex.load(path, verify=verify)
