"""A refinement's answer a page at a time: the first page now, the rest when asked.

:func:`refine_pages` fits the model as :func:`~.refine.refine_ranking` does and
answers with :class:`RefinePages` over the engine's paged ranking
(``engine.pages.rank_pages``): on a large catalogue, or a sharded one, only the
first page of the accepted rows is ranked and moved at once, and the count when it
is first read. Its pages concatenate to ``refine_ranking``'s rows and scores
exactly, with the same labels enforced (:func:`~.refine.labels_are_law`):

- rows the model accepts that must not be in the answer (labelled negatives, and
  samples deleted since the build) are found up front by asking the model about
  those rows alone (``predict`` on their codes) and skipped as pages are read;
- labelled positives the model does not accept are found the same way and merged
  in with the best score of the answer, ties by ascending row, like every tie.

Models that return a fixed number of rows (nearest neighbours, Rocchio) are
ranked whole: their answer is one short page anyway.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from fiftyone_clipbranches.engine.pages import FIRST_PAGE, check_rank
from fiftyone_clipbranches.sdk.refine import (
    FittedRefinement,
    fit_refinement,
    in_few,
    nothing_found_note,
    ranked_answer,
)
from fiftyone_clipbranches.sdk.request import RefineRequest

#: Rows read from the ranking per step past the first page, at least.
READ_STEP = 1024


@dataclass(frozen=True)
class RefinedPage:
    """Ranks ``[offset, offset + len(ids))`` of a refinement's answer.

    Attributes:
        offset: rank of the first row.
        ids: sample ids (str), best first.
        scores: float64 ``(len(ids),)``, descending.
        rows: int64 ``(len(ids),)`` index rows of ``ids``.
    """

    offset: int
    ids: list[str]
    scores: np.ndarray
    rows: np.ndarray

    def __repr__(self) -> str:  # a page may hold thousands of ids: never them
        span = (
            f", scores {float(self.scores[0]):.4g} .. {float(self.scores[-1]):.4g}"
            if len(self.scores)
            else ""
        )
        last = self.offset + len(self.ids)
        return f"RefinedPage(ranks {self.offset} to {last}{span}; .ids, .scores, .rows)"


class RefinePages:
    """A refinement's answer, paged (see :func:`refine_pages`).

    Attributes:
        stats: :attr:`~.refine.RankedRows.stats` but ``n_results`` (read
            :attr:`count`); ``query_ms`` and ``total_ms`` up to the first page.
    """

    def __init__(self, fitted: FittedRefinement, paged, excluded, forced, n_dropped):
        self._fitted = fitted
        self._paged = paged
        self._excluded = np.unique(np.asarray(excluded, np.int64))
        self._forced = np.unique(np.asarray(forced, np.int64))  # not merged yet
        self._n_forced = int(self._forced.size)
        self._read = 0  # ranks of ``paged`` consumed
        self._done = False  # ``paged`` exhausted
        self._top: float | None = None  # score of the answer's best row
        self._rows = np.zeros(0, np.int64)
        self._scores = np.zeros(0, np.float64)
        self._lock = threading.Lock()
        self._closed = False
        self.stats = {
            **fitted.stats,
            "n_forced_pos": self._n_forced,
            "n_dropped_neg": int(n_dropped),
        }

    @property
    def count(self) -> int:
        """Samples in the answer (the model's accepted rows counted when first
        read, less the excluded ones, plus the forced positives)."""
        return len(self._paged) - int(self._excluded.size) + self._n_forced

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        model = self.stats.get("model")
        return (
            f"RefinePages({self.count} results, model {model!r}; .page(offset,"
            " limit), .stats)"
        )

    def page(self, offset: int, limit: int) -> RefinedPage:
        """Ranks ``[offset, offset + limit)`` of the answer (fewer at its end)."""
        offset, limit = check_rank(offset, "offset"), check_rank(limit, "limit")
        stop = offset + limit
        with self._lock:
            while self._rows.size < stop and not (self._done and not self._forced.size):
                if self._closed:
                    raise ValueError(
                        "these pages were closed: only the ranks read before close()"
                        f" remain (0 to {self._rows.size}); refine again for more"
                    )
                self._read_more(self._next_read(stop - self._rows.size))
            rows = self._rows[offset:stop]
            scores = self._scores[offset:stop]
        ids = self._fitted.bundle.rowmap.ids_of(rows)
        return RefinedPage(offset, ids, scores, rows)

    def all(self) -> RefinedPage:
        """The whole answer (what ``refine_ranking`` returns)."""
        return self.page(0, self.count)

    def _next_read(self, want: int) -> int:
        """Ranks to read for ``want`` more rows: at first what ``rank_pages`` was
        asked for (:func:`first_read`), so the first page ranks no other row;
        then at least :data:`READ_STEP`."""
        if self._read == 0:
            return first_read(want, self._excluded.size)
        return max(want, READ_STEP)

    def _read_more(self, m: int) -> None:
        if self._done:  # only forced positives are left: they come last
            self._append(self._forced, np.full(self._forced.size, self._best()))
            self._forced = self._forced[:0]
            return
        part = self._paged.page(self._read, m)
        self._read += len(part)
        rows, scores = np.asarray(part.ids, np.int64), np.asarray(part.scores)
        if len(part) < m:
            self._done = True
        if self._excluded.size:
            keep = ~in_few(rows, self._excluded)
            rows, scores = rows[keep], scores[keep]
        if self._top is None and rows.size:
            self._top = float(scores[0])
        if not self._forced.size or not rows.size:
            if rows.size or self._done:
                self._append(rows, scores)
            return
        if scores[-1] < self._top:
            now = self._forced  # every forced row ranks before this part's end
        else:  # the whole part scores the top: forced rows up to its last row
            now = self._forced[self._forced < rows[-1]]
        self._forced = self._forced[now.size :]
        rows = np.concatenate([now, rows])
        scores = np.concatenate([np.full(now.size, self._top), scores])
        order = np.lexsort((rows, -scores))
        self._append(rows[order], scores[order])

    def _best(self) -> float:
        return 1.0 if self._top is None else self._top

    def _append(self, rows, scores) -> None:
        self._rows = np.concatenate([self._rows, rows])
        self._scores = np.concatenate([self._scores, scores])

    def close(self) -> None:
        """Free what the index (or its shards) holds for this answer; pages read
        so far stay readable."""
        with self._lock:
            self._closed = True
        self._paged.close()

    def __enter__(self) -> RefinePages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def refine_pages(
    dataset, request: RefineRequest | None = None, *, first: int = FIRST_PAGE, **fields
) -> RefinePages:
    """:func:`~.refine.refine_ranking`'s answer as pages: the model is fitted and
    its first ``first`` rows ranked now; the count and later pages when asked.

    Args:
        dataset: a FiftyOne dataset or view (as :func:`~.refine.refine`: the
            answer holds the samples of a view only).
        request: a :class:`RefineRequest`, or its fields as keywords (as
            ``refine``'s).
        first: int >= 0, rows of the first page.

    Returns:
        :class:`RefinePages`; ``close()`` it (or use it as a context manager).

    Raises:
        as :func:`~.refine.refine_ranking`.
    """
    first = check_rank(first, "first")
    fitted = fit_refinement(dataset, RefineRequest.build(request, **fields))
    t2 = time.perf_counter()
    model = fitted.model
    if model is None or model.answered_by == "top_k":
        pages = _whole(fitted, first)
    else:
        pages = _paged(fitted, first)
    pages.page(0, first)
    # known without counting the whole answer: a held one, or one read to its end
    whole = model is not None and (model.answered_by == "top_k" or pages._done)
    if whole and pages.count == fitted.live_positives.size:
        pages.stats["note"] = nothing_found_note(fitted)
    t3 = time.perf_counter()
    pages.stats.update(query_ms=1e3 * (t3 - t2), total_ms=1e3 * (t3 - fitted.started))
    return pages


def first_read(first: int, n_excluded: int) -> int:
    """Ranks of the model's ranking read for the first ``first`` rows of an answer
    that leaves ``n_excluded`` of its rows out: a margin for the excluded ones."""
    return first + min(n_excluded, 4 * first + 64)


def _whole(fitted: FittedRefinement, first: int) -> RefinePages:
    from fiftyone_clipbranches.engine.pages import HeldAnswer, held_pages

    rows, scores, n_forced, n_dropped = ranked_answer(fitted)
    pages = RefinePages(
        fitted, held_pages(HeldAnswer(rows, scores), first), (), (), n_dropped
    )
    pages.stats["n_forced_pos"] = n_forced
    return pages


def _paged(fitted: FittedRefinement, first: int) -> RefinePages:
    from fiftyone_clipbranches.engine.codes import take_rows
    from fiftyone_clipbranches.engine.pages import rank_pages

    model, index, alive = fitted.model, fitted.bundle.index, fitted.alive

    def accepted(rows: np.ndarray) -> np.ndarray:
        if not rows.size:
            return rows
        return rows[np.asarray(model.predict(take_rows(index.codes, rows)), bool)]

    live_pos = fitted.live_positives
    forced = np.setdiff1d(live_pos, accepted(live_pos))
    dropped = accepted(fitted.neg_rows)
    if alive is not None:
        dropped = dropped[alive[dropped]]
        dead = accepted(np.flatnonzero(~alive))
    else:
        dead = np.zeros(0, np.int64)
    excluded = np.union1d(dropped, dead)
    paged = rank_pages(
        model, index, first=first_read(first, excluded.size), count=False
    )
    return RefinePages(fitted, paged, excluded, forced, dropped.size)
