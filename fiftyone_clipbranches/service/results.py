"""Per-process store of ranked results: a bounded LRU with a time to live.

A result keeps index rows and scores (numpy arrays, 16 bytes per item), not sample
id strings, so a ranking of millions of samples costs tens of MB, and pages turn rows
into ids on demand.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Ranking:
    """Ranked samples as the backend computes them.

    Attributes:
        rows: int64 ``(n,)`` index rows, best first.
        scores: float64 ``(n,)`` scores of ``rows`` (descending).
        ids_of: maps an int64 array of rows to their sample ids (list of str).
        stats: JSON-serialisable facts about the computation (counts, timings).
        extra_nbytes: memory held for this ranking only besides ``rows`` and
            ``scores`` (e.g. an id array captured by ``ids_of``).
        dataset_id: id of the dataset it ranks (a dataset deleted, then made
            again under its name, is another one), or None where not known.
    """

    rows: np.ndarray
    scores: np.ndarray
    ids_of: Callable[[np.ndarray], list[str]]
    stats: dict = field(default_factory=dict)
    extra_nbytes: int = 0
    dataset_id: str | None = None

    def __post_init__(self):
        if self.rows.shape != self.scores.shape or self.rows.ndim != 1:
            raise ValueError(
                f"rows {self.rows.shape} and scores {self.scores.shape} must be "
                "1-d arrays of the same length"
            )

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.scores.nbytes + self.extra_nbytes)

    def page(self, offset: int, limit: int) -> list[dict]:
        """Items ``[offset, offset + limit)`` as ``[{"id": str, "score": float}]``."""
        rows = self.rows[offset : offset + limit]
        ids = self.ids_of(rows) if rows.size else []
        scores = self.scores[offset : offset + limit].tolist()
        return [{"id": i, "score": s} for i, s in zip(ids, scores)]


@dataclass(frozen=True, eq=False)
class StoredResult:
    """A ranking kept for paging and saving, with the request that produced it."""

    result_id: str
    kind: str
    dataset: str
    index_key: str
    ranking: Ranking
    request: dict


#: Results whose departure (deleted, expired, evicted) is remembered, for its 404.
_GONE_KEPT = 4096
#: Least seconds between two warnings that results are dropped to make room.
FULL_WARNING_S = 600.0

logger = logging.getLogger(__name__)


class ResultStore:
    """Thread-safe LRU of :class:`StoredResult` bounded in count, bytes and age.

    Args:
        max_items: most results kept; the least recently used go first.
        max_bytes: most bytes of rows + scores kept over all results.
        ttl_s: a result not read for this many seconds is dropped.
        clock: monotonic clock in seconds (tests inject a fake one).
    """

    def __init__(
        self,
        max_items: int = 64,
        max_bytes: int = 512 << 20,
        ttl_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_items < 1 or max_bytes < 1 or ttl_s <= 0:
            raise ValueError("max_items, max_bytes and ttl_s must be positive")
        self.max_items = int(max_items)
        self.max_bytes = int(max_bytes)
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[StoredResult, float]] = OrderedDict()
        self._bytes = 0
        self._gone: OrderedDict[str, str] = OrderedDict()
        self.n_dropped = 0  # to make room for newer results
        self.n_expired = 0
        self._warned_at: float | None = None

    def stats(self) -> dict:
        """How full the store is and how many results left it, and why."""
        with self._lock:
            self._expire(self._clock())
            return {
                "held": len(self._items),
                "max_results": self.max_items,
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "dropped_for_room": self.n_dropped,
                "expired": self.n_expired,
            }

    def put(
        self, kind: str, dataset: str, index_key: str, ranking: Ranking, request: dict
    ) -> StoredResult:
        """Store a ranking under a new random id and return the stored result."""
        result = StoredResult(
            secrets.token_hex(16), kind, dataset, index_key, ranking, dict(request)
        )
        with self._lock:
            now = self._clock()
            self._expire(now)
            self._items[result.result_id] = (result, now)
            self._bytes += ranking.nbytes
            while len(self._items) > 1 and (
                len(self._items) > self.max_items or self._bytes > self.max_bytes
            ):
                self._pop_oldest()
        return result

    def get(self, result_id: str) -> StoredResult | None:
        """The result, or None when unknown or expired; a hit refreshes its age."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._items.get(result_id)
            if entry is None:
                return None
            self._items[result_id] = (entry[0], now)
            self._items.move_to_end(result_id)
            return entry[0]

    def delete(self, result_id: str) -> bool:
        with self._lock:
            entry = self._items.pop(result_id, None)
            if entry is None:
                return False
            self._bytes -= entry[0].ranking.nbytes
            self._forget(result_id, "it was deleted")
            return True

    def why_missing(self, result_id: str) -> str:
        """Why ``result_id`` is not (or no longer) kept, in words."""
        with self._lock:
            return self._gone.get(
                result_id,
                "it never existed, expired, or was kept by"
                " this service before it restarted (results live in its memory)",
            )

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def _expire(self, now: float) -> None:
        while self._items:
            _, (_, touched) = next(iter(self._items.items()))
            if now - touched <= self.ttl_s:
                break
            self.n_expired += 1
            self._pop_oldest(f"it expired (not read for {self.ttl_s:g} s)")

    def _pop_oldest(self, why: str | None = None) -> None:
        result_id, (result, touched) = self._items.popitem(last=False)
        self._bytes -= result.ranking.nbytes
        if why is None:
            self.n_dropped += 1
            self._warn_full(self._clock() - touched)
        self._forget(
            result_id,
            why
            or f"it was dropped to make room for newer results (the service keeps"
            f" {self.max_items} results, {self.max_bytes >> 20} MiB)",
        )

    def _warn_full(self, idle_s: float) -> None:
        """Say, at most every :data:`FULL_WARNING_S`, that results leave before
        their time: clients paging them get ``404 result_not_found``."""
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < FULL_WARNING_S:
            return
        self._warned_at = now
        logger.warning(
            "results are dropped to make room before they expire: one last read"
            " %.0f s ago left (%d dropped so far; the service keeps %d results, %d"
            " MiB, for %g s unread); clients paging them get 404 result_not_found:"
            " raise --max-results (or memory for them) if that is often",
            idle_s,
            self.n_dropped,
            self.max_items,
            self.max_bytes >> 20,
            self.ttl_s,
        )

    def _forget(self, result_id: str, why: str) -> None:
        """Remember why ``result_id`` went (the latest ``_GONE_KEPT`` of them)."""
        self._gone[result_id] = why
        while len(self._gone) > _GONE_KEPT:
            self._gone.popitem(last=False)
