"""What a compute worker process runs: the sdk's search and refinement.

A :class:`SdkWorker` is built once per worker process (see ``service/workers.py``):
it connects to the database FiftyOne's environment names (``FIFTYONE_DATABASE_URI``,
inherited from the service), opens the served datasets and their indexes (codes
memory-mapped, so every worker reads the same pages of the page cache) and warms
what the first request would otherwise pay for (the alive-rows mask and the CLIP
model of each index, the refinement's compiled kernels).
Each task is then answered by the same sdk calls as in-process serving:
``sdk.refine_ranking`` with a ``RefineRequest`` built from the validated body,
``sdk.search_ids`` and ``sdk.next_to_label_ids``; nothing is written to the database.

Tasks are tuples ``(kind, dataset name, dataset id, body, served index dirs)``
(:func:`task`); answers are plain arrays and dicts,
cheap to send back: a refinement over an index the service serves answers index
rows (the service holds the same immutable index directory open and turns only the
rows it pages into ids), any other one the ids themselves. The worker keeps open (pinned) the indexes the service serves
and lets go of those it no longer does (updated, deleted), as the service does.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

logger = logging.getLogger(__name__)


#: What a worker answers: a ``/v1`` endpoint's name, its body validated.
TASK_KINDS = ("search", "refine", "next_to_label")


def task(kind: str, dataset: str, dataset_id: str, body: dict, served) -> tuple:
    """A task answering ``body``, a validated body of ``/v1/{kind}``; ``served``:
    the index directories the service serves now."""
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}")
    return (kind, dataset, dataset_id, body, frozenset(served))


def open_index(dataset, index_key: str):
    """``(config, bundle)`` of index ``index_key`` of ``dataset``, opened in this
    process and kept open (pinned) for the life of the worker."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.bundle import pin_bundle

    config, bundle = sdk.load_index(dataset, index_key)
    pin_bundle(bundle.path)
    return config, bundle


def _index_dir(ds, key: str) -> str | None:
    """Directory of index ``key`` as ``ds`` (in memory) knows it, or None."""
    from fiftyone_clipbranches.sdk import runs

    try:
        return str(runs.get_index_config(ds, key).index_dir)
    except Exception:  # unknown key: the caller reloads the dataset
        return None


def _served_path(path, served: frozenset) -> str | None:
    """The entry of ``served`` naming directory ``path``, or None."""
    from pathlib import Path

    if str(path) in served:
        return str(path)
    target = Path(path).resolve()
    return next((p for p in served if Path(p).resolve() == target), None)


class SdkWorker:
    """The handler of a compute worker process.

    Args:
        datasets: names of the served datasets, opened (with every index) at once;
            None opens every dataset that has an index. Datasets named by a later
            task are opened then.
        threads: threads of each parallel kernel (numba), at most
            ``NUMBA_NUM_THREADS``. One by default: the workers are the
            parallelism, and a parallel launch waits for all its threads to be
            scheduled, which costs more than it gains on a busy machine.
    """

    def __init__(self, datasets: list[str] | None = None, threads: int = 1):
        import fiftyone as fo
        import numba

        from fiftyone_clipbranches import sdk
        from fiftyone_clipbranches.sdk.warm import warm_refinement_or_warn

        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))

        self._datasets: dict[str, tuple[str, object]] = {}
        self._pinned: set[str] = set()
        names = datasets if datasets is not None else fo.list_datasets()
        for name in names:
            try:
                ds = fo.load_dataset(name)
                keys = sdk.list_indexes(ds)
            except Exception as e:  # the service reports it; a task will retry
                logger.warning("worker: dataset %r not opened: %s", name, e)
                continue
            if not keys:
                continue
            self._datasets[name] = (str(ds._doc.id), ds)
            for key in keys:
                self._warm(ds, key)
        seconds = warm_refinement_or_warn()
        if seconds is not None:
            logger.info("worker: the refinement's kernels are ready (%.1f s)", seconds)

    def __call__(self, task: tuple):
        kind, name, dataset_id, body, served = task
        self._unpin_unserved(served)
        key = body["index_key"]
        ds = self._dataset(name, dataset_id, key, served)
        if kind == "refine":
            answer = self._refine(ds, body, served)
        elif kind == "search":
            answer = search_answer(ds, body)
        elif kind == "next_to_label":
            answer = next_to_label_answer(ds, body)
        else:
            raise ValueError(f"unknown task kind {kind!r}")
        self._pin_served(ds, key, served)
        return answer

    def _pin_served(self, ds, key: str, served: frozenset) -> None:
        """Keep the index just used open when the service serves it."""
        from fiftyone_clipbranches.sdk.bundle import pin_bundle

        path = _index_dir(ds, key)
        if path in served and path not in self._pinned:
            pin_bundle(path)
            self._pinned.add(path)

    def _unpin_unserved(self, served: frozenset) -> None:
        from fiftyone_clipbranches.sdk.bundle import unpin_bundle

        for path in self._pinned - served:
            unpin_bundle(path)
            self._pinned.discard(path)

    def _dataset(self, name: str, dataset_id: str, key: str, served: frozenset):
        """The dataset ``name``, reloaded when it was recreated or when index
        ``key`` is not one the service serves (new, or updated elsewhere: the
        service checked the database just before)."""
        import fiftyone as fo

        known = self._datasets.get(name)
        if known is not None and known[0] == dataset_id:
            ds = known[1]
            if _index_dir(ds, key) not in served:
                ds.reload()
            return ds
        # reloaded: FiftyOne hands back this process's copy when it still has one,
        # which may predate the index (a dataset served before it had one)
        ds = fo.load_dataset(name, reload=True)
        self._datasets[name] = (str(ds._doc.id), ds)
        return ds

    def _warm(self, ds, key: str) -> None:
        from fiftyone_clipbranches.sdk.freshness import alive_rows
        from fiftyone_clipbranches.sdk.search import index_clip_model

        try:
            config, bundle = open_index(ds, key)
            self._pinned.add(_index_dir(ds, key))
            alive_rows(ds, bundle.rowmap, str(bundle.path))
        except Exception as e:  # served as unavailable by the service anyway
            logger.warning("worker: index %r of %r not opened: %s", key, ds.name, e)
            return
        if config.clip_model:
            where = f"index {key!r} of dataset {ds.name!r}"
            # said below, in the log's format (a process-wide filter: threads too)
            warnings.filterwarnings("ignore", "load_clip.*RANDOM weights")
            try:
                index_clip_model(config, key, ds.name)
            except Exception as e:  # a text search says why
                logger.info("worker: no CLIP model for %s: %s", where, e)
            else:
                model = config.clip_model
                weights = "" if model.get("pretrained") else " (RANDOM weights)"
                logger.info(
                    "worker: CLIP %s%s of %s loaded", model["name"], weights, where
                )

    @staticmethod
    def _refine(ds, body: dict, served: frozenset) -> tuple:
        """``sdk.refine_ranking``'s answer: ``("rows", index dir, rows int64 (R,),
        scores float64 (R,), stats)`` when the service serves the index directory
        it used, else ``("ids", ids S24 (R,), scores, stats)``."""
        from fiftyone_clipbranches import sdk
        from fiftyone_clipbranches.sdk.request import RefineRequest

        result = sdk.refine_ranking(ds, RefineRequest.from_json(body))
        scores = np.asarray(result.scores, np.float64)
        path = _served_path(result.bundle.path, served)
        if path is not None:
            rows = np.asarray(result.rows, np.int64)
            return "rows", path, rows, scores, result.stats
        return "ids", result.bundle.rowmap.ids[result.rows], scores, result.stats


def search_answer(ds, body: dict) -> tuple[list[str], np.ndarray, int]:
    """``(ids, squared distances, samples added since the build: not searched)``
    of a validated ``/v1/search`` body on dataset ``ds``."""
    from fiftyone_clipbranches import sdk

    ids, sq_dists = sdk.search_ids(
        ds,
        text=body["text"],
        sample_ids=body["sample_ids"],
        k=body["k"],
        index_key=body["index_key"],
    )
    return ids, sq_dists, sdk.unsearched_count(ds, body["index_key"])


def next_to_label_answer(ds, body: dict) -> tuple[list[str], np.ndarray, int]:
    """``(ids, squared distances, samples added since the build: not searched)``
    of a validated ``/v1/next_to_label`` body on dataset ``ds``, its ``exclude``
    an ``S24`` array of every id to leave out."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.request import RefineRequest

    labels = RefineRequest.from_json(body)
    ids, sq_dists = sdk.next_to_label_ids(
        ds,
        exclude=body["exclude"],
        k=body["k"],
        positives=labels.positives,
        negatives=labels.negatives,
        tags=labels.tags,
        index_key=body["index_key"],
    )
    return ids, sq_dists, sdk.unsearched_count(ds, body["index_key"])
