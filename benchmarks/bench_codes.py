"""How much neighbourhood structure the 32-byte codes keep, per dataset.

Fits each code method on a dataset's val split and evaluates on its test split
(real CLIP ViT-B/32 embeddings from ../shared/data/clip-vitb32). Measures:

  (a) quantisation loss (paper Table 1 measure): 1-recall@1/10/100 = fraction of
      queries whose nearest neighbour under the UNQUANTISED 32-d vectors of the same
      method is among the top 1/10/100 neighbours under the uint8 codes;
  (b) recall@10 vs 512-d: overlap of the top-10 code neighbours with the top-10
      neighbours in the original 512-d CLIP space (what projection + quantisation lose);
  (c) label precision@10 (share of the 10 nearest neighbours with the query's class)
      for 512-d float, 32-d float and uint8 codes, and the ratio codes / 512-d.

Every test row is a query; the rest of the test split is the pool.

"fixedQ" rows reuse the trained heads with the reference map floor(127.5 v + 128)
instead of the fitted quantiser.

    .venv/bin/python benchmarks/bench_codes.py [--datasets oxford_pets,dtd] [--steps 600]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "clip-vitb32"
DATASETS = ("oxford_pets", "caltech101", "oxford_flowers", "dtd")

sys.path.insert(0, str(ROOT))
from fiftyone_clipbranches.embed.head import train_head  # noqa: E402
from fiftyone_clipbranches.embed.quantizer import FixedQuantizer, PCACodes, Quantizer  # noqa: E402


def load_split(name: str, split: str):
    emb = np.load(DATA / f"{name}_{split}_img_emb.npy").astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, np.load(DATA / f"{name}_{split}_labels.npy").astype(np.int64)


def neighbour_order(x: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` nearest other rows by Euclidean distance, ties by ascending id."""
    xf = x.astype(np.float64) if x.dtype != np.uint8 else x.astype(np.float32)
    sq = (xf * xf).sum(1)
    d = sq[:, None] + sq[None, :] - 2.0 * (xf @ xf.T)
    if x.dtype == np.uint8:
        d = np.rint(d)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def one_recall(nn_true: np.ndarray, order: np.ndarray, rs=(1, 10, 100)) -> dict:
    hit = order == nn_true[:, None]
    return {f"1-R@{r}": float(hit[:, :r].any(1).mean()) for r in rs}


def overlap_at(order_a: np.ndarray, order_b: np.ndarray, k: int = 10) -> float:
    return float(
        np.mean(
            [len(np.intersect1d(a[:k], b[:k])) / k for a, b in zip(order_a, order_b)]
        )
    )


def precision_at(order: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    return float((labels[order[:, :k]] == labels[:, None]).mean())


def evaluate(project, quantize, test, labels, order512) -> dict:
    z = project(test)
    codes = quantize(z)
    order_f = neighbour_order(z, 100)
    order_c = neighbour_order(codes, 100)
    out = one_recall(order_f[:, 0], order_c)
    out["R@10 vs 512"] = overlap_at(order_c, order512)
    out["R@10 32f vs 512"] = overlap_at(order_f, order512)
    out["P@10 512"] = precision_at(order512, labels)
    out["P@10 32f"] = precision_at(order_f, labels)
    out["P@10 codes"] = precision_at(order_c, labels)
    out["ratio"] = out["P@10 codes"] / out["P@10 512"]
    return out


def methods(args):
    def pca(train):
        m = PCACodes(32, Quantizer(args.scale)).fit(train)
        return m.project, m.quantizer_.transform

    trained = {}

    def trained_head(train, koleo_weight):
        key = (hashlib.sha1(train.tobytes()).hexdigest(), koleo_weight)
        if key not in trained:
            trained[key] = train_head(
                train,
                steps=args.steps,
                koleo_weight=koleo_weight,
                hidden=tuple(args.hidden),
                progress=False,
                seed=0,
                tau_teacher=args.tau,
            )
        return trained[key]

    def head(koleo_weight, fixed=False):
        def fit(train):
            h = trained_head(train, koleo_weight)
            q = FixedQuantizer(32) if fixed else Quantizer(args.scale)
            return h.project, q.fit(h.project(train)).transform

        return fit

    return {
        "PCA-32": pca,
        "head": head(0.0),
        "head+KoLeo": head(args.koleo),
        "head fixedQ": head(0.0, fixed=True),
        "head+KoLeo fixedQ": head(args.koleo, fixed=True),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--hidden", type=int, nargs="*", default=[512])
    p.add_argument("--koleo", type=float, default=0.1)
    p.add_argument("--tau", type=float, default=0.02)
    p.add_argument("--scale", default="global", choices=["global", "per_dim"])
    p.add_argument(
        "--methods", default="PCA-32,head,head+KoLeo,head fixedQ,head+KoLeo fixedQ"
    )
    p.add_argument(
        "--json", default=str(ROOT / "benchmarks" / "results" / "bench_codes.json")
    )
    args = p.parse_args(argv)
    if not DATA.is_dir():
        print(f"SKIP: {DATA} not found (shared evaluation data absent)")
        return 0
    torch.set_num_threads(2)
    chosen = {k: v for k, v in methods(args).items() if k in args.methods.split(",")}
    rows = []
    for name in args.datasets.split(","):
        train, _ = load_split(name, "val")
        test, labels = load_split(name, "test")
        order512 = neighbour_order(test, 100)
        for method, fit in chosen.items():
            t0 = time.perf_counter()
            project, quantize = fit(train)
            fit_s = time.perf_counter() - t0
            r = evaluate(project, quantize, test, labels, order512)
            r.update(dataset=name, method=method, fit_s=fit_s)
            rows.append(r)
            print(
                f"{name:15s} {method:11s} "
                + " ".join(
                    f"{k}={v:.3f}" for k, v in r.items() if isinstance(v, float)
                ),
                flush=True,
            )
    cols = [
        "1-R@1",
        "1-R@10",
        "1-R@100",
        "R@10 vs 512",
        "P@10 512",
        "P@10 32f",
        "P@10 codes",
        "ratio",
        "fit_s",
    ]
    print("\n| dataset | method | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        print(
            f"| {r['dataset']} | {r['method']} | "
            + " | ".join(f"{r[c]:.3f}" if c != "fit_s" else f"{r[c]:.0f}" for c in cols)
            + " |"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
