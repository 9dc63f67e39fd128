"""Synthetic data and neighbour helpers shared by the embed tests."""

from __future__ import annotations

import numpy as np


def clustered(n=600, d=512, k=20, noise=0.35, seed=0):
    """Unit vectors around ``k`` random centres: (x float32 (n, d), labels int64 (n,))."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    labels = rng.integers(0, k, n)
    x = centres[labels] / np.sqrt(d) + noise * rng.standard_normal((n, d)) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Exact k nearest other rows (Euclidean), ties by id."""
    x = x.astype(np.float64)
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * x @ x.T
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        np.mean([len(np.intersect1d(r, s)) / a.shape[1] for r, s in zip(a, b)])
    )
