"""How far a class reaches around its positives: a Rocchio ball sized by the catalogue.

A few labelled positives say where a class is, not how large it is. Its size can be
estimated from the catalogue without more labels (positive-unlabelled learning):
around a centre, a ball of squared radius ``r`` holds the fraction ``F(r)`` of the
catalogue and the fraction ``G(r)`` of the class, and ``pi * G(r) <= F(r)`` wherever
``pi`` is the class's share of the catalogue. ``G`` is measured on known members:
the positives, each at its distance from the centre of the others (leave one out),
and the neighbour positives (the positives' nearest codes, which train as
positives), at their distance from the centre. So ``pi <= min_r F(r) / G(r)``,
tight where the ball holds the class alone. With that estimate, the expected F1 of
each ball is ``2 pi G / (F + pi)``; the best ball's share of the catalogue is what
the class is estimated to hold near its centre.

The centre is Rocchio's point ``2 mean(positives) - mean(catalogue)``, rounded to
integers so that squared distances to uint8 codes are exact int64.
"""

from __future__ import annotations

import numpy as np

from .reach_kernels import row_distances


def class_center(positives: np.ndarray, background_mean: np.ndarray) -> np.ndarray:
    """int64 ``(D,)``: ``round(2 mean(positives) - background_mean)``, of uint8
    ``positives (P, D)`` and float ``background_mean (D,)``."""
    point = 2.0 * positives.mean(axis=0, dtype=np.float64) - background_mean
    return np.rint(point).astype(np.int64)


def squared_distances_to(codes, center: np.ndarray, rows=None) -> np.ndarray:
    """int64 ``(m,)``: exact squared distances to the int64 ``center (D,)`` of the
    uint8 ``codes (N, D)`` at ``rows`` (int ``(m,)``; default every row)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    rows = (
        np.arange(codes.shape[0], dtype=np.int64)
        if rows is None
        else np.ascontiguousarray(rows, dtype=np.int64)
    )
    out = np.empty(rows.shape[0], np.int64)
    row_distances(codes, rows, np.ascontiguousarray(center, dtype=np.int64), out)
    return out


def left_out_distances(positives: np.ndarray, background_mean: np.ndarray):
    """int64 ``(P,)`` ascending: each positive's squared distance to the centre of
    the others (``P >= 2`` uint8 rows)."""
    out = np.empty(positives.shape[0], np.int64)
    for i in range(positives.shape[0]):
        center = class_center(np.delete(positives, i, axis=0), background_mean)
        out[i] = squared_distances_to(positives[i : i + 1], center)[0]
    return np.sort(out)


def best_share(member_sq: np.ndarray, catalogue_sq: np.ndarray) -> float:
    """The share of the catalogue inside the ball of best expected F1.

    Args:
        member_sq: int64 ``(k,)`` ascending, ``k >= 1``: squared distances of known
            members of the class to the centre (:func:`left_out_distances` and the
            neighbour positives').
        catalogue_sq: int64 ``(m,)`` ascending, squared distances of the catalogue
            (or a sample spread over it) to the centre.

    Returns:
        float in ``[0, 1]``: ``F(r*)`` for the radius ``r*`` (one of the members'
        distances, where ``G`` steps) that maximises ``2 pi G / (F + pi)``.
    """
    m = catalogue_sq.shape[0]
    share = np.searchsorted(catalogue_sq, member_sq, side="right") / m
    found = np.arange(1, member_sq.shape[0] + 1) / member_sq.shape[0]
    inside = share > 0
    pi = float(np.min(share[inside] / found[inside])) if inside.any() else 1.0 / m
    f1 = 2.0 * pi * found / (share + pi)
    return float(share[int(np.argmax(f1))])


def radius_for_share(catalogue_sq: np.ndarray, share: float) -> int:
    """The squared radius of the ball holding ``share`` of the catalogue (ascending
    ``catalogue_sq``), or -1 when that is less than one row."""
    rows = min(int(round(share * catalogue_sq.shape[0])), catalogue_sq.shape[0])
    return int(catalogue_sq[rows - 1]) if rows >= 1 else -1


def estimated_share(positives: np.ndarray, catalogue: np.ndarray) -> float:
    """The share of the catalogue the class of the uint8 ``positives (P, D)``
    (``P >= 2``) is estimated to hold near them, from the uint8 ``catalogue
    (m, D)`` (or a sample spread over it): :func:`best_share` of the positives'
    left-out distances."""
    return _ball_share(np.asarray(positives, dtype=np.uint8), catalogue)[2]


def class_ball(
    positives: np.ndarray,
    catalogue: np.ndarray,
    reach: float,
    neighbours: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The Rocchio ball holding ``reach`` times the share of the catalogue the class
    is estimated to hold near its positives.

    Args:
        positives: uint8 ``(P, D)``, ``P >= 2`` labelled positives (they make the
            centre).
        catalogue: uint8 ``(m, D)``, ``m >= 1``: the catalogue's codes or a sample
            spread over it.
        reach: float > 0.
        neighbours: uint8 ``(k, D)``, the neighbour positives, or None.

    Returns:
        ``(center int64 (D,), radius_sq int)``; ``radius_sq`` is -1 for an empty ball.
    """
    return class_ball_share(positives, catalogue, reach, neighbours)[:2]


def class_ball_share(positives, catalogue, reach: float, neighbours=None):
    """:func:`class_ball` and the share it is sized on: ``(center, radius_sq,
    share)``."""
    center, catalogue_sq, share = _ball_share(positives, catalogue, neighbours)
    return center, radius_for_share(catalogue_sq, reach * share), share


def _ball_share(positives, catalogue, neighbours=None):
    """``(center, catalogue_sq, share)``: Rocchio's centre of ``positives``, the
    catalogue's ascending squared distances to it, and :func:`best_share` of the
    known members (the positives left out in turn, and the ``neighbours``)."""
    mean = catalogue.mean(axis=0, dtype=np.float64)
    center = class_center(positives, mean)
    members = left_out_distances(positives, mean)
    if neighbours is not None and neighbours.shape[0]:
        members = np.sort(
            np.concatenate([members, squared_distances_to(neighbours, center)])
        )
    catalogue_sq = np.sort(squared_distances_to(catalogue, center))
    return center, catalogue_sq, best_share(members, catalogue_sq)
