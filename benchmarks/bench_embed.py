"""Image embedding throughput of ViT-B-32 (random weights), decode included.

Reads the 2,000 CIFAR-10 JPEGs of ../shared/data/cifar10-test-2000 and reports, per
precision: end-to-end images/s of ``ClipModel.embed_images`` (DataLoader workers
decoding + resizing to 224 + the model), model-only images/s (pre-decoded batches,
median of repeats) and decode-only images/s (the DataLoader alone).

    .venv/bin/python benchmarks/bench_embed.py [--device cpu|cuda] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-test-2000"
sys.path.insert(0, str(ROOT))
from fiftyone_clipbranches.embed import load_clip  # noqa: E402
from fiftyone_clipbranches.embed.image_loading import (  # noqa: E402
    ImageFileDataset,
    collate_drop_failures,
    default_num_workers,
    worker_init,
)


def decode_only(model, paths, batch_size, workers) -> float:
    loader = torch.utils.data.DataLoader(
        ImageFileDataset(paths, model.preprocess),
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
    pixels = torch.randn(batch_size, 3, 224, 224)
    model._encode_pixels(pixels)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model._encode_pixels(pixels)
        times.append(time.perf_counter() - t)
    return batch_size / statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument(
        "--precisions", default=None, help="default: fp32,bf16 (cpu); fp32,fp16 (cuda)"
    )
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
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
    if not CIFAR.is_dir():
        print(f"SKIP: {CIFAR} not found (shared evaluation images absent)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = sorted(str(f) for f in CIFAR.glob("*/*.jpg"))[: args.n]
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
                "ViT-B-32", pretrained=None, device=args.device, precision=prec
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
        row = {
            "device": model.device.type,
            "precision": prec,
            "model_only_img_s": mo,
            "end_to_end_img_s": statistics.median(e2e),
            "decode_only_img_s": dec,
            "n": len(paths),
            "batch_size": args.batch_size,
            "workers": workers,
        }
        rows.append(row)
        print(
            f"{prec}: model-only {mo:.1f} img/s, end-to-end {row['end_to_end_img_s']:.1f} "
            "img/s",
            flush=True,
        )
    base = rows[0]["end_to_end_img_s"]
    print("\n| device | precision | end-to-end img/s | model-only img/s | vs first |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['device']} | {r['precision']} | {r['end_to_end_img_s']:.1f} | "
            f"{r['model_only_img_s']:.1f} | {r['end_to_end_img_s'] / base:.2f}x |"
        )
    print(f"\ndecode only (DataLoader, {workers} workers): {dec:.1f} img/s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
