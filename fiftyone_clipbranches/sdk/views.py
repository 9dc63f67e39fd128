"""Results written back to FiftyOne: score fields and saved views.

Guarantees (a process killed at any instant, ``kill -9`` included):

- Saved views. A new name is inserted by FiftyOne (view document first, then the
  dataset's reference to it: a kill in between leaves an unreferenced document,
  never a lost view). Overwriting a view of the same name rewrites the
  ``view_stages`` of its existing document in one single-document update, so at every
  instant the name loads either the old or the new view. A name whose slug is held by
  a differently named view is refused (:class:`ViewNameTakenError`), never deleted.
- Score fields. A round (the ids and scores, and the view to save with them) is
  journaled in a small collection before the first sample is written and removed
  after the last write. A round whose writer died is replayed by
  :func:`recover_unfinished_writes` (every refine calls it first), which leaves the
  field in the new state; until then the journal records that the field is partial.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime

import fiftyone as fo
import numpy as np
from bson import Binary, ObjectId, json_util

from fiftyone_clipbranches.sdk.errors import ViewNameTakenError
from fiftyone_clipbranches.sdk.rowmap import check_sample_ids

#: Collection of the FiftyOne database journaling score writes in progress.
JOURNAL_COLLECTION = "clipbranches.score_writes"
#: Entries per journal chunk: 20 bytes each keeps a chunk far below 16 MB.
_CHUNK = 400_000
#: A round written from another host is presumed dead after this long.
_FOREIGN_WRITER_TIMEOUT_S = 3600.0


def save_view(dataset, name: str, view, *, overwrite: bool = True, description=None):
    """Save ``view`` on ``dataset``'s root dataset as ``name``; returns the name.

    ``overwrite`` replaces a view of exactly this name, atomically (readers see the
    old or the new view). A differently named view whose slug is the same (FiftyOne
    treats "My Dogs" and "my-dogs" as one name) is never replaced.

    Raises:
        ViewNameTakenError: the slug of ``name`` is used by another view, or
            ``overwrite`` is False and ``name`` exists.
        ValueError: an empty name, or a view of another dataset.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a saved view needs a non-empty name")
    root = dataset._root_dataset
    if view._root_dataset is not root:
        raise ValueError("the view does not belong to this dataset")
    name = name.strip()
    existing = _same_name_view(root, name)
    if existing is None:
        root.save_view(name, view, description=description, overwrite=False)
    elif not overwrite:
        raise ViewNameTakenError(
            f"dataset {root.name!r} already has a saved view {name!r}: pass "
            "overwrite=True to replace it, or choose another name"
        )
    else:
        _replace_view_stages(root, existing, view, description)
    return name


def _same_name_view(root, name: str):
    """The saved-view document named ``name``, or None; raises when its slug is
    taken by a differently named view."""
    from fiftyone.core.utils import to_slug

    try:
        slug = to_slug(name)
    except ValueError as exc:
        raise ValueError(f"{name!r} cannot name a saved view: {exc}") from None
    root._doc.reload("saved_views")
    same = None
    for doc in root._doc.get_saved_views():
        if doc.name == name:
            same = doc
        elif doc.slug == slug:
            raise ViewNameTakenError(
                f"the name {name!r} collides with saved view {doc.name!r} of dataset "
                f"{root.name!r} (FiftyOne gives both the slug {slug!r}); choose "
                "another name"
            )
    return same


def _replace_view_stages(root, doc, view, description) -> None:
    stages = [json_util.dumps(s) for s in view._serialize(include_uuids=False)]
    was_generated = any("_state" in s for s in doc.view_stages)
    update = {"view_stages": stages, "last_modified_at": datetime.utcnow()}
    if description is not None:
        update["description"] = description
    if view._is_generated:
        view._dataset._doc.persistent = True
        view._dataset.save()
    old_doc = type(doc)._from_son(doc.to_mongo()) if was_generated else None
    found = doc._get_collection().update_one({"_id": doc.id}, {"$set": update})
    if found.matched_count != 1:  # deleted meanwhile: save it anew
        root.save_view(doc.name, view, description=description, overwrite=False)
    root._doc.reload("saved_views")
    view._set_name(doc.name)
    if old_doc is not None:
        _release_generated_dataset(root, old_doc)


def _release_generated_dataset(root, old_doc) -> None:
    """Let FiftyOne garbage-collect the backing dataset of a replaced patches/frames
    view (what ``delete_saved_view`` does)."""
    try:
        old_view = root._load_saved_view_from_doc(old_doc)
    except Exception:  # noqa: BLE001 - the backing dataset is already gone
        return
    old_view._dataset._doc.persistent = False
    old_view._dataset.save()


def write_scores(dataset, score_field: str, ids: list[str], scores) -> None:
    """Set ``score_field`` (a FloatField) to ``scores`` on ``ids``; clear it on every
    other sample that still holds a score from an earlier round (journaled: see the
    module docstring)."""
    write_result(dataset, score_field, ids, scores)


def write_result(
    dataset,
    score_field: str | None,
    ids: list[str],
    scores,
    saved_view=None,
    n_view=None,
) -> None:
    """Write a round: the scores of ``ids`` (float ``(len(ids),)``) into
    ``score_field`` and, when ``saved_view`` is set, save ``select(ids[:n_view],
    ordered=True)`` as that view. A kill at any instant leaves a journal that
    :func:`recover_unfinished_writes` replays."""
    root = dataset._root_dataset
    if not score_field:
        if saved_view:
            save_view(root, saved_view, _ordered(root, ids, n_view))
        return
    ensure_score_field(root, score_field)
    if saved_view:
        _same_name_view(root, saved_view.strip())  # refuse a taken name before writing
    scores = np.asarray(scores, dtype=np.float64)
    journal = _journal(root)
    _drop_dead_rounds(journal, root, score_field)
    round_id = _journal_round(
        journal, root, score_field, ids, scores, saved_view, n_view
    )
    _apply_round(root, score_field, ids, scores, saved_view, n_view)
    journal.delete_one({"_id": round_id})
    journal.delete_many({"round": round_id})


def recover_unfinished_writes(dataset) -> list[str]:
    """Finish the score writes (and view saves) of rounds whose writer died.

    Cheap when there is nothing to do (one query of a near-empty collection).

    Returns:
        the score fields that were repaired.
    """
    root = dataset._root_dataset
    journal = _journal(root)
    heads = list(journal.find({"dataset_id": root._doc.id, "state": {"$exists": True}}))
    if not heads:
        return []
    repaired = []
    by_field: dict[str, list[dict]] = {}
    for head in heads:
        by_field.setdefault(head["field"], []).append(head)
    for field, rounds in by_field.items():
        if not all(_writer_dead(h) for h in rounds):
            continue  # a live writer leaves the field in its own full state
        rounds.sort(key=lambda h: h["_id"].generation_time)
        latest = rounds[-1]
        if latest["state"] == "writing":
            ids, scores = _read_round(journal, latest)
            if root.get_field(field) is not None:
                n_view = latest.get("n_view")
                _apply_round(root, field, ids, scores, latest.get("saved_view"), n_view)
                repaired.append(field)
        for head in rounds:
            journal.delete_one({"_id": head["_id"]})
            journal.delete_many({"round": head["_id"]})
    return repaired


def _apply_round(root, field, ids, scores, saved_view, n_view) -> None:
    # Idempotent: replaying it from any point of an interrupted run gives the new state.
    scored = set(root.exists(field).values("id"))
    if ids:
        root.set_values(field, dict(zip(ids, scores.tolist())), key_field="id")
    stale = scored.difference(ids)
    if stale:
        root.select(list(stale)).clear_sample_field(field)
    if saved_view:
        save_view(root, saved_view, _ordered(root, ids, n_view))


def _ordered(root, ids, n_view):
    return root.select(list(ids if n_view is None else ids[:n_view]), ordered=True)


def _journal(root):
    from fiftyone.core.odm import get_db_conn

    return get_db_conn()[JOURNAL_COLLECTION]


def _journal_round(journal, root, field, ids, scores, saved_view, n_view) -> ObjectId:
    """Journal a round: a head marked "journaling", its chunks, then "writing"."""
    import psutil

    check_sample_ids(ids, "result ids")
    round_id = ObjectId()
    journal.insert_one(
        {
            "_id": round_id,
            "dataset_id": root._doc.id,
            "field": field,
            "state": "journaling",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_started": psutil.Process().create_time(),
            "n": len(ids),
            "saved_view": saved_view,
            "n_view": n_view,
        }
    )
    raw_ids = bytes.fromhex("".join(ids))
    raw_scores = scores.astype("<f8").tobytes()
    parts = [
        {
            "round": round_id,
            "part": j,
            "ids": Binary(raw_ids[12 * s : 12 * (s + _CHUNK)]),
            "scores": Binary(raw_scores[8 * s : 8 * (s + _CHUNK)]),
        }
        for j, s in enumerate(range(0, len(ids), _CHUNK))
    ]
    if parts:
        journal.insert_many(parts)
    journal.update_one({"_id": round_id}, {"$set": {"state": "writing"}})
    return round_id


def _read_round(journal, head) -> tuple[list[str], np.ndarray]:
    parts = sorted(journal.find({"round": head["_id"]}), key=lambda p: p["part"])
    raw_ids = b"".join(bytes(p["ids"]) for p in parts)
    scores = np.frombuffer(b"".join(bytes(p["scores"]) for p in parts), "<f8")
    ids = np.frombuffer(raw_ids.hex().encode("ascii"), dtype="S24")
    if ids.size != head["n"] or scores.size != head["n"]:
        return [], np.zeros(0)  # unreadable journal: clear the field (no stale scores)
    return np.char.decode(ids, "ascii").tolist(), scores.astype(np.float64)


def _drop_dead_rounds(journal, root, field) -> None:
    """Forget unfinished rounds of ``field`` by dead writers: this round supersedes."""
    for head in journal.find({"dataset_id": root._doc.id, "field": field}):
        if _writer_dead(head):
            journal.delete_one({"_id": head["_id"]})
            journal.delete_many({"round": head["_id"]})


def _writer_dead(head) -> bool:
    import psutil

    if head.get("host") != socket.gethostname():
        age = time.time() - head["_id"].generation_time.timestamp()
        return age > _FOREIGN_WRITER_TIMEOUT_S
    try:
        proc = psutil.Process(int(head["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False
    return abs(started - float(head["pid_started"])) > 1e-3


def ensure_score_field(root, score_field: str) -> None:
    if not isinstance(score_field, str) or not score_field.isidentifier():
        raise ValueError(f"score field name {score_field!r} must be an identifier")
    field = root.get_field(score_field)
    if field is None:
        root.add_sample_field(score_field, fo.FloatField)
    elif not isinstance(field, fo.FloatField):
        raise ValueError(
            f"field {score_field!r} exists and is a {type(field).__name__}, not a "
            "FloatField: choose another score_field"
        )
