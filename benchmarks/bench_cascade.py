"""Cost of the cascade model (boxes propose, a forest decides) against the ensemble.

For one synthetic catalogue size (``synthetic_codes.py``) and its rare classes
(~0.01%, 0.1%, 1% of N), the training set of ``bench_models.py`` (40 positives, 10
explicit negatives, 950 random rows), then for the ensemble, the cascade (as it
ships: a row reaches the forest when 3 members hold it; fitted with the index's
neighbour pool as ``catalogue_sample``, as ``refine`` fits it; no class ball at 40
positives) and the cascade with ``candidate_votes=1`` (every row any member holds);
then, on the training set ``refine`` makes from 16 positives (500 random negatives,
"auto" neighbour positives from the index's pool), the cascade with its class ball
(as it ships: any row a member holds may join the ball), with its ball on the
candidates only (``ball_votes=3``, the default before), without it
(``ball_reach=None``) and without shrinking the boxes larger than the class can
be (``box_reach=None``); the same with and without that cap from 4 positives:
training time, application through the index (``apply_model``, the forest's work on
the candidates included), rows the index returns, rows the forest reads, rows the
class ball may read, F1. Times
are medians of ``--repeats`` runs after a warm-up. The index is the same for both
(the cascade adds nothing to it): bytes per point are printed once.

Usage::

    python benchmarks/bench_cascade.py --n 10M --repeats 7
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import f1, median_time, training_set  # noqa: E402
from synthetic_codes import CLASS_KINDS, RESULTS, generate, parse_n  # noqa: E402

#: The smallest catalogue whose 0.01% class holds the 16 positives the cascade's
#: rows are trained from.
MIN_N = 200_000


def few_labels(index, truth, n_positives: int = 16, seed: int = 1):
    """The training set ``refine`` makes for the cascade from ``n_positives``
    positives of the class ``truth``: 500 random negatives and "auto" neighbour
    positives found in the index's pool."""
    from fiftyone_clipbranches.engine.training_set import make_training_set

    rng = np.random.default_rng(seed)
    pos = rng.choice(np.flatnonzero(truth), n_positives, replace=False)
    return make_training_set(
        index.codes, pos, (), n_random_negatives=500, seed=seed,
        neighbours_per_positive="auto", neighbour_pool=index.neighbour_pool(),
    )  # fmt: skip


def bench(
    n: int, repeats: int, work_dir, classes="mixture", leaf_size=None
) -> tuple[list[dict], dict]:
    from fiftyone_clipbranches.engine.cascade import BranchesCascade
    from fiftyone_clipbranches.engine.ensemble import DecisionBranchesEnsemble
    from fiftyone_clipbranches.engine.index import CodeIndex
    from fiftyone_clipbranches.engine.search import apply_model

    codes_mm, labels_mm, meta = generate(n, 0, work_dir, classes=classes)
    codes = np.ascontiguousarray(codes_mm)
    labels = np.asarray(labels_mm)
    t0 = time.perf_counter()
    index = CodeIndex.build(codes, **({"leaf_size": leaf_size} if leaf_size else {}))
    info = {"n": n, "classes": classes, "build_s": time.perf_counter() - t0}
    info["leaf_size"] = index.leaf_size
    info["bytes_per_point"] = float(index.bytes_per_point)
    models = {
        "ensemble": DecisionBranchesEnsemble,
        "cascade": BranchesCascade,
        "cascade, 1 vote": functools.partial(BranchesCascade, candidate_votes=1),
        "cascade, 16 positives": BranchesCascade,
        "cascade, 16 positives, ball on candidates": functools.partial(
            BranchesCascade, ball_votes=3
        ),
        "cascade, 16 positives, no ball": functools.partial(
            BranchesCascade, ball_reach=None
        ),
        "cascade, 16 positives, no box cap": functools.partial(
            BranchesCascade, box_reach=None
        ),
        "cascade, 4 positives": BranchesCascade,
        "cascade, 4 positives, no box cap": functools.partial(
            BranchesCascade, box_reach=None
        ),
    }
    pool = index.neighbour_pool().codes
    warm = training_set(codes[:20000], labels[:20000] == labels[0], 0)
    for make in models.values():
        m = make().fit(
            warm.X, warm.y, warm.sample_weight, subsets=index.subsets,
            unlabelled=warm.unlabelled, catalogue_sample=pool,
        )  # fmt: skip
        apply_model(m, index)
    rows = []
    for name, comp in meta["target_components"].items():
        truth = labels == comp
        sets = {
            "bench": training_set(codes, truth, 1),
            "16 positives": few_labels(index, truth),
            "4 positives": few_labels(index, truth, 4),
        }
        for key, make in models.items():
            ts = sets[next((k for k in sets if k in key), "bench")]
            fit_args = (ts.X, ts.y, ts.sample_weight)
            fit_kw = {
                "subsets": index.subsets,
                "unlabelled": ts.unlabelled,
                "neighbours": ts.neighbours,
                "catalogue_sample": pool,
            }
            model = make()

            def fit(model=model, fit_args=fit_args, fit_kw=fit_kw):
                return model.fit(*fit_args, **fit_kw)

            train_s, _, _ = median_time(fit, repeats)
            apply_s, _, r = median_time(lambda m=model: apply_model(m, index), repeats)
            ids, hits = index.query_boxes(model.boxes_)
            row = {
                "class": name, "model": key, "class_rows": int(truth.sum()),
                "train_ms": 1000 * train_s, "apply_ms": 1000 * apply_s,
                "index_rows": int(ids.size), "accepted": len(r), "f1": f1(r.ids, truth),
            }  # fmt: skip
            if isinstance(model, BranchesCascade):
                row["forest_rows"] = int(np.count_nonzero(model.forest_reads(hits)))
                row["ball"] = bool(model.ball_radius_sq_ >= 0)
                if row["ball"]:
                    row["ball_rows"] = int(np.count_nonzero(model.ball_reads(hits)))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows, info


def to_markdown(rows, info) -> str:
    load = os.getloadavg()
    lines = [
        f"N = {info['n']:,}, {info['classes']} classes; index"
        f" {info['bytes_per_point']:.1f} bytes/point, leaves of {info['leaf_size']}"
        f" rows (shared by both models); {os.cpu_count()} CPUs, load average"
        f" {load[0]:.2f}",
        "",
        "| class | rows | model | train ms | apply ms (index) | index rows |"
        " forest rows | ball rows | accepted | F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['class']} | {r['class_rows']:,} | {r['model']}"
            f"{' (class ball)' if r.get('ball') else ''} | {r['train_ms']:.1f} |"
            f" {r['apply_ms']:.1f} | {r['index_rows']:,} | {r.get('forest_rows', '-')} |"
            f" {r.get('ball_rows', '-')} |"
            f" {r['accepted']:,} | {r['f1']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--n", default="10M",
        help=f"catalogue rows (at least {MIN_N:,}: its 0.01%% class gives 16 positives)",
    )  # fmt: skip
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--leaf-size",
        type=int,
        default=None,
        help="k-d tree leaf rows (default: the index's)",
    )
    p.add_argument("--work-dir", default=str(RESULTS))
    p.add_argument(
        "--classes", choices=CLASS_KINDS, default="mixture",
        help="rare classes: overlapping mixture copies, or real classes (see"
        " synthetic_codes.py)",
    )  # fmt: skip
    args = p.parse_args(argv)
    n = parse_n(args.n)
    if n < MIN_N:
        p.error(
            f"--n {args.n}: at least {MIN_N:,} rows (the 0.01% class gives 16 positives)"
        )
    rows, info = bench(n, args.repeats, args.work_dir, args.classes, args.leaf_size)
    md = to_markdown(rows, info)
    print(md)
    suffix = "" if args.classes == "mixture" else f"_{args.classes}"
    out = Path(args.work_dir) / f"bench_cascade_{info['n']}{suffix}"
    out.with_suffix(".md").write_text(md)
    out.with_suffix(".json").write_text(
        json.dumps({"info": info, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
