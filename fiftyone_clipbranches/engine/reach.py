"""How far a class reaches around its positives: a Rocchio ball sized by the catalogue.

A few labelled positives say where a class is, not how large it is. Its size can be
estimated from the catalogue without more labels (positive-unlabelled learning):
around a centre, a ball of squared radius ``r`` holds the fraction ``F(r)`` of the
catalogue and the fraction ``G(r)`` of the class, and ``pi * G(r) <= F(r)`` wherever
``pi`` is the class's share of the catalogue. ``G`` is measured on the positives
themselves, each at its distance from the centre of the others (leave one out), so
``pi <= min_r F(r) / G(r)``, tight where the ball holds the class alone. With that
estimate, the expected F1 of each ball is ``2 pi G / (F + pi)``; the best ball's
share of the catalogue is what the class is estimated to hold near its centre.

The centre is Rocchio's point ``2 mean(positives) - mean(catalogue)``, rounded to
integers so that squared distances to uint8 codes are exact int64.
"""

from __future__ import annotations

import numpy as np

from .reach_kernels import row_distances


def rocchio_centre(positives: np.ndarray, background_mean: np.ndarray) -> np.ndarray:
    """int64 ``(D,)``: ``round(2 mean(positives) - background_mean)``, of uint8
    ``positives (P, D)`` and float ``background_mean (D,)``."""
    point = 2.0 * positives.mean(axis=0, dtype=np.float64) - background_mean
    return np.rint(point).astype(np.int64)


def squared_distances(codes, centre: np.ndarray, rows=None) -> np.ndarray:
    """int64 ``(m,)``: exact squared distances to the int64 ``centre (D,)`` of the
    uint8 ``codes (N, D)`` at ``rows`` (int ``(m,)``; default every row)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    rows = (
        np.arange(codes.shape[0], dtype=np.int64)
        if rows is None
        else np.ascontiguousarray(rows, dtype=np.int64)
    )
    out = np.empty(rows.shape[0], np.int64)
    row_distances(codes, rows, np.ascontiguousarray(centre, dtype=np.int64), out)
    return out


def left_out_distances(positives: np.ndarray, background_mean: np.ndarray):
    """int64 ``(P,)`` ascending: each positive's squared distance to the centre of
    the others (``P >= 2`` uint8 rows)."""
    p = positives.shape[0]
    total = positives.sum(axis=0, dtype=np.float64)
    out = np.empty(p, np.int64)
    for i in range(p):
        others = (total - positives[i]) / (p - 1)
        centre = np.rint(2.0 * others - background_mean).astype(np.int64)
        out[i] = squared_distances(positives[i : i + 1], centre)[0]
    return np.sort(out)


def best_share(left_out_sq: np.ndarray, catalogue_sq: np.ndarray) -> float:
    """The share of the catalogue inside the ball of best expected F1.

    Args:
        left_out_sq: int64 ``(P,)`` ascending, :func:`left_out_distances`.
        catalogue_sq: int64 ``(m,)`` ascending, squared distances of the catalogue
            (or a uniform sample of it) to the centre.

    Returns:
        float in ``[0, 1]``: ``F(r*)`` for the radius ``r*`` (one of the left-out
        distances, where ``G`` steps) that maximises ``2 pi G / (F + pi)``.
    """
    m = catalogue_sq.shape[0]
    share = np.searchsorted(catalogue_sq, left_out_sq, side="right") / m
    found = np.arange(1, left_out_sq.shape[0] + 1) / left_out_sq.shape[0]
    inside = share > 0
    pi = float(np.min(share[inside] / found[inside])) if inside.any() else 1.0 / m
    f1 = 2.0 * pi * found / (share + pi)
    return float(share[int(np.argmax(f1))])


def radius_for_share(catalogue_sq: np.ndarray, share: float) -> int:
    """The squared radius of the ball holding ``share`` of the catalogue (ascending
    ``catalogue_sq``), or -1 when that is less than one row."""
    rows = int(round(share * catalogue_sq.shape[0]))
    return int(catalogue_sq[rows - 1]) if rows >= 1 else -1


def class_ball(
    positives: np.ndarray, catalogue: np.ndarray, reach: float
) -> tuple[np.ndarray, int]:
    """The Rocchio ball holding ``reach`` times the share of the catalogue the class
    is estimated to hold near its positives.

    Args:
        positives: uint8 ``(P, D)``, ``P >= 2`` labelled positives.
        catalogue: uint8 ``(m, D)``, the catalogue's codes or a uniform sample.
        reach: float > 0.

    Returns:
        ``(centre int64 (D,), radius_sq int)``; ``radius_sq`` is -1 for an empty ball.
    """
    mean = catalogue.mean(axis=0, dtype=np.float64)
    centre = rocchio_centre(positives, mean)
    catalogue_sq = np.sort(squared_distances(catalogue, centre))
    share = best_share(left_out_distances(positives, mean), catalogue_sq)
    return centre, radius_for_share(catalogue_sq, reach * share)
