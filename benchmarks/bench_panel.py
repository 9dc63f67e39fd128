"""Benchmark: one relevance-feedback round trip through the panel, on 100,000 samples.

A persistent FiftyOne dataset of 100,000 samples (the 2,000 CIFAR-10 test images of
``../shared/data`` repeated) gets synthetic 32-byte codes (``synthetic_codes.py``: a
mixture fitted to real CLIP codes, with rare components of known size) indexed under
key ``bench``. The dataset, its database and its index are reused between runs (the
first run takes minutes to create them).

Each round tags positives (from one component) and negatives (from the others) and
calls the panel's ``refine`` method through ``fiftyone.operators.execute_operator``,
exactly what a click on *Refine* runs in the App: tags read from the database, model
training, index query over all rows, scores written back to the dataset, ordered
view built, round recorded in the execution store, panel re-rendered. The target is
a round trip of at most 2 s. Medians of ``--repeats`` rounds after one warm-up round
(numba JIT / page cache); the split comes from the SDK's own timings.

Usage::

    python benchmarks/bench_panel.py [--n 100000] [--repeats 5] [--models branches,ensemble]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CIFAR = REPO.parent / "shared" / "data" / "cifar10-test-2000"
STATE = RESULTS / "bench_panel"
TARGET_S = 2.0

os.environ.setdefault("CLIPBRANCHES_INDEX_ROOT", str(STATE / "indexes"))
os.environ.setdefault(
    "FIFTYONE_PLUGINS_DIR", tempfile.mkdtemp(prefix="cb-bench-plugins-")
)
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_codes import generate  # noqa: E402

PANEL_URI = "@clipbranches/clipbranches/clipbranches_panel"
INDEX_KEY = "bench"
POS_TAG, NEG_TAG = "cb_positive", "cb_negative"


def get_dataset(n: int):
    """The benchmark dataset with its index, created on first use."""
    import fiftyone as fo

    from fiftyone_clipbranches import sdk

    name = f"clipbranches-bench-{n}"
    codes, labels, meta = generate(n, seed=0, progress=True)
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if len(ds) == n and INDEX_KEY in sdk.list_indexes(ds):
            return ds, np.asarray(labels), meta
        ds.delete()
    if not CIFAR.is_dir():
        sys.exit(f"CIFAR images not found at {CIFAR}")
    images = sorted(str(p) for p in CIFAR.rglob("*.jpg"))
    t0 = time.perf_counter()
    ds = fo.Dataset(name, persistent=True)
    batch = 10_000
    for start in range(0, n, batch):
        samples = [
            fo.Sample(filepath=images[i % len(images)])
            for i in range(start, min(n, start + batch))
        ]
        ds.add_samples(samples, progress=False)
        print(f"  added {min(n, start + batch):,}/{n:,} samples", file=sys.stderr)
    print(f"dataset created in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    t0 = time.perf_counter()
    sdk.build_index_from_codes(
        ds, np.ascontiguousarray(codes), ds.values("id"), INDEX_KEY
    )
    print(f"index built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return ds, np.asarray(labels), meta


def label_round(ds, ids, labels, component, n_pos, n_neg, rng):
    """Replace the tags with ``n_pos`` positives of ``component`` and ``n_neg``
    negatives drawn from the other rows."""
    ds.untag_samples([POS_TAG, NEG_TAG])
    pos = rng.choice(np.flatnonzero(labels == component), n_pos, replace=False)
    neg = rng.choice(np.flatnonzero(labels != component), n_neg, replace=False)
    ds.select(ids[pos].tolist()).tag_samples(POS_TAG)
    ds.select(ids[neg].tolist()).tag_samples(NEG_TAG)


def panel_refine(ds, model: str) -> tuple[float, dict]:
    import fiftyone.operators as foo

    state = {"index_key": INDEX_KEY, "model": model, "random_negatives": 500}
    params = {"__method__": "refine", "panel_id": "bench", "panel_state": state}
    t0 = time.perf_counter()
    out = foo.execute_operator(PANEL_URI, ctx={"dataset": ds, "params": params})
    elapsed = time.perf_counter() - t0
    requests = out.executor.to_json()["requests"]
    errors = [
        r
        for r in requests
        if r["operator_uri"] == "notify" and r["params"].get("variant") == "error"
    ]
    if errors:
        raise RuntimeError(errors[0]["params"]["message"])
    stats = next(
        r["params"]["state"]["last_stats"]
        for r in requests
        if r["operator_uri"] == "patch_panel_state"
        and "last_stats" in r["params"]["state"]
    )
    return elapsed, stats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="branches,ensemble")
    parser.add_argument("--n-pos", type=int, default=20)
    parser.add_argument("--n-neg", type=int, default=20)
    args = parser.parse_args(argv)

    from fiftyone_clipbranches.plugin_install import install_plugin
    from fiftyone_clipbranches.private_db import start_private_mongod

    install_plugin(Path(os.environ["FIFTYONE_PLUGINS_DIR"]))
    mongod = start_private_mongod(STATE / "mongod")
    try:
        run(args)
    finally:
        import fiftyone.core.odm.database as fodb

        fodb._disconnect()
        mongod.stop()


def run(args) -> None:
    ds, labels, meta = get_dataset(args.n)
    ids = np.array(ds.values("id"))
    sizes = np.bincount(labels)
    targets = {
        "rare (1%)": meta["target_components"]["1%"],
        "common": int(np.argmax(sizes)),
    }
    rng = np.random.default_rng(0)
    rows = []
    for model in args.models.split(","):
        for target_name, component in targets.items():
            label_round(ds, ids, labels, component, args.n_pos, args.n_neg, rng)
            first, _ = panel_refine(ds, model)
            times, stats_list = [], []
            for _ in range(args.repeats):
                elapsed, stats = panel_refine(ds, model)
                times.append(elapsed)
                stats_list.append(stats)
            med = {
                k: float(np.median([s[k] for s in stats_list]))
                for k in ("train_ms", "query_ms", "write_ms", "total_ms")
            }
            rows.append(
                {
                    "model": model,
                    "target": target_name,
                    "class_size": int(sizes[component]),
                    "n_results": stats_list[-1]["n_results"],
                    "first_round_s": round(first, 3),
                    "round_trip_s": round(float(np.median(times)), 3),
                    "round_trip_max_s": round(float(np.max(times)), 3),
                    **{k: round(v, 1) for k, v in med.items()},
                }
            )
            print(rows[-1], file=sys.stderr)
    ds.untag_samples([POS_TAG, NEG_TAG])

    header = (
        f"Panel refine round trip, N = {args.n:,} samples, {args.n_pos} positives + "
        f"{args.n_neg} negatives + 500 random negatives; medians of {args.repeats} "
        f"rounds (shared 2-core machine); target <= {TARGET_S} s\n"
    )
    cols = [
        "model",
        "target",
        "class_size",
        "n_results",
        "round_trip_s",
        "round_trip_max_s",
        "first_round_s",
        "train_ms",
        "query_ms",
        "write_ms",
        "total_ms",
    ]
    lines = ["| " + " | ".join(cols) + " | ok |", "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        ok = "yes" if r["round_trip_s"] <= TARGET_S else "NO"
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + f" | {ok} |")
    table = header + "\n" + "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench_panel_{stamp}.md").write_text(table + "\n")
    (RESULTS / f"bench_panel_{stamp}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
