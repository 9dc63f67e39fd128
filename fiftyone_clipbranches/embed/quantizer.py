"""Scalar quantisers mapping 32-d float vectors to uint8 codes, and the PCA baseline."""

from __future__ import annotations

import numpy as np

QUANTIZER_VERSION = 1
SCALES = ("global", "per_dim")


def _as_matrix(vectors, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (n, d), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(
            f"{name} must have {dim} columns (fitted width), got {arr.shape[1]}"
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


#: Rows whose largest magnitude lies outside this range are divided by it before
#: their length is taken: in float32 the squares of 1e20 overflow and those of
#: 1e-23 underflow, which made every such row one code (or a zero row).
_PLAIN_SCALE = (1e-15, 1e15)


def rows_in_range(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``x`` (``(n, d)`` floats) with each row whose largest magnitude is finite,
    not zero and outside ``[low, high]`` divided by that magnitude (its direction
    kept); the other rows, and ``x`` itself when none is, as they are."""
    if not x.shape[1]:
        return x
    with np.errstate(invalid="ignore"):  # NaN rows: refused by the callers
        peak = np.abs(x).max(axis=1)
    odd = np.isfinite(peak) & (peak > 0) & ((peak < low) | (peak > high))
    if not odd.any():
        return x
    x = x.copy()
    x[odd] /= peak[odd, None]
    return x


def unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unit, zero)``: float32 ``(n, d)`` rows of ``x`` (finite float32) scaled
    to length 1, and bool ``(n,)``, the rows of zeros only (left as they are).
    Rows of any finite magnitude keep their direction; rows in the plain range
    are divided by their length alone (bit for bit as before)."""
    zero = ~x.any(axis=1)
    x = rows_in_range(x, *_PLAIN_SCALE)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(zero[:, None], 1.0, norms).astype(np.float32), zero


def _to_uint8(vectors: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    scaled = (vectors - lo) * (256.0 / (hi - lo))
    return np.clip(np.floor(scaled), 0, 255).astype(np.uint8)


class Quantizer:
    """Affine scalar quantiser fitted on data: 256 equal bins between robust bounds.

    ``code = floor(clip(256 (v - lo) / (hi - lo), 0, 255))`` with ``lo``/``hi`` the
    ``clip_quantile`` and ``1 - clip_quantile`` quantiles of the fitted data, taken over
    all values (``scale="global"``: one grid for every dimension, so Euclidean distances
    between codes stay proportional to those between vectors) or per dimension
    (``scale="per_dim"``). Apply the same fitted quantiser to images and queries.

    Attributes (after fit):
        lo_, hi_: float32 ``(d,)`` lower and upper bounds of each dimension's grid.
    """

    def __init__(self, scale: str = "global", clip_quantile: float = 0.0005):
        self.scale = scale
        self.clip_quantile = clip_quantile

    def _validate_params(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        q = self.clip_quantile
        if not isinstance(q, int | float) or not 0.0 <= q < 0.5:
            raise ValueError(f"clip_quantile must be a float in [0, 0.5), got {q!r}")

    def fit(self, vectors) -> Quantizer:
        """Fit the bounds on float ``(n, d)`` vectors (n >= 2)."""
        self._validate_params()
        x = _as_matrix(vectors)
        if x.shape[0] < 2:
            raise ValueError("Quantizer.fit needs at least 2 vectors")
        q = [self.clip_quantile, 1.0 - self.clip_quantile]
        if self.scale == "global":
            lo, hi = np.quantile(x, q)
            lo = np.full(x.shape[1], lo)
            hi = np.full(x.shape[1], hi)
        else:
            lo, hi = np.quantile(x, q, axis=0)
        width = np.maximum(hi - lo, 1e-6)
        self.lo_ = lo.astype(np.float32)
        self.hi_ = (lo + width).astype(np.float32)
        return self

    @property
    def n_dims(self) -> int:
        self._check_fitted()
        return int(self.lo_.shape[0])

    def _check_fitted(self) -> None:
        if not hasattr(self, "lo_"):
            raise ValueError(
                "this Quantizer is not fitted yet; call fit(vectors) first"
            )

    def transform(self, vectors) -> np.ndarray:
        """Float ``(n, d)`` -> uint8 ``(n, d)`` C-contiguous codes."""
        self._check_fitted()
        x = _as_matrix(vectors, dim=self.n_dims)
        return np.ascontiguousarray(_to_uint8(x, self.lo_, self.hi_))

    def fit_transform(self, vectors) -> np.ndarray:
        return self.fit(vectors).transform(vectors)

    def inverse_transform(self, codes) -> np.ndarray:
        """uint8 codes -> float32 bin centres ``(n, d)``."""
        self._check_fitted()
        c = np.asarray(codes)
        if c.dtype != np.uint8 or c.ndim != 2 or c.shape[1] != self.n_dims:
            raise ValueError(f"codes must be uint8 (n, {self.n_dims})")
        return self.lo_ + (c.astype(np.float32) + 0.5) * ((self.hi_ - self.lo_) / 256.0)

    def to_dict(self) -> dict:
        self._check_fitted()
        return {
            "kind": "affine",
            "version": QUANTIZER_VERSION,
            "scale": self.scale,
            "clip_quantile": float(self.clip_quantile),
            "lo": self.lo_.tolist(),
            "hi": self.hi_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Quantizer:
        _check_header(d, "affine")
        q = cls(scale=d["scale"], clip_quantile=d["clip_quantile"])
        q._validate_params()
        q.lo_ = np.asarray(d["lo"], dtype=np.float32)
        q.hi_ = np.asarray(d["hi"], dtype=np.float32)
        if q.lo_.ndim != 1 or q.lo_.shape != q.hi_.shape or np.any(q.hi_ <= q.lo_):
            raise ValueError("quantizer dict has inconsistent lo/hi bounds")
        return q


class FixedQuantizer:
    """The CLIP-Branches reference map for unit vectors: ``floor(clip(127.5 v + 128,
    0, 255))``. Data-independent; ``fit`` only checks the width."""

    def __init__(self, n_dims: int = 32):
        self.n_dims = n_dims

    def fit(self, vectors=None) -> FixedQuantizer:
        if not isinstance(self.n_dims, int) or self.n_dims < 1:
            raise ValueError(f"n_dims must be a positive int, got {self.n_dims!r}")
        if vectors is not None:
            _as_matrix(vectors, dim=self.n_dims)
        return self

    def transform(self, vectors) -> np.ndarray:
        x = _as_matrix(vectors, dim=self.n_dims)
        return np.ascontiguousarray(
            np.clip(np.floor(127.5 * x + 128.0), 0, 255).astype(np.uint8)
        )

    def fit_transform(self, vectors) -> np.ndarray:
        return self.fit(vectors).transform(vectors)

    def to_dict(self) -> dict:
        return {"kind": "fixed", "version": QUANTIZER_VERSION, "n_dims": self.n_dims}

    @classmethod
    def from_dict(cls, d: dict) -> FixedQuantizer:
        _check_header(d, "fixed")
        return cls(n_dims=int(d["n_dims"])).fit()


def _check_header(d: dict, kind: str) -> None:
    if not isinstance(d, dict) or d.get("kind") != kind:
        raise ValueError(f"not a serialised {kind!r} quantizer: {str(d)[:80]}")
    if d.get("version") != QUANTIZER_VERSION:
        raise ValueError(
            f"quantizer format version {d.get('version')} is not supported "
            f"(expected {QUANTIZER_VERSION}); rebuild the index"
        )


def quantizer_from_dict(d: dict):
    """Rebuild a :class:`Quantizer` or :class:`FixedQuantizer` from ``to_dict()``."""
    kinds = {"affine": Quantizer, "fixed": FixedQuantizer}
    if not isinstance(d, dict) or d.get("kind") not in kinds:
        raise ValueError(f"unknown quantizer kind in {str(d)[:80]}")
    return kinds[d["kind"]].from_dict(d)


class PCACodes:
    """Baseline codes without training: PCA to ``n_components`` dims, then a fitted
    :class:`Quantizer`.

    Attributes (after fit):
        projection_: fitted :class:`~fiftyone_clipbranches.embed.pca.PCAProjection`.
        quantizer_: fitted :class:`Quantizer`.
    """

    def __init__(self, n_components: int = 32, quantizer: Quantizer | None = None):
        self.n_components = n_components
        self.quantizer = quantizer

    def fit(self, embeddings) -> PCACodes:
        from fiftyone_clipbranches.embed.pca import PCAProjection

        self.projection_ = PCAProjection(self.n_components).fit(embeddings)
        base = self.quantizer if self.quantizer is not None else Quantizer()
        self.quantizer_ = Quantizer(base.scale, base.clip_quantile)
        self.quantizer_.fit(self.projection_.project(embeddings))
        return self

    def project(self, embeddings) -> np.ndarray:
        """Float ``(n, D)`` -> float32 ``(n, n_components)``."""
        return self.projection_.project(embeddings)

    def transform(self, embeddings) -> np.ndarray:
        """Float ``(n, D)`` -> uint8 ``(n, n_components)``."""
        return self.quantizer_.transform(self.project(embeddings))
