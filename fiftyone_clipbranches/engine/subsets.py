"""Feature subsets: the small groups of code dimensions that boxes and trees live in."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Default subset configuration, ``{subset size: number of subsets}``: eight 6-dim
#: subsets cost 32 + 8 * (6 + 4) = 112 bytes per point with the codes, and match the
#: retrieval quality of larger configurations (see docs/quality.md, sweep 1).
DEFAULT_SUBSET_SIZES: dict[int, int] = {6: 8}


@dataclass(frozen=True, eq=False)
class FeatureSubsets:
    """A fixed list of feature subsets shared by an index and every model trained for it.

    Attributes:
        dims: int32 array of shape ``(S, max_len)``; row ``s`` holds the sorted dimensions
            of subset ``s`` followed by ``-1`` padding.
        lengths: int32 array of shape ``(S,)``, the number of dimensions of each subset.
        n_dims: dimensionality ``D`` of the codes the subsets index into.
    """

    dims: np.ndarray
    lengths: np.ndarray
    n_dims: int

    def __post_init__(self):
        dims = np.ascontiguousarray(self.dims, dtype=np.int32)
        lengths = np.ascontiguousarray(self.lengths, dtype=np.int32)
        if dims.ndim != 2 or lengths.shape != (dims.shape[0],):
            raise ValueError("dims must be (S, max_len) and lengths (S,)")
        if dims.shape[0] == 0:
            raise ValueError("at least one feature subset is required")
        for s in range(dims.shape[0]):
            n = int(lengths[s])
            row = dims[s]
            if n < 1 or n > dims.shape[1]:
                raise ValueError(f"subset {s} has invalid length {n}")
            if np.any(row[n:] != -1):
                raise ValueError(f"subset {s} must be padded with -1 after {n} dims")
            used = row[:n]
            if np.any(used < 0) or np.any(used >= self.n_dims):
                raise ValueError(f"subset {s} has dims outside [0, {self.n_dims})")
            if np.any(np.diff(used) <= 0):
                raise ValueError(f"subset {s} dims must be strictly increasing")
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "n_dims", int(self.n_dims))

    def __len__(self) -> int:
        return int(self.dims.shape[0])

    @property
    def max_len(self) -> int:
        return int(self.dims.shape[1])

    def subset(self, s: int) -> np.ndarray:
        """Dimensions of subset ``s`` as an int32 array."""
        return self.dims[s, : self.lengths[s]]

    def as_lists(self) -> list[list[int]]:
        return [self.subset(s).tolist() for s in range(len(self))]

    def to_dict(self) -> dict:
        return {"n_dims": self.n_dims, "subsets": self.as_lists()}

    @classmethod
    def from_lists(cls, subsets: list[list[int]], n_dims: int) -> FeatureSubsets:
        if len(subsets) == 0:
            raise ValueError("at least one feature subset is required")
        max_len = max(len(s) for s in subsets)
        dims = np.full((len(subsets), max_len), -1, dtype=np.int32)
        for i, s in enumerate(subsets):
            dims[i, : len(s)] = s
        lengths = np.array([len(s) for s in subsets], dtype=np.int32)
        return cls(dims=dims, lengths=lengths, n_dims=n_dims)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSubsets:
        return cls.from_lists(d["subsets"], d["n_dims"])

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, FeatureSubsets)
            and self.n_dims == other.n_dims
            and self.as_lists() == other.as_lists()
        )

    def __hash__(self) -> int:
        return hash((self.n_dims, tuple(map(tuple, self.as_lists()))))

    def __repr__(self) -> str:
        sizes: dict[int, int] = {}
        for n in self.lengths.tolist():
            sizes[n] = sizes.get(n, 0) + 1
        return f"FeatureSubsets(n_dims={self.n_dims}, sizes={sizes})"


def _default_sizes(n_dims: int) -> dict[int, int]:
    """:data:`DEFAULT_SUBSET_SIZES` where it covers ``n_dims``; else subsets of its
    size (at most ``n_dims``), enough to cover every dim, no more than exist."""
    ((size, count),) = DEFAULT_SUBSET_SIZES.items()
    if size <= n_dims <= size * count and count <= math.comb(n_dims, size):
        return dict(DEFAULT_SUBSET_SIZES)
    size = min(size, n_dims)
    count = min(max(count, -(-n_dims // size)), math.comb(n_dims, size))
    return {size: count}


def make_subsets(
    n_dims: int = 32,
    sizes: dict[int, int] | None = None,
    seed: int = 0,
) -> FeatureSubsets:
    """Draw distinct feature subsets deterministically, covering every dimension.

    Subsets are drawn group by group (ascending size). Each subset takes the least
    used dimensions first (ties broken at random), so dimensions are spread evenly and
    every dimension is covered as soon as the total number of slots allows it.

    Args:
        n_dims: dimensionality ``D`` of the codes.
        sizes: ``{subset size: count}``; defaults to :data:`DEFAULT_SUBSET_SIZES`
            where it covers ``n_dims`` (6 to 48 dims), else to as many subsets of
            6 dims (of every dim when there are fewer) as cover every dim.
        seed: seed of the generator; the same arguments always give the same subsets.

    Raises:
        ValueError: if the configuration cannot cover every dimension, asks for a subset
            larger than ``n_dims`` or for more distinct subsets than exist.
    """
    if isinstance(n_dims, bool) or not isinstance(n_dims, (int, np.integer)):
        raise TypeError("n_dims must be an int")
    if n_dims < 1:
        raise ValueError("n_dims must be >= 1")
    sizes = dict(_default_sizes(int(n_dims)) if sizes is None else sizes)
    if not sizes:
        raise ValueError("sizes must name at least one subset size")
    for size, count in sizes.items():
        if int(size) < 1 or int(size) > n_dims:
            raise ValueError(f"subset size {size} must be in [1, n_dims={n_dims}]")
        if int(count) < 0:
            raise ValueError(f"subset count for size {size} must be >= 0")
    slots = sum(int(size) * int(count) for size, count in sizes.items())
    if slots < n_dims:
        raise ValueError(
            f"subsets {sizes} have {slots} dimension slots, fewer than n_dims={n_dims}:"
            " not every dimension can be covered; add subsets or use larger ones"
        )
    rng = np.random.default_rng(seed)
    usage = np.zeros(n_dims, dtype=np.int64)
    seen: set[tuple[int, ...]] = set()
    subsets: list[list[int]] = []
    for size in sorted(int(s) for s in sizes):
        count = int(sizes[size])
        attempts = 0
        made = 0
        while made < count:
            attempts += 1
            if attempts > 1000 * (count + 1):
                raise ValueError(
                    f"cannot draw {count} distinct subsets of size {size} from"
                    f" {n_dims} dims"
                )
            order = np.lexsort((rng.random(n_dims), usage))
            chosen = tuple(sorted(order[:size].tolist()))
            if chosen in seen:
                alt = rng.choice(n_dims, size=size, replace=False)
                chosen = tuple(sorted(alt.tolist()))
                if chosen in seen:
                    continue
            seen.add(chosen)
            subsets.append(list(chosen))
            usage[list(chosen)] += 1
            made += 1
    if np.any(usage == 0):
        missing = np.flatnonzero(usage == 0).tolist()
        raise ValueError(f"dimensions {missing} are not covered; try another seed")
    return FeatureSubsets.from_lists(subsets, n_dims)
