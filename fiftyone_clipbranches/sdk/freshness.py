"""How an index relates to the dataset now: samples added, deleted, unreadable, or
whose filepath changed since their row was embedded."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import fiftyone.core.odm as foo_odm
import numpy as np

from fiftyone_clipbranches.sdk.rowmap import SampleRowMap
from fiftyone_clipbranches.sdk.settings import NO_VECTOR

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
        n_unreadable: samples left out because their image could not be embedded,
            or because they had no vector in the embeddings field when the index
            was built from it (``skip_missing``; their error says which);
            ``update_index`` retries them only with ``retry_failed=True``, once
            their filepath changed or once a vector is stored for them.
        unreadable: up to 100 ``{sample id: error}`` of them.
        n_no_vector: of ``n_unreadable``, those left out for lack of a vector
            (``skip_missing``), not for an image that could not be read.
        n_moved: indexed samples whose filepath changed since their row was
            embedded (their row is still their old image's; ``update_index``
            embeds them again). Counted for indexes built from images (not from
            codes) since filepaths were recorded.
        moved_ids: ids of up to 100 of them.
    """

    n_index: int
    n_dataset: int
    n_added: int
    n_deleted: int
    # the counts are what a printed Freshness says; the ids are read by name
    added_ids: tuple[str, ...] = field(default=(), repr=False)
    n_unreadable: int = 0
    unreadable: dict | None = field(default=None, repr=False)
    n_moved: int = 0
    moved_ids: tuple[str, ...] = field(default=(), repr=False)
    n_no_vector: int = 0

    @property
    def is_stale(self) -> bool:
        return self.n_added > 0 or self.n_deleted > 0 or self.n_moved > 0


def compare(
    root,
    rowmap: SampleRowMap,
    unembeddable: dict | None = None,
    path_digests: np.ndarray | None = None,
    embeddings_field: str | None = None,
) -> Freshness:
    """Exact comparison of the dataset's sample ids with the index (one id scan).

    ``unembeddable``: the index's ``{sample id: {"filepath", "error"}}``; a sample
    listed there with an unchanged filepath counts as unreadable, not added,
    unless ``embeddings_field`` (the index's) holds a vector for it now, which
    ``update_index`` adds. ``path_digests``: the index's :func:`path_digests` of
    its rows' filepaths (None: not recorded, and moves are not looked for).
    """
    if unembeddable or path_digests is not None:
        ids, paths = root.values(["id", "filepath"])
    else:
        ids, paths = root.values("id"), None
    rows, found = rowmap.rows_of(ids)
    moved = []
    if path_digests is not None:
        moved = [ids[i] for i in moved_at(path_digests, rows, found, paths)]
    missing = np.flatnonzero(~found)
    added, unreadable, n_no_vector = [], {}, 0
    for i in missing:
        sid = ids[i]
        entry = (unembeddable or {}).get(sid)
        if entry is not None and entry.get("filepath") == paths[i]:
            unreadable[sid] = entry.get("error", "")
            n_no_vector += entry.get("reason") == NO_VECTOR
        else:
            added.append(sid)
    if unreadable and embeddings_field:
        for sid in embedded_since(root, list(unreadable), embeddings_field):
            n_no_vector -= unembeddable[sid].get("reason") == NO_VECTOR
            del unreadable[sid]
            added.append(sid)
    return Freshness(
        n_index=len(rowmap),
        n_dataset=len(ids),
        n_added=len(added),
        n_deleted=len(rowmap) - int(found.sum()),
        added_ids=tuple(added[:100]),
        n_unreadable=len(unreadable),
        unreadable=dict(list(unreadable.items())[:100]),
        n_moved=len(moved),
        moved_ids=tuple(moved[:100]),
        n_no_vector=n_no_vector,
    )


def path_digests(paths) -> np.ndarray:
    """uint64 ``(n,)``: an 8-byte BLAKE2b digest of each filepath (what an index
    keeps of the file each row was embedded from)."""
    joined = b"".join(
        hashlib.blake2b(str(p).encode("utf-8", "surrogatepass"), digest_size=8).digest()
        for p in paths
    )
    return np.frombuffer(joined, dtype="<u8").copy()


def moved_at(digests: np.ndarray, rows, found, paths) -> np.ndarray:
    """Positions of the samples whose index row (``rows`` where ``found``, as
    ``SampleRowMap.rows_of`` gives them) records another filepath digest
    (``digests``, by row) than that of their filepath now (``paths``)."""
    at = np.flatnonzero(found)
    if not len(at):
        return at
    now = path_digests([paths[i] for i in at])
    return at[np.asarray(digests)[rows[at]] != now]


def digests_of(root, ids, paths_by_id: dict | None = None) -> np.ndarray:
    """:func:`path_digests` of the filepaths of samples ``ids`` of dataset ``root``
    now (``paths_by_id``: ``{id: filepath}`` already read; else one read of the
    dataset's ids and filepaths)."""
    if paths_by_id is None:
        paths_by_id = dict(zip(*root.values(["id", "filepath"]), strict=True))
    return path_digests([paths_by_id.get(sid, "") for sid in ids])


def at_build(n_index: int, unembeddable: dict) -> Freshness:
    """The comparison right after a build of ``n_index`` rows that left out the
    samples of ``unembeddable`` (``{sample id: {"filepath", "error"}}``): no scan."""
    errors = {sid: entry.get("error", "") for sid, entry in unembeddable.items()}
    return Freshness(
        n_index=n_index,
        n_dataset=n_index + len(errors),
        n_added=0,
        n_deleted=0,
        n_unreadable=len(errors),
        unreadable=dict(list(errors.items())[:100]),
        n_no_vector=sum(e.get("reason") == NO_VECTOR for e in unembeddable.values()),
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
    mask = np.zeros(len(rowmap), dtype=bool)
    ids = sample_id_array(root)
    rows, found = rowmap.rows_of_array(ids)
    mask[rows[found]] = True
    if mask.all():
        mask = None
    with _alive_lock:
        _alive_cache.pop(key, None)
        _alive_cache[key] = (stamp, mask)
        while len(_alive_cache) > _ALIVE_CACHE_SIZE:
            _alive_cache.pop(next(iter(_alive_cache)))
    return mask


#: Bytes of a ``{"_id": ObjectId}`` BSON document: length, type 7, "_id" and NUL,
#: the 12 bytes of the id, NUL.
_ID_DOC = 22


def sample_id_array(root) -> np.ndarray:
    """S24 ``(n,)`` ids of every sample of dataset ``root``, read as raw BSON batches
    of ``{"_id": ...}`` documents (no Python object per sample: about 10x faster
    than ``values("id")`` at millions of samples)."""
    coll = foo_odm.get_db_conn()[root._sample_collection_name]
    chunks = []
    for batch in coll.find_raw_batches({}, {"_id": 1}, batch_size=100_000):
        raw = np.frombuffer(batch, dtype=np.uint8)
        docs = raw.reshape(-1, _ID_DOC) if raw.size % _ID_DOC == 0 else None
        if docs is None or not (
            (docs[:, 0] == _ID_DOC).all() and (docs[:, 4] == 7).all()
        ):
            return np.asarray(root.values("id"), dtype="S24")  # unexpected layout
        chunks.append(docs[:, 9:21])
    if not chunks:
        return np.zeros(0, dtype="S24")
    oids = np.ascontiguousarray(np.concatenate(chunks))
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((oids.shape[0], 24), dtype=np.uint8)
    hexed[:, 0::2] = digits[oids >> 4]
    hexed[:, 1::2] = digits[oids & 15]
    return hexed.view("S24").ravel()


def unindexed_count(
    root, bundle, alive: np.ndarray | None, embeddings_field: str | None = None
) -> int:
    """How many samples of ``root`` the loaded index ``bundle`` holds no row of
    and may yet hold (added since the build; not those whose image could not be
    read then, or which had no vector: ``update_index`` retries them only when
    asked, or once ``embeddings_field``, the index's, holds a vector for them),
    given its rows' ``alive`` mask (:func:`alive_rows`)."""
    n_alive = len(bundle.index) if alive is None else int(np.count_nonzero(alive))
    n = sample_count(root) - n_alive
    if n > 0 and bundle.unembeddable:
        has_field = embeddings_field and root.has_sample_field(embeddings_field)
        for part in _batches(list(bundle.unembeddable)):
            still = root.select(part)  # left out, and still without a vector
            n -= len(still.exists(embeddings_field, False) if has_field else still)
    return max(n, 0)


def embedded_since(root, ids: list[str], embeddings_field: str | None) -> list[str]:
    """Of samples ``ids`` of ``root`` (left out of an index: no vector, or an
    image that could not be read), those ``embeddings_field`` holds a vector for
    now (stored since, by the user say): ``update_index`` adds them."""
    if not ids or not embeddings_field or not root.has_sample_field(embeddings_field):
        return []
    return [
        sid
        for part in _batches(ids)
        for sid in root.select(part).exists(embeddings_field).values("id")
    ]


#: Ids per database query: a query document holding a million ids is too large.
ID_BATCH = 100_000


def _batches(ids: list[str]):
    for start in range(0, len(ids), ID_BATCH):
        yield ids[start : start + ID_BATCH]


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


def searchable_rows(samples, ds, bundle) -> np.ndarray | None:
    """bool mask over the rows of ``bundle``'s index (of the root dataset ``ds``):
    samples that still exist and, when ``samples`` is a view, are in it (what a
    search or a refinement of ``samples`` may return); None when every row may
    be."""
    allowed = alive_rows(ds, bundle.rowmap, str(bundle.path))
    if samples is ds:
        return allowed
    in_view = np.zeros(len(bundle.index), dtype=bool)
    rows, found = bundle.rowmap.rows_of_array(
        np.asarray(samples.values("id"), dtype="S24")
    )
    in_view[rows[found]] = True
    return in_view if allowed is None else in_view & allowed
