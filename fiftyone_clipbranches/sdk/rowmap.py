"""Mapping between FiftyOne sample ids and index rows."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: Length of a FiftyOne sample id (hex ObjectId).
ID_LENGTH = 24


class SampleRowMap:
    """Sample ids in index-row order, with vectorised lookups both ways.

    Args:
        ids: ``(N,)`` array of ``S24`` byte strings (or any iterable of str ids);
            row ``i`` of the index is sample ``ids[i]``. Ids must be unique.
    """

    def __init__(self, ids):
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        arr = arr.astype(f"S{ID_LENGTH}")
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
        query = np.asarray(list(sample_ids), dtype=f"S{ID_LENGTH}")
        if query.size == 0 or len(self) == 0:
            return np.zeros(query.size, np.int64), np.zeros(query.size, bool)
        pos = np.searchsorted(self._sorted, query)
        pos = np.minimum(pos, len(self) - 1)
        found = self._sorted[pos] == query
        return self._order[pos], found

    def ids_of(self, rows: np.ndarray) -> list[str]:
        """Sample ids (str) of ``rows`` (int array), in that order."""
        return np.char.decode(
            self.ids[np.asarray(rows, dtype=np.int64)], "ascii"
        ).tolist()

    def contains(self, sample_ids: Iterable[str]) -> np.ndarray:
        """bool ``(m,)``: whether each id is in the index."""
        return self.rows_of(sample_ids)[1]

    def save(self, path) -> None:
        np.save(path, self.ids, allow_pickle=False)

    @classmethod
    def load(cls, path) -> SampleRowMap:
        return cls(np.load(path, allow_pickle=False))
