"""Benchmark of the model layer: training time and whole-catalogue application.

For each catalogue size (synthetic codes from ``synthetic_codes.py``) and each rare
class of known size (~0.01%, 0.1%, 1% of N): a 1,000-row training set (40 positives
of the class, 10 explicit negatives, 950 random catalogue rows), then

- decision branches: training time, application through the index (``apply_model``)
  and through the project's parallel full scan (``use_index=False``);
- 25-member ensemble: training, application through the index and through the scan;
- sklearn tree and 25-tree forest: training + chunked scan of the catalogue;
- F1 of each model's result against the class (a sanity check, not a quality study).

A worst-case training row uses random labels (100 positives in 1,000 rows), which
makes the model grow many boxes (up to ``max_boxes = 30``). All times are medians of
``--repeats`` runs after a warm-up (JIT compiled, page cache warm); sklearn models
and the ensemble's full scan are timed ``--sk-repeats`` times. Prints a markdown
table and writes it, with the raw figures as JSON, to
``benchmarks/results/bench_models_<sizes>.{md,json}``.

Usage::

    python benchmarks/bench_models.py                 # 1M and 10M
    python benchmarks/bench_models.py --n 1M --repeats 5
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
from synthetic_codes import RESULTS, generate, parse_n  # noqa: E402

N_POS, N_NEG, N_TRAIN = 40, 10, 1000


def median_time(fn, repeats):
    """Median wall seconds, median process CPU seconds (all threads), last result."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu)), out


def f1(ids, truth):
    tp = int(np.count_nonzero(truth[ids]))
    denom = len(ids) + int(np.count_nonzero(truth))
    return 2 * tp / denom if denom else 0.0


def training_set(codes, truth, seed):
    from fiftyone_clipbranches.engine.training_set import make_training_set

    rng = np.random.default_rng(seed)
    pos_pool = np.flatnonzero(truth)
    pos = rng.choice(pos_pool, min(N_POS, len(pos_pool)), replace=False)
    neg = rng.choice(np.flatnonzero(~truth[:1_000_000]), N_NEG, replace=False)
    n_rand = N_TRAIN - len(pos) - len(neg)
    return make_training_set(codes, pos, neg, n_random_negatives=n_rand, seed=seed)


def bench_train_worst_case(subsets, repeats):
    from fiftyone_clipbranches.engine.branches import DecisionBranches

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (N_TRAIN, 32)).astype(np.uint8)
    y = np.zeros(N_TRAIN, np.int8)
    y[rng.choice(N_TRAIN, 100, replace=False)] = 1
    model = DecisionBranches()
    t, c, m = median_time(lambda: model.fit(X, y, subsets=subsets), repeats)
    return {"train_s": t, "train_cpu_s": c, "boxes": len(m.boxes_)}


def run_size(n, repeats, sk_repeats, work_dir):
    from fiftyone_clipbranches.engine.branches import DecisionBranches
    from fiftyone_clipbranches.engine.ensemble import DecisionBranchesEnsemble
    from fiftyone_clipbranches.engine.index import CodeIndex
    from fiftyone_clipbranches.engine.search import apply_model

    codes_mm, labels_mm, meta = generate(n, 0, work_dir)
    codes = np.ascontiguousarray(codes_mm)
    labels = np.asarray(labels_mm)
    t0 = time.perf_counter()
    index = CodeIndex.build(codes)
    build_s = time.perf_counter() - t0
    subsets = index.subsets

    warm = training_set(codes[:20000], labels[:20000] == labels[0], 0)
    for cls in (DecisionBranches, DecisionBranchesEnsemble):
        m = cls().fit(warm.X, warm.y, warm.sample_weight, subsets=subsets)
        apply_model(m, index)
        apply_model(m, index, use_index=False)

    rows = []
    for name, comp in meta["target_components"].items():
        row = bench_class(codes, labels == comp, index, repeats, sk_repeats)
        row.update({"n": n, "class": name})
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows, build_s


def bench_class(codes, truth, index, repeats, sk_repeats):
    from fiftyone_clipbranches.engine.baselines import ForestModel, TreeModel
    from fiftyone_clipbranches.engine.branches import DecisionBranches
    from fiftyone_clipbranches.engine.ensemble import DecisionBranchesEnsemble
    from fiftyone_clipbranches.engine.linear import LinearClassifier
    from fiftyone_clipbranches.engine.search import apply_model

    subsets = index.subsets
    ts = training_set(codes, truth, 1)
    args = (ts.X, ts.y, ts.sample_weight)
    row = {"class_rows": int(truth.sum())}

    db = DecisionBranches()
    fit_db = lambda: db.fit(*args, subsets=subsets)  # noqa: E731
    row["db_train_s"], row["db_train_cpu_s"], _ = median_time(fit_db, repeats)
    row["db_boxes"] = len(db.boxes_)
    row["db_index_s"], _, r = median_time(lambda: apply_model(db, index), repeats)
    row["db_hits"], row["db_f1"] = len(r), f1(r.ids, truth)
    row["db_scan_s"], _, r2 = median_time(
        lambda: apply_model(db, index, use_index=False), repeats
    )
    assert np.array_equal(r.ids, r2.ids), "index and scan disagree"

    ens = DecisionBranchesEnsemble()
    fit_ens = lambda: ens.fit(*args, subsets=subsets)  # noqa: E731
    row["ens_train_s"], row["ens_train_cpu_s"], _ = median_time(fit_ens, repeats)
    row["ens_boxes"] = len(ens.boxes_)
    row["ens_index_s"], _, r = median_time(lambda: apply_model(ens, index), repeats)
    row["ens_hits"], row["ens_f1"] = len(r), f1(r.ids, truth)
    row["ens_scan_s"], _, r2 = median_time(
        lambda: apply_model(ens, index, use_index=False), sk_repeats
    )
    assert np.array_equal(r.ids, r2.ids), "index and scan disagree"

    lin = LinearClassifier()
    fit_lin = lambda: lin.fit(*args, unlabelled=ts.unlabelled)  # noqa: E731
    row["lin_train_s"], row["lin_train_cpu_s"], _ = median_time(fit_lin, repeats)
    row["lin_scan_s"], _, r = median_time(lambda: apply_model(lin, index), repeats)
    row["lin_hits"], row["lin_f1"] = len(r), f1(r.ids, truth)

    for key, cls in (("tree", TreeModel), ("forest", ForestModel)):
        model = cls()

        def fit_apply(model=model):
            model.fit(*args)
            return apply_model(model, index)

        row[f"{key}_total_s"], _, r = median_time(fit_apply, sk_repeats)
        row[f"{key}_hits"], row[f"{key}_f1"] = len(r), f1(r.ids, truth)
    return row


def ms(x):
    return f"{1000 * x:,.1f}"


def to_markdown(rows, worst, builds, threads):
    head = (
        f"Synthetic CLIP-like codes (D=32, the index's default subsets); {N_TRAIN}-row"
        " training"
        f" sets ({N_POS} positives of the class, {N_NEG} explicit negatives, random"
        f" rest); NUMBA_NUM_THREADS={threads}; medians; times in ms. Shared 2-core"
        " machine under load from other jobs: wall times are inflated and noisy; CPU"
        " = process CPU time summed over threads (robust to load)."
    )
    out = [
        head,
        "",
        "Training (1,000 rows):",
        "",
        "| N | class (rows) | DB boxes | DB train wall | DB train CPU | ens boxes"
        " | ens train wall | ens train CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['n']:,} | {r['class']} ({r['class_rows']:,}) | {r['db_boxes']}"
            f" | {ms(r['db_train_s'])} | {ms(r['db_train_cpu_s'])} | {r['ens_boxes']}"
            f" | {ms(r['ens_train_s'])} | {ms(r['ens_train_cpu_s'])} |"
        )
    out += [
        "",
        "Application to the whole catalogue (wall ms; ratios = time / index time of the"
        " same model; tree and forest include their fit):",
        "",
        "| N | class | DB index | DB scan | scan/index | tree fit+scan | tree/DB index"
        " | forest fit+scan | forest/DB index | ens index | ens scan | scan/index"
        " | ens train+index | hits DB / ens / forest | F1 DB / ens / tree / forest |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['n']:,} | {r['class']} | {ms(r['db_index_s'])} | {ms(r['db_scan_s'])}"
            f" | {r['db_scan_s'] / r['db_index_s']:.1f}x | {ms(r['tree_total_s'])}"
            f" | {r['tree_total_s'] / r['db_index_s']:.0f}x | {ms(r['forest_total_s'])}"
            f" | {r['forest_total_s'] / r['db_index_s']:.0f}x | {ms(r['ens_index_s'])}"
            f" | {ms(r['ens_scan_s'])} | {r['ens_scan_s'] / r['ens_index_s']:.1f}x"
            f" | {ms(r['ens_train_s'] + r['ens_index_s'])}"
            f" | {r['db_hits']:,} / {r['ens_hits']:,} / {r['forest_hits']:,}"
            f" | {r['db_f1']:.2f} / {r['ens_f1']:.2f} / {r['tree_f1']:.2f}"
            f" / {r['forest_f1']:.2f} |"
        )
    out += [
        "",
        "Linear classifier (no index: one parallel scan of the codes):",
        "",
        "| N | class | train wall | train CPU | scan | scan / DB index | hits | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['n']:,} | {r['class']} | {ms(r['lin_train_s'])}"
            f" | {ms(r['lin_train_cpu_s'])} | {ms(r['lin_scan_s'])}"
            f" | {r['lin_scan_s'] / r['db_index_s']:.1f}x | {r['lin_hits']:,}"
            f" | {r['lin_f1']:.2f} |"
        )
    out += [
        "",
        f"Worst-case training (random labels, 100 positives in {N_TRAIN} rows,"
        f" {worst['boxes']} boxes): {ms(worst['train_s'])} ms wall,"
        f" {ms(worst['train_cpu_s'])} ms CPU.",
        "Index build (not part of a request): "
        + ", ".join(f"N={n:,}: {s:.1f} s" for n, s in builds.items()),
    ]
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", default="1M,10M", help="comma-separated sizes (1M,10M)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sk-repeats", type=int, default=3)
    p.add_argument("--work-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    from fiftyone_clipbranches.engine.subsets import make_subsets

    sizes = [parse_n(s) for s in args.n.split(",")]
    worst = bench_train_worst_case(make_subsets(32), 3)
    worst = bench_train_worst_case(make_subsets(32), args.repeats * 3)
    rows, builds = [], {}
    for n in sizes:
        r, builds[n] = run_size(n, args.repeats, args.sk_repeats, args.work_dir)
        rows += r
    threads = os.environ.get("NUMBA_NUM_THREADS", "default")
    md = to_markdown(rows, worst, builds, threads)
    print(md)
    out = Path(args.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = "_".join(args.n.split(","))
    write_atomic(out / f"bench_models_{tag}.md", md + "\n")
    raw = {"rows": rows, "worst_train": worst, "builds": builds}
    write_atomic(out / f"bench_models_{tag}.json", json.dumps(raw, indent=1))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    main()
