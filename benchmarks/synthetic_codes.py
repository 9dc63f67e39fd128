"""Realistic synthetic 32-byte codes (1M-100M rows) and query boxes of known selectivity.

The generator fits a Gaussian mixture (k-means + one full covariance per component,
numpy only) to real CLIP ViT-B/32 image embeddings from ``../shared/data/clip-vitb32``
projected to 32 dims by PCA, then samples in chunks and quantises every dimension to
uint8 (a stand-in for the learned code head + quantiser). Three extra components are
given weights of exactly 1%, 0.1% and 0.01% so that benchmarks have natural "classes"
of known selectivity; ``labels`` holds the component of every row.

Two kinds of rare class (``--classes``):

- ``mixture`` (the default): copies of existing components, shrunk to 0.6x and shifted
  by half their spread. They overlap their source component, which holds 2-200x more
  rows: a model trained on 40 of their rows reaches F1 0.05-0.83 at 10M.
- ``real``: three real classes of the shared catalogues (at least 64 embeddings each,
  test and val splits, drawn by the seed), each a Gaussian fitted to its own
  embeddings and left out of the background's fit. Seed 0 draws three oxford_pets
  breeds; at 1M-10M rows they are no easier to separate than the mixture copies
  (docs/quality.md, "Classes shaped like real ones").

Usage::

    python benchmarks/synthetic_codes.py --n 10M [--seed 0] [--work-dir DIR]
        [--classes real]

Rows are written to ``DIR/codes_<n>_s<seed>[_real].npy`` (uint8 ``(n, 32)``) and
``labels_<n>_s<seed>[_real].npy`` (int16); the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "clip-vitb32"
RESULTS = REPO / "benchmarks" / "results"
N_DIMS = 32
N_COMPONENTS = 48
#: component id -> fraction of rows, for the three rare benchmark classes
TARGETS = {"1%": 0.01, "0.1%": 0.001, "0.01%": 0.0001}
CHUNK = 1 << 20


def parse_n(text: str) -> int:
    text = str(text).strip().upper()
    scale = {"K": 10**3, "M": 10**6, "B": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


CLASS_KINDS = ("mixture", "real")
#: fewest embeddings a real class needs to be a rare target (its covariance's rank)
MIN_CLASS_ROWS = 2 * N_DIMS


def load_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """Every embedding under ``DATA`` and a global class id per row (-1: unlabelled)."""
    files = sorted(DATA.glob("*_img_emb.npy"))
    if not files:
        raise FileNotFoundError(
            f"no CLIP embeddings under {DATA}; the synthetic generator needs"
            " ../shared/data/clip-vitb32 (see ../shared/data/README.md)"
        )

    def catalogue(f):  # caltech101_test_img_emb.npy -> caltech101
        return f.name.removesuffix("_img_emb.npy").rsplit("_", 1)[0]

    catalogues = sorted({catalogue(f) for f in files})
    embs, classes = [], []
    for f in files:
        emb = np.load(f).astype(np.float64)
        labels_file = f.with_name(f.name.replace("_img_emb.npy", "_labels.npy"))
        cls = np.full(len(emb), -1, np.int64)
        if labels_file.exists():
            offset = catalogues.index(catalogue(f)) * 10_000
            cls = offset + np.load(labels_file).astype(np.int64)
        embs.append(emb)
        classes.append(cls)
    return np.concatenate(embs), np.concatenate(classes)


def _gaussian(pts):
    cov = np.cov(pts, rowvar=False)
    cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov))  # shrink towards diagonal
    return pts.mean(0), np.linalg.cholesky(cov + 1e-9 * np.eye(N_DIMS))


def _kmeans(x, k, rng, iters=25):
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(iters):
        d = (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None]
        assign = d.argmin(1)
        for c in range(k):
            pts = x[assign == c]
            if len(pts):
                centres[c] = pts.mean(0)
    return assign


class CodeMixture:
    """Gaussian mixture in PCA-32 space plus a per-dim uint8 quantiser."""

    def __init__(self, seed: int = 0, classes: str = "mixture"):
        if classes not in CLASS_KINDS:
            raise ValueError(f"classes must be one of {CLASS_KINDS}, got {classes!r}")
        rng = np.random.default_rng(seed)
        emb, class_of = load_embeddings()
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        self.mean = emb.mean(0)
        _, _, vt = np.linalg.svd(emb - self.mean, full_matrices=False)
        self.basis = vt[:N_DIMS].T
        z = (emb - self.mean) @ self.basis
        planted = []
        if classes == "real":
            ids, sizes = np.unique(class_of[class_of >= 0], return_counts=True)
            eligible = ids[sizes >= MIN_CLASS_ROWS]
            planted = rng.choice(eligible, len(TARGETS), replace=False)
            self.real_classes = [int(c) for c in planted]
        background = z[~np.isin(class_of, planted)]
        assign = _kmeans(background, N_COMPONENTS, rng)
        mus, chols, weights = [], [], []
        for c in range(N_COMPONENTS):
            pts = background[assign == c]
            if len(pts) < MIN_CLASS_ROWS:
                continue
            mu, chol = _gaussian(pts)
            mus.append(mu)
            chols.append(chol)
            weights.append(len(pts))
        weights = np.array(weights, dtype=np.float64)
        base_mass = 1.0 - sum(TARGETS.values())
        weights = weights / weights.sum() * base_mass
        self.target_ids = {}
        if classes == "real":
            rare = [_gaussian(z[class_of == c]) for c in planted]
        else:
            # copies of existing components, shrunk and shifted a little
            src = rng.choice(len(mus), len(TARGETS), replace=False)
            rare = [
                (mus[s] + 0.5 * chols[s] @ rng.standard_normal(N_DIMS), 0.6 * chols[s])
                for s in src
            ]
        for name, (mu, chol) in zip(TARGETS, rare):
            self.target_ids[name] = len(mus)
            mus.append(mu)
            chols.append(chol)
            weights = np.append(weights, TARGETS[name])
        self.mus = np.array(mus)
        self.chols = np.array(chols)
        self.weights = weights / weights.sum()
        lo, hi = np.quantile(z, [0.001, 0.999], axis=0)
        self.q_lo = lo
        self.q_scale = 255.0 / (hi - lo)

    def sample(self, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        comp = rng.choice(len(self.weights), n, p=self.weights).astype(np.int16)
        eps = rng.standard_normal((n, N_DIMS))
        z = np.empty_like(eps)
        for c in np.unique(comp):
            rows = comp == c
            z[rows] = self.mus[c] + eps[rows] @ self.chols[c].T
        codes = np.clip(np.rint((z - self.q_lo) * self.q_scale), 0, 255).astype(
            np.uint8
        )
        return codes, comp


def generate(
    n: int, seed: int = 0, work_dir=None, progress: bool = True, classes="mixture"
):
    """Write (or reuse) the codes and labels files; return them memory-mapped."""
    work = Path(work_dir) if work_dir else RESULTS
    work.mkdir(parents=True, exist_ok=True)
    stem = f"{n}_s{seed}" + ("" if classes == "mixture" else f"_{classes}")
    codes_path = work / f"codes_{stem}.npy"
    labels_path = work / f"labels_{stem}.npy"
    meta_path = work / f"codes_{stem}.json"
    if codes_path.exists() and labels_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return (
            np.load(codes_path, mmap_mode="r"),
            np.load(labels_path, mmap_mode="r"),
            meta,
        )
    t0 = time.perf_counter()
    model = CodeMixture(seed, classes)
    tmp_c = codes_path.with_suffix(".tmp.npy")
    tmp_l = labels_path.with_suffix(".tmp.npy")
    codes = np.lib.format.open_memmap(
        tmp_c, mode="w+", dtype=np.uint8, shape=(n, N_DIMS)
    )
    labels = np.lib.format.open_memmap(tmp_l, mode="w+", dtype=np.int16, shape=(n,))
    for i, a in enumerate(range(0, n, CHUNK)):
        b = min(n, a + CHUNK)
        codes[a:b], labels[a:b] = model.sample(b - a, np.random.default_rng([seed, i]))
        if progress and i % 16 == 15:
            print(f"  sampled {b:,}/{n:,} rows", file=sys.stderr, flush=True)
    codes.flush()
    labels.flush()
    del codes, labels
    tmp_c.replace(codes_path)
    tmp_l.replace(labels_path)
    meta = {
        "n": n,
        "seed": seed,
        "target_components": model.target_ids,
        "classes": classes,
        "real_classes": getattr(model, "real_classes", None),
        "n_components": int(len(model.weights)),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return np.load(codes_path, mmap_mode="r"), np.load(labels_path, mmap_mode="r"), meta


def make_query_boxes(
    codes,
    subsets,
    selectivity,
    n_boxes=30,
    seed=0,
    labels=None,
    target=None,
    calib_rows=1_000_000,
):
    """``n_boxes`` boxes whose union selects about ``selectivity`` of ``codes``.

    Box ``b`` lives in a random subset and is centred on a random row (of component
    ``target`` of ``labels`` when given, else any row); all boxes share one half-width
    scale, found by bisection on the first ``calib_rows`` rows with ``contains_any``.
    Returns ``(boxes, measured_fraction_on_calibration_rows)``.
    """
    from fiftyone_clipbranches.engine.boxes import Boxes
    from fiftyone_clipbranches.engine.scan import contains_any

    rng = np.random.default_rng(seed)
    calib = np.ascontiguousarray(codes[: min(len(codes), calib_rows)])
    pool = np.arange(len(calib))
    if labels is not None and target is not None:
        pool = np.flatnonzero(np.asarray(labels[: len(calib)]) == target)
    sids = rng.integers(0, len(subsets), n_boxes).astype(np.int32)
    centres = np.zeros((n_boxes, subsets.max_len), dtype=np.int64)
    spread = calib[:: max(1, len(calib) // 20000)].astype(np.float64).std(0)
    widths = np.zeros((n_boxes, subsets.max_len))
    for b in range(n_boxes):
        dims = subsets.subset(int(sids[b]))
        centres[b, : len(dims)] = calib[rng.choice(pool), dims]
        widths[b, : len(dims)] = spread[dims] * rng.uniform(0.5, 1.5, len(dims))

    def boxes_at(scale):
        half = np.rint(widths * scale).astype(np.int64)
        lo = np.clip(centres - half, 0, 255).astype(np.int16)
        hi = np.clip(centres + half, 0, 255).astype(np.int16)
        return Boxes(sids, lo, hi, np.zeros(n_boxes, np.int32))

    lo_s, hi_s = 0.0, 4.0
    frac = 0.0
    for _ in range(18):
        mid = 0.5 * (lo_s + hi_s)
        frac = contains_any(calib, subsets, boxes_at(mid)).mean()
        if frac < selectivity:
            lo_s = mid
        else:
            hi_s = mid
    boxes = boxes_at(0.5 * (lo_s + hi_s))
    return boxes, float(contains_any(calib, subsets, boxes).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", default="1M", help="rows, e.g. 1M, 10M, 100M")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None, help="default benchmarks/results/")
    p.add_argument("--classes", choices=CLASS_KINDS, default="mixture")
    args = p.parse_args(argv)
    codes, labels, meta = generate(
        parse_n(args.n), args.seed, args.work_dir, classes=args.classes
    )
    counts = np.bincount(np.asarray(labels[: 10**6]))
    print(json.dumps(meta))
    print(
        f"codes {codes.shape} {codes.dtype}; per-dim min/max of the first 1M rows:"
        f" {int(codes[: 10**6].min())}..{int(codes[: 10**6].max())};"
        f" components in the first 1M rows: {np.count_nonzero(counts)}"
    )


if __name__ == "__main__":
    main()
