"""Closed integer boxes over feature subsets of uint8 codes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .subsets import FeatureSubsets


@dataclass(frozen=True, eq=False)
class Boxes:
    """A list of axis-aligned boxes, each living in one feature subset.

    Box ``b`` contains code ``x`` iff ``lo[b, j] <= x[dims[j]] <= hi[b, j]`` for every
    ``j < lengths[subset_ids[b]]``, where ``dims`` is subset ``subset_ids[b]``; all other
    dimensions are unconstrained. A box with ``lo > hi`` in some dimension is empty.

    Attributes:
        subset_ids: int32 ``(B,)``, index of each box's feature subset.
        lo: int16 ``(B, max_len)``, inclusive lower bounds (padding ignored).
        hi: int16 ``(B, max_len)``, inclusive upper bounds (padding ignored).
        member: int32 ``(B,)``, ensemble member that owns each box (0 for one model).
    """

    subset_ids: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    member: np.ndarray

    def __post_init__(self):
        subset_ids = np.ascontiguousarray(self.subset_ids, dtype=np.int32).reshape(-1)
        n = subset_ids.shape[0]
        lo = np.ascontiguousarray(self.lo, dtype=np.int16)
        hi = np.ascontiguousarray(self.hi, dtype=np.int16)
        if lo.ndim != 2 or lo.shape[0] != n or hi.shape != lo.shape:
            raise ValueError(
                "lo and hi must both be (B, max_len) with B = len(subset_ids)"
            )
        member = np.ascontiguousarray(self.member, dtype=np.int32).reshape(-1)
        if member.shape != (n,):
            raise ValueError("member must be (B,)")
        object.__setattr__(self, "subset_ids", subset_ids)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "member", member)

    def __len__(self) -> int:
        return int(self.subset_ids.shape[0])

    @property
    def n_members(self) -> int:
        return int(self.member.max()) + 1 if len(self) else 0

    @classmethod
    def empty(cls, max_len: int = 1) -> Boxes:
        z = np.zeros((0, max_len), dtype=np.int16)
        return cls(np.zeros(0, np.int32), z, z.copy(), np.zeros(0, np.int32))

    @classmethod
    def concatenate(cls, parts: list[Boxes], members: list[int] | None = None) -> Boxes:
        """Join box lists; ``members[i]`` (default ``i``) becomes the owner of part ``i``."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        width = max(p.lo.shape[1] for p in parts)
        lo = np.zeros((sum(len(p) for p in parts), width), dtype=np.int16)
        hi = np.full_like(lo, -1)
        subset_ids, member = [], []
        row = 0
        for i, p in enumerate(parts):
            k = len(p)
            lo[row : row + k, : p.lo.shape[1]] = p.lo
            hi[row : row + k, : p.hi.shape[1]] = p.hi
            subset_ids.append(p.subset_ids)
            owner = i if members is None else members[i]
            member.append(np.full(k, owner, dtype=np.int32))
            row += k
        return cls(np.concatenate(subset_ids), lo, hi, np.concatenate(member))

    def validate(self, subsets: FeatureSubsets) -> None:
        """Raise ``ValueError`` if a box names a subset that ``subsets`` does not hold."""
        if len(self) and (
            self.subset_ids.min() < 0 or self.subset_ids.max() >= len(subsets)
        ):
            raise ValueError("a box refers to a feature subset the index does not have")
        if self.lo.shape[1] < subsets.max_len and len(self):
            need = subsets.lengths[self.subset_ids].max()
            if need > self.lo.shape[1]:
                raise ValueError("box bounds are narrower than their feature subsets")

    def contains(self, codes: np.ndarray, subsets: FeatureSubsets) -> np.ndarray:
        """Reference membership test (numpy): bool ``(N, B)``, True where box holds row."""
        self.validate(subsets)
        codes = np.asarray(codes)
        out = np.ones((codes.shape[0], len(self)), dtype=bool)
        for b in range(len(self)):
            s = int(self.subset_ids[b])
            dims = subsets.subset(s)
            n = dims.shape[0]
            vals = codes[:, dims].astype(np.int16)
            out[:, b] = np.all(
                (vals >= self.lo[b, :n]) & (vals <= self.hi[b, :n]), axis=1
            )
        return out

    def to_dict(self) -> dict:
        return {
            "subset_ids": self.subset_ids.tolist(),
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "member": self.member.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Boxes:
        return cls(
            np.asarray(d["subset_ids"], dtype=np.int32),
            np.asarray(d["lo"], dtype=np.int16).reshape(len(d["subset_ids"]), -1),
            np.asarray(d["hi"], dtype=np.int16).reshape(len(d["subset_ids"]), -1),
            np.asarray(d["member"], dtype=np.int32),
        )
