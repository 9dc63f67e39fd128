"""Training sets for search-by-classification: labelled rows, neighbour positives
(rows of the cluster around the positives) when they are few (:mod:`.neighbours`), and random catalogue rows."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .codes import as_codes, take_rows
from .neighbours import NeighbourPool, auto_neighbours_per_positive, neighbour_rows
from .validation import check_positive_number


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """Rows of the catalogue with labels and weights, ready for ``model.fit``.

    Attributes:
        X: uint8 ``(n, D)``, the codes of the training rows.
        y: int8 ``(n,)``, 1 for positives, 0 for negatives.
        sample_weight: float64 ``(n,)``: 1 for positives and random negatives,
            ``negative_weight`` for explicit negatives.
        rows: int64 ``(n,)``, the catalogue row of each training row (ascending).
        neighbour_rows: int64 ``(m,)``, the rows among ``rows`` that are positive as
            neighbours of the labelled positives (ascending; empty by default).
        random_rows: int64 ``(r,)``, the rows among ``rows`` drawn at random as
            negatives (ascending; empty by default). Unlike explicit negatives they
            carry no label: some may belong to the class.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    rows: np.ndarray
    neighbour_rows: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    random_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def n_positives(self) -> int:
        return int(np.count_nonzero(self.y == 1))

    @property
    def n_negatives(self) -> int:
        return int(np.count_nonzero(self.y == 0))

    @property
    def neighbours(self) -> np.ndarray:
        """bool ``(n,)``: which training rows are neighbour positives."""
        return np.isin(self.rows, self.neighbour_rows)

    @property
    def unlabelled(self) -> np.ndarray:
        """bool ``(n,)``: which training rows are random (unlabelled) negatives."""
        return np.isin(self.rows, self.random_rows)


def _as_ids(ids, name: str, n_rows: int) -> np.ndarray:
    arr = np.asarray(ids if ids is not None else [])
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer row ids, got dtype {arr.dtype}")
    arr = arr.reshape(-1).astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n_rows)]
    if bad.size:
        raise ValueError(
            f"{name} holds row ids outside [0, {n_rows}): {bad[:10].tolist()}"
            " (ids are catalogue row numbers)"
        )
    return np.unique(arr)


def make_training_set(
    codes,
    positives,
    negatives=(),
    n_random_negatives: int = 500,
    negative_weight: float = 1.0,
    seed: int = 0,
    *,
    random_negative_weight: float = 1.0,
    neighbours_per_positive: int | str = 0,
    neighbour_weight: float = 1.0,
    max_random_fraction: float = 1.0,
    neighbour_pool: NeighbourPool | None = None,
) -> TrainingSet:
    """Assemble a training set from labelled catalogue rows.

    Positives get label 1 and weight 1; explicit negatives label 0 and weight
    ``negative_weight`` (a sample weight: rows are never repeated); up to
    ``n_random_negatives`` further rows are drawn uniformly without replacement from the
    rows that carry no label, with label 0 and weight ``random_negative_weight``
    (default 1; lower it when the class is common, since random rows may belong to
    it). With ``neighbours_per_positive`` (an int or ``"auto"``, see
    :func:`auto_neighbours_per_positive`), the unlabelled rows among the nearest code
    neighbours of each positive are added as positives of weight ``neighbour_weight``
    first, and are never drawn as random negatives. Duplicate ids are collapsed.
    The draw depends only on ``(N, labelled and neighbour rows, n_random_negatives,
    seed)``.

    Args:
        codes: uint8 ``(N, D)`` catalogue codes, or a sharded index's
            ``ShardedCodes`` (rows gathered and neighbours found shard by shard).
        positives: int ids of positive rows (at least one).
        negatives: int ids of negative rows (may be empty).
        n_random_negatives: int >= 0; fewer are drawn when fewer unlabelled rows exist.
        negative_weight: int or float > 0, the weight of each explicit negative.
        seed: seed of the random draw.
        random_negative_weight: int or float > 0, the weight of each random negative.
        neighbours_per_positive: int >= 0 or ``"auto"`` (default 0: none).
        neighbour_weight: int or float > 0, the weight of each neighbour positive.
        max_random_fraction: float in (0, 1], at most this fraction of the rows left
            unlabelled (after neighbours) is drawn: on a small catalogue drawing
            them all would make every unmarked match a negative.
        neighbour_pool: the rows the neighbour search scans, with their codes
            (``index.neighbour_pool()``, kept by the index); default: read from
            ``codes`` for this call (a sharded index's codes bring their own).

    The codes are read in one gather (labelled rows and the random draw made
    before the neighbours are known, which is the final draw unless it hits a
    neighbour) plus the neighbour pool: one round trip to the shards of a
    sharded index in the usual case.

    Returns:
        TrainingSet, rows sorted by catalogue id.

    Raises:
        ValueError: no positives, ids out of range, a row that is both positive and
            negative, a non-positive ``negative_weight`` or negative
            ``n_random_negatives``, a non-positive ``random_negative_weight``.
        TypeError: non-integer ids or parameters of the wrong type.
    """
    if not hasattr(codes, "neighbour_pool"):  # else a sharded index's ShardedCodes
        codes = as_codes(codes)
    n_rows = codes.shape[0]
    pos = _as_ids(positives, "positives", n_rows)
    neg = _as_ids(negatives, "negatives", n_rows)
    if pos.size == 0:
        raise ValueError("at least one positive row is required to train a model")
    both = np.intersect1d(pos, neg)
    if both.size:
        raise ValueError(
            f"contradictory labels: rows {both[:20].tolist()} are both positive and"
            " negative; remove them from one of the two lists"
        )
    if isinstance(n_random_negatives, bool) or not isinstance(
        n_random_negatives, numbers.Integral
    ):
        raise TypeError("n_random_negatives must be an int")
    if n_random_negatives < 0:
        raise ValueError("n_random_negatives must be >= 0")
    negative_weight = check_positive_number(negative_weight, "negative_weight")
    random_negative_weight = check_positive_number(
        random_negative_weight, "random_negative_weight"
    )
    neighbour_weight = check_positive_number(neighbour_weight, "neighbour_weight")
    if neighbours_per_positive == "auto":
        n_neighbours = "auto" if auto_neighbours_per_positive(pos.size) else 0
    elif isinstance(neighbours_per_positive, numbers.Integral) and not isinstance(
        neighbours_per_positive, bool
    ):
        if neighbours_per_positive < 0:
            raise ValueError("neighbours_per_positive must be >= 0 or 'auto'")
        n_neighbours = int(neighbours_per_positive)
    else:
        raise TypeError(
            f"neighbours_per_positive must be an int or 'auto', got "
            f"{neighbours_per_positive!r}"
        )

    if not 0 < max_random_fraction <= 1:
        raise ValueError(
            f"max_random_fraction must be in (0, 1], got {max_random_fraction}"
        )

    def draw(labelled: np.ndarray) -> np.ndarray:
        free = n_rows - labelled.size
        n_draw = min(int(n_random_negatives), int(free * max_random_fraction))
        return _draw_unlabelled(n_rows, labelled, n_draw, seed)

    guess = draw(np.concatenate([pos, neg]))
    known = _KnownCodes(codes, np.concatenate([pos, neg, guess]))
    if neighbour_pool is None and n_neighbours and hasattr(codes, "neighbour_pool"):
        neighbour_pool = codes.neighbour_pool()
    near = neighbour_rows(
        codes,
        pos,
        n_neighbours,
        exclude=neg,
        pool=neighbour_pool,
        positive_codes=known.of(pos),
    )
    rand = draw(np.concatenate([pos, neg, near])) if near.size else guess

    rows = np.concatenate([pos, near, neg, rand])
    y = np.concatenate(
        [
            np.ones(pos.size + near.size, np.int8),
            np.zeros(neg.size + rand.size, np.int8),
        ]
    )
    weight = np.concatenate(
        [
            np.ones(pos.size),
            np.full(near.size, neighbour_weight),
            np.full(neg.size, negative_weight),
            np.full(rand.size, random_negative_weight),
        ]
    )
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    return TrainingSet(
        X=known.of(rows, neighbour_pool),
        y=y[order],
        sample_weight=weight[order].astype(np.float64),
        rows=rows.astype(np.int64),
        neighbour_rows=near,
        random_rows=rand,
    )


class _KnownCodes:
    """Codes of some rows read in one gather; others looked up in a neighbour pool
    or, failing that, read."""

    def __init__(self, codes, rows: np.ndarray):
        self.codes = codes
        self.rows = np.unique(rows)
        self.values = take_rows(codes, self.rows)

    def of(self, rows: np.ndarray, pool: NeighbourPool | None = None) -> np.ndarray:
        """uint8 ``(len(rows), D)``, C-contiguous: the codes of ``rows`` (int64)."""
        out = np.empty((rows.shape[0], self.codes.shape[1]), np.uint8)
        at = np.searchsorted(self.rows, rows)
        have = at < self.rows.shape[0]
        have[have] = self.rows[at[have]] == rows[have]
        out[have] = self.values[at[have]]
        rest = np.flatnonzero(~have)
        if rest.size and pool is not None:
            found, values = pool.codes_of(rows[rest])
            out[rest[found]] = values
            rest = rest[~found]
        if rest.size:
            out[rest] = take_rows(self.codes, rows[rest])
        return out


def _draw_unlabelled(n_rows: int, labelled: np.ndarray, k: int, seed) -> np.ndarray:
    """``k`` distinct sorted rows of ``range(n_rows)`` not in ``labelled`` (all if fewer)."""
    free = n_rows - labelled.size
    k = min(k, free)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if k * 4 < free:
        # Rejection sampling keeps this O(k) on large catalogues.
        taken = np.zeros(0, dtype=np.int64)
        while taken.size < k:
            draw = rng.integers(0, n_rows, size=2 * (k - taken.size) + 16)
            draw = draw[~np.isin(draw, labelled)]
            taken = np.concatenate([taken, draw])
            _, first = np.unique(taken, return_index=True)
            taken = taken[np.sort(first)]
        return np.sort(taken[:k])
    mask = np.ones(n_rows, dtype=bool)
    mask[labelled] = False
    candidates = np.flatnonzero(mask)
    return np.sort(rng.choice(candidates, size=k, replace=False)).astype(np.int64)
