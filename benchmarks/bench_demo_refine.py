"""Benchmark: one round of simulated feedback on every colour+shape query of the demo.

Prepares (or reuses) the demo dataset, demo model and index exactly as
``clipbranches demo`` does, in a private database under ``benchmarks/results``; the
demo model comes from (or fills) the user's data directory. For each of the 30
``"a <colour> <shape>"`` queries: text search, label the top ``k`` with the ground
truth (a sample holding an object of that colour and shape), refine with each model
(nothing is written to the dataset) and compare the F1 of the refined result set
over the whole dataset with the F1 of the top ``k``. Prints a table of the gain
(median, mean, min over queries) per model; ``--json`` writes every figure.

Usage::

    python benchmarks/bench_demo_refine.py [--models ball,linear,ensemble,branches] [--k 60]
        [--params '{"linear": {"C": 0.3}}']
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / "benchmarks" / "results" / "bench_demo"

# the database is the benchmark's own (a private mongod under STATE): so are the
# indexes (another root's gc could never remove them)
os.environ["CLIPBRANCHES_INDEX_ROOT"] = str(STATE / "indexes")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def run(args) -> dict:
    import fiftyone as fo

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.demo.evaluate import colour_shape_queries
    from fiftyone_clipbranches.demo.pipeline import (
        DEMO_INDEX_KEY,
        f1_score,
        label_shown,
        relevant_ids,
        run_demo,
    )

    report = run_demo(n_images=args.n_images, progress=True, k=args.k)
    dataset = fo.load_dataset(report.dataset)
    rows = []
    for text, _, _ in colour_shape_queries():
        truth = relevant_ids(dataset, text)
        shown, _ = sdk.search_ids(
            dataset, text=text, k=args.k, index_key=DEMO_INDEX_KEY
        )
        row = {
            "query": text,
            "n_relevant": len(truth),
            "topk_f1": f1_score(shown, truth),
        }
        positives, negatives = label_shown(shown, truth)
        for model in args.models:
            t0 = time.perf_counter()
            ranked = sdk.refine_ranking(
                dataset,
                positives=positives,
                negatives=negatives,
                model=model,
                index_key=DEMO_INDEX_KEY,
                model_params=args.params.get(model),
                query=text,
            )
            found = ranked.bundle.rowmap.ids_of(ranked.rows)
            row[f"{model}_f1"] = f1_score(found, truth)
            row[f"{model}_n"] = len(found)
            row[f"{model}_ms"] = 1e3 * (time.perf_counter() - t0)
        rows.append(row)
    return {"dataset": report.dataset, "n_samples": report.n_samples, "rows": rows}


def table(result: dict, models: list[str], k: int) -> str:
    rows = result["rows"]
    top = np.array([r["topk_f1"] for r in rows])
    lines = [
        f"{len(rows)} colour+shape queries on {result['n_samples']} demo images;"
        f" F1 of the refined result set over F1 of the top {k} (median of top-{k}"
        f" F1: {np.median(top):.3f})",
        "",
        "| model | median gain | mean gain | min gain | median F1 | median size |"
        " median ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models:
        f1 = np.array([r[f"{m}_f1"] for r in rows])
        gain = f1 / top
        size = np.median([r[f"{m}_n"] for r in rows])
        ms = np.median([r[f"{m}_ms"] for r in rows])
        lines.append(
            f"| {m} | {np.median(gain):.2f}x | {gain.mean():.2f}x | {gain.min():.2f}x"
            f" | {np.median(f1):.3f} | {size:.0f} | {ms:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ball,linear,ensemble,branches")
    parser.add_argument("--k", type=int, default=60)
    parser.add_argument("--n-images", type=int, default=3000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--params",
        type=json.loads,
        default={},
        help='model parameters by model, e.g. \'{"linear": {"C": 0.3}}\'',
    )
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]

    from fiftyone_clipbranches.private_db import start_private_mongod

    mongod = start_private_mongod(STATE / "mongod")
    try:
        result = run(args)
    finally:
        import fiftyone.core.odm.database as fodb

        fodb._disconnect()
        mongod.stop()
    print(table(result, args.models, args.k))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
