"""Results written back to FiftyOne: score fields and saved views.

Guarantees (a process killed at any instant, ``kill -9`` included):

- Saved views. A new name is inserted by FiftyOne (view document first, then the
  dataset's reference to it: a kill in between leaves an unreferenced document,
  never a lost view). Overwriting a view of the same name rewrites the
  ``view_stages`` of its existing document in one single-document update, so at every
  instant the name loads either the old or the new view. A name whose slug is held by
  a differently named view is refused (:class:`ViewNameTakenError`), never deleted.
  Only a view clipbranches saved (its description starts with :data:`VIEW_MARK`) is
  replaced by a later save under its name; any other view only with
  ``overwrite=True``.
- Score field ownership. A score field clipbranches made carries
  :data:`SCORE_FIELD_MARK` in its ``info``; a float field it did not make (a user's
  own, whatever its name) is never written. The unmarked default field of an
  earlier version is refused too (it cannot be told from a user's own), with the
  way to mark it.
- Score fields. A round (the ids and scores, and the view to save with them) is
  journaled in a small collection before the first sample is written and removed
  after the last write. A round whose writer died (or, in this process, whose write
  failed) is replayed by :func:`recover_unfinished_writes` (every refine calls it
  first), which leaves the field in the new state; until then the journal records
  that the field is partial.
- Background writes (``write_result(..., wait=False)``, the panel's path): the round
  is journaled before the call returns and written by one writer thread per
  (dataset, field), rounds in order; a round superseded before its write starts is
  dropped (the next one writes the whole field). :func:`wait_for_writes` waits for
  them; the thread is not a daemon, so a process exits only after its writes.

Cost of a write: the samples holding a score are found by a database index on the
score field (created on first use), scores are set by one unordered bulk write of
the samples whose score changed, and stale ones cleared by ``update_many``: no scan
of the dataset.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from datetime import datetime

import fiftyone as fo
import numpy as np
from bson import Binary, ObjectId, json_util
from pymongo import UpdateOne

from fiftyone_clipbranches.sdk.errors import ViewNameTakenError
from fiftyone_clipbranches.sdk.messages import short
from fiftyone_clipbranches.sdk.processes import (
    holder_gone,
    is_this_process,
    this_process,
)
from fiftyone_clipbranches.sdk.rowmap import check_sample_ids
from fiftyone_clipbranches.sdk.runs import root_dataset

#: Collection of the FiftyOne database journaling score writes in progress.
JOURNAL_COLLECTION = "clipbranches.score_writes"
#: Longest a round waits for another round's write of the same score field.
SCORE_FIELD_WAIT_S = 300.0
#: Claims on score fields (``sdk.claims``) are named this, then the field.
SCORE_CLAIM_PREFIX = "scores:"
#: Claims on saved views' names are named this, then the name's slug: one save of
#: a name at a time, across processes, checks and writes it.
VIEW_CLAIM_PREFIX = "view:"
#: Longest a save waits for another save of the same name.
VIEW_SAVE_WAIT_S = 60.0
#: Entries per journal chunk: 20 bytes each keeps a chunk far below 16 MB.
_CHUNK = 400_000
#: A round written from another host is presumed dead after this long.
_FOREIGN_WRITER_TIMEOUT_S = 3600.0
#: Updates per bulk write / ids per ``$in`` of a clearing ``update_many``.
_WRITE_BATCH = 20_000
#: The description of every view clipbranches saves starts with this: such a view is
#: replaced by a later save under its name; a view described otherwise is the user's.
VIEW_MARK = "Saved by clipbranches"
#: Key of a score field's ``info`` marking it as made by clipbranches.
SCORE_FIELD_MARK = "clipbranches"

logger = logging.getLogger(__name__)


#: Direction marks and overrides (a name holding one shows reversed or
#: reordered), and invisible characters that make two names look alike (a
#: zero-width space, a byte-order mark); the joiners other scripts spell words
#: with are welcome.
_BIDI = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    "\u200b\ufeff"
)


#: Categories of characters a name may not hold: controls, line and paragraph
#: separators.
_HIDDEN = frozenset({"Cc", "Zl", "Zp"})


def check_view_name(name, what: str = "a saved view's name") -> None:
    """Raise ValueError unless ``name`` can name a saved view (a non-empty str
    without control or format characters: a NUL, a line break, a right-to-left
    override that shows the name reversed in the App); ``what`` names the
    argument in the message."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty name; got {name!r}")
    hidden = [c for c in name if unicodedata.category(c) in _HIDDEN or c in _BIDI]
    if hidden:
        raise ValueError(
            f"{what} holds a character that does not show ({hidden[0]!r}, a control"
            f" or direction character); got {name!r}: type the name again"
        )


def is_ordered_selection(stage) -> bool:
    """Whether ``stage`` (a view stage) selects samples in the order given: the
    stage every result's view ends in (:func:`result_view`)."""
    return isinstance(stage, fo.core.stages.Select) and stage.ordered


def final_selection(view):
    """``view``'s last stage when it is an ordered selection (a result), else None."""
    stages = getattr(view, "_stages", None) or []
    last = stages[-1] if stages else None
    return last if is_ordered_selection(last) else None


def refuse_every_sample(view, dataset) -> None:
    """Refuse to save ``view`` (the App's grid) as a result when it shows every
    sample of ``dataset`` and is no result (a result ends in the ordered selection
    of its samples: a search may rank every one)."""
    if final_selection(view) is not None:
        return
    if view is None or view.count() == dataset.count():  # a sort, say, or nothing
        raise ValueError(
            "the grid shows every sample of the dataset, not results: search or"
            " refine first, then save the results it shows"
        )


def save_view(
    dataset,
    name: str,
    view,
    *,
    overwrite: bool = False,
    description=None,
    replace_own: bool = True,
    wait_s: float = VIEW_SAVE_WAIT_S,
):
    """Save ``view`` on ``dataset``'s root dataset as ``name`` (leading and trailing
    spaces dropped); returns the name.

    A view of exactly this name is replaced, atomically (readers see the old or the
    new view), when clipbranches saved it (its description starts with
    :data:`VIEW_MARK`) and ``replace_own`` is True, or when ``overwrite`` is True;
    any other view of that name is refused. A differently named view whose slug is
    the same (FiftyOne treats "My Dogs" and "my-dogs" as one name) is never
    replaced. One save of a name at a time, across processes, checks and writes it
    (two saves of a new name at once left two views of that name; the next waits up
    to ``wait_s`` seconds). The saved view's description is :data:`VIEW_MARK`
    followed by ``description`` (str or None).

    Raises:
        ViewNameTakenError: the slug of ``name`` is used by another view, or a view
            of ``name`` exists that this save may not replace.
        IndexBusyError: another process has been saving this name for ``wait_s``
            seconds.
        ValueError: an empty name, or a view of another dataset.
    """
    from fiftyone_clipbranches.sdk.claims import waiting_claim

    check_view_name(name)
    root = root_dataset(dataset)
    if root_dataset(view) is not root:
        other = root_dataset(view).name
        raise ValueError(
            f"the view is of dataset {other!r}, not of {root.name!r}: save it on"
            f" dataset {other!r}, or save a view of {root.name!r}"
        )
    name = name.strip()
    slug = _slug(name)
    busy = (
        f"saved view {name!r} of dataset {root.name!r} has been saved by another"
        f" process for over {wait_s:g} s: try again"
    )
    with waiting_claim(root, VIEW_CLAIM_PREFIX + slug, "view", wait_s, busy):
        existing = replaceable_view(root, name, overwrite, replace_own)
        text = _marked(description)
        if existing is None:
            root.save_view(name, view, description=text, overwrite=False)
        else:
            _replace_view_stages(root, existing, view, text)
    return name


def replaceable_view(root, name: str, overwrite: bool = False, replace_own=True):
    """The saved-view document a save under ``name`` would replace (None for a new
    name); raises :class:`ViewNameTakenError` when that save must be refused (see
    :func:`save_view`)."""
    existing = _same_name_view(root, name)
    if existing is None or overwrite:
        return existing
    if not replace_own:
        raise ViewNameTakenError(
            f"dataset {root.name!r} already has a saved view {name!r}"
            f"{_saved_when(existing)}: choose another name, or pass overwrite=True to"
            " replace it"
        )
    if saved_by_clipbranches(existing):
        return existing
    raise ViewNameTakenError(
        f"dataset {root.name!r} already has a saved view {name!r} that clipbranches "
        "did not save (or saved before it marked its views): choose another name, or"
        " delete that view first"
    )


def replaced_view_size(dataset, name: str) -> int | None:
    """Samples of the saved view a save under ``name`` would replace, or None for a
    new (or empty) name.

    Raises:
        ViewNameTakenError: a view of that name clipbranches did not save.
    """
    name = (name or "").strip()
    root = root_dataset(dataset)
    if not name or replaceable_view(root, name) is None:
        return None
    return len(root.load_saved_view(name))


def _saved_when(doc) -> str:
    """Words for a view clipbranches saved (a save whose answer was lost, a service
    stopped as it answered, may have saved it), empty for another's."""
    if not saved_by_clipbranches(doc):
        return ""
    when = getattr(doc, "last_modified_at", None) or getattr(doc, "created_at", None)
    at = f" at {when:%Y-%m-%d %H:%M:%S} UTC" if when is not None else ""
    return (
        f" (clipbranches saved it{at}: a save whose answer never came may have"
        " saved it)"
    )


def saved_view_owner(dataset, name: str) -> str | None:
    """Who saved the view ``name`` of ``dataset``'s root dataset:
    ``"clipbranches"``, ``"user"``, or None when there is none of that name.

    Raises:
        ViewNameTakenError: a differently named view has the slug of ``name``.
    """
    doc = _same_name_view(root_dataset(dataset), name.strip())
    if doc is None:
        return None
    return "clipbranches" if saved_by_clipbranches(doc) else "user"


def saved_by_clipbranches(doc) -> bool:
    """Whether the saved-view document ``doc`` is one clipbranches saved."""
    return (getattr(doc, "description", None) or "").startswith(VIEW_MARK)


def _marked(description) -> str:
    if description is None:
        return f"{VIEW_MARK}; clipbranches may replace it when it saves this name again"
    return f"{VIEW_MARK}: {description}"


def _same_name_view(root, name: str):
    """The saved-view document named ``name``, or None; raises when its slug is
    taken by a differently named view."""
    slug = _slug(name)
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


def _slug(name: str) -> str:
    """FiftyOne's slug of a saved view's ``name`` (ValueError naming it)."""
    from fiftyone.core.utils import to_slug

    try:
        return to_slug(name)
    except ValueError as exc:
        if "name ''" in str(exc):  # nothing of it is kept in the view's address
            raise ValueError(
                f"{short(name)} cannot name a saved view: FiftyOne makes a view's"
                " address from the ASCII letters (a-z) and digits of its name, and"
                " this one has none: add some (e.g. 'cats 日本')"
            ) from None
        said = str(exc).replace(repr(name), short(name))
        raise ValueError(f"{short(name)} cannot name a saved view: {said}") from None


def _replace_view_stages(root, doc, view, description) -> None:
    stages = [json_util.dumps(s) for s in view._serialize(include_uuids=False)]
    was_generated = any("_state" in s for s in doc.view_stages)
    update = {
        "view_stages": stages,
        "description": description,
        "last_modified_at": datetime.utcnow(),
    }
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


def write_result(
    dataset,
    score_field: str | None,
    ids: list[str],
    scores,
    saved_view=None,
    n_view=None,
    *,
    wait: bool = True,
) -> None:
    """Write a round: the scores of ``ids`` (float ``(len(ids),)``) into
    ``score_field`` and, when ``saved_view`` is set, save ``select(ids[:n_view],
    ordered=True)`` as that view. A kill at any instant leaves a journal that
    :func:`recover_unfinished_writes` replays.

    ``wait=False`` returns once the round is journaled (and a saved view's name
    checked); the writer thread of the field writes it (:func:`wait_for_writes`).
    """
    root = root_dataset(dataset)
    if not score_field:
        if saved_view:
            save_view(root, saved_view, _ordered(root, ids, n_view))
        return
    if saved_view:  # refuse a taken name before writing anything
        replaceable_view(root, saved_view.strip())
    ensure_score_field(root, score_field)
    scores = np.asarray(scores, dtype=np.float64)
    journal = _journal(root)
    key = (root._doc.id, score_field)
    if wait:
        _WRITER.settle(key, journal)  # earlier background rounds come first
    _drop_dead_rounds(journal, root, score_field)
    round_id = _journal_round(
        journal, root, score_field, ids, scores, saved_view, n_view
    )
    job = (root, score_field, round_id, list(ids), scores, saved_view, n_view)
    if wait:
        try:
            _write_journaled(journal, *job)
        except KeyboardInterrupt as stop:  # the caller may say what is left
            stop.built = (
                f"the field {score_field!r} was being written: it may hold part of"
                " this round's scores beside the last round's until the next"
                " refinement of this dataset, which finishes writing this round"
                + (" and its saved view" if saved_view else "")
                + " first"
            )
            stop.add_note(f"clipbranches: {stop.built}")  # a script's traceback
            raise
    else:
        _WRITER.submit(key, journal, job)


def wait_for_writes(dataset, score_field: str | None = None) -> None:
    """Wait for the background score writes of ``dataset`` (of ``score_field``, or
    of every field) to finish.

    Raises:
        the error of a background write that failed since the last wait (its round
        stays journaled and the next refine replays it).
    """
    _WRITER.wait(root_dataset(dataset)._doc.id, score_field)


def _write_journaled(journal, root, field, round_id, ids, scores, saved_view, n_view):
    try:
        _apply_round(root, field, ids, scores, saved_view, n_view)
        journal.delete_one({"_id": round_id})
        journal.delete_many({"round": round_id})
    finally:
        _IN_FLIGHT.discard(round_id)


class _BackgroundWriter:
    """One writer thread per (dataset, score field) with at most one round waiting:
    a newer round replaces a waiting one (whose journal is dropped, the newer one
    writes the whole field)."""

    def __init__(self):
        self._lock = threading.Condition()
        self._pending: dict[tuple, tuple] = {}
        self._threads: dict[tuple, threading.Thread] = {}
        self._errors: dict[tuple, BaseException] = {}

    def submit(self, key, journal, job) -> None:
        with self._lock:
            superseded = self._pending.pop(key, None)
            self._pending[key] = (journal, job)
            if key not in self._threads:
                thread = threading.Thread(
                    target=self._run, args=(key,), name=f"cb-scores-{key[1]}"
                )
                self._threads[key] = thread
                thread.start()
        if superseded is not None:
            _forget_round(*superseded)

    def settle(self, key, journal) -> None:
        """Drop the waiting round of ``key`` and wait for the one being written."""
        with self._lock:
            superseded = self._pending.pop(key, None)
        if superseded is not None:
            _forget_round(*superseded)
        self.wait(key[0], key[1], raise_errors=False)

    def wait(self, dataset_id, field=None, raise_errors=True) -> None:
        def busy():
            return [
                k for k in self._threads if k[0] == dataset_id and field in (None, k[1])
            ]

        with self._lock:
            self._lock.wait_for(lambda: not busy())
            failed = [k for k in self._errors if k[0] == dataset_id]
            errors = [self._errors.pop(k) for k in failed if field in (None, k[1])]
        if errors and raise_errors:
            raise errors[0]

    def _run(self, key) -> None:
        while True:
            with self._lock:
                item = self._pending.pop(key, None)
                if item is None:
                    del self._threads[key]
                    self._lock.notify_all()
                    return
            journal, job = item
            try:
                _write_journaled(journal, *job)
            except Exception as exc:  # noqa: BLE001 - reported by wait_for_writes
                logger.exception("background score write of %r failed", key[1])
                with self._lock:
                    self._errors[key] = exc


def _forget_round(journal, job) -> None:
    round_id = job[2]
    _IN_FLIGHT.discard(round_id)
    journal.delete_one({"_id": round_id})
    journal.delete_many({"round": round_id})


_WRITER = _BackgroundWriter()
#: Journaled rounds this process is writing or will write (not replayed as dead).
_IN_FLIGHT: set = set()


def recover_unfinished_writes(dataset) -> list[str]:
    """Finish the score writes (and view saves) of rounds whose writer died.

    Cheap when there is nothing to do (one query of a near-empty collection).

    Returns:
        the score fields that were repaired.
    """
    root = root_dataset(dataset)
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
    with _hold_score_field(root, field):
        _write_round(root, field, ids, scores, saved_view, n_view)


def _hold_score_field(root, field: str):
    """The claim on ``root``'s score ``field`` (a context manager): one round is
    written at a time across threads and processes (two at once left a mixture of
    both), the next waiting up to :data:`SCORE_FIELD_WAIT_S` seconds."""
    from fiftyone_clipbranches.sdk.claims import waiting_claim

    busy = (
        f"score field {field!r} of dataset {root.name!r} has been written by another"
        f" process for over {SCORE_FIELD_WAIT_S:g} s: try again, or give this"
        " refinement another score_field"
    )
    return waiting_claim(
        root, f"{SCORE_CLAIM_PREFIX}{field}", "scores", SCORE_FIELD_WAIT_S, busy
    )


def _write_round(root, field, ids, scores, saved_view, n_view) -> None:
    coll = root._sample_collection
    ensure_score_index(root, field)
    held = {
        d["_id"]: d.get(field) for d in coll.find({field: {"$ne": None}}, {field: 1})
    }
    now = datetime.utcnow()
    oids = [ObjectId(i) for i in ids]
    changed = [
        UpdateOne({"_id": o}, {"$set": {field: s, "last_modified_at": now}})
        for o, s in zip(oids, scores.tolist())
        if held.get(o) != s
    ]
    for start in range(0, len(changed), _WRITE_BATCH):
        coll.bulk_write(changed[start : start + _WRITE_BATCH], ordered=False)
    stale = list(held.keys() - set(oids))
    for start in range(0, len(stale), _WRITE_BATCH):
        coll.update_many(
            {"_id": {"$in": stale[start : start + _WRITE_BATCH]}},
            {"$set": {field: None, "last_modified_at": now}},
        )
    if saved_view:
        try:
            save_view(root, saved_view, _ordered(root, ids, n_view))
        except ViewNameTakenError as exc:  # a view of the user's took the name since
            logger.warning("scores written, view not saved: %s", exc)


def ensure_score_index(root, field: str) -> None:
    """The database index on ``field`` that finds the scored samples (and lets the
    App sort by score) without a scan; created once per process and collection."""
    key = (root._sample_collection_name, field)
    if key not in _SCORE_INDEXED:
        root.create_index(field)
        _SCORE_INDEXED.add(key)


_SCORE_INDEXED: set[tuple[str, str]] = set()


def result_view(samples, ids):
    """``ids`` in order, as a view of ``samples`` (its stages, the App's filters,
    kept); of its root dataset where ``samples`` concatenates collections, in
    which one sample can be two rows (a view concatenated with itself answered
    every sample twice)."""
    base = root_dataset(samples) if concatenates(samples) else samples
    return base.select(list(ids), ordered=True)


def by_score_view(samples, score_field: str):
    """The samples of ``samples`` holding ``score_field``, best first (of its root
    dataset where ``samples`` concatenates collections, as :func:`result_view`)."""
    base = root_dataset(samples) if concatenates(samples) else samples
    return base.exists(score_field).sort_by(score_field, reverse=True)


def concatenates(samples) -> bool:
    """Whether a stage of the view ``samples`` concatenates another collection."""
    return any(
        isinstance(s, fo.core.stages.Concat) for s in getattr(samples, "_stages", ())
    )


def _ordered(root, ids, n_view):
    return root.select(list(ids if n_view is None else ids[:n_view]), ordered=True)


def _journal(root):
    from fiftyone.core.odm import get_db_conn

    return get_db_conn()[JOURNAL_COLLECTION]


def _journal_round(journal, root, field, ids, scores, saved_view, n_view) -> ObjectId:
    """Journal a round: a head marked "journaling", its chunks, then "writing"."""
    check_sample_ids(ids, "result ids")
    round_id = ObjectId()
    _IN_FLIGHT.add(round_id)  # never replayed as dead while this process writes it
    try:
        _insert_round(journal, root, field, ids, scores, saved_view, n_view, round_id)
    except BaseException:
        _IN_FLIGHT.discard(round_id)
        raise
    return round_id


def _insert_round(journal, root, field, ids, scores, saved_view, n_view, round_id):
    journal.insert_one(
        {
            "_id": round_id,
            "dataset_id": root._doc.id,
            "field": field,
            "state": "journaling",
            **this_process(),
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
    if is_this_process(head):
        return head["_id"] not in _IN_FLIGHT  # this process: dead if not being written
    age = time.time() - head["_id"].generation_time.timestamp()
    return holder_gone(head, age, _FOREIGN_WRITER_TIMEOUT_S)


def check_writable(dataset, score_field, saved_view) -> None:
    """Refuse, before any work, a round that :func:`write_result` would refuse: a
    ``score_field`` that is not an identifier, not a float field or not
    clipbranches' own, a ``saved_view`` name a view of the user's holds."""
    root = root_dataset(dataset)
    if score_field is not None:  # "" too: no name, not "write nothing"
        _score_field_state(root, score_field)
    if saved_view is not None:
        check_view_name(saved_view, "saved_view")
        replaceable_view(root, saved_view.strip())


def writes_scores(root, name: str) -> bool:
    """Whether ``name`` is a field of ``root`` clipbranches writes scores into: one
    it made (marked in its info)."""
    field = root.get_field(name)
    if field is None:
        return False
    return bool((field.info or {}).get(SCORE_FIELD_MARK))


def _score_field_state(root, score_field: str):
    """The existing field named ``score_field`` (None if absent), checked: it may
    receive scores (see :func:`ensure_score_field`)."""
    if not isinstance(score_field, str) or not score_field.isidentifier():
        error = ValueError(f"score field name {score_field!r} must be an identifier")
        error.in_app = (
            f"Score field {score_field!r} is not a field name: use letters, digits"
            " and underscores, not starting with a digit"
        )
        raise error
    field = root.get_field(score_field)
    if field is None:
        return None
    if not isinstance(field, fo.FloatField):
        kind = f"field {score_field!r} exists with type {type(field).__name__}, not a "
        error = ValueError(f"{kind}FloatField: choose another score_field")
        error.in_app = f"{kind}number field: enter another name in Score field"
        raise error
    if not writes_scores(root, score_field):
        refused = (
            f"field {score_field!r} exists and clipbranches did not make it: a "
            "refinement would overwrite its values; "
        )
        error = ValueError(
            f"{refused}choose another score_field (CLI: --score-field NAME; if an"
            " earlier clipbranches"
            f" version made it: field = dataset.get_field({score_field!r});"
            f" field.info = {{'{SCORE_FIELD_MARK}': 'scores'}}; field.save())"
        )
        error.in_app = f"{refused}enter another name in Score field"
        raise error
    return field


def ensure_score_field(root, score_field: str) -> None:
    """Make ``score_field`` clipbranches' float field if it is absent; refuse one
    it may not write."""
    field = _score_field_state(root, score_field)
    if field is None:
        root.add_sample_field(
            score_field,
            fo.FloatField,
            description="clipbranches scores: each refinement rewrites this field",
            info={SCORE_FIELD_MARK: "scores"},
        )
