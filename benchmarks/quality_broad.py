"""Broad concepts: a union of many classes, a large share of the dataset.

The per-class protocols of ``quality.py`` evaluate classes of 0.4-9.7% of a
catalogue. A user searching for "any animal" labels a concept that is a third or
more of the dataset; the random negatives a refinement draws are then largely
members. This prints, per catalogue, the F1 / recall / precision of each model
(with the user's labels enforced, as ``refine`` returns them) for concepts made of
random classes until they hold ``--shares`` of the catalogue, ``--positives``
labelled positives spread over the concept (at most a third of it: a row shows
the count of the last seed's concept), 20 labelled negatives and each model's
registry defaults (random negatives, their cap, neighbour positives), as the SDK
trains them (``ModelSpec.fit_with_defaults``).

``--mixed N`` evaluates instead one dataset of the catalogues together (codes of
one code maker, fitted on the val splits), repeated with small noise to N rows,
where each concept is one whole catalogue (14-37% of the rows with the four
shared ones).

    .venv/bin/python benchmarks/quality_broad.py --data-dir ../shared/data/clip-vitb32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from quality_data import load_catalogues  # noqa: E402
from quality_protocols import scores  # noqa: E402

from fiftyone_clipbranches.engine.index import CodeIndex  # noqa: E402
from fiftyone_clipbranches.engine.search import apply_model  # noqa: E402
from fiftyone_clipbranches.sdk.models import get_model  # noqa: E402
from fiftyone_clipbranches.sdk.refine import labels_are_law  # noqa: E402

DATASETS = "caltech101_test,oxford_pets_test,oxford_flowers_test,dtd_test"
N_NEGATIVES = 20


def refine_scores(model: str, index, truth, positives, negatives, seed, params):
    """The record of one refinement: F1, recall, precision, rows returned."""
    spec = get_model(model)
    clf = spec.make(seed, **params)
    spec.fit_with_defaults(clf, index, positives, negatives, seed)
    ranking = apply_model(clf, index)
    rows = labels_are_law(
        np.asarray(ranking.ids, np.int64),
        np.asarray(ranking.scores, np.float64),
        positives,
        negatives,
    )[0]
    mask = np.zeros(truth.shape[0], dtype=bool)
    mask[rows] = True
    return scores(mask, truth)


def concept_of(labels, share: float, rng) -> np.ndarray:
    """bool ``(N,)``: random classes joined until they hold ``share`` of the rows."""
    member = np.zeros(labels.shape[0], dtype=bool)
    for cls in rng.permutation(np.unique(labels)):
        if member.mean() >= share:
            break
        member |= labels == cls
    return member


def labelled(member, n_positives: int, rng):
    """``(positives, negatives)``: int64 rows, spread at random over the concept
    (at most a third of it) and over the rest."""
    inside, outside = np.flatnonzero(member), np.flatnonzero(~member)
    p = min(n_positives, inside.size // 3)
    return (
        np.sort(rng.choice(inside, p, replace=False)),
        np.sort(rng.choice(outside, N_NEGATIVES, replace=False)),
    )


def print_table(title: str, rows: list[tuple[str, dict[str, dict]]], models) -> None:
    print(f"\n### {title}\n")
    heads = " | ".join(f"{m} F1 (recall / precision)" for m in models)
    print(f"| concept | {heads} |")
    print("|---|" + "---|" * len(models))
    for label, by_model in rows:
        cells = [
            f"{r['f1']:.3f} ({r['recall']:.2f} / {r['precision']:.2f})"
            for r in (by_model[m] for m in models)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


def mean_records(records: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in records])) for k in records[0]}


def run_catalogues(args, models, params) -> None:
    cats = load_catalogues(
        Path(args.data_dir), args.datasets.split(","), "head", "self",
        cache_dir=args.codes_cache,
    )  # fmt: skip
    overall: dict[tuple, dict[str, list]] = {}
    for cat in cats:
        codes = np.ascontiguousarray(cat.features, np.uint8)
        index = CodeIndex.build(codes)
        rows = []
        for share in args.shares:
            for n_pos in args.positives:
                got = {m: [] for m in models}
                for seed in range(args.seeds):
                    rng = np.random.default_rng([seed, int(share * 1000), n_pos])
                    member = concept_of(cat.labels, share, rng)
                    pos, neg = labelled(member, n_pos, rng)
                    for m in models:
                        got[m].append(
                            refine_scores(m, index, member, pos, neg, seed, params[m])
                        )
                means = {m: mean_records(v) for m, v in got.items()}
                used = min(n_pos, int(np.count_nonzero(member)) // 3)
                rows.append((f"{share:.0%} of the rows, P = {used}", means))
                for m in models:
                    overall.setdefault((share, n_pos), {}).setdefault(m, []).append(
                        means[m]
                    )
        print_table(f"{cat.name} ({len(cat)} rows)", rows, models)
    print_table(
        "Mean over the catalogues",
        [
            (
                f"{s:.0%} of the rows, P = {p} (at most a third of the concept)",
                {m: mean_records(v) for m, v in d.items()},
            )
            for (s, p), d in overall.items()
        ],
        models,
    )


def run_mixed(args, models, params) -> None:
    names = args.datasets.split(",")
    cats = load_catalogues(
        Path(args.data_dir), names, "head", "val", cache_dir=args.codes_cache
    )
    base = np.concatenate([c.features for c in cats])
    source = np.concatenate([np.full(len(c), i) for i, c in enumerate(cats)])
    rng = np.random.default_rng(0)
    repeats = -(-args.mixed // base.shape[0])
    noise = rng.integers(-3, 4, (repeats * base.shape[0], base.shape[1]))
    codes = np.tile(base, (repeats, 1)).astype(np.int16) + noise
    codes = np.ascontiguousarray(np.clip(codes, 0, 255).astype(np.uint8)[: args.mixed])
    source = np.tile(source, repeats)[: args.mixed]
    index = CodeIndex.build(codes)
    rows = []
    for i, name in enumerate(names):
        member = source == i
        for n_pos in args.positives:
            got = {m: [] for m in models}
            for seed in range(args.seeds):
                pos, neg = labelled(
                    member, n_pos, np.random.default_rng([seed, i, n_pos])
                )
                for m in models:
                    got[m].append(
                        refine_scores(m, index, member, pos, neg, seed, params[m])
                    )
            rows.append(
                (
                    f"{name} ({member.mean():.0%} of the rows), P = {n_pos}",
                    {m: mean_records(v) for m, v in got.items()},
                )
            )
    print_table(f"The catalogues in one dataset of {args.mixed} rows", rows, models)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/data/clip-vitb32")
    ap.add_argument("--datasets", default=DATASETS)
    ap.add_argument("--codes-cache", type=Path, default=None)
    ap.add_argument("--models", default="cascade,linear")
    ap.add_argument(
        "--params",
        default="{}",
        help="JSON constructor arguments per model, e.g. '{\"cascade\": {...}}'",
    )
    ap.add_argument("--shares", default="0.1,0.3,0.6")
    ap.add_argument("--positives", default="8,32,200")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--mixed", type=int, default=0, help="rows of the mixed dataset")
    args = ap.parse_args(argv)
    import json

    models = args.models.split(",")
    given = json.loads(args.params)
    params = {m: given.get(m, {}) for m in models}
    args.shares = [float(s) for s in args.shares.split(",")]
    args.positives = [int(p) for p in args.positives.split(",")]
    print(
        f"models: {', '.join(models)} (registry defaults, params {given}); "
        f"{N_NEGATIVES} labelled negatives; {args.seeds} seeds; head codes"
    )
    if args.mixed:
        run_mixed(args, models, params)
    else:
        run_catalogues(args, models, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
