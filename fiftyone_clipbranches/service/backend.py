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
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from fiftyone_clipbranches.service.errors import ApiError, not_found, unprocessable
from fiftyone_clipbranches.service.results import Ranking, StoredResult

logger = logging.getLogger(__name__)

#: Most samples a saved view may select by id (a saved view is one database
#: document, limited to 16 MB).
_ID_DTYPE = "S24"


@dataclass
class _Dataset:
    name: str
    dataset: object
    keys: list[str]
    manifests: dict[str, dict] = field(default_factory=dict)
    save_lock: threading.Lock = field(default_factory=threading.Lock)


class SdkBackend:
    """Datasets and indexes served, and the sdk calls behind each endpoint.

    Args:
        datasets: names of the FiftyOne datasets to serve; None serves every dataset
            that has at least one clipbranches index when :meth:`load` runs.
    """

    def __init__(self, datasets: Iterable[str] | None = None):
        self.dataset_names = None if datasets is None else list(datasets)
        self._datasets: dict[str, _Dataset] = {}
        self._ready = threading.Event()
        self._load_error: str | None = None

    def load(self) -> None:
        """Load each dataset and every index of it (codes memory-mapped) once."""
        import fiftyone as fo

        from fiftyone_clipbranches import sdk

        try:
            names = self.dataset_names
            if names is None:
                names = [n for n in fo.list_datasets() if _has_indexes(fo, sdk, n)]
            missing = sorted(set(names).difference(fo.list_datasets()))
            if missing:
                raise ValueError(
                    f"dataset(s) {missing} do not exist; see `fiftyone datasets list`"
                )
            loaded = {}
            for name in names:
                ds = fo.load_dataset(name)
                keys = sdk.list_indexes(ds)
                entry = _Dataset(name, ds, keys)
                for key in keys:
                    start = time.perf_counter()
                    entry.manifests[key] = _describe(sdk, ds, key)
                    logger.info(
                        "loaded index %r of %r in %.2f s",
                        key,
                        name,
                        time.perf_counter() - start,
                    )
                loaded[name] = entry
            self._datasets = loaded
            self._ready.set()
        except Exception as e:
            self._load_error = str(e)
            raise

    @property
    def load_error(self) -> str | None:
        return self._load_error

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def n_indexes(self) -> int:
        return sum(len(d.keys) for d in self._datasets.values())

    def list_datasets(self) -> list[dict]:
        return [self._dataset_json(d) for d in self._datasets.values()]

    def dataset_info(self, name: str) -> dict:
        return self._dataset_json(self._entry(name))

    def index_info(self, name: str, key: str) -> dict:
        entry = self._entry(name)
        self._check_key(entry, key)
        return entry.manifests[key]

    def search(self, req: dict) -> Ranking:
        from fiftyone_clipbranches import sdk

        entry = self._entry(req["dataset"])
        key = req["index_key"]
        self._check_key(entry, key)
        if req["sample_ids"] is not None:
            self._check_ids(entry, key, req["sample_ids"], "sample_ids")
        start = time.perf_counter()
        with _sdk_errors():
            ids, sq_dists = sdk.search_ids(
                entry.dataset,
                text=req["text"],
                sample_ids=req["sample_ids"],
                k=req["k"],
                index_key=key,
            )
        elapsed = time.perf_counter() - start
        stats = {
            "query": "text" if req["text"] is not None else "samples",
            "n_results": len(ids),
            "score": "minus squared L2 distance between uint8 codes",
            "timings": {"search_s": round(elapsed, 6)},
        }
        return _ranking(ids, -np.asarray(sq_dists, np.float64), stats)

    def refine(self, req: dict) -> Ranking:
        from fiftyone_clipbranches import sdk

        entry = self._entry(req["dataset"])
        key = req["index_key"]
        self._check_key(entry, key)
        by_ids = req["positives"] is not None or req["negatives"] is not None
        if by_ids:
            for what in ("positives", "negatives"):
                if req[what]:
                    self._check_ids(entry, key, req[what], what)
        with _sdk_errors():
            result = sdk.refine_ranking(
                entry.dataset,
                positives=(req["positives"] or []) if by_ids else None,
                negatives=(req["negatives"] or []) if by_ids else None,
                tags=_tags(req),
                model=req["model"],
                random_negatives=req["random_negatives"],
                negative_weight=req["negative_weight"],
                index_key=key,
                neighbours_per_positive=_neighbours(req["neighbours_per_positive"]),
                query=req["query"],
            )
            n_unindexed = max(entry.dataset.count() - result.stats["n_index"], 0)
        s = result.stats
        stats = {
            "model": s["model"],
            "label_source": s["label_source"],
            "n_positives": s["n_pos"],
            "n_negatives": s["n_neg"],
            "n_random_negatives": s["n_random_neg"],
            "n_neighbour_positives": s["n_neighbour_pos"],
            "n_results": s["n_results"],
            "n_index": s["n_index"],
            "n_unindexed": n_unindexed,
            "timings": {
                "train_s": _seconds(s["train_ms"]),
                "query_s": _seconds(s["query_ms"]),
                "sdk_s": _seconds(s["total_ms"]),
            },
        }
        rows = result.rows
        rows.setflags(write=False)
        return Ranking(rows, result.scores, result.bundle.rowmap.ids_of, stats)

    def save_view(self, result: StoredResult, name: str, overwrite: bool) -> dict:
        from fiftyone_clipbranches import sdk
        from fiftyone_clipbranches.sdk.settings import MAX_SELECTED_SAMPLES

        entry = self._entry(result.dataset)
        n = len(result.ranking)
        if n > MAX_SELECTED_SAMPLES:
            raise unprocessable(
                "result_too_large",
                f"the result holds {n} samples; a saved view can select at most "
                f"{MAX_SELECTED_SAMPLES}: refine further (more negatives) first",
            )
        ids = result.ranking.ids_of(result.ranking.rows)
        ds = entry.dataset
        with entry.save_lock:
            if ds.has_saved_view(name) and not overwrite:
                raise ApiError(
                    409,
                    "view_exists",
                    f"dataset {entry.name!r} already has a saved view {name!r}; "
                    "pass overwrite=true or choose another name",
                )
            with _sdk_errors():
                saved = sdk.save_view(
                    ds, name, ds.select(ids, ordered=True), overwrite=overwrite
                )
        return {"dataset": entry.name, "name": saved, "n_samples": n}

    def _entry(self, name: str) -> _Dataset:
        if not self._ready.is_set():
            raise ApiError(503, "not_ready", "indexes are still loading; retry shortly")
        entry = self._datasets.get(name)
        if entry is None:
            raise not_found(
                "dataset_not_found",
                f"dataset {name!r} is not served here; GET /v1/datasets lists those "
                "that are",
            )
        return entry

    @staticmethod
    def _check_key(entry: _Dataset, key: str) -> None:
        if key not in entry.keys:
            raise not_found(
                "index_not_found",
                f"dataset {entry.name!r} has no index {key!r} (served: "
                f"{entry.keys or 'none'})",
            )

    @staticmethod
    def _check_ids(entry: _Dataset, key: str, ids: list[str], what: str) -> None:
        from fiftyone_clipbranches import sdk

        with _sdk_errors():
            _, bundle = sdk.load_index(entry.dataset, key)
        _, found = bundle.rowmap.rows_of(ids)
        if not found.all():
            missing = [i for i, hit in zip(ids, found) if not hit]
            raise unprocessable(
                "unknown_sample_ids",
                f"{len(missing)} of {what} are not samples of index {key!r} (unknown "
                "ids, or samples added after the build)",
                {"field": what, "ids": missing[:100]},
            )

    @staticmethod
    def _dataset_json(entry: _Dataset) -> dict:
        return {
            "name": entry.name,
            "indexes": [entry.manifests[k] for k in entry.keys],
        }


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
    index = bundle.index
    manifest = {
        k: v for k, v in bundle.manifest.items() if k not in ("path", "index_dir")
    }
    return {
        **info,
        "supports_text": bool(config.clip_model) and bundle.encoder is not None,
        "nbytes": int(index.nbytes),
        "bytes_per_point": float(index.bytes_per_point),
        "manifest": manifest,
    }


def _tags(req: dict) -> tuple[str, str]:
    from fiftyone_clipbranches.sdk.settings import DEFAULT_TAGS

    return (
        req["positive_tag"] or DEFAULT_TAGS[0],
        req["negative_tag"] or DEFAULT_TAGS[1],
    )


def _ranking(ids, scores, stats: dict) -> Ranking:
    id_array = np.asarray(list(ids), dtype=_ID_DTYPE)
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


def _neighbours(value: int | None) -> int | None:
    return None if value is None else int(value)


def _seconds(ms) -> float | None:
    return None if ms is None else round(float(ms) / 1e3, 6)


@contextlib.contextmanager
def _sdk_errors():
    """Translate the sdk's user-facing errors into API errors."""
    from fiftyone_clipbranches.sdk import errors as e

    try:
        yield
    except ApiError:
        raise
    except e.IndexNotFoundError as err:
        raise not_found("index_not_found", str(err)) from None
    except e.NoPositivesError as err:
        raise unprocessable("no_positives", str(err)) from None
    except e.ContradictoryLabelsError as err:
        raise unprocessable("contradictory_labels", str(err)) from None
    except e.StaleIndexError as err:
        raise unprocessable("stale_index", str(err)) from None
    except e.ResultTooLargeError as err:
        raise unprocessable("result_too_large", str(err)) from None
    except e.ClipBranchesError as err:
        raise unprocessable("unprocessable", str(err)) from None
    except RuntimeError as err:
        if type(err).__name__ == "WeightsUnavailableError":
            raise ApiError(503, "model_unavailable", str(err)) from None
        raise
    except ValueError as err:
        raise unprocessable("unprocessable", str(err)) from None
