"""Retrain the demo CLIP from scratch and compare it with the shipped checkpoint.

Trains the default demo configuration with no time budget in a fresh data folder
(the user's cache is left alone), packs it like the shipped file and prints both
sha256 digests, the training time and the held-out top-20 precision of the
retrained and the shipped model. ``--write`` replaces the shipped file
(``fiftyone_clipbranches/assets/demo_clip.ckpt``) with the retrained one.

    .venv/bin/python benchmarks/bench_demo_checkpoint.py [--write] [--threads 2]
        [--torch-seed N]

``--torch-seed N`` trains the default configuration with another ``torch_seed``
instead (to compare seeds by held-out precision, as the shipped one was chosen;
docs/benchmarks.md, Demo); it cannot be combined with ``--write``.

Exit status 1 when the digests differ (and ``--write`` was not given). Training is
bit-reproducible on a given machine and thread count; another CPU or thread count
may train slightly different weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--write", action="store_true", help="update the shipped file")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument(
        "--torch-seed", type=int, default=None, help="train another torch_seed"
    )
    args = parser.parse_args(argv)
    if args.write and args.torch_seed is not None:
        parser.error("--write ships the default configuration only")

    import torch

    from fiftyone_clipbranches.demo import checkpoint as compact
    from fiftyone_clipbranches.demo.evaluate import colour_shape_precision
    from fiftyone_clipbranches.demo.model import COMPACT_NAME, ensure_demo_model
    from fiftyone_clipbranches.demo.train import TRAIN_THREADS, DemoTrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="clipbranches-retrain-") as tmp:
        start = time.perf_counter()
        config = DemoTrainConfig()
        if args.torch_seed is not None:
            config = dataclasses.replace(config, torch_seed=args.torch_seed)
        demo = ensure_demo_model(data_dir=tmp, force=True, config=config)
        seconds = time.perf_counter() - start
        retrained = Path(demo.checkpoint_path).parent / COMPACT_NAME
        quality = colour_shape_precision(*demo.load(), n_images=args.eval_images)
        rows.append(("retrained", demo.identity["compact_sha256"], quality["mean"]))
        if compact.SHIPPED_PATH.is_file():
            with tempfile.TemporaryDirectory(prefix="clipbranches-shipped-") as tmp2:
                shipped = ensure_demo_model(data_dir=tmp2)
                quality = colour_shape_precision(
                    *shipped.load(), n_images=args.eval_images
                )
                rows.append(
                    ("shipped", shipped.identity["compact_sha256"], quality["mean"])
                )
        if args.write:
            compact.SHIPPED_PATH.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(retrained, compact.SHIPPED_PATH)

    print(
        f"training: {seconds:.1f} s, {TRAIN_THREADS} torch thread(s),"
        f" {demo.identity['training']['steps']} steps, torch_seed {config.torch_seed}"
    )
    print("| checkpoint | sha256 | top-20 precision (held out) |")
    print("|---|---|---|")
    for name, sha, precision in rows:
        print(f"| {name} | `{sha}` | {precision:.3f} |")
    same = len(rows) == 2 and rows[0][1] == rows[1][1]
    print("bit-identical to the shipped checkpoint" if same else "DIFFERENT")
    if args.write:
        print(f"wrote {compact.SHIPPED_PATH}")
        return 0
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
