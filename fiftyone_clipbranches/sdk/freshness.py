"""How an index relates to the dataset now: samples added or deleted since the build."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import fiftyone.core.odm as foo_odm
import numpy as np

from fiftyone_clipbranches.sdk.rowmap import SampleRowMap

_alive_cache: dict[str, tuple[object, np.ndarray]] = {}
_alive_lock = threading.Lock()


@dataclass(frozen=True)
class Freshness:
    """Comparison of an index with its dataset.

    Attributes:
        n_index: rows in the index.
        n_dataset: samples in the dataset now.
        n_added: samples of the dataset that the index does not hold.
        n_deleted: index rows whose sample no longer exists.
        added_ids: ids of up to 100 of the added samples.
    """

    n_index: int
    n_dataset: int
    n_added: int
    n_deleted: int
    added_ids: tuple[str, ...] = ()

    @property
    def is_stale(self) -> bool:
        return self.n_added > 0 or self.n_deleted > 0


def compare(root, rowmap: SampleRowMap) -> Freshness:
    """Exact comparison of the dataset's sample ids with the index (one id scan)."""
    ids = root.values("id")
    found = rowmap.contains(ids)
    added = [sid for sid, hit in zip(ids, found) if not hit]
    return Freshness(
        n_index=len(rowmap),
        n_dataset=len(ids),
        n_added=len(added),
        n_deleted=len(rowmap) - int(found.sum()),
        added_ids=tuple(added[:100]),
    )


def alive_rows(root, rowmap: SampleRowMap, cache_key: str) -> np.ndarray | None:
    """bool ``(N,)`` mask of index rows whose sample still exists, or None if all do.

    Deletions are detected through the dataset's ``last_deletion_at``, read fresh
    from the database, so another process deleting samples is noticed; the mask
    is recomputed only when that timestamp changes.
    """
    stamp = _last_deletion_at(root)
    if stamp is None:
        return None
    with _alive_lock:
        cached = _alive_cache.get(cache_key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    rows, found = rowmap.rows_of(root.values("id"))
    mask = np.zeros(len(rowmap), dtype=bool)
    mask[rows[found]] = True
    if mask.all():
        mask = None
    with _alive_lock:
        _alive_cache[cache_key] = (stamp, mask)
    return mask


def _last_deletion_at(root):
    doc = foo_odm.get_db_conn().datasets.find_one(
        {"_id": root._doc.id}, {"last_deletion_at": 1}
    )
    return (doc or {}).get("last_deletion_at")
