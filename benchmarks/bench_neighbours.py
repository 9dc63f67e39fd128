"""Cost of neighbour positives: finding the cluster around P positives.

With P < 32 positives, ``make_training_set(neighbours_per_positive="auto")`` adds up
to ``round(32 / P)`` rows per positive of the cluster around them (``round(48 /
P)`` where it has no boundary): one exact
``knn_scan`` per positive for its ``2048 // P`` nearest rows (above
``NEIGHBOUR_SEARCH_ROWS`` rows, in an evenly spread sample of that many), then the
graph of those rows (``engine/local_cluster.py``). This times the training-set assembly with and without neighbours on
synthetic CLIP-like codes (``synthetic_codes.py``; medians of ``--repeats`` runs,
milliseconds) and reports the share of the added neighbours that belong to the
positives' class, with the sample and with a scan of every row. ``--f1 N`` adds
the F1 of refinements with and without neighbours on N synthetic codes (a class of
about 1% and the largest class; 20 explicit negatives; 3 seeds).

    .venv/bin/python benchmarks/bench_neighbours.py --n 1M,10M
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic_codes import generate, parse_n  # noqa: E402

from fiftyone_clipbranches.engine.neighbours import (  # noqa: E402
    auto_neighbours_per_positive,
    neighbour_rows,
)
from fiftyone_clipbranches.engine.training_set import make_training_set  # noqa: E402


def median_ms(repeats: int, fn, *args, **kwargs) -> float:
    fn(*args, **kwargs)  # compile / warm the page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def f1_table(n: int, positive_counts=(4, 20), seeds: int = 3) -> None:
    """Mean F1 over the catalogue with neighbour positives automatic and off."""
    from fiftyone_clipbranches.engine.index import CodeIndex
    from fiftyone_clipbranches.engine.search import apply_model
    from fiftyone_clipbranches.sdk.models import fit_model, get_model, make_model

    codes, labels, _ = generate(n)
    codes, labels = np.ascontiguousarray(codes), np.asarray(labels)
    index = CodeIndex.build(codes)
    sizes = np.bincount(labels)
    classes = {
        "about 1%": int(np.argmin(np.abs(sizes - n // 100))),
        "largest": int(sizes.argmax()),
    }
    print("\n| positives | class (size) | model | F1, neighbours auto | F1, none |")
    print("|---|---|---|---|---|")
    for n_pos in positive_counts:
        for name, cls in classes.items():
            members = np.flatnonzero(labels == cls)
            others = np.flatnonzero(labels != cls)
            for model in ("branches", "ensemble"):
                f1 = {}
                for setting in ("auto", 0):
                    scores = []
                    for seed in range(seeds):
                        rng = np.random.default_rng(seed)
                        pos = np.sort(rng.choice(members, n_pos, replace=False))
                        neg = np.sort(rng.choice(others, 20, replace=False))
                        train = make_training_set(
                            index.codes,
                            pos,
                            neg,
                            n_random_negatives=get_model(model).random_negatives,
                            seed=seed,
                            neighbours_per_positive=setting,
                        )
                        clf = make_model(model, random_state=seed)
                        fit_model(
                            clf, train.X, train.y, train.sample_weight, index.subsets
                        )
                        found = np.asarray(apply_model(clf, index).ids)
                        hits = np.isin(found, members).sum()
                        scores.append(2 * hits / (found.size + members.size))
                    f1[setting] = np.mean(scores)
                print(
                    f"| {n_pos} | {name} ({members.size}) | {model} | "
                    f"{f1['auto']:.3f} | {f1[0]:.3f} |"
                )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", default="1M,10M", help="catalogue sizes, e.g. 1M,10M")
    p.add_argument("--positives", default="1,4,8,16,31")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--f1", default=None, help="catalogue size of the F1 table, e.g. 100k"
    )
    args = p.parse_args(argv)
    rows = []
    for n in (parse_n(t) for t in args.n.split(",")):
        codes, labels, _ = generate(n)
        codes, labels = np.ascontiguousarray(codes), np.asarray(labels)
        rng = np.random.default_rng(0)
        cls = int(np.bincount(labels).argmax())
        members = np.flatnonzero(labels == cls)
        for n_pos in (int(t) for t in args.positives.split(",")):
            pos = np.sort(rng.choice(members, n_pos, replace=False))
            k = auto_neighbours_per_positive(n_pos) + 1
            r = args.repeats
            plain = median_ms(r, make_training_set, codes, pos, n_random_negatives=500)
            auto = median_ms(
                r,
                make_training_set,
                codes,
                pos,
                n_random_negatives=500,
                neighbours_per_positive="auto",
            )
            near = neighbour_rows(codes, pos, "auto")
            same = float(np.mean(labels[near] == cls)) if near.size else float("nan")
            near_all = neighbour_rows(codes, pos, "auto", search_rows=n)  # every row
            same_all = float(np.mean(labels[near_all] == cls)) if near_all.size else 0
            rows.append((n, n_pos, k - 1, near.size, plain, auto, same, same_all))
            print(rows[-1], flush=True)
    print(
        "\n| N | positives | neighbours per positive | added | training set ms, "
        "none | training set ms, auto | neighbours ms (per positive) | same class "
        "(searched rows / every row) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, n_pos, k, added, plain, auto, same, same_all in rows:
        print(
            f"| {n:,} | {n_pos} | {k} | {added} | {plain:.1f} | {auto:.1f} | "
            f"{auto - plain:.1f} ({(auto - plain) / n_pos:.1f}) | "
            f"{same:.2f} / {same_all:.2f} |"
        )
    if args.f1:
        f1_table(parse_n(args.f1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
