"""Demo CLIP quality: train the demo model and measure text->image retrieval.

Trains the default demo configuration from scratch (no cache; a ``--max-minutes``
budget, if given, that runs out is an error), then scores top-k precision of ``"a <colour> <shape>"``
queries on held-out generated images (a hit holds an object of that colour and
shape). Prints a table; ``--json`` writes the figures.

    .venv/bin/python benchmarks/bench_demo_model.py [--threads 2] [--json out.json]
    .venv/bin/python benchmarks/bench_demo_model.py --ensure --max-minutes 60

``--ensure`` goes through ``ensure_demo_model`` instead (the shipped checkpoint for
the default configuration): it trains only when the
user data directory has no cached model for the configuration (and fills
that cache), then scores the cached checkpoint loaded through open_clip.

Timings depend on the machine and its load; say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None, help="override steps")
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--ensure", action="store_true", help="use/fill the cache")
    args = parser.parse_args(argv)

    import torch

    from fiftyone_clipbranches.demo.evaluate import colour_shape_precision
    from fiftyone_clipbranches.demo.model import (
        DEMO_MODEL_NAME,
        ensure_demo_model,
        register_demo_model,
    )
    from fiftyone_clipbranches.demo.train import DemoTrainConfig, train_demo_model

    if args.threads:
        torch.set_num_threads(args.threads)
    config = DemoTrainConfig()
    if args.steps:
        config = DemoTrainConfig(**{**config.to_dict(), "steps": args.steps})
    register_demo_model()
    cpu0 = time.process_time()
    if args.ensure:
        demo = ensure_demo_model(max_minutes=args.max_minutes, config=config)
        cpu = time.process_time() - cpu0
        stats = demo.identity["training"]
        model, preprocess, tokenizer = demo.load()
        print(f"checkpoint: {demo.checkpoint_path}")
    else:
        budget = None if args.max_minutes is None else 60.0 * args.max_minutes
        model, stats = train_demo_model(config, progress=True, max_seconds=budget)
        cpu = time.process_time() - cpu0

        import open_clip

        _, _, preprocess = open_clip.create_model_and_transforms(DEMO_MODEL_NAME)
        tokenizer = open_clip.get_tokenizer(DEMO_MODEL_NAME)
    quality = colour_shape_precision(
        model, preprocess, tokenizer, n_images=args.eval_images, k=args.k
    )

    rows = [
        ("model", DEMO_MODEL_NAME),
        ("torch threads", str(torch.get_num_threads())),
        ("cpu cores (os)", str(os.cpu_count())),
        ("load average (1 min)", f"{os.getloadavg()[0]:.1f}"),
        ("steps / planned", f"{stats['steps']} / {config.steps}"),
        ("training wall s (incl. data)", f"{stats.get('seconds', 'n/a (shipped)')}"),
        ("cpu s (this run)", f"{cpu:.1f}"),
        (
            "loss first -> final",
            f"{stats.get('first_loss', 'n/a')} -> {stats.get('final_loss', 'n/a')}",
        ),
        (f"P@{args.k} mean (30 queries)", f"{quality['mean']:.3f}"),
        (f"P@{args.k} min", f"{quality['min']:.3f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    for text, p in sorted(quality["per_query"].items(), key=lambda kv: kv[1]):
        print(f"  {text:<22} {p:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"stats": stats, "cpu_seconds": cpu, "quality": quality}
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
