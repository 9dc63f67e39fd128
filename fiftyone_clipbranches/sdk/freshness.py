"""How an index relates to the dataset now: samples added, deleted or unreadable."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import fiftyone.core.odm as foo_odm
import numpy as np

from fiftyone_clipbranches.sdk.rowmap import SampleRowMap

_alive_cache: dict[tuple[str, str], tuple[object, np.ndarray | None]] = {}
_alive_lock = threading.Lock()
#: (dataset, index directory) pairs whose masks are kept (oldest dropped first).
_ALIVE_CACHE_SIZE = 16


@dataclass(frozen=True)
class Freshness:
    """Comparison of an index with its dataset.

    Attributes:
        n_index: rows in the index.
        n_dataset: samples in the dataset now.
        n_added: samples of the dataset that the index does not hold (those whose
            image could not be embedded excepted: see ``n_unreadable``).
        n_deleted: index rows whose sample no longer exists.
        added_ids: ids of up to 100 of the added samples.
        n_unreadable: samples left out because their image could not be embedded
            (``update_index`` retries them only with ``retry_failed=True`` or once
            their filepath changed).
        unreadable: up to 100 ``{sample id: error}`` of them.
    """

    n_index: int
    n_dataset: int
    n_added: int
    n_deleted: int
    added_ids: tuple[str, ...] = ()
    n_unreadable: int = 0
    unreadable: dict | None = None

    @property
    def is_stale(self) -> bool:
        return self.n_added > 0 or self.n_deleted > 0


def compare(root, rowmap: SampleRowMap, unembeddable: dict | None = None) -> Freshness:
    """Exact comparison of the dataset's sample ids with the index (one id scan).

    ``unembeddable``: the index's ``{sample id: {"filepath", "error"}}``; a sample
    listed there with an unchanged filepath counts as unreadable, not added.
    """
    if unembeddable:
        ids, paths = root.values(["id", "filepath"])
    else:
        ids, paths = root.values("id"), None
    found = rowmap.contains(ids)
    missing = np.flatnonzero(~found)
    added, unreadable = [], {}
    for i in missing:
        sid = ids[i]
        entry = (unembeddable or {}).get(sid)
        if entry is not None and entry.get("filepath") == paths[i]:
            unreadable[sid] = entry.get("error", "")
        else:
            added.append(sid)
    return Freshness(
        n_index=len(rowmap),
        n_dataset=len(ids),
        n_added=len(added),
        n_deleted=len(rowmap) - int(found.sum()),
        added_ids=tuple(added[:100]),
        n_unreadable=len(unreadable),
        unreadable=dict(list(unreadable.items())[:100]),
    )


def alive_rows(root, rowmap: SampleRowMap, cache_key: str) -> np.ndarray | None:
    """bool ``(N,)`` mask of index rows whose sample is in ``root``, or None if all
    are.

    Computed from the dataset's ids the first time an index directory is used with
    a dataset (a clone, or ids given to ``build_index_from_codes``, may hold fewer
    samples than the index), then again whenever the dataset's
    ``last_deletion_at`` or sample count, read fresh from the database, changes
    (so deletions by another process are noticed); otherwise cached.
    """
    key = (str(root._doc.id), cache_key)
    stamp = _dataset_stamp(root)
    with _alive_lock:
        cached = _alive_cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    rows, found = rowmap.rows_of(root.values("id"))
    mask = np.zeros(len(rowmap), dtype=bool)
    mask[rows[found]] = True
    if mask.all():
        mask = None
    with _alive_lock:
        _alive_cache.pop(key, None)
        _alive_cache[key] = (stamp, mask)
        while len(_alive_cache) > _ALIVE_CACHE_SIZE:
            _alive_cache.pop(next(iter(_alive_cache)))
    return mask


def sample_count(root) -> int:
    """The number of samples of dataset ``root`` from the collection's metadata
    (no scan; exact after a clean shutdown of the database)."""
    return foo_odm.get_db_conn()[
        root._sample_collection_name
    ].estimated_document_count()


def _dataset_stamp(root) -> tuple:
    """What changes when samples leave ``root``: its last deletion time and its
    sample count (both read from the database, cheaply)."""
    db = foo_odm.get_db_conn()
    doc = db.datasets.find_one({"_id": root._doc.id}, {"last_deletion_at": 1})
    count = db[root._sample_collection_name].estimated_document_count()
    return (doc or {}).get("last_deletion_at"), count
