"""One build or update of an index key at a time, across processes and machines.

FiftyOne registers a run by rewriting the dataset's document, so two builds of one
key started together would both succeed, the later replacing the earlier (whose
files no run would then point at). A build, update, rename, delete or row edit
first inserts a claim for ``(dataset, key)`` into a small collection, where the
database refuses a second one; the claim is removed when the work ends, a claim
whose process has died is taken over, and ``unlock_key`` releases one a dead
machine holds.
"""

from __future__ import annotations

import functools
import inspect
import re
import shlex
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime

from fiftyone_clipbranches.sdk.errors import IndexBusyError
from fiftyone_clipbranches.sdk.processes import (
    holder_gone,
    is_this_process,
    on_this_host,
    this_process,
)
from fiftyone_clipbranches.sdk.runs import chosen_index_key, root_dataset

#: Collection of the FiftyOne database holding the claims in progress.
CLAIMS_COLLECTION = "clipbranches.key_claims"
#: A claim made on another host is presumed dead after this long.
FOREIGN_CLAIM_TIMEOUT_S = 24 * 3600.0
#: The claims this process holds now, by ``(_id, nonce)``.
_HELD: set[tuple[str, str]] = set()
_HELD_LOCK = threading.Lock()


@contextmanager
def key_claim(root, key: str, work: str = "build", stale_s: float | None = None):
    """Hold index ``key`` of the root dataset ``root`` for ``work`` ("build",
    "update", "rename", "relocate" or "delete"; "scores" for a score field, whose
    ``key`` is ``sdk.views.SCORE_CLAIM_PREFIX`` and the field; "view" for a saved
    view's name, ``sdk.views.VIEW_CLAIM_PREFIX`` and its slug; "history" for a
    change of the App's round history, ``sdk.round_history.HISTORY_CLAIM``)
    until the block ends. A claim of another process older than ``stale_s``
    seconds (when given: work known to be short) is taken over wherever it runs.

    Raises:
        IndexBusyError: a live process holds the key.
    """
    from fiftyone.core.odm import get_db_conn
    from pymongo.errors import DuplicateKeyError

    claims = get_db_conn()[CLAIMS_COLLECTION]
    mine = {
        "_id": _claim_id(root, key),
        **this_process(),
        "work": work,
        "since": time.time(),
        "nonce": uuid.uuid4().hex,  # tells this process's threads' claims apart
    }
    # held before it is inserted: another thread of this process that finds the
    # claim must not take it for one this process let go
    token = (mine["_id"], mine["nonce"])
    with _HELD_LOCK:
        _HELD.add(token)
    try:
        for _ in range(3):
            try:
                claims.insert_one(mine)
                break
            except DuplicateKeyError:
                held = claims.find_one({"_id": mine["_id"]})
                if held is None:
                    continue  # released meanwhile
                if _claim_live(held, stale_s):
                    raise IndexBusyError(
                        _busy_message(root, key, held, _advice(work))
                    ) from None
                claims.delete_one(held)  # its process died: take it over
        else:
            raise IndexBusyError(_busy_message(root, key, None, _advice(work)))
    except BaseException:
        with _HELD_LOCK:
            _HELD.discard(token)
        raise
    try:
        yield
    finally:
        with _HELD_LOCK:
            _HELD.discard(token)
        claims.delete_one(mine)  # if this fails, the claim is this process's and
        # not held: the next claim takes it over (_claim_live)


@contextmanager
def waiting_claim(
    root, key: str, work: str, wait_s: float, busy: str, stale_s: float | None = None
):
    """:func:`key_claim`, waiting up to ``wait_s`` seconds for a live holder to
    let go (the work of each is short: a score field's write, a view's save).

    Raises:
        IndexBusyError: ``busy`` (what to do), after ``wait_s`` seconds.
    """
    deadline = time.monotonic() + wait_s
    while True:
        claim = key_claim(root, key, work, stale_s)
        try:
            claim.__enter__()
            break
        except IndexBusyError:
            if time.monotonic() > deadline:
                unlock = (
                    f"; if the process holding it is gone: clipbranches unlock-index"
                    f" {shlex.quote(root.name)} --key {shlex.quote(key)}"
                )
                raise IndexBusyError(busy + unlock) from None
            time.sleep(0.05)
    try:
        yield
    finally:
        claim.__exit__(None, None, None)


#: Work on an index key that writes a directory before a run points at it.
WRITING_WORK = ("build", "update")


def index_written(dataset_id: str) -> bool:
    """Whether a live claim of :data:`WRITING_WORK` holds a key of the dataset of
    id ``dataset_id``: its new directory may be in place with no run pointing at
    it yet (``gc`` leaves the dataset's directories alone meanwhile)."""
    from fiftyone.core.odm import get_db_conn

    claims = get_db_conn()[CLAIMS_COLLECTION]
    prefix = re.escape(f"{dataset_id}:")
    for held in claims.find({"_id": {"$regex": f"^{prefix}"}}):
        if held.get("work", "build") in WRITING_WORK and _claim_live(held):
            return True
    return False


def dead_claims() -> list[tuple[dict, str]]:
    """``[(claim, why), ...]``: claims no work holds any more: of a dataset that
    no longer exists, or of a process that has ended (see :func:`key_claim`)."""
    from fiftyone.core.odm import get_db_conn

    db = get_db_conn()
    claims = list(db[CLAIMS_COLLECTION].find({}))
    # read after the claims: a dataset made meanwhile, and claimed, is in it
    datasets = {str(d["_id"]) for d in db.datasets.find({}, {"_id": 1})}
    dead = []
    for claim in claims:
        dataset_id = str(claim["_id"]).split(":", 1)[0]
        if dataset_id not in datasets:
            dead.append((claim, "its dataset no longer exists"))
        elif not _claim_live(claim):
            dead.append((claim, f"process {claim['pid']} on {claim['host']} is gone"))
    return dead


def release_claim(claim: dict) -> None:
    """Remove ``claim`` exactly as it was read (a claim made since then by other
    work is kept)."""
    from fiftyone.core.odm import get_db_conn

    get_db_conn()[CLAIMS_COLLECTION].delete_one(claim)


def unlock_key(dataset, key: str) -> dict | None:
    """Release the claim on index ``key`` of ``dataset``'s root dataset that a
    process on another host left (a machine that died mid-build holds the key for
    a day otherwise); returns the claim removed, or None when there was none.

    Raises:
        IndexBusyError: the holder is a process of this host that still runs (stop
            it first; one that has ended is taken over without this).
    """
    from fiftyone.core.odm import get_db_conn

    root = root_dataset(dataset)
    claims = get_db_conn()[CLAIMS_COLLECTION]
    held = claims.find_one({"_id": _claim_id(root, key)})
    if held is None:
        return None
    if on_this_host(held) and not holder_gone(held, 0.0, 0.0):
        raise IndexBusyError(
            _busy_message(root, key, held, advice=": stop that process first")
        )
    release_claim(held)
    return held


def key_in_progress(root, key: str) -> str | None:
    """Why index ``key`` of the root dataset ``root`` is not there yet: another
    live process holds it (a build in progress, say), in words; else None."""
    from fiftyone.core.odm import get_db_conn

    held = get_db_conn()[CLAIMS_COLLECTION].find_one({"_id": _claim_id(root, key)})
    if held is None or is_this_process(held) or not _claim_live(held):
        return None
    return _busy_message(root, key, held, advice=": try again when it ends")


def _claim_id(root, key: str) -> str:
    return f"{root._doc.id}:{key}"


def _claim_live(held: dict, stale_s: float | None = None) -> bool:
    """Whether the process holding ``held`` may still run (one on another host is
    presumed to for :data:`FOREIGN_CLAIM_TIMEOUT_S`, or ``stale_s`` when given)
    and, when it is this one, still holds it (a claim whose removal failed, the
    database gone meanwhile, is not)."""
    if is_this_process(held):
        with _HELD_LOCK:
            return (held["_id"], held.get("nonce")) in _HELD
    age = time.time() - held["since"]
    if stale_s is not None and age > stale_s:
        return False
    return not holder_gone(held, age, FOREIGN_CLAIM_TIMEOUT_S)


def _advice(work: str) -> str:
    """What to do about a busy key, for ``work``: a build may take another key."""
    if work == "build":
        return ": wait until it ends, or use another key"
    return ": wait until it ends, then try again"


def _busy_message(root, key: str, held: dict | None, advice: str) -> str:
    who = ""
    if held is not None:
        since = datetime.fromtimestamp(held["since"]).strftime("%Y-%m-%d %H:%M:%S")
        who = (
            f" ({held.get('work', 'build')} by process {held['pid']} on"
            f" {held['host']}, since {since})"
        )
    if held is not None and not on_this_host(held):
        advice += (
            f" (if that process is gone: clipbranches unlock-index"
            f" {shlex.quote(root.name)} --key {shlex.quote(key)})"
        )
    return (
        f"index {key!r} of dataset {root.name!r} is being built, updated, renamed or"
        f" deleted{who}{advice}"
    )


@contextmanager
def holding(dataset, key, work: str):
    """Hold index ``key`` of ``dataset``'s root dataset for ``work`` until the
    block ends (:func:`key_claim`), with the dataset's runs read again (a build
    another process ended meanwhile is seen). A key that is no string is not
    claimed: the work's own check refuses it."""
    if not isinstance(key, str):
        yield
        return
    root = root_dataset(dataset)
    with key_claim(root, key, work):
        root._doc.reload("runs")
        yield


def holding_key(work: str):
    """Decorate a function of ``(dataset, index_key, ...)`` to run :func:`holding`
    that key (``index_key`` None: the one :func:`~.runs.chosen_index_key` picks,
    passed on to the function)."""

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            dataset = arguments["dataset"]
            key = chosen_index_key(dataset, arguments["index_key"])
            arguments["index_key"] = key
            with holding(dataset, key, work):
                return fn(*bound.args, **bound.kwargs)

        return run

    return wrap
