"""Exact nearest-neighbour geometry of one catalogue, for the NN and Rocchio baselines.

uint8 codes use squared Euclidean distance (exact, computed in float64); float
embeddings are L2-normalised, so Euclidean order equals cosine order. Ties are broken
by ascending row id, as ``CodeIndex.knn`` does.
"""

from __future__ import annotations

import numpy as np


class Space:
    """Distances from arbitrary query vectors to every catalogue row.

    Args:
        features: ``(N, D)`` uint8 codes or float embeddings.
    """

    def __init__(self, features: np.ndarray):
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError("features must be a non-empty (N, D) array")
        dtype = np.float64 if features.dtype == np.uint8 else np.float32
        self.values = np.ascontiguousarray(features, dtype=dtype)
        self.sq_norms = np.einsum("ij,ij->i", self.values, self.values)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def distances(self, query: np.ndarray) -> np.ndarray:
        """Squared Euclidean distances ``(N,)`` from ``query`` ``(D,)`` to every row."""
        q = np.asarray(query, dtype=self.values.dtype)
        d = self.sq_norms - 2.0 * (self.values @ q) + float(q @ q)
        return np.maximum(d, 0.0)

    def ranked(self, query: np.ndarray) -> np.ndarray:
        """All row ids sorted by (distance, id): int64 ``(N,)``."""
        return np.argsort(self.distances(query), kind="stable").astype(np.int64)

    def nearest(self, query: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` nearest row ids, sorted by (distance, id)."""
        d = self.distances(query)
        k = min(int(k), d.shape[0])
        if k <= 0:
            return np.zeros(0, np.int64)
        part = (
            np.argpartition(d, k - 1)[:k] if k < d.shape[0] else np.arange(d.shape[0])
        )
        kth = d[part].max()
        cand = np.flatnonzero(d <= kth)
        cand = cand[np.lexsort((cand, d[cand]))]
        return cand[:k].astype(np.int64)

    def row(self, i: int) -> np.ndarray:
        return self.values[i]
