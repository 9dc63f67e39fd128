"""Image embedding throughput of ViT-B-32 (random weights), decode included.

Reads the 2,000 CIFAR-10 JPEGs of ../shared/data/cifar10-test-2000 and reports, per
precision: end-to-end images/s of ``ClipModel.embed_images`` (DataLoader workers
decoding + resizing to 224 + the model), model-only images/s (pre-decoded batches,
median of repeats) and decode-only images/s (the DataLoader alone).

    .venv/bin/python benchmarks/bench_embed.py [--device cpu|cuda] [--n 2000]

``--n`` larger than the folder cycles through its images again (a GPU embeds 2,000
images in about a second); ``--images`` points at another copy of the folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-test-2000"
sys.path.insert(0, str(ROOT))
from fiftyone_clipbranches.embed import load_clip  # noqa: E402
from fiftyone_clipbranches.embed.image_loading import (  # noqa: E402
    ImageFileDataset,
    collate_drop_failures,
    default_num_workers,
    split_preprocess,
    worker_init,
)


def decode_only(model, paths, batch_size, workers) -> float:
    loader = torch.utils.data.DataLoader(
        ImageFileDataset(paths, split_preprocess(model.preprocess)[0]),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_drop_failures,
        worker_init_fn=worker_init if workers else None,
    )
    t = time.perf_counter()
    for _ in loader:
        pass
    return len(paths) / (time.perf_counter() - t)


def model_only(model, batch_size, repeats) -> float:
    shape = model.preprocess(Image.new("RGB", (32, 32))).shape
    pixels = torch.randn(batch_size, *shape)
    model._encode_pixels(pixels)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model._encode_pixels(pixels)
        times.append(time.perf_counter() - t)
    return batch_size / statistics.median(times)


def agreement(reference: np.ndarray, vectors: np.ndarray, k: int = 10) -> dict:
    """How closely ``vectors`` follow the fp32 ``reference`` (rows L2-normalised):
    cosine of each pair, and recall@k of each image's k nearest other images."""
    cos = (reference * vectors).sum(axis=1)

    def neighbours(v):
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argpartition(-sims, k, axis=1)[:, :k]

    ref, got = neighbours(reference), neighbours(vectors)
    hits = [len(set(a) & set(b)) for a, b in zip(ref, got)]
    return {
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        f"recall_at_{k}": float(np.mean(hits) / k),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument(
        "--precisions", default=None, help="default: fp32,bf16 (cpu); fp32,fp16 (cuda)"
    )
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--images", default=str(CIFAR), help="folder of <class>/*.jpg")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument(
        "--pretrained", default=None, help="tag or checkpoint (default: random)"
    )
    p.add_argument("--workers", default="auto")
    p.add_argument(
        "--repeats", type=int, default=1, help="end-to-end runs per precision"
    )
    p.add_argument("--model-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--json", default=str(ROOT / "benchmarks" / "results" / "bench_embed.json")
    )
    args = p.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA GPU here (use cpu or auto)")
    images = Path(args.images)
    if not images.is_dir():
        print(f"SKIP: {images} not found (shared evaluation images absent)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = sorted(str(f) for f in images.glob("*/*.jpg"))
    paths = (folder * -(-args.n // len(folder)))[: args.n]
    workers = (
        default_num_workers(len(paths), args.batch_size)
        if args.workers == "auto"
        else int(args.workers)
    )
    cuda = args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()
    )
    precisions = (args.precisions or ("fp32,fp16" if cuda else "fp32,bf16")).split(",")
    print(
        f"{len(paths)} images, batch {args.batch_size}, {workers} decode workers, "
        f"torch threads {torch.get_num_threads()}"
    )
    rows = []
    for prec in precisions:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_clip(
                args.model,
                pretrained=args.pretrained,
                device=args.device,
                precision=prec,
            )
        if not rows:
            dec = decode_only(model, paths, args.batch_size, workers)
            print(f"decode only: {dec:.1f} img/s")
        mo = model_only(model, args.batch_size, args.model_repeats)
        e2e = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = model.embed_images(
                paths, batch_size=args.batch_size, num_workers=workers, progress=False
            )
            e2e.append(len(paths) / (time.perf_counter() - t))
            assert res.ok.all(), res.errors
        unique = res.vectors[: min(len(folder), len(paths))]
        if not rows:
            reference = unique
        row = {
            "device": model.device.type,
            "precision": prec,
            "model_only_img_s": mo,
            "end_to_end_img_s": statistics.median(e2e),
            "decode_only_img_s": dec,
            "n": len(paths),
            "batch_size": args.batch_size,
            "workers": workers,
            "vs_first": agreement(reference, unique),
        }
        rows.append(row)
        print(
            f"{prec}: model-only {mo:.1f} img/s, end-to-end {row['end_to_end_img_s']:.1f} "
            "img/s",
            flush=True,
        )
    base = rows[0]["end_to_end_img_s"]
    print(
        "\n| device | precision | end-to-end img/s | model-only img/s | vs first | "
        "cosine to first (mean / min) | recall@10 of first's neighbours |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        a = r["vs_first"]
        print(
            f"| {r['device']} | {r['precision']} | {r['end_to_end_img_s']:.1f} | "
            f"{r['model_only_img_s']:.1f} | {r['end_to_end_img_s'] / base:.2f}x | "
            f"{a['cosine_mean']:.5f} / {a['cosine_min']:.5f} | "
            f"{a['recall_at_10']:.3f} |"
        )
    print(f"\ndecode only (DataLoader, {workers} workers): {dec:.1f} img/s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
