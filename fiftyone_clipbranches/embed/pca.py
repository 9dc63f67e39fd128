"""PCA projection, the training-free alternative to the code head."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from fiftyone_clipbranches.embed.quantizer import _as_matrix

PCA_VERSION = 1


class PCAProjection:
    """Centre and project onto the top ``n_components`` principal axes (no whitening,
    so Euclidean distances are kept as far as the dropped axes allow).

    Attributes (after fit):
        mean_: float32 ``(D,)``; components_: float32 ``(n_components, D)``.
    """

    def __init__(self, n_components: int = 32):
        self.n_components = n_components

    def fit(self, embeddings) -> PCAProjection:
        """Fit on float ``(n, D)`` embeddings, ``n > n_components``."""
        k = self.n_components
        x = _as_matrix(embeddings, "embeddings").astype(np.float64)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= x.shape[1]:
            raise ValueError(
                f"n_components must be an int in [1, {x.shape[1]}], got {k!r}"
            )
        if x.shape[0] <= k:
            raise ValueError(f"PCA needs more than {k} embeddings, got {x.shape[0]}")
        mean = x.mean(axis=0)
        centred = x
        centred -= mean  # in place: x is a float64 copy of its own
        # eigenvectors of the (D, D) covariance: cheap for n >> D, unlike an SVD of x
        with threadpool_limits(
            1
        ):  # small dense algebra: spinning BLAS threads only hurt
            values, vectors = np.linalg.eigh(centred.T @ centred)
        top = vectors[:, np.argsort(values)[::-1][:k]].T
        # fix the sign of each axis so fits are reproducible across BLAS builds
        top *= np.where(top[np.arange(k), np.abs(top).argmax(axis=1)] < 0, -1.0, 1.0)[
            :, None
        ]
        self.mean_ = mean.astype(np.float32)
        self.components_ = np.ascontiguousarray(top, dtype=np.float32)
        return self

    @property
    def in_dim(self) -> int:
        return int(self.mean_.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.components_.shape[0])

    def project(self, embeddings) -> np.ndarray:
        """Float ``(n, D)`` -> float32 ``(n, n_components)``."""
        if not hasattr(self, "mean_"):
            raise ValueError("this PCAProjection is not fitted yet; call fit() first")
        x = _as_matrix(embeddings, "embeddings", dim=self.in_dim)
        return np.ascontiguousarray(
            (x - self.mean_) @ self.components_.T, dtype=np.float32
        )

    def to_dict(self) -> dict:
        return {
            "kind": "pca",
            "version": PCA_VERSION,
            "mean": self.mean_.tolist(),
            "components": self.components_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> PCAProjection:
        if (
            not isinstance(d, dict)
            or d.get("kind") != "pca"
            or d.get("version") != PCA_VERSION
        ):
            raise ValueError("not a serialised PCAProjection of a supported version")
        p = cls(len(d["components"]))
        p.mean_ = np.asarray(d["mean"], dtype=np.float32)
        p.components_ = np.asarray(d["components"], dtype=np.float32)
        if p.components_.shape != (p.n_components, p.mean_.shape[0]):
            raise ValueError("PCAProjection dict has inconsistent shapes")
        return p
