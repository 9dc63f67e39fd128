"""Choose model defaults by measurement: one parameter at a time, same classes and seeds.

Every configuration runs the paper protocol (and, for the negative weight, the
interactive protocol) of :mod:`quality` on the same class subsample, so differences are
paired. Prints one markdown table per sweep and writes ``sweep_<name>.{md,json}``.

    .venv/bin/python benchmarks/quality_sweep.py --sweeps subsets,boxes \\
        --max-classes 12 --out benchmarks/results/quality
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import DEFAULT_DATASETS, evaluate  # noqa: E402
from quality_data import load_catalogues  # noqa: E402
from quality_report import aggregate, atomic_write, crossover, write_json  # noqa: E402

from fiftyone_clipbranches.engine.subsets import DEFAULT_SUBSET_SIZES  # noqa: E402

SUBSET_CONFIGS = {
    "{4:4,6:4,8:2}": {4: 4, 6: 4, 8: 2},
    "{4:12}": {4: 12},
    "{6:8}": {6: 8},
    "{8:8}": {8: 8},
    "{4:8,6:4}": {4: 8, 6: 4},
    "{4:8}": {4: 8},
    "{8:4}": {8: 4},
    "{4:64,6:32,8:8} (reference)": {4: 64, 6: 32, 8: 8},
}


def index_bytes_per_point(sizes: dict[int, int], code_bytes: int = 32) -> int:
    """Codes plus, per subset tree, its columns and a 4-byte id per point."""
    return code_bytes + sum((int(k) + 4) * int(v) for k, v in sizes.items())


def _sweeps() -> dict[str, list[tuple[str, dict]]]:
    both = ("branches", "ensemble")
    return {
        "subsets": [
            (name, {"subsets": {"sizes": sizes}})
            for name, sizes in SUBSET_CONFIGS.items()
        ],
        "boxes": [
            (f"max_boxes={b}", {m: {"max_boxes": b} for m in both})
            for b in (10, 30, 60)
        ],
        "candidates": [
            (f"max_candidates={c!r}", {m: {"max_candidates": c} for m in both})
            for c in ("all", 0.5, "sqrt")
        ],
        "negatives": [
            (f"n_random_negatives={n}", {"training": {"n_random_negatives": n}})
            for n in (100, 250, 500, 1000)
        ],
        "ensemble_size": [
            (f"n_estimators={n}", {"ensemble": {"n_estimators": n}})
            for n in (10, 25, 50)
        ],
        "vote_threshold": [
            (f"vote_threshold={t}", {"ensemble": {"vote_threshold": t}})
            for t in (0.2, 0.3, 0.4, 0.5)
        ],
        "negative_weight": [
            (f"negative_weight={w}", {"training": {"negative_weight": w}})
            for w in (0.5, 1.0, 2.0, 5.0)
        ],
        "min_samples_box": [
            (f"min_samples_box={k}", {m: {"min_samples_box": k} for m in both})
            for k in (1, 2, 4)
        ],
        "max_samples": [
            (f"max_samples={f}", {"ensemble": {"max_samples": f}})
            for f in (0.5, 0.75, 1.0)
        ],
        "ensemble_combo": [
            (
                f"random_negatives={n}, vote_threshold={t}",
                {
                    "training": {"n_random_negatives": n},
                    "ensemble": {"vote_threshold": t},
                },
            )
            for n, t in ((500, 0.5), (500, 0.4), (250, 0.4), (250, 0.3), (100, 0.4))
        ],
        "auto_negatives": [
            (
                f"random_negatives={n}, vote_threshold={t}",
                {
                    "training": {"n_random_negatives": n, **extra},
                    "ensemble": {"vote_threshold": t},
                },
            )
            for n, t, extra in (
                ("auto", 0.4, {"negatives_per_positive": 25}),
                ("auto", 0.4, {"negatives_per_positive": 15}),
                ("auto", 0.5, {"negatives_per_positive": 25}),
            )
        ],
        "branches_negatives": [
            (f"n_random_negatives={n}", {"training": {"n_random_negatives": n}})
            for n in (500, 1000, 1500)
        ],
    }


#: Sweeps that also run the interactive protocol (labelled negatives, many positives).
INTERACTIVE_SWEEPS = (
    "negative_weight",
    "boxes",
    "negatives",
    "ensemble_combo",
    "auto_negatives",
    "branches_negatives",
)


SWEEP_MODELS = {
    "ensemble_size": ("ensemble", "nn"),
    "vote_threshold": ("ensemble", "nn"),
    "max_samples": ("ensemble", "nn"),
    "ensemble_combo": ("ensemble", "nn", "rocchio"),
    "auto_negatives": ("ensemble", "branches", "nn", "rocchio"),
    "branches_negatives": ("branches", "nn", "rocchio"),
}


def _summary(agg: dict, models: list[str], interactive: bool) -> dict:
    """Per model: dataset-mean F1 per P, per-dataset crossovers vs NN, interactive F1."""
    out = {}
    paper = agg["paper"]
    for m in models:
        if m in ("nn", "rocchio"):
            continue
        row: dict = {"f1_by_p": {}, "cross_nn": {}, "fit_s": {}}
        for ds, t in paper.items():
            if m not in t["f1"]:
                continue
            row["f1_by_p"][ds] = t["f1"][m]
            row["fit_s"][ds] = t["fit_s"][m]
            row["cross_nn"][ds] = crossover(t["positives"], t["f1"][m], t["f1"]["nn"])[
                1
            ]
        if row["f1_by_p"]:
            row["mean_f1_by_p"] = np.mean(
                list(row["f1_by_p"].values()), axis=0
            ).tolist()
            row["positives"] = next(iter(paper.values()))["positives"]
        if interactive:
            row["interactive_f1"] = {
                ds: t["f1"][m] for ds, t in agg["interactive"].items() if m in t["f1"]
            }
            if row["interactive_f1"]:
                row["mean_interactive_f1"] = np.mean(
                    list(row["interactive_f1"].values()), axis=0
                ).tolist()
        out[m] = row
    return out


def _table(name: str, results: list[dict]) -> str:
    lines = [f"### Sweep: {name}", ""]
    first = results[0]["summary"]
    models = list(first)
    interactive = any("mean_interactive_f1" in r for r in first.values())
    for m in models:
        ps = first[m].get("positives", [])
        dss = list(first[m]["cross_nn"])
        head = ["config", *(f"F1@P={p}" for p in ps)]
        if interactive:
            rounds = len(first[m]["mean_interactive_f1"])
            head += [f"interactive F1 r{r}" for r in range(rounds)]
        head += [f"P* vs NN {ds.removesuffix('_test')}" for ds in dss]
        roc = "cross_rocchio" in first[m]
        if roc:
            head += [f"P* vs Rocchio {ds.removesuffix('_test')}" for ds in dss]
        head.append("fit s")
        if name == "subsets":
            head.insert(1, "index B/pt")
        lines += [
            f"Model: {m}",
            "",
            "| " + " | ".join(head) + " |",
            "|---" * len(head) + "|",
        ]
        for r in results:
            s = r["summary"][m]
            cells = [r["label"]]
            if name == "subsets":
                cells.append(str(r["bytes_per_point"]))
            cells += [f"{v:.3f}" for v in s.get("mean_f1_by_p", [])]
            if interactive:
                cells += [f"{v:.3f}" for v in s["mean_interactive_f1"]]
            for key in ("cross_nn", "cross_rocchio") if roc else ("cross_nn",):
                cells += [
                    "never" if s[key][ds] is None else f"{s[key][ds]:.1f}" for ds in dss
                ]
            cells.append(f"{np.mean(list(s['fit_s'].values())):.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/clip-vitb32"))
    ap.add_argument("--datasets", default=DEFAULT_DATASETS)
    ap.add_argument("--codes", choices=("pca", "head"), default="pca")
    ap.add_argument("--sweeps", default=",".join(_sweeps()))
    ap.add_argument("--max-classes", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--positives", default="2,4,8,16")
    ap.add_argument("--base-params", default=None, help="JSON applied to every config")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    args = ap.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1" if args.jobs > 1 else "2")
    sweeps = _sweeps()
    names = [s.strip() for s in args.sweeps.split(",") if s.strip()]
    for n in names:
        if n not in sweeps:
            raise ValueError(f"unknown sweep {n!r}; choose from {sorted(sweeps)}")
    base = json.loads(args.base_params) if args.base_params else {}
    cats = load_catalogues(
        args.data_dir, [d.strip() for d in args.datasets.split(",")], args.codes
    )
    positives = [int(p) for p in args.positives.split(",")]
    report = {}
    for name in names:
        results = []
        models = list(SWEEP_MODELS.get(name, ("branches", "ensemble", "nn")))
        interactive = name in INTERACTIVE_SWEEPS
        for label, override in sweeps[name]:
            params = {k: dict(v) for k, v in base.items()}
            for section, values in override.items():
                params.setdefault(section, {}).update(values)
            t0 = time.perf_counter()
            res = evaluate(
                cats,
                models=models,
                interactive_models=[m for m in models if m != "nn"],
                protocols=("paper", "interactive") if interactive else ("paper",),
                seeds=args.seeds,
                positives=positives,
                rounds=3,
                params=params,
                max_classes=args.max_classes,
                jobs=args.jobs,
            )
            agg = aggregate(res["records"])
            sizes = params.get("subsets", {}).get("sizes") or DEFAULT_SUBSET_SIZES
            results.append(
                {
                    "label": label,
                    "params": params,
                    "bytes_per_point": index_bytes_per_point(sizes),
                    "summary": _summary(agg, models, interactive),
                    "wall_s": time.perf_counter() - t0,
                }
            )
            print(
                f"  {name}: {label} done in {results[-1]['wall_s']:.0f} s", flush=True
            )
        md = _table(name, results)
        print(md, flush=True)
        report[name] = results
        write_json(args.out / f"sweep_{name}.json", results)
        atomic_write(args.out / f"sweep_{name}.md", md.encode())
    return report


if __name__ == "__main__":
    main()
