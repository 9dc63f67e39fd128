"""Evaluation data for the quality benchmark: labelled CLIP embeddings and their codes.

The shared data directory holds ``{name}_img_emb.npy`` (float16, ``(N, 512)``, L2-normalised)
and ``{name}_labels.npy`` (int16, ``(N,)``) per split. Codes are computed here in one of
three spaces:

- ``pca``: ``embed.quantizer.PCACodes`` (PCA to 32 dims + the 8-bit ``Quantizer``), with
  a numpy fallback when ``embed`` is missing.
- ``head``: the project's trained 512->32 head (``embed.head.train_head``) + ``Quantizer``.
- ``float``: the unquantized 512-d embeddings (float32), for reference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CODE_SPACES = ("pca", "head", "float")
CODE_DIMS = 32


@dataclass(frozen=True)
class Catalogue:
    """One labelled catalogue in the space the models are trained in.

    Attributes:
        name: dataset split name, e.g. ``"caltech101_test"``.
        features: ``(N, D)`` uint8 codes (``pca``/``head``) or float32 embeddings
            (``float``), C-contiguous; row ``i`` = catalogue item ``i``.
        labels: int64 ``(N,)`` class index of every row.
        space: one of :data:`CODE_SPACES`.
        codes_origin: how the codes were made (for the report).
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    space: str
    codes_origin: str

    @property
    def is_codes(self) -> bool:
        return self.features.dtype == np.uint8

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1

    def __len__(self) -> int:
        return int(self.features.shape[0])


def load_split(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(embeddings float32 (N, 512), labels int64 (N,))`` of one split.

    Raises:
        FileNotFoundError: with the missing path, when the split is not in ``data_dir``.
    """
    data_dir = Path(data_dir)
    emb_path = data_dir / f"{name}_img_emb.npy"
    lab_path = data_dir / f"{name}_labels.npy"
    for path in (emb_path, lab_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: check --data-dir and the dataset names"
                " (e.g. caltech101_test)"
            )
    emb = np.load(emb_path).astype(np.float32)
    labels = np.load(lab_path).astype(np.int64)
    if emb.ndim != 2 or labels.shape != (emb.shape[0],):
        raise ValueError(
            f"{name}: embeddings {emb.shape} and labels {labels.shape} differ"
        )
    return emb, labels


def fit_split_name(name: str, fit_split: str) -> str:
    """``caltech101_test`` -> ``caltech101_val`` for ``fit_split="val"``."""
    base = name.rsplit("_", 1)[0] if "_" in name else name
    return f"{base}_{fit_split}"


class _AffineQuantizer:
    """Fallback 8-bit quantiser: one affine map for all dims (keeps distances isotropic)."""

    def fit(self, vectors: np.ndarray) -> _AffineQuantizer:
        lo, hi = np.quantile(vectors, [0.0005, 0.9995])
        self.offset_ = float(lo)
        self.scale_ = 255.0 / max(float(hi - lo), 1e-12)
        return self

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        q = np.rint((vectors - self.offset_) * self.scale_)
        return np.clip(q, 0, 255).astype(np.uint8)


def _project_quantizer():
    try:
        from fiftyone_clipbranches.embed.quantizer import Quantizer
    except ImportError:
        return _AffineQuantizer(), "affine fallback quantizer"
    return Quantizer(), "embed.quantizer.Quantizer"


class _PCA:
    """Fallback PCA to ``n_dims`` (used only when ``embed.quantizer`` is missing)."""

    def __init__(self, n_dims: int):
        self.n_dims = n_dims

    def fit(self, x: np.ndarray) -> _PCA:
        self.mean_ = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        self.basis_ = vt[: self.n_dims].T.astype(np.float32)
        return self

    def project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.basis_


class CodeMaker:
    """Turns 512-d embeddings into the features of one space, fitted once on a fit set.

    Args:
        space: one of :data:`CODE_SPACES`.
        head_kwargs: extra keyword arguments for ``embed.head.train_head``.
    """

    def __init__(self, space: str, head_kwargs: dict | None = None):
        if space not in CODE_SPACES:
            raise ValueError(f"codes must be one of {CODE_SPACES}, got {space!r}")
        self.space = space
        self.head_kwargs = dict(head_kwargs or {})

    def fit(self, fit_vectors: np.ndarray) -> CodeMaker:
        """Fit on float32 ``(M, 512)`` embeddings (no labels are used)."""
        fit_vectors = np.asarray(fit_vectors, dtype=np.float32)
        n = len(fit_vectors)
        if self.space == "float":
            self.origin_ = "unquantized 512-d CLIP embeddings (float32)"
            return self
        if self.space == "pca":
            try:
                from fiftyone_clipbranches.embed.quantizer import PCACodes
            except ImportError:
                self._project = _PCA(CODE_DIMS).fit(fit_vectors).project
                what = f"PCA-{CODE_DIMS} (fallback) fitted on {n} rows"
            else:
                codes = PCACodes(CODE_DIMS).fit(fit_vectors)
                self._project = codes.project
                what = f"embed.quantizer.PCACodes({CODE_DIMS}) fitted on {n} rows"
        else:
            try:
                from fiftyone_clipbranches.embed.head import train_head
            except ImportError as exc:
                raise RuntimeError(
                    "--codes head needs fiftyone_clipbranches.embed.head.train_head;"
                    " it is not importable: use --codes pca"
                ) from exc
            kwargs = {"progress": False, **self.head_kwargs}
            self._project = train_head(fit_vectors, **kwargs).project
            what = f"embed.head.train_head({kwargs}) trained on {n} rows"
        quantizer, qname = _project_quantizer()
        self._quantizer = quantizer.fit(self._project(fit_vectors))
        self.origin_ = f"{what} + {qname}"
        return self

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.space == "float":
            return np.ascontiguousarray(vectors)
        return np.ascontiguousarray(self._quantizer.transform(self._project(vectors)))


def _cache_key(data_dir: Path, names, space, fit_split, head_kwargs) -> str:
    """A digest of everything the codes depend on: the split files (size and
    mtime), the space, the fit split, the head's arguments and the source of the
    code makers (``embed.head``, ``embed.quantizer`` and this module)."""
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps([list(names), space, fit_split, head_kwargs or {}]).encode())
    splits = list(names)
    if fit_split != "self":
        splits += [fit_split_name(n, fit_split) for n in names]
    for name in splits:
        st = (Path(data_dir) / f"{name}_img_emb.npy").stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    sources = [Path(__file__)]
    try:
        import fiftyone_clipbranches.embed as embed
    except ImportError:
        pass
    else:
        root = Path(embed.__file__).parent
        sources += [root / "head.py", root / "quantizer.py"]
    for src in sources:
        if src.is_file():
            h.update(src.read_bytes())
    return h.hexdigest()[:16]


def load_catalogues(
    data_dir: Path,
    names: list[str],
    space: str,
    fit_split: str = "self",
    head_kwargs: dict | None = None,
    cache_dir: Path | None = None,
) -> list[Catalogue]:
    """Load the named splits and express them in ``space``.

    ``fit_split="self"`` fits the projection/head and quantiser on each catalogue's own
    embeddings, as ``build_index`` does for a user's dataset (no labels are involved);
    any other value (e.g. ``"val"``) fits one code maker on the concatenated splits of
    that name, so it never sees a catalogue row. With ``cache_dir``, the codes are
    kept there (``codes_<digest>.npz``, see :func:`_cache_key`) and read back by the
    next run with the same inputs.
    """
    cache = None
    if cache_dir is not None:
        key = _cache_key(data_dir, names, space, fit_split, head_kwargs)
        cache = Path(cache_dir) / f"codes_{key}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                return [
                    Catalogue(
                        name,
                        np.ascontiguousarray(z[f"features_{i}"]),
                        z[f"labels_{i}"].astype(np.int64),
                        space,
                        f"{z[f'origin_{i}']} (cached)",
                    )
                    for i, name in enumerate(names)
                ]
    out = _make_catalogues(data_dir, names, space, fit_split, head_kwargs)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for i, cat in enumerate(out):
            arrays[f"features_{i}"] = cat.features
            arrays[f"labels_{i}"] = cat.labels
            arrays[f"origin_{i}"] = np.array(cat.codes_origin)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    return out


def _make_catalogues(data_dir, names, space, fit_split, head_kwargs):
    loaded = [(name, *load_split(data_dir, name)) for name in names]
    shared = None
    if fit_split != "self":
        parts = [load_split(data_dir, fit_split_name(n, fit_split))[0] for n in names]
        shared = CodeMaker(space, head_kwargs).fit(np.concatenate(parts))
    out = []
    for name, emb, labels in loaded:
        maker = shared or CodeMaker(space, head_kwargs).fit(emb)
        origin = maker.origin_ + (
            " (on each catalogue itself)"
            if shared is None
            else f" ({fit_split} splits)"
        )
        out.append(Catalogue(name, maker.transform(emb), labels, space, origin))
    return out
