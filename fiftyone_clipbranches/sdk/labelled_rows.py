"""Index rows of the samples a request names, and why an index lacks some."""

from __future__ import annotations

import numpy as np

from fiftyone_clipbranches.sdk.errors import SampleIdsError, StaleIndexError
from fiftyone_clipbranches.sdk.messages import counted_are
from fiftyone_clipbranches.sdk.settings import NO_VECTOR


def index_rows(
    ds,
    bundle,
    ids,
    what: str,
    index_key: str,
    *,
    skip_unindexed: bool = False,
    alive: np.ndarray | None = None,
) -> np.ndarray:
    """int64 ``(m,)`` ascending: the rows of ``ids`` (sample ids of the root
    dataset ``ds``) in the loaded index ``bundle``.

    ``skip_unindexed`` drops the samples of ``ds`` the index has no row for: their
    image could not be read at the build, or they were added after it (they are
    not searched, so they can never be in a result either). ``alive``
    (bool ``(N,)``, ``freshness.alive_rows``; None: every row's sample exists)
    marks the rows whose sample still exists.

    Raises:
        SampleIdsError: ids that are not samples of ``ds`` (deleted since the
            build, or never of it); samples whose image could not be read at the
            build (unless skipped).
        StaleIndexError: samples added after the build (unless skipped).
    """
    ids = list(ids)
    rows, found = bundle.rowmap.rows_of(ids)
    if alive is not None:
        _refuse_deleted(
            ds, [i for i, r, hit in zip(ids, rows, found) if hit and not alive[r]], what
        )
    if found.all():
        return np.sort(rows).astype(np.int64)
    missing = [i for i, hit in zip(ids, found) if not hit]
    in_dataset = set(ds.select(missing).values("id"))
    foreign = [i for i in missing if i not in in_dataset]
    if foreign:
        raise SampleIdsError(
            f"{counted_are(len(foreign), what + ' id')} not {_samples(foreign)} of"
            f" dataset {ds.name!r} "
            f"(e.g. {', '.join(foreign[:3])}): pass ids of this dataset's samples",
            ids=foreign,
        )
    if skip_unindexed:
        return np.sort(rows[found]).astype(np.int64)
    unreadable = [i for i in missing if i in bundle.unembeddable]
    no_vector = [
        i for i in unreadable if bundle.unembeddable[i].get("reason") == NO_VECTOR
    ]
    if no_vector:
        field = repr(bundle.unembeddable[no_vector[0]].get("field"))
        raise SampleIdsError(
            f"{counted_are(len(no_vector), what + ' sample')} not in index"
            f" {index_key!r}: {'it' if len(no_vector) == 1 else 'they'} had no vector"
            f" in {field} when it was built (left out: skip_missing; e.g."
            f" {no_vector[0]}). {_leave_out(no_vector, what)}, or compute their"
            f" vectors into {field}, then run update_index (it adds them; CLI:"
            f" clipbranches update-index {ds.name} --key {index_key})"
        )
    if unreadable:  # images that could not be read (no vector ones raised above)
        first = bundle.unembeddable[unreadable[0]]
        raise SampleIdsError(
            f"{counted_are(len(unreadable), what + ' sample')} without an embedding in index "
            f"{index_key!r}: {'its image' if len(unreadable) == 1 else 'their images'}"
            " could not be read when it was built or last updated (e.g. "
            f"{unreadable[0]}, {first.get('filepath')}: {first.get('error')}). "
            f"{_leave_out(unreadable, what)}, or fix the file and run update_index with "
            f"retry_failed=True (CLI: clipbranches update-index {ds.name} --key "
            f"{index_key} --retry-failed)"
        )
    added = [i for i in missing if i not in bundle.unembeddable]
    if added:
        head = (
            f"{counted_are(len(added), what + ' sample')} not in index {index_key!r}"
            f" (e.g. {added[0]}): {'it was' if len(added) == 1 else 'they were'}"
            " added since it was built or updated, or removed from it"
            " (remove_from_index)"
        )
        stale = StaleIndexError(
            f"{head}; update_index adds them (CLI: clipbranches update-index"
            f" {ds.name} --key {index_key})",
            ids=added,
        )
        stale.in_app = (
            f"{head}; Update index (under the panel's index choice, or the 'CLIP"
            " branches: update index' operator) adds them"
        )
        raise stale
    return np.sort(rows[found]).astype(np.int64)


def _refuse_deleted(ds, deleted: list[str], what: str) -> None:
    if deleted:
        raise SampleIdsError(
            f"{counted_are(len(deleted), what + ' id')} of {_samples(deleted)}"
            " deleted from dataset"
            f" {ds.name!r} (e.g. {', '.join(deleted[:3])}): leave"
            f" {'it' if len(deleted) == 1 else 'them'} out of the {what} ids",
            ids=deleted,
        )


def _leave_out(ids: list, what: str) -> str:
    """What to do with the unreadable ``ids`` given as ``what`` samples."""
    if what in ("positive", "negative"):
        return f"Remove {'its' if len(ids) == 1 else 'their'} {what} label"
    return f"Leave {'it' if len(ids) == 1 else 'them'} out of the {what} ids"


def _samples(ids: list) -> str:
    return "a sample" if len(ids) == 1 else "samples"
