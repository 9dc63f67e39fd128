"""Mapping between FiftyOne sample ids and index rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from bson import ObjectId

from fiftyone_clipbranches.sdk.errors import SampleIdsError
from fiftyone_clipbranches.sdk.messages import short

#: Length of a FiftyOne sample id (hex ObjectId).
ID_LENGTH = 24


class SampleRowMap:
    """Sample ids in index-row order, with vectorised lookups both ways.

    Args:
        ids: ``(N,)`` array of ``S24`` byte strings (or any iterable of str ids);
            row ``i`` of the index is sample ``ids[i]``. Ids must be unique.
    """

    def __init__(self, ids):
        if isinstance(ids, np.ndarray) and ids.dtype == np.dtype(f"S{ID_LENGTH}"):
            arr = ids
        else:
            # str ids are checked: astype("S24") would silently cut a longer one
            listed = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
            arr = np.asarray(
                check_sample_ids(listed, "index sample ids"), f"S{ID_LENGTH}"
            )
        if arr.ndim != 1:
            raise ValueError("sample ids must be a 1-d array")
        order = np.argsort(arr, kind="stable")
        sorted_ids = arr[order]
        if sorted_ids.size > 1 and np.any(sorted_ids[1:] == sorted_ids[:-1]):
            raise ValueError("sample ids of an index must be unique")
        self.ids = arr
        self._order = order.astype(np.int64)
        self._sorted = sorted_ids

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def rows_of(self, sample_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``sample_ids``.

        Returns:
            ``(rows int64 (m,), found bool (m,))``: ``rows[j]`` is valid only where
            ``found[j]``; ids not in the index have ``found`` False.
        """
        sample_ids = check_sample_ids(sample_ids)
        return self.rows_of_array(np.asarray(sample_ids, dtype=f"S{ID_LENGTH}"))

    def rows_of_array(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`rows_of` for ids already held as an ``S24`` ``(m,)`` array (read
        from the database, so not checked again)."""
        if query.size == 0 or len(self) == 0:
            return np.zeros(query.size, np.int64), np.zeros(query.size, bool)
        pos = np.searchsorted(self._sorted, query)
        pos = np.minimum(pos, len(self) - 1)
        found = self._sorted[pos] == query
        return self._order[pos], found

    def ids_of(self, rows: np.ndarray) -> list[str]:
        """Sample ids (str) of ``rows`` (int array), in that order."""
        # ASCII bytes to str: astype is 4-5x faster than np.char.decode
        return (
            self.ids[np.asarray(rows, dtype=np.int64)].astype(f"U{ID_LENGTH}").tolist()
        )

    def contains(self, sample_ids: Iterable[str]) -> np.ndarray:
        """bool ``(m,)``: whether each id is in the index."""
        return self.rows_of(sample_ids)[1]

    def save(self, path) -> None:
        np.save(path, self.ids, allow_pickle=False)

    @classmethod
    def load(cls, path) -> SampleRowMap:
        return cls(np.load(path, allow_pickle=False))


class RowIds(Sequence):
    """The sample ids of some index rows, made into ``str`` only where read.

    A sequence of str (``len``, ``ids[i]``, ``ids[a:b]`` -> list, iteration) equal
    to the list of the same ids; ``list(ids)`` makes them all. A ranking of a
    million rows costs its int64 rows until someone reads every id.

    Args:
        rowmap: the :class:`SampleRowMap` of the index the rows belong to.
        rows: int ``(n,)`` index rows, in the order of the ids.
    """

    _CHUNK = 1 << 16

    def __init__(self, rowmap: SampleRowMap, rows):
        self._rowmap = rowmap
        self._rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._rowmap.ids_of(self._rows[key])
        return self._rowmap.ids_of(np.atleast_1d(self._rows[key]))[0]

    def __iter__(self):
        for start in range(0, len(self), self._CHUNK):
            yield from self._rowmap.ids_of(self._rows[start : start + self._CHUNK])

    def __eq__(self, other):
        if isinstance(other, RowIds | list | tuple):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"RowIds({len(self)} sample ids)"


def as_sample_ids(samples, what: str = "sample ids") -> list[str]:
    """The checked sample ids (:func:`check_sample_ids`) of ``samples``: one id or
    ObjectId, ids, a FiftyOne sample, samples, or a dataset or view (its samples'
    ids; of a patches, frames or clips view, the samples they come from); None is
    no id. An unsaved sample raises :class:`SampleIdsError`."""
    if samples is None:
        return []
    if isinstance(samples, str) or _is_one(samples):
        samples = [samples]
    elif hasattr(samples, "values") and hasattr(samples, "_dataset"):
        # a dataset or view; patches, clips and frames hold their sample's id
        samples = samples.values("sample_id" if is_part_view(samples) else "id")
    elif not isinstance(samples, Iterable):
        raise SampleIdsError(
            f"{what} must be sample ids (24 hexadecimal digits, as `sample.id`),"
            f" samples or a view; got {short(samples)}"
        )
    listed = [_sample_id(s, what) for s in samples]
    return check_sample_ids(listed, what)


def is_part_view(samples) -> bool:
    """Whether ``samples`` is a patches, frames or clips view: its rows are parts
    of the dataset's samples (their ``sample_id``)."""
    return bool(
        getattr(samples, "_is_patches", False)
        or getattr(samples, "_is_frames", False)
        or getattr(samples, "_is_clips", False)
    )


def _is_one(sample) -> bool:
    """A FiftyOne sample or a bson ObjectId (not a collection of them)."""
    return hasattr(sample, "filepath") or isinstance(sample, ObjectId)


def _sample_id(sample, what: str):
    """A sample's id (of a ``Sample``, ``SampleView`` or ObjectId), else ``sample``."""
    if isinstance(sample, ObjectId):
        return str(sample)
    if isinstance(sample, str) or not hasattr(sample, "filepath"):
        return sample
    if getattr(sample, "id", None) is None:
        raise SampleIdsError(
            f"{what}: sample {sample.filepath!r} is not in a dataset yet (add it to"
            " the dataset first)"
        )
    return sample.id


def check_sample_ids(ids: Iterable[str], what: str = "sample ids") -> list[str]:
    """``ids`` as a list, each checked to be a FiftyOne sample id (24 hex digits).

    One pass over the joined string, so a million ids cost milliseconds.

    Raises:
        SampleIdsError: an id is not a str of 24 hexadecimal digits (a suffix, a
            non-ASCII character, a number...), naming the first offender.
    """
    ids = list(ids)
    if not ids:
        return ids
    try:
        joined = "".join(ids)
    except TypeError:
        joined = None
    if (
        joined is not None
        and len(joined) == ID_LENGTH * len(ids)
        and joined.isascii()
        and _is_hex(joined, len(ids))
    ):
        return ids
    malformed = [i for i in ids if not _is_sample_id(i)]
    bad = malformed[0]
    parts = (
        bad.replace(";", ",").replace(" ", ",").split(",")
        if isinstance(bad, str)
        else []
    )
    joined = len(parts) > 1 and all(map(_is_sample_id, parts))
    advice = (
        "give one id per item (in the CLI, repeat the option for each id)"
        if joined
        else "check how these ids were produced"
    )
    raise SampleIdsError(
        f"{what} must be FiftyOne sample ids (24 hexadecimal digits, as "
        f"`sample.id`); got {short(bad)}: {advice}",
        ids=malformed,
    )


def _is_hex(joined: str, n: int) -> bool:
    try:
        return len(bytes.fromhex(joined)) == n * ID_LENGTH // 2
    except ValueError:
        return False


def _is_sample_id(value) -> bool:
    return (
        isinstance(value, str)
        and len(value) == ID_LENGTH
        and value.isascii()
        and _is_hex(value, 1)
    )
