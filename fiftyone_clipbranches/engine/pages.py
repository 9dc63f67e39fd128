"""Rankings answered a page at a time: the count and the first rows at once, the
rest when asked for.

A refinement of a large catalogue can accept millions of rows, and a person looks
at the first page. :func:`rank_pages` returns a :class:`PagedRanking`: the number of
accepted rows and the first ``first`` of them, best first, without sorting, moving
or merging the others. Each source of rows (one index, or each shard of a sharded
index, wherever it runs) keeps its accepted rows unsorted in a :class:`HeldAnswer`
and hands out its rows ``[start, stop)`` in ranking order: the first ones by
selection (a partition of the scores), deeper ones from one sort, made once. With
``count=False`` a single decision-branches model's first page comes from its deepest
rows alone (``engine.first_rows``) and the box query that counts runs when the count
is first read.

Why a page is exact: every source's rows are handed out in the ranking's order
(descending score, then ascending row) and sources hold increasing row ranges. To
extend the merged prefix by ``m`` rows, every source with rows left supplies its
next ``m`` (or all it has left); any of the next ``m`` rows overall is among its own
source's next ``m``, so the first ``m`` of the stable merge of what was supplied
(sources in row order) are the next ``m`` overall, ties by ascending row. Pages
therefore concatenate to ``engine.search.apply_model``'s ranking.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from .codes import take_rows
from .first_rows import first_rows
from .scan import SEARCH_CHUNK_ROWS
from .search import (
    Ranking,
    answer_rows,
    check_model,
    first_positions,
    merged_order,
    ranking_order,
)

#: Rows of the first page when the caller does not say.
FIRST_PAGE = 100
#: A source selects its first rows while they are at most this share of its
#: accepted rows; deeper requests sort them all once.
SELECT_SHARE = 1 / 8


class HeldAnswer:
    """One source's accepted rows, kept unsorted, and their scores, each computed
    when first needed.

    Args:
        ids: int64 ``(R,)`` distinct rows, or None to find them with
            ``find_rows()``.
        scores: float64 ``(R,)`` their scores (no NaN), or None to score them with
            ``score(ids) -> scores``.
        first: ``first(n) -> (ids, scores)`` of ranks ``[0, n)``, or None where it
            cannot tell; where it answers, the first page needs neither the other
            rows found nor scored (``engine.first_rows``).
    """

    def __init__(
        self, ids=None, scores=None, *, find_rows=None, score=None, first=None
    ):
        if (ids is None and find_rows is None) or (scores is None and score is None):
            raise ValueError(
                "a HeldAnswer needs its rows and scores or ways to get them"
            )
        self._ids = None if ids is None else np.asarray(ids, np.int64)
        self._scores = None if scores is None else np.asarray(scores, np.float64)
        self._find_rows = find_rows
        self._score = score
        self._first = first
        self._order: np.ndarray | None = None

    @property
    def found(self) -> bool:
        """Whether the accepted rows are known (and so the count is free)."""
        return self._ids is not None

    @property
    def ids(self) -> np.ndarray:
        return self.find()

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    def find(self) -> np.ndarray:
        """The accepted rows, found now if not yet (a first page asked for after
        this is selected among them)."""
        if self._ids is None:
            self._ids = np.asarray(self._find_rows(), np.int64)
        return self._ids

    @property
    def scores(self) -> np.ndarray:
        if self._scores is None:
            self._scores = np.asarray(self._score(self.ids), np.float64)
        return self._scores

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, scores)`` of ranks ``[start, stop)`` (fewer past the count):
        the first ranks by selection, later ones from one sort of every row."""
        stop = int(stop)
        start = max(int(start), 0)
        if self._scores is None and self._first is not None and start == 0:
            small = not self.found or stop <= self.count * SELECT_SHARE
            got = self._first(stop) if small and stop > 0 else None
            if got is not None:
                return got
        stop = min(stop, self.count)
        start = min(start, stop)
        if self._order is None and start == 0 and stop <= self.count * SELECT_SHARE:
            at = first_positions(self.ids, self.scores, stop)
        else:
            if self._order is None:
                self._order = ranking_order(self.ids, self.scores)
            at = self._order[start:stop]
        return self.ids[at], self.scores[at]


def held_answer(model, index, use_index: bool, chunk_rows: int) -> HeldAnswer:
    """The :class:`HeldAnswer` of a checked ``model`` over one index (``CodeIndex``):
    box models' accepted rows and scores when needed (the first page of a single
    decision-branches model from its deepest rows alone); other models' rows and
    scores from their search, now."""
    codes = index.codes
    if model.answered_by == "index" and use_index:

        def find_rows():
            ids, hits = index.query_boxes(model.boxes_)
            return ids[model.accept(hits, codes, ids)]

        def score(rows):
            if rows.size == 0:
                return np.zeros(0, np.float64)
            return model.decision_function(take_rows(codes, rows))

        return HeldAnswer(
            find_rows=find_rows,
            score=score,
            first=lambda n: first_rows(model, index, n),
        )
    return HeldAnswer(*answer_rows(model, index, use_index, chunk_rows))


class AnswerCache:
    """The :class:`HeldAnswer` of the last few refinements by token, least recently
    used dropped first; an answer asked for after it was dropped is computed again
    (the same rows: the model is deterministic). Thread-safe."""

    def __init__(self, capacity: int = 4):
        self.capacity = int(capacity)
        self._held: OrderedDict[str, HeldAnswer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, compute: Callable[[], HeldAnswer]) -> HeldAnswer:
        with self._lock:
            held = self._held.get(token)
            if held is not None:
                self._held.move_to_end(token)
                return held
        held = compute()
        with self._lock:
            self._held[token] = held
            while len(self._held) > self.capacity:
                self._held.popitem(last=False)
        return held

    def drop(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)


#: ``fetch(spans) -> [(ids, scores), ...]``: for each ``(source, start, stop)``, that
#: source's rows of ranks ``[start, stop)``.
Fetch = Callable[[list[tuple[int, int, int]]], list[tuple[np.ndarray, np.ndarray]]]


def check_rank(value, name: str) -> int:
    """``value`` as an int >= 0 (a rank or a number of rows), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


class PagedRanking:
    """A ranking's count and its pages, merged from per-source rows on demand.

    Args:
        counts: accepted rows of each source (sources in row order); None where a
            source has not counted them yet.
        first: each source's rows of ranks ``[0, requested)`` as ``(ids, scores)``
            (fewer: all it has).
        requested: the ranks asked of each source for ``first``.
        fetch: gets further ranks of sources (:data:`Fetch`).
        counter: ``counter(sources) -> counts`` of sources not counted yet
            (required when a count is None).
        release: called once by :meth:`close` (frees the sources' held answers).
    """

    def __init__(
        self,
        counts: Sequence[int | None],
        first: Sequence[tuple[np.ndarray, np.ndarray]],
        requested: int,
        fetch: Fetch,
        counter: Callable[[list[int]], list[int]] | None = None,
        release: Callable[[], None] | None = None,
    ):
        self._buffer = [
            (np.asarray(i, np.int64), np.asarray(s, np.float64)) for i, s in first
        ]
        self._counts = [None if c is None else int(c) for c in counts]
        if counter is None and None in self._counts:
            raise ValueError("counts that are not known yet need a counter")
        for s, (ids, _) in enumerate(self._buffer):
            if self._counts[s] is None and ids.shape[0] < requested:
                self._counts[s] = int(ids.shape[0])  # it gave all it has
        self._fetch = fetch
        self._counter = counter
        self._release = release
        self._cursor = [0] * len(self._counts)  # ranks of each source merged so far
        self._ids = np.zeros(0, np.int64)
        self._scores = np.zeros(0, np.float64)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def counts(self) -> list[int]:
        """Accepted rows of each source (counting those not counted yet)."""
        with self._lock:
            todo = [s for s, c in enumerate(self._counts) if c is None]
            if todo:
                for s, c in zip(todo, self._counter(todo)):
                    self._counts[s] = int(c)
            return list(self._counts)

    def __len__(self) -> int:
        return sum(self.counts)

    @property
    def count(self) -> int:
        """Rows the model accepts over the whole index."""
        return len(self)

    def page(self, offset: int, limit: int) -> Ranking:
        """Ranks ``[offset, offset + limit)`` (fewer at the end) as a ``Ranking``;
        needs no count."""
        offset, limit = check_rank(offset, "offset"), check_rank(limit, "limit")
        stop = offset + limit
        with self._lock:
            if stop > self._ids.shape[0] and not self._all_merged():
                if self._closed:
                    raise ValueError(
                        "this ranking was closed: only the pages read before"
                        f" close() remain (ranks 0 to {self._ids.shape[0]});"
                        " rank again for more"
                    )
                self._extend(stop - self._ids.shape[0])
            return Ranking(self._ids[offset:stop], self._scores[offset:stop])

    def _all_merged(self) -> bool:
        return None not in self._counts and self._ids.shape[0] == sum(self._counts)

    def all(self) -> Ranking:
        """Every accepted row (what ``apply_model`` returns)."""
        return self.page(0, len(self))

    def _extend(self, m: int) -> None:
        """Merge the next ``m`` ranks (fewer at the end) onto the prefix: every
        source first holds its next ``m`` rows, or all it has left."""
        spans = []
        for s, count in enumerate(self._counts):
            have = self._buffer[s][0].shape[0]
            left = m if count is None else count - self._cursor[s]
            want = min(m, left)
            if have < want:
                spans.append((s, self._cursor[s] + have, self._cursor[s] + want))
        if spans:
            for (s, a, b), (ids, scores) in zip(spans, self._fetch(spans)):
                ids = np.asarray(ids, np.int64)
                if self._counts[s] is None and ids.shape[0] < b - a:
                    self._counts[s] = a + int(ids.shape[0])
                old_ids, old_scores = self._buffer[s]
                self._buffer[s] = (
                    np.concatenate([old_ids, ids]),
                    np.concatenate([old_scores, np.asarray(scores, np.float64)]),
                )
        ids = np.concatenate([b[0] for b in self._buffer])
        scores = np.concatenate([b[1] for b in self._buffer])
        source = np.repeat(
            np.arange(len(self._buffer)), [b[0].shape[0] for b in self._buffer]
        )
        take = merged_order(scores)[:m]
        self._ids = np.concatenate([self._ids, ids[take]])
        self._scores = np.concatenate([self._scores, scores[take]])
        taken = np.bincount(source[take], minlength=len(self._buffer))
        for s, t in enumerate(taken.tolist()):
            self._cursor[s] += t
            self._buffer[s] = (self._buffer[s][0][t:], self._buffer[s][1][t:])

    def close(self) -> None:
        """Free what the sources hold for this ranking (pages already read stay)."""
        with self._lock:
            self._closed = True
            release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> PagedRanking:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def held_pages(held: HeldAnswer, first: int, count: bool = True) -> PagedRanking:
    """The :class:`PagedRanking` of one source held in this process."""
    if count:
        held.find()
    head = held.rows(0, first)
    return PagedRanking(
        [held.count if held.found else None],
        [head],
        first,
        lambda spans: [held.rows(a, b) for _, a, b in spans],
        counter=lambda sources: [held.count for _ in sources],
    )


def rank_pages(
    model,
    index,
    *,
    first: int = FIRST_PAGE,
    count: bool = True,
    use_index: bool = True,
    chunk_rows: int = SEARCH_CHUNK_ROWS,
) -> PagedRanking:
    """The rows ``model`` accepts in ``index``, as a count and pages.

    The same rows, scores and order as ``engine.search.apply_model(model, index)``,
    whose arguments these are, but only the first ``first`` rows are ranked and
    moved now; ``page(offset, limit)`` ranks and moves the others when asked. A
    :class:`~.shards.ShardedIndex` keeps each shard's answer where the shard runs
    (``ShardedIndex.rank_pages``).

    Args:
        first: int >= 0, rows of the first page.
        count: count the accepted rows now (True), or when ``count`` is first
            read: a single decision-branches model then finds its first page
            from its deepest rows alone, before the box query that counts.

    Returns:
        :class:`PagedRanking`; ``close()`` it (or use it as a context manager) when
        done, to free what the shards hold.
    """
    first = check_rank(first, "first")
    check_model(model, index)
    if hasattr(index, "rank_pages"):
        return index.rank_pages(
            model,
            first=first,
            count=bool(count),
            use_index=use_index,
            chunk_rows=chunk_rows,
        )
    held = held_answer(model, index, use_index, chunk_rows)
    return held_pages(held, first, bool(count))
