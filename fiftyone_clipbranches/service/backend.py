"""The service's view of the sdk: datasets and indexes loaded once, shared read-only.

Every search and refinement goes through the sdk functions the panel and the
operators use (``sdk.search_ids``, ``sdk.save_view``, and for refinement
``sdk.refine_ranking``, the steps of ``sdk.refine`` up to its ranked rows); this
module only loads datasets and indexes up front (pinned in the sdk's bundle cache,
so no request reloads one however many are served), checks the request against what exists
(dataset names, index keys, sample ids) and turns sdk errors into API errors. It
never writes scores to the dataset: a refinement of the service changes nothing
in the database, so concurrent requests cannot interfere.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import shlex
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from fiftyone_clipbranches.sdk.settings import DEFAULT_INDEX_KEY, default_index_key
from fiftyone_clipbranches.service.compute_worker import (
    next_to_label_answer,
    search_answer,
    task,
)
from fiftyone_clipbranches.service.database import DatabaseWatch, database_errors
from fiftyone_clipbranches.service.errors import (
    ApiError,
    not_found,
    unprocessable,
    without_paths,
)
from fiftyone_clipbranches.service.requests import MAX_IDS
from fiftyone_clipbranches.service.results import Ranking, StoredResult

logger = logging.getLogger(__name__)


def check_datasets_exist(names) -> None:
    """Raise ValueError naming those of ``names`` that are not FiftyOne datasets."""
    import fiftyone as fo

    missing = sorted(set(names or ()).difference(fo.list_datasets()))
    if missing:
        raise ValueError(
            f"dataset(s) {missing} do not exist; see `fiftyone datasets list`"
        )


#: Most samples a saved view may select by id (a saved view is one database
#: document, limited to 16 MB).
_ID_DTYPE = "S24"
#: Longest a save waits for another process saving the same view name (well
#: within a request's time limit: a 504 would leave the client guessing).
SAVE_CLAIM_WAIT_S = 10.0
#: Least seconds between two loads of the indexes that failed theirs, while every
#: index served failed (the service is not ready: a directory restored in place).
RETRY_FAILED_LOAD_S = 10.0
#: ``Retry-After`` of a request on a key another process holds (building it, say).
BUILD_RETRY_S = 5

#: Startup verification levels of ``clipbranches serve --verify``.
VERIFY_LEVELS = ("none", "fast", "full")


@dataclass
class _Index:
    """One index of a served dataset: loaded (``info``) or unavailable (``error``).

    ``failure`` is why its last query answered ``503 index_unavailable`` (files
    damaged or gone since it was loaded, as a restarted worker or shard actor
    finds them), None once a query that started later succeeds: queries keep
    trying it, the listing and its info report it as unavailable meanwhile.
    """

    key: str
    index_dir: str
    info: dict | None = None
    error: str | None = None
    failure: str | None = None
    #: the local CLIP checkpoint file text queries are embedded with (None: an
    #: open_clip tag, or no model)
    checkpoint: str | None = None
    _queries: int = 0
    _failed_at: int = -1
    _answered_at: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def serving(self) -> bool:
        """Loaded, and its last query did not find it unavailable."""
        return self.error is None and self.failure is None

    @property
    def served_info(self) -> dict | None:
        """``info`` as it holds now: no text search while the checkpoint file
        it embeds text with is gone (put back, it is searched again)."""
        if self.info is None or not self.checkpoint or os.path.isfile(self.checkpoint):
            return self.info
        return {
            **self.info,
            "supports_text": False,
            "text_search_unavailable": "the CLIP checkpoint file it embeds text with"
            " is not on the server (searches by sample and refinements work)",
        }

    @property
    def unavailable_because(self) -> str | None:
        """Why it is not served (None while it is)."""
        if self.error is not None:
            return self.error
        if self.failure is not None:
            return f"its last query failed: {self.failure}"
        return None

    @contextlib.contextmanager
    def watched(self, dataset: str):
        """Record a query's ``index_unavailable`` answer in ``failure`` (logged
        once, naming ``dataset``); a query
        clears it when it succeeds, unless it started before the failure (queries
        end out of order; each is numbered as it starts)."""
        with self._lock:
            self._queries += 1
            started = self._queries
        try:
            yield
        except ApiError as e:
            if e.code == "index_unavailable":
                with self._lock:
                    if started > self._answered_at:
                        if self.failure is None:
                            logger.warning(
                                "index %r of dataset %r is unavailable: %s",
                                self.key,
                                dataset,
                                e.message,
                            )
                        self.failure, self._failed_at = e.message, started
            raise
        with self._lock:
            self._answered_at = max(self._answered_at, started)
            if started > self._failed_at:
                self.failure = None


@dataclass
class _Dataset:
    name: str
    dataset: object
    dataset_id: str
    indexes: dict[str, _Index] = field(default_factory=dict)
    gone: bool = False
    renamed_to: str | None = None
    checked_at: float = 0.0
    state: tuple | None = None
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    save_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def keys(self) -> list[str]:
        """Keys of the indexes that are loaded and answer requests."""
        return [k for k, ix in self.indexes.items() if ix.serving]


class SdkBackend:
    """Datasets and indexes served, and the sdk calls behind each endpoint.

    What it serves follows the database: every ``recheck_s`` seconds at most (on the
    next request touching a dataset) it checks that the dataset still exists and
    which directory each of its indexes is in, so that a dataset or index deleted by
    another process answers 404, an index updated elsewhere is served from its new
    directory (the old one unpinned), and a new index is picked up.

    Args:
        datasets: names of the FiftyOne datasets to serve; None serves every dataset
            that has at least one clipbranches index when :meth:`load` runs.
        verify: how each index is checked before it is served: ``"none"``,
            ``"fast"`` or ``"full"`` (see ``sdk.verify_index``). An index that fails
            to load or to verify is logged and not served; the others are.
        recheck_s: how stale the view of the database may get, seconds.
    """

    def __init__(
        self,
        datasets: Iterable[str] | None = None,
        *,
        verify: str = "fast",
        recheck_s: float = 1.0,
    ):
        if verify not in VERIFY_LEVELS:
            raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {verify!r}")
        if not isinstance(recheck_s, int | float) or recheck_s < 0:
            raise ValueError(f"recheck_s must be a number >= 0, got {recheck_s!r}")
        self.dataset_names = None if datasets is None else list(datasets)
        self.verify = verify
        self.recheck_s = float(recheck_s)
        self._datasets: dict[str, _Dataset] = {}
        self._ready = threading.Event()
        self._database = DatabaseWatch()
        self._load_error: str | None = None
        self._workers = None
        self._load_retried_at = time.monotonic()
        self._check_failed: str | None = None

    def attach_workers(self, workers) -> None:
        """Run searches and refinements on ``workers`` (a started
        :class:`~fiftyone_clipbranches.service.workers.WorkerPool` of
        :class:`~fiftyone_clipbranches.service.compute_worker.SdkWorker`) instead
        of the calling thread; the service is ready once they are."""
        self._workers = workers

    def worker_args(self) -> tuple:
        """Arguments of :class:`~fiftyone_clipbranches.service.compute_worker.SdkWorker`
        serving the same datasets as this backend."""
        return (self.dataset_names,)

    def load(self) -> None:
        """Load each dataset and every index of it (codes memory-mapped) once."""
        import fiftyone as fo

        from fiftyone_clipbranches import sdk

        try:
            names = self.dataset_names
            if names is None:
                names = [n for n in fo.list_datasets() if _has_indexes(fo, sdk, n)]
            check_datasets_exist(names)
            loaded = {}
            for name in names:
                state = _database_state(name)  # before the load: never newer
                ds = fo.load_dataset(name)
                entry = _Dataset(name, ds, str(ds._doc.id), state=state)
                self._sync_indexes(entry, sdk)
                if not entry.indexes:
                    logger.warning(
                        "dataset %r has no clipbranches index yet: it is served once"
                        " one is built (clipbranches build-index %s)",
                        name,
                        shlex.quote(name),
                    )
                entry.checked_at = time.monotonic()
                loaded[name] = entry
            self._datasets = loaded
            if self.dataset_names is None and self._workers is not None:
                # workers started from now on (replacements) open these, not every
                # dataset indexed since (the served ones are first of worker_args)
                self._workers.args = (list(loaded), *self._workers.args[1:])
            self._ready.set()
        except Exception as e:
            self._load_error = str(e)
            raise

    @property
    def load_error(self) -> str | None:
        return self._load_error

    def is_ready(self) -> bool:
        return self.not_ready_because() is None

    def not_ready_because(self) -> str | None:
        """Why the service cannot answer queries now, for people; None when it can."""
        return self._why_not_ready(public=False)

    def public_not_ready_because(self) -> str | None:
        """:meth:`not_ready_because` without names or addresses (dataset names,
        index keys, the database's or the cluster's address), for a probe that
        carries no token; None when ready."""
        return self._why_not_ready(public=True)

    def _why_not_ready(self, public: bool) -> str | None:
        from fiftyone_clipbranches.sdk.sharding import ray_head_problem

        if not self._ready.is_set():
            return "the service is still starting: loading its indexes; retry shortly"
        workers = self._workers
        why = None if workers is None else workers.not_ready_because()
        if why:  # the workers' words name nothing
            return why
        for check, in_general in (
            (self._database.problem, "the database does not answer; retry shortly"),
            (
                ray_head_problem,
                "the Ray cluster of the sharded indexes cannot be reached",
            ),
            (self._nothing_loaded, None),
        ):
            why = check()
            if why:
                if not public:
                    return why
                n = sum(len(e.indexes) for e in self._present())
                return in_general or f"none of the {n} indexes found could be loaded"
        return None

    def _nothing_loaded(self) -> str | None:
        """Why no query can be answered although indexes exist: every one of them
        failed to load or verify. No request reaches a service that is not ready,
        so each call checks the database (at most every ``recheck_s``: an index
        built again or updated is loaded) and loads the failed indexes again (at
        most every :data:`RETRY_FAILED_LOAD_S`: a directory restored in place).
        Indexes whose queries failed since they loaded do not count: queries must
        keep reaching them to find them restored."""
        if not _all_failed_to_load(self._present()):
            return None
        try:
            for entry in self._present():
                self._refresh(entry)
            now = time.monotonic()
            if (
                _all_failed_to_load(self._present())
                and now - self._load_retried_at >= RETRY_FAILED_LOAD_S
            ):
                self._load_retried_at = now
                for entry in self._present():
                    self._retry_failed_loads(entry)
        except ApiError as e:
            return e.message
        except Exception as e:  # noqa: BLE001 - a probe answers in words
            why = f"the served indexes could not be checked: {without_paths(str(e))}"
            if why != self._check_failed:  # said once, not at every probe
                logger.warning("%s", why)
            self._check_failed = why
            return why
        self._check_failed = None
        entries = self._present()
        if not _all_failed_to_load(entries):
            return None
        failed = [(e.name, ix) for e in entries for ix in e.indexes.values()]
        name, first = failed[0]
        return (
            f"none of the {len(failed)} indexes found could be loaded; index"
            f" {first.key!r} of dataset {name!r}: {without_paths(first.error)}"
            " (GET /v1/datasets lists each under unavailable_indexes)"
        )

    def _present(self) -> list[_Dataset]:
        return [e for e in list(self._datasets.values()) if not e.gone]

    def _retry_failed_loads(self, entry: _Dataset) -> None:
        """Load again the indexes of ``entry`` that failed to load, in the
        directory they failed in; one that fails again is left as it was (its
        warning is not repeated)."""
        from fiftyone_clipbranches import sdk

        with entry.refresh_lock:
            indexes = dict(entry.indexes)
            for key, index in entry.indexes.items():
                if index.error is None:
                    continue
                try:  # no directory: its run could not be read (a permission)
                    index_dir = index.index_dir or str(
                        sdk.index_info(entry.dataset, key, check=False).index_dir
                    )
                    loaded = self._try_load(entry.name, entry.dataset, key, sdk)
                except Exception:  # noqa: BLE001 - still failing: said at its load
                    continue
                indexes[key] = _Index(key, index_dir, loaded)
            entry.indexes = indexes

    def n_indexes(self) -> int:
        return sum(len(d.keys) for d in self._datasets.values() if not d.gone)

    def list_datasets(self) -> list[dict]:
        self._check_ready()  # an empty list while loading reads as "none served"
        out = []
        for entry in list(self._datasets.values()):
            self._refresh(entry)
            if not entry.gone:
                out.append(self._dataset_json(entry))
        return out

    def default_index_key(self, name: str) -> str:
        """The index a request on dataset ``name`` that names none is answered
        from: ``DEFAULT_INDEX_KEY``, else the dataset's only index
        (``sdk.settings.default_index_key``; with several, the default's absence is
        what the answer says)."""
        return default_index_key(self._entry(name).indexes) or DEFAULT_INDEX_KEY

    def dataset_info(self, name: str) -> dict:
        return self._dataset_json(self._entry(name))

    def index_info(self, name: str, key: str) -> dict:
        entry = self._entry(name)
        index = self._index(entry, key)
        if index.failure is not None:
            raise ApiError(
                503,
                "index_unavailable",
                f"index {key!r} of dataset {entry.name!r}: {index.unavailable_because}",
            )
        return index.served_info

    def check_result(self, result: StoredResult, force: bool = False) -> _Dataset:
        """The entry of a stored result's dataset; 404 when that dataset no longer
        exists (also when another dataset has taken its name since). Without
        ``force`` (a page, read from memory), a database that does not answer
        leaves the entry as last seen."""
        try:
            entry = self._entry(result.dataset, force=force)
        except ApiError as err:
            entry = self._datasets.get(result.dataset)
            stale_ok = not force and err.code == "database_unavailable"
            if not stale_ok or entry is None or entry.gone:
                raise
        made_from = result.ranking.dataset_id
        if made_from is not None and made_from != entry.dataset_id:
            raise not_found(
                "result_not_found",
                f"result {result.result_id!r} was made from a dataset"
                f" {result.dataset!r} that was deleted since; the dataset of that"
                " name now is another one: run the query again",
            )
        return entry

    def search(self, req: dict) -> Ranking:
        entry = self._entry(req["dataset"])
        return self._answered(entry, req["index_key"], lambda: self._search(entry, req))

    def _search(self, entry: _Dataset, req: dict) -> Ranking:
        from fiftyone_clipbranches.sdk.search import reads_as_image

        key = req["index_key"]
        if req["text"] is not None and reads_as_image(req["text"]):
            raise unprocessable(
                "unprocessable",
                "text reads as an image's path or URL, which would be searched as"
                " words: the service searches by text or by sample_ids (it reads no"
                " image files); send the words to search by, or the ids of samples"
                " (the SDK's search(image=...) and the App's panel search by an"
                " image)",
            )
        index = self._index(entry, key)
        if req["sample_ids"] is not None:
            self._check_ids(entry, index, req["sample_ids"], "sample_ids")
        start = time.perf_counter()
        with index.watched(entry.name), _sdk_errors():
            if self._workers is not None:
                work = task("search", entry.name, entry.dataset_id, req, self._served())
                ids, sq_dists, n_unindexed = self._workers.execute(work)
            else:
                ids, sq_dists, n_unindexed = search_answer(entry.dataset, req)
        query = "text" if req["text"] is not None else "samples"
        return _by_distance(ids, sq_dists, query, n_unindexed, start)

    def refine(self, req: dict) -> Ranking:
        """``req``: a validated ``/v1/refine`` body (``RefineRequest.from_json``)."""
        from fiftyone_clipbranches.sdk.request import RefineRequest

        entry = self._entry(req["dataset"])
        with _sdk_errors():
            request = RefineRequest.from_json(req)
        return self._answered(
            entry, request.index_key, lambda: self._refine(entry, req, request)
        )

    def _refine(self, entry: _Dataset, req: dict, request) -> Ranking:
        from fiftyone_clipbranches import sdk

        index = self._index(entry, request.index_key)
        for what in ("positives", "negatives"):
            if getattr(request, what):
                self._check_ids(entry, index, getattr(request, what), what)
        if self._workers is not None:
            with index.watched(entry.name), _sdk_errors():
                work = task("refine", entry.name, entry.dataset_id, req, self._served())
                return _worker_ranking(self._workers.execute(work))
        with index.watched(entry.name), _sdk_errors():
            result = sdk.refine_ranking(entry.dataset, request)
        rows = result.rows
        rows.setflags(write=False)
        return Ranking(rows, result.scores, result.bundle.rowmap.ids_of, result.stats)

    def next_to_label(self, req: dict, seen: StoredResult | None = None) -> Ranking:
        """``req``: a validated ``/v1/next_to_label`` body; ``seen``: the stored
        result its ``exclude_result`` names, whose samples are left out too."""
        from fiftyone_clipbranches.sdk.request import RefineRequest

        entry = self._entry(req["dataset"])
        exclude = np.array(req["exclude"] or (), dtype=_ID_DTYPE)
        if seen is not None:
            if seen.dataset != entry.name:
                raise unprocessable(
                    "result_of_another_dataset",
                    f"exclude_result {seen.result_id!r} ranks dataset"
                    f" {seen.dataset!r}, not {entry.name!r}",
                )
            self.check_result(seen)
            ids = np.array(seen.ranking.ids_of(seen.ranking.rows), dtype=_ID_DTYPE)
            exclude = np.concatenate([exclude, ids])
        with _sdk_errors():
            labels = RefineRequest.from_json(req)  # the labels, read as /v1/refine
        body = {**req, "exclude": exclude}
        return self._answered(
            entry, req["index_key"], lambda: self._next_to_label(entry, body, labels)
        )

    def _next_to_label(self, entry: _Dataset, req: dict, labels) -> Ranking:
        index = self._index(entry, req["index_key"])
        for what in ("positives", "negatives"):
            if getattr(labels, what):
                self._check_ids(entry, index, getattr(labels, what), what)
        start = time.perf_counter()
        with index.watched(entry.name), _sdk_errors():
            if self._workers is not None:
                work = task(
                    "next_to_label", entry.name, entry.dataset_id, req, self._served()
                )
                ids, sq_dists, n_unindexed = self._workers.execute(work)
            else:
                ids, sq_dists, n_unindexed = next_to_label_answer(entry.dataset, req)
        return _by_distance(ids, sq_dists, "positives", n_unindexed, start)

    def save_view(self, result: StoredResult, name: str, overwrite: bool) -> dict:
        from fiftyone_clipbranches import sdk
        from fiftyone_clipbranches.sdk.messages import too_large_to_save
        from fiftyone_clipbranches.sdk.settings import MAX_SELECTED_SAMPLES

        entry = self.check_result(result, force=True)
        n = len(result.ranking)
        if n > MAX_SELECTED_SAMPLES:
            score_field = result.ranking.stats.get("score_field")
            raise unprocessable(
                "result_too_large",
                too_large_to_save(n, MAX_SELECTED_SAMPLES, score_field),
            )
        ids = result.ranking.ids_of(result.ranking.rows)
        with entry.save_lock:
            ds = entry.dataset
            try:
                view = ds.select(ids, ordered=True)
                with _sdk_errors():  # any view of the name is a client's: 409
                    saved = sdk.save_view(
                        ds, name, view, overwrite=overwrite, replace_own=False,
                        wait_s=SAVE_CLAIM_WAIT_S,
                    )  # fmt: skip
                n = len(view)  # not the samples deleted since the result was made
            except ApiError:
                raise
            except Exception:
                # Deleted by another process while saving: say so, not a 500.
                self._entry(result.dataset, force=True)
                raise
        return {"dataset": entry.name, "name": saved, "n_samples": n}

    def _served(self) -> set[str]:
        """Directories of every index served now (the compute workers keep these
        open and let go of the others)."""
        return {
            ix.index_dir
            for entry in list(self._datasets.values())
            for ix in list(entry.indexes.values())
            if ix.error is None and ix.index_dir
        }

    def _not_served(self, name: str) -> str:
        """Why dataset ``name`` is not served, and what to do."""
        import fiftyone as fo

        from fiftyone_clipbranches import sdk

        message = (
            f"dataset {name!r} is not served here; GET /v1/datasets lists those that"
            " are"
        )
        if not fo.dataset_exists(name):
            close = difflib.get_close_matches(name, list(self._datasets), n=1)
            return message + (f" (did you mean {close[0]!r}?)" if close else "")
        if self.dataset_names is not None:
            why = (
                "the service was started to serve only "
                + ", ".join(repr(n) for n in self.dataset_names)
                + f": restart it with --dataset {shlex.quote(name)} among them"
            )
        elif not _has_indexes(fo, sdk, name):
            why = (
                "it has no clipbranches index: build one (clipbranches build-index),"
                " then restart the service"
            )
        else:
            why = (
                "the service chose the datasets it serves when it started: restart"
                " it to serve this one"
            )
        return f"{message} ({name!r} exists, but {why})"

    def _check_ready(self) -> None:
        if not self._ready.is_set():
            raise ApiError(
                503,
                "not_ready",
                "indexes are still loading; retry shortly",
                retry_after_s=2,
            )

    def _entry(self, name: str, force: bool = False) -> _Dataset:
        self._check_ready()
        entry = self._datasets.get(name)
        if entry is None:
            raise not_found("dataset_not_found", self._not_served(name))
        self._refresh(entry, force)
        if entry.gone and entry.renamed_to is not None:
            raise not_found(
                "dataset_not_found",
                f"dataset {name!r} was renamed to {entry.renamed_to!r} (its indexes"
                " are intact): the service serves the names it started with; restart"
                f" it to serve {entry.renamed_to!r}",
            )
        if entry.gone:
            raise not_found(
                "dataset_not_found",
                f"dataset {name!r} was deleted, and its indexes and results with it"
                " (their files stay until clipbranches gc). Recreate and index it:"
                " the service serves it again under the same name without a"
                " restart",
            )
        return entry

    def _being_built(self, entry: _Dataset, key: str) -> str | None:
        """Why index ``key`` of ``entry`` is not served when another live process
        holds the key (building, deleting or renaming it; in words), else None."""
        from fiftyone_clipbranches.sdk.claims import key_in_progress
        from fiftyone_clipbranches.sdk.runs import root_dataset

        with self._database.bounded():
            return key_in_progress(root_dataset(entry.dataset), key)

    def _answered(self, entry: _Dataset, key: str, answer) -> Ranking:
        """``answer()`` for index ``key`` of ``entry``, stamped with the id of the
        dataset it ranks. A request that failed because its dataset was deleted or
        renamed, or its index renamed or deleted, while it ran answers that (404),
        not what the change broke on the way (ids "deleted", a dataset "not found"
        as 422). One that found no index ``key`` where the database now has one
        (built since the entry was last read, or the dataset made again with it)
        is answered again, once, not told a stale 404."""
        for retry in (False, True):
            made_from = entry.dataset_id  # before: a refresh meanwhile may change it
            try:
                return replace(answer(), dataset_id=made_from)
            except ApiError as err:
                if err.status != 422 and err.code not in (
                    "index_not_found",
                    "index_unavailable",
                ):
                    raise
                # another request may have taken the change in already
                with self._database.bounded():
                    force = _database_state(entry.name) != entry.state
                self._entry(entry.name, force=force)  # 404 when it is gone
                self._index(entry, key)  # 404 when the index is
                if retry or err.code != "index_not_found":
                    raise
        raise AssertionError("unreachable")

    def _index(self, entry: _Dataset, key: str) -> _Index:
        index = entry.indexes.get(key)
        if index is None:
            building = self._being_built(entry, key)
            if building is not None:
                raise ApiError(
                    503, "index_being_built", building, retry_after_s=BUILD_RETRY_S
                )
            served = entry.keys
            hint = (
                f': send "index_key": {json.dumps(served[0], ensure_ascii=False)}'
                if len(served) == 1
                else f' (served: {served}): name one in "index_key"'
                if served
                else ": it has none; build one (clipbranches build-index"
                f" {shlex.quote(entry.name)}, or build_index in Python): the service"
                " serves it without a restart"
            )
            raise not_found(
                "index_not_found", f"dataset {entry.name!r} has no index {key!r}{hint}"
            )
        if index.error is not None:
            raise ApiError(
                503,
                "index_unavailable",
                f"index {key!r} of dataset {entry.name!r} cannot be served: "
                f"{index.error} (the service serves an index built again or updated"
                " without a restart; a directory restored in place, after a restart)",
            )
        return index

    def _refresh(self, entry: _Dataset, force: bool = False) -> None:
        """Bring ``entry`` in line with the database when it is older than
        ``recheck_s`` (always with ``force``)."""
        if not force and time.monotonic() - entry.checked_at < self.recheck_s:
            return
        self._database.check()  # down a moment ago: 503 now, not after a wait
        with entry.refresh_lock:
            if not force and time.monotonic() - entry.checked_at < self.recheck_s:
                return  # another request refreshed it while this one waited
            with self._database.bounded():
                state = _database_state(entry.name)
            if force or entry.gone or state is None or state != entry.state:
                with database_errors():  # the database gone meanwhile: 503
                    self._sync(entry)
                entry.state = state
            entry.checked_at = time.monotonic()

    def _sync(self, entry: _Dataset) -> None:
        import fiftyone as fo

        from fiftyone_clipbranches import sdk

        try:
            ds = fo.load_dataset(entry.name) if fo.dataset_exists(entry.name) else None
            if ds is not None:
                ds.reload()
        except Exception:
            if fo.dataset_exists(entry.name):
                raise
            ds = None  # deleted between the two calls
        if ds is None:
            renamed_to = _current_name(entry.dataset_id)
            if not entry.gone or renamed_to != entry.renamed_to:
                if renamed_to is None:
                    logger.warning(
                        "dataset %r was deleted; it is no longer served (404)",
                        entry.name,
                    )
                else:
                    logger.warning(
                        "dataset %r was renamed to %r; restart the service to serve"
                        " it under that name (404 until then)",
                        entry.name,
                        renamed_to,
                    )
            entry.renamed_to = renamed_to
            self._drop(entry.indexes.values(), keep=())
            entry.indexes = {}
            entry.gone = True
            return
        dataset_id = str(ds._doc.id)
        if entry.gone or dataset_id != entry.dataset_id:
            # Recreated under the same name: nothing of the old one carries over.
            logger.info("dataset %r was recreated; loading its indexes", entry.name)
            self._drop(entry.indexes.values(), keep=())
            entry.indexes = {}
        entry.dataset, entry.dataset_id, entry.gone = ds, dataset_id, False
        entry.renamed_to = None
        self._sync_indexes(entry, sdk)

    def _sync_indexes(self, entry: _Dataset, sdk) -> None:
        """Load the indexes of ``entry`` whose directory is new to it, drop those
        that are gone."""
        ds = entry.dataset
        by_dir = {ix.index_dir: ix for ix in entry.indexes.values()}
        current: dict[str, _Index] = {}
        for key in sdk.list_indexes(ds):
            try:
                recorded = sdk.index_info(ds, key, check=False)
            except Exception as e:  # an unreadable run document
                current[key] = _unavailable(entry.name, key, "", e)
                continue
            index_dir = str(recorded.index_dir)
            checkpoint = _local_checkpoint(recorded.clip_model)
            known = by_dir.get(index_dir)
            if known is None:
                current[key] = self._load_index(
                    entry.name, ds, key, index_dir, checkpoint, sdk
                )
                continue
            if known.key != key:  # renamed: same files, new key
                info = None if known.info is None else {**known.info, "key": key}
                known = _Index(key, index_dir, info, known.error, known.failure)
            known.checkpoint = checkpoint  # relocate-checkpoint changes it in place
            current[key] = known
        self._drop(
            entry.indexes.values(), keep={ix.index_dir for ix in current.values()}
        )
        entry.indexes = current

    def _load_index(
        self, name: str, ds, key: str, index_dir: str, checkpoint: str | None, sdk
    ) -> _Index:
        try:
            info = self._try_load(name, ds, key, sdk)
        except Exception as e:
            return _unavailable(name, key, index_dir, e)
        return _Index(key, index_dir, info, checkpoint=checkpoint)

    def _try_load(self, name: str, ds, key: str, sdk) -> dict:
        """Verify index ``key`` and describe it (raises when it cannot be served)."""
        start = time.perf_counter()
        _verify(sdk, ds, key, self.verify)
        info = _describe(sdk, ds, key)
        logger.info(
            "loaded index %r of %r in %.2f s (verify=%s)",
            key,
            name,
            time.perf_counter() - start,
            self.verify,
        )
        gone = _text_search_unavailable(ds, key)
        if gone:  # served: searches by sample and refinements still work
            logger.warning("index %r of %r: %s", key, name, gone)
        return info

    @staticmethod
    def _drop(indexes: Iterable[_Index], keep) -> None:
        from fiftyone_clipbranches.sdk.bundle import unpin_bundle

        for ix in indexes:
            if ix.index_dir and ix.index_dir not in keep:
                unpin_bundle(ix.index_dir)

    @staticmethod
    def _check_ids(entry: _Dataset, index: _Index, ids: list[str], what: str) -> None:
        """Raise 422 unless every id of ``ids`` is a sample of the served
        ``index`` (read from the directory this process holds open), as the sdk
        refuses them (``labelled_rows.index_rows``): ids of no sample of the
        dataset, or of one deleted since, are ``unknown_sample_ids`` (listed);
        samples added after the build ``stale_index``; negatives the index has no
        row for (unreadable, or added after the build) are left out, as there."""
        from fiftyone_clipbranches.sdk.bundle import load_bundle
        from fiftyone_clipbranches.sdk.errors import SampleIdsError, StaleIndexError
        from fiftyone_clipbranches.sdk.freshness import alive_rows
        from fiftyone_clipbranches.sdk.labelled_rows import index_rows
        from fiftyone_clipbranches.sdk.messages import http_message

        noun = {"positives": "positive", "negatives": "negative"}.get(what, "query")
        with _sdk_errors():
            bundle = load_bundle(index.index_dir)
            alive = alive_rows(entry.dataset, bundle.rowmap, str(bundle.path))
            try:
                index_rows(
                    entry.dataset, bundle, ids, noun, index.key,
                    skip_unindexed=what == "negatives", alive=alive,
                )  # fmt: skip
            except (SampleIdsError, StaleIndexError) as err:
                if not err.ids:
                    raise
                code = (
                    "stale_index"
                    if isinstance(err, StaleIndexError)
                    else "unknown_sample_ids"
                )
                raise unprocessable(
                    code, http_message(err), {"field": what, "ids": err.ids[:100]}
                ) from None

    @staticmethod
    def _dataset_json(entry: _Dataset) -> dict:
        indexes = list(entry.indexes.values())
        return {
            "name": entry.name,
            "indexes": [ix.served_info for ix in indexes if ix.serving],
            "unavailable_indexes": [
                {"key": ix.key, "error": without_paths(ix.unavailable_because)}
                for ix in indexes
                if not ix.serving
            ],
        }


def _current_name(dataset_id: str) -> str | None:
    """The name the dataset of id ``dataset_id`` has now, or None if it is gone."""
    import fiftyone.core.odm as foo
    from bson import ObjectId

    doc = foo.get_db_conn().datasets.find_one(
        {"_id": ObjectId(dataset_id)}, {"name": 1}
    )
    return None if doc is None else doc["name"]


def _database_state(name: str) -> tuple | None:
    """What of dataset ``name`` the service depends on, as two indexed reads: its id
    and its runs (key, document id, config: an index's directory is in its
    config). None when no dataset has that name. Equal states mean nothing to
    reload (a full reload costs tens of ms and writes the dataset document)."""
    import fiftyone.core.odm as foo

    db = foo.get_db_conn()
    doc = db.datasets.find_one({"name": name}, {"_id": 1, "runs": 1})
    if doc is None:
        return None
    by_key = doc.get("runs") or {}
    configs = {
        run["_id"]: run.get("config")
        for run in db.runs.find({"_id": {"$in": list(by_key.values())}}, {"config": 1})
    }
    runs = sorted((k, str(v), repr(configs.get(v))) for k, v in by_key.items())
    return doc["_id"], tuple(runs)


def _all_failed_to_load(entries: list[_Dataset]) -> bool:
    indexes = [ix for e in entries for ix in e.indexes.values()]
    return bool(indexes) and all(ix.error is not None for ix in indexes)


def _unavailable(name: str, key: str, index_dir: str, error: Exception) -> _Index:
    from fiftyone_clipbranches.sdk.errors import (
        IndexCorruptedError,
        IndexFilesMissingError,
    )

    message = str(error) or type(error).__name__
    if isinstance(error, IndexCorruptedError | IndexFilesMissingError):
        way_out = (  # the message says how to build it again
            "the service picks up an index built again or updated without a restart"
        )
    else:  # nothing wrong with the index: a permission, a setting, the disk
        way_out = (
            "mend what the error says; the service loads the index again by itself"
            " (within 10 s) while it serves no other index, else at a restart"
        )
    logger.warning(
        "index %r of dataset %r is not served: %s. The other indexes are; %s",
        key,
        name,
        message,
        way_out,
    )
    return _Index(key, index_dir, error=message)


def _verify(sdk, ds, key: str, level: str) -> None:
    """Check index ``key`` at ``level`` before it is served (raises if it fails)."""
    if level != "none":
        sdk.verify_index(ds, key, level=level)


def _has_indexes(fo, sdk, name: str) -> bool:
    try:
        return bool(sdk.list_indexes(fo.load_dataset(name)))
    except Exception:  # a dataset that cannot be loaded is simply not served
        logger.warning("skipping dataset %r: it cannot be loaded", name)
        return False


def _describe(sdk, ds, key: str) -> dict:
    from fiftyone_clipbranches.sdk.bundle import pin_bundle

    config, bundle = sdk.load_index(ds, key)
    pin_bundle(bundle.path)
    info = sdk.index_info(ds, key, check=False).to_dict()
    info.pop("index_dir", None)
    info.pop("freshness", None)
    info.pop("n_reembed_pending", None)  # a snapshot at load would go stale
    info.pop("changes", None)  # what an update did, not what the index is
    info["clip_model"] = _unlocated(info.get("clip_model"))
    index = bundle.index
    manifest = {
        k: v for k, v in bundle.manifest.items() if k not in ("path", "index_dir")
    }
    if "clip_model" in manifest:
        manifest["clip_model"] = _unlocated(manifest["clip_model"])
    return {
        **info,
        "supports_text": bool(config.clip_model) and bundle.encoder is not None,
        "nbytes": int(index.nbytes),
        "bytes_per_point": float(index.bytes_per_point),
        "manifest": manifest,
    }


def _local_checkpoint(clip_model: dict | None) -> str | None:
    """The local checkpoint file a recorded CLIP identity embeds with (None: an
    open_clip tag, or no model)."""
    model = clip_model or {}
    local = model.get("checkpoint_sha256") and model.get("pretrained")
    return str(local) if local else None


def _text_search_unavailable(ds, key: str) -> str | None:
    """Why index ``key`` cannot embed text queries now (its recorded checkpoint
    file is gone), or None."""
    from fiftyone_clipbranches.sdk import runs
    from fiftyone_clipbranches.sdk.identity import missing_checkpoint

    model = runs.get_index_config(ds, key).clip_model
    if not model:
        return None
    return missing_checkpoint(dict(model), key, "embed queries", ds.name)


def _unlocated(clip):
    """A CLIP identity (dict, or None) as served: a local checkpoint by its file
    name (its digest says which), not by where it lies on the server."""
    if not isinstance(clip, dict):
        return clip
    pretrained = clip.get("pretrained")
    if isinstance(pretrained, str) and os.sep in pretrained:
        return {**clip, "pretrained": os.path.basename(pretrained)}
    return clip


def _worker_ranking(answer: tuple) -> Ranking:
    """The ranking of a compute worker's refinement answer
    (``compute_worker.SdkWorker``): index rows mapped to ids through the index
    directory they come from (held open here while served; index directories never
    change once written), or the ids themselves."""
    if answer[0] == "ids":
        return _ranking_of_ids(*answer[1:])
    from fiftyone_clipbranches.sdk.bundle import load_bundle

    _, path, rows, scores, stats = answer
    bundle = load_bundle(path)  # opened again only if unserved since the task left
    rows.setflags(write=False)
    return Ranking(rows, scores, bundle.rowmap.ids_of, stats)


def _by_distance(ids, sq_dists, query: str, n_unindexed: int, start: float) -> Ranking:
    """The ranking of a search by distance (``query`` what it searched by), its
    stats and time since ``start``."""
    stats = {
        "query": query,
        "n_results": len(ids),
        "n_unindexed": int(n_unindexed),
        "score": "minus squared L2 distance between uint8 codes",
        "timings": {"search_s": round(time.perf_counter() - start, 6)},
    }
    scores = 0.0 - np.asarray(sq_dists, np.float64)  # 0.0, not -0.0
    return _ranking(ids, scores, stats)


def _ranking(ids, scores, stats: dict) -> Ranking:
    return _ranking_of_ids(np.asarray(list(ids), dtype=_ID_DTYPE), scores, stats)


def _ranking_of_ids(id_array: np.ndarray, scores, stats: dict) -> Ranking:
    """A ranking of ``id_array`` (``S24`` ``(n,)``, best first) and its scores."""
    id_array.setflags(write=False)
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.arange(id_array.shape[0], dtype=np.int64)

    def ids_of(page_rows: np.ndarray) -> list[str]:
        return np.char.decode(id_array[page_rows], "ascii").tolist()

    return Ranking(
        rows=rows,
        scores=scores,
        ids_of=ids_of,
        stats=stats,
        extra_nbytes=int(id_array.nbytes),
    )


@contextlib.contextmanager
def _sdk_errors():
    """Translate the sdk's user-facing errors into API errors."""
    from fiftyone_clipbranches.sdk import errors as e
    from fiftyone_clipbranches.sdk.messages import USER_ERRORS, http_message

    try:
        with database_errors():  # pymongo's: 503 or 507
            yield
    except ApiError:
        raise
    except e.IndexNotFoundError as err:
        raise not_found("index_not_found", http_message(err)) from None
    except e.NoPositivesError as err:
        raise unprocessable("no_positives", http_message(err)) from None
    except e.ContradictoryLabelsError as err:  # every one: the App shows them
        details = {"ids": err.ids[:MAX_IDS]} if err.ids else None
        raise unprocessable(
            "contradictory_labels", http_message(err), details
        ) from None
    except e.IndexFilesMissingError as err:  # the server's trouble, not the request's
        raise ApiError(503, "index_unavailable", http_message(err)) from None
    except e.StaleIndexError as err:
        raise unprocessable("stale_index", http_message(err)) from None
    except (e.CheckpointUnavailableError, e.WeightsUnavailableError) as err:
        raise ApiError(503, "model_unavailable", http_message(err)) from None
    except e.ResultTooLargeError as err:
        raise unprocessable("result_too_large", http_message(err)) from None
    except (
        e.IndexCorruptedError,
        e.IndexPermissionError,
        e.ShardsUnavailableError,
    ) as err:
        raise ApiError(503, "index_unavailable", http_message(err)) from None
    except e.ViewNameTakenError as err:
        raise ApiError(409, "view_exists", http_message(err)) from None
    except e.IndexBusyError as err:  # for now: another process builds or saves
        raise ApiError(503, "busy", http_message(err), retry_after_s=2) from None
    except USER_ERRORS as err:
        raise unprocessable("unprocessable", http_message(err)) from None
