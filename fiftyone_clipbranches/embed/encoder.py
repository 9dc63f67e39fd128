"""512-d CLIP embeddings -> 32-byte uint8 codes: a projection followed by a quantiser."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.embed.atomic import write_dir_atomic, write_json_atomic
from fiftyone_clipbranches.embed.head import CodeHead, train_head
from fiftyone_clipbranches.embed.pca import PCAProjection
from fiftyone_clipbranches.embed.quantizer import (
    FixedQuantizer,
    Quantizer,
    _as_matrix,
    quantizer_from_dict,
    unit_rows,
)

ENCODER_FORMAT = "clipbranches-code-encoder"
ENCODER_VERSION = 1
METHODS = ("head", "pca")
#: Rows encoded per step: codes of a stream encoded in batches of a multiple of
#: this are those of one call on all rows.
ENCODE_ROWS = 1 << 16
#: Rows the encoder is fitted on at most (drawn uniformly, see fit_sample_rows).
MAX_FIT_ROWS = 200_000


class CodeEncoder:
    """Turns float ``(n, D)`` CLIP embeddings (images or texts alike) into uint8 codes.

    Args:
        head: a :class:`CodeHead` or fitted :class:`PCAProjection` (``.project``).
        quantizer: a fitted :class:`Quantizer` or :class:`FixedQuantizer`.
        clip_identity: ``ClipModel.identity`` of the model whose embeddings this
            encoder expects (checked by callers before encoding queries).
    """

    def __init__(self, head, quantizer, clip_identity: dict | None = None):
        if not isinstance(head, CodeHead | PCAProjection):
            raise TypeError(
                f"head must be a CodeHead or PCAProjection, got {type(head)}"
            )
        if not isinstance(quantizer, Quantizer | FixedQuantizer):
            raise TypeError(
                f"quantizer must be a Quantizer or FixedQuantizer, got {type(quantizer)}"
            )
        if quantizer.n_dims != head.out_dim:
            raise ValueError(
                f"quantizer width {quantizer.n_dims} != head output width {head.out_dim}"
            )
        if clip_identity is not None and not isinstance(clip_identity, dict):
            raise TypeError("clip_identity must be a dict (ClipModel.identity) or None")
        self.head = head
        self.quantizer = quantizer
        self.clip_identity = clip_identity

    @property
    def in_dim(self) -> int:
        return self.head.in_dim

    @property
    def n_dims(self) -> int:
        return self.head.out_dim

    def project(self, embeddings) -> np.ndarray:
        """Float ``(n, D)`` -> float32 ``(n, n_dims)`` (before quantisation)."""
        return self.head.project(_check_embeddings(embeddings, self.in_dim))

    def encode(self, embeddings) -> np.ndarray:
        """Float ``(n, D)`` (or ``(D,)`` for one query) -> uint8 ``(n, n_dims)`` codes
        (``(n_dims,)`` for a single vector)."""
        arr = np.asarray(embeddings)
        if arr.ndim == 1:
            return self.quantizer.transform(self.project(arr[None]))[0]
        if arr.ndim != 2 or arr.shape[0] <= ENCODE_ROWS:
            return self.quantizer.transform(self.project(arr))
        codes = np.empty((arr.shape[0], self.n_dims), np.uint8)
        for a in range(0, arr.shape[0], ENCODE_ROWS):
            part = arr[a : a + ENCODE_ROWS]
            codes[a : a + len(part)] = self.quantizer.transform(self.project(part))
        return codes

    def save(self, directory: str | os.PathLike, metadata: dict | None = None) -> None:
        """Write ``encoder.json`` (+ ``head.pt`` for a trained head) into ``directory``,
        atomically (a temporary sibling directory renamed into place)."""
        kind = "head" if isinstance(self.head, CodeHead) else "pca"

        def fill(tmp: Path) -> None:
            manifest = {
                "format": ENCODER_FORMAT,
                "version": ENCODER_VERSION,
                "projection": kind,
                "in_dim": self.in_dim,
                "n_dims": self.n_dims,
                "quantizer": self.quantizer.to_dict(),
                "clip_identity": self.clip_identity,
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "metadata": metadata or {},
            }
            if kind == "head":
                self.head.save(tmp / "head.pt")
            else:
                manifest["pca"] = self.head.to_dict()
            write_json_atomic(tmp / "encoder.json", manifest)

        write_dir_atomic(directory, fill, _check_replaceable)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CodeEncoder:
        """Read an encoder written by :meth:`save`."""
        directory = Path(directory)
        path = directory / "encoder.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no encoder.json in {directory}; is this an encoder dir?"
            )
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if manifest.get("format") != ENCODER_FORMAT:
            raise ValueError(f"{path} is not a code encoder manifest")
        if manifest.get("version") != ENCODER_VERSION:
            raise ValueError(
                f"{path} has encoder format version {manifest.get('version')}; this code "
                f"reads version {ENCODER_VERSION}; rebuild the index"
            )
        if manifest["projection"] == "head":
            head = CodeHead.load(directory / "head.pt")
        else:
            head = PCAProjection.from_dict(manifest["pca"])
        enc = cls(
            head, quantizer_from_dict(manifest["quantizer"]), manifest["clip_identity"]
        )
        enc.metadata = manifest.get("metadata", {})
        return enc


def _check_replaceable(path: Path) -> None:
    """Refuse to save an encoder over anything but an encoder (or nothing)."""
    from fiftyone_clipbranches.engine.index_io import refuse_to_replace_other

    refuse_to_replace_other(path, "encoder.json", (ENCODER_FORMAT,), "code encoder")


def _check_embeddings(embeddings, dim: int) -> np.ndarray:
    unit, zero = unit_rows(_as_matrix(embeddings, "embeddings", dim=dim))
    if zero.any():
        rows = np.flatnonzero(zero)
        raise ValueError(
            f"embeddings hold {len(rows)} row(s) of zeros only (e.g. row {rows[0]}),"
            " which have no direction to encode: drop them (an image that could"
            " not be embedded gives one: EmbeddingResult.ok is False there)"
        )
    return unit


def fit_sample_rows(
    n_rows: int, max_fit_rows: int | None = MAX_FIT_ROWS, seed: int = 0
) -> np.ndarray:
    """Sorted int64 rows of ``n_rows`` that an encoder is fitted on: all of them up
    to ``max_fit_rows`` (None: no limit), else ``max_fit_rows`` drawn uniformly
    without replacement, seeded."""
    if max_fit_rows is not None and (
        isinstance(max_fit_rows, bool)
        or not isinstance(max_fit_rows, int)
        or max_fit_rows < 1
    ):
        raise ValueError(f"max_fit_rows must be a positive int, got {max_fit_rows!r}")
    if max_fit_rows is None or n_rows <= max_fit_rows:
        return np.arange(n_rows, dtype=np.int64)
    rows = np.random.default_rng(seed).choice(n_rows, max_fit_rows, replace=False)
    return np.sort(rows).astype(np.int64)


def min_fit_rows(method: str, n_dims: int = 32) -> int:
    """The fewest embeddings ``fit_code_encoder(method=method, n_dims=n_dims)``
    fits on: the PCA needs more rows than components, the head twice its width."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return n_dims + 1 if method == "pca" else max(2 * n_dims, 8)


def fit_code_encoder(
    image_emb,
    text_emb=None,
    method: str = "head",
    *,
    clip_identity: dict | None = None,
    n_dims: int = 32,
    quantizer: Quantizer | None = None,
    progress: bool | Callable[[float], None] = True,
    seed: int = 0,
    max_fit_rows: int | None = MAX_FIT_ROWS,
    **head_kwargs,
) -> CodeEncoder:
    """Fit a :class:`CodeEncoder` on catalogue embeddings.

    Args:
        image_emb: float ``(n, D)`` image embeddings (rows of failed images removed).
        text_emb: optional float ``(m, D)`` prompt-vocabulary text embeddings
            (``method="head"`` only) so that text queries keep their neighbourhoods.
        method: "head" (trained :class:`CodeHead`) or "pca" (no training).
        quantizer: unfitted :class:`Quantizer` prototype (default global scale).
        progress: the head's training progress (:func:`train_head`); the PCA fit
            reports none.
        max_fit_rows: fit on at most this many rows of ``image_emb``, those of
            :func:`fit_sample_rows` (None: all rows).
        head_kwargs: passed to :func:`train_head` (steps, hidden, koleo_weight, ...).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = _as_matrix(image_emb, "image_emb")
    rows = fit_sample_rows(x.shape[0], max_fit_rows, seed)
    if len(rows) < x.shape[0]:
        x = x[rows]
    x = _check_embeddings(x, x.shape[1])
    if x.shape[1] < n_dims:
        raise ValueError(
            f"the embeddings have {x.shape[1]} dims, fewer than the {n_dims} of the "
            "codes: index embeddings of an image model (CLIP's have 512 or more)"
        )
    if method == "pca":
        if text_emb is not None or head_kwargs:
            raise ValueError("method='pca' takes no text_emb or head options")
        head = PCAProjection(n_dims).fit(x)
    else:
        head = train_head(
            x, text_emb, out_dim=n_dims, progress=progress, seed=seed, **head_kwargs
        )
    proto = quantizer if quantizer is not None else Quantizer()
    if not isinstance(proto, Quantizer):
        raise TypeError("quantizer must be a Quantizer (unfitted prototype) or None")
    q = Quantizer(proto.scale, proto.clip_quantile).fit(head.project(x))
    return CodeEncoder(head, q, clip_identity)
