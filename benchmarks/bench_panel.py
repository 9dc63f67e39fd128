"""Benchmark: one relevance-feedback round trip through the panel (100k to 10M samples).

A persistent FiftyOne dataset of 100,000 samples (the 2,000 CIFAR-10 test images of
``../shared/data`` repeated) gets synthetic 32-byte codes (``synthetic_codes.py``: a
mixture fitted to real CLIP codes, with rare components of known size) indexed under
key ``bench``. The dataset, its database and its index are reused between runs (the
first run takes minutes to create them).

Each round tags positives (from one component) and negatives (from the others) and
calls the panel's ``refine`` method through ``fiftyone.operators.execute_operator``,
exactly what a click on *Refine* runs in the App: tags read from the database, model
training, index query over all rows, scores written back to the dataset, ordered
view built, round recorded in the execution store, panel re-rendered. Targets: a
round trip of at most 1 s up to 1M samples, 2 s at 10M. Medians of ``--repeats``
rounds after one warm-up round (numba JIT / page cache); the split comes from the
SDK's own timings and from wrapping the functions the panel calls (``StepTimer``).
Beside the round trip: the App's first grid page of the view set, the time the
score field takes to be written behind it, and the first page by score ("Show all
matches"). Prints the CPU count and load average.

Usage::

    python benchmarks/bench_panel.py [--n 100000] [--repeats 5] [--models branches,ensemble]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CIFAR = REPO.parent / "shared" / "data" / "cifar10-test-2000"
STATE = RESULTS / "bench_panel"

# the database is the benchmark's own (a private mongod under STATE): so are the
# indexes and the plugin link (another root's gc could never remove them)
os.environ["CLIPBRANCHES_INDEX_ROOT"] = str(STATE / "indexes")
os.environ["FIFTYONE_PLUGINS_DIR"] = str(STATE / "plugins")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_codes import generate, parse_n  # noqa: E402

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
    insert_cheap_samples(ds, images, n)
    print(f"dataset created in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    t0 = time.perf_counter()
    sdk.build_index_from_codes(
        ds, np.ascontiguousarray(codes), ds.values("id"), INDEX_KEY
    )
    print(f"index built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return ds, np.asarray(labels), meta


def insert_cheap_samples(ds, images, n: int, batch: int = 20_000) -> None:
    """Fill ``ds`` with ``n`` of the cheapest sample documents FiftyOne loads: the
    document FiftyOne writes for ``Sample(filepath=...)`` (no metadata, no labels),
    copied with a new ``_id`` and filepath and inserted by ``insert_many`` in
    batches, instead of ``add_samples``' per-sample validation (about 20x faster)."""
    import fiftyone as fo
    from bson import ObjectId

    ds.add_sample(fo.Sample(filepath=images[0]))
    coll = ds._sample_collection
    template = coll.find_one()
    coll.delete_many({})
    template.pop("_id")
    for start in range(0, n, batch):
        docs = []
        for i in range(start, min(n, start + batch)):
            doc = dict(template)
            doc["_id"] = ObjectId()
            doc["filepath"] = images[i % len(images)]
            doc["_rand"] = (i * 0.6180339887498949) % 1.0
            docs.append(doc)
        coll.insert_many(docs, ordered=False)
        if (start // batch) % 25 == 0:
            print(f"  added {min(n, start + batch):,}/{n:,} samples", file=sys.stderr)


def label_round(ds, ids, labels, component, n_pos, n_neg, rng):
    """Replace the tags with ``n_pos`` positives of ``component`` and ``n_neg``
    negatives drawn from the other rows."""
    ds.untag_samples([POS_TAG, NEG_TAG])
    pos = rng.choice(np.flatnonzero(labels == component), n_pos, replace=False)
    neg = rng.choice(np.flatnonzero(labels != component), n_neg, replace=False)
    ds.select(np.char.decode(ids[pos], "ascii").tolist()).tag_samples(POS_TAG)
    ds.select(np.char.decode(ids[neg], "ascii").tolist()).tag_samples(NEG_TAG)


class StepTimer:
    """Wall time of the steps of a round, by wrapping the functions the panel calls
    (the product code is unchanged; only this process's references are wrapped)."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    def wrap(self, owner, attr: str, step: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.ms[step] = self.ms.get(step, 0.0) + 1e3 * (
                    time.perf_counter() - t0
                )

        setattr(owner, attr, timed)

    def install(self) -> None:
        import importlib

        from fiftyone_clipbranches.panels import actions
        from fiftyone_clipbranches.sdk import round_history as history

        refine = importlib.import_module("fiftyone_clipbranches.sdk.refine")

        self.wrap(refine, "recover_unfinished_writes", "recover_ms")
        self.wrap(refine, "load_index", "load_ms")
        self.wrap(refine, "collect_labels", "labels_ms")
        self.wrap(refine, "alive_rows", "alive_ms")
        self.wrap(refine, "write_result", "journal_ms")
        self.wrap(history.RoundHistory, "append", "history_ms")
        self.wrap(history.RoundHistory, "set_result", "history_ms")
        self.wrap(actions, "tag_counts", "tag_counts_ms")


def panel_refine(ds, model: str, timer: StepTimer) -> tuple[float, dict, list]:
    import fiftyone.operators as foo

    state = {"index_key": INDEX_KEY, "model": model, "random_negatives": 500}
    params = {"__method__": "refine", "panel_id": "bench", "panel_state": state}
    timer.ms = {}
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
    stages = next(
        r["params"]["view"] for r in requests if r["operator_uri"] == "set_view"
    )
    return elapsed, {**stats, **timer.ms}, stages


def grid_page_ms(ds, stages) -> float:
    """The App's first grid page of the view the panel set: its count and first 24
    samples."""
    import fiftyone.core.view as fov

    view = fov.DatasetView._build(ds, stages)
    t0 = time.perf_counter()
    view.count()
    view.limit(24).values("id")
    return 1e3 * (time.perf_counter() - t0)


def by_score_page_ms(ds, field="clipbranches_score") -> float:
    """'Show all matches': the first page of every match by score."""
    view = ds.exists(field).sort_by(field, reverse=True)
    t0 = time.perf_counter()
    view.limit(24).values("id")
    return 1e3 * (time.perf_counter() - t0)


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"


STEPS = (
    "train_ms",
    "query_ms",
    "recover_ms",
    "load_ms",
    "labels_ms",
    "alive_ms",
    "journal_ms",
    "history_ms",
    "tag_counts_ms",
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=parse_n, default=100_000)
    parser.add_argument(
        "--create-only",
        action="store_true",
        help="create the dataset and index, then stop",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="branches,ensemble")
    parser.add_argument(
        "--targets",
        default="1%,common",
        help="classes labelled: 1%%, 0.1%%, 0.01%% (rare components) or common",
    )
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
    if args.create_only:
        return
    from fiftyone_clipbranches import sdk

    timer = StepTimer()
    timer.install()
    from fiftyone_clipbranches.sdk.freshness import sample_id_array

    ids = sample_id_array(ds)  # S24, in collection order (the order of the codes)
    sizes = np.bincount(labels)
    named = {**meta["target_components"], "common": int(np.argmax(sizes))}
    targets = {name: named[name] for name in args.targets.split(",")}
    rng = np.random.default_rng(0)
    rows = []
    loads = [os.getloadavg()[0]]
    for model in args.models.split(","):
        for target_name, component in targets.items():
            label_round(ds, ids, labels, component, args.n_pos, args.n_neg, rng)
            t0 = time.perf_counter()
            first, _, _ = panel_refine(ds, model, timer)
            sdk.wait_for_writes(ds)
            first_write = time.perf_counter() - t0 - first
            times, stats_list, behind, pages, score_pages = [], [], [], [], []
            for _ in range(args.repeats):
                elapsed, stats, stages = panel_refine(ds, model, timer)
                times.append(elapsed)
                stats_list.append(stats)
                pages.append(grid_page_ms(ds, stages))
                t0 = time.perf_counter()
                sdk.wait_for_writes(ds)
                behind.append(time.perf_counter() - t0)
                score_pages.append(by_score_page_ms(ds))
                loads.append(os.getloadavg()[0])
            med = {
                k: float(np.median([s.get(k, 0.0) for s in stats_list])) for k in STEPS
            }
            rows.append(
                {
                    "model": model,
                    "target": target_name,
                    "class_size": int(sizes[component]),
                    "n_results": stats_list[-1]["n_results"],
                    "first_round_s": round(first, 3),
                    "first_write_s": round(first_write, 2),
                    "round_trip_s": round(float(np.median(times)), 3),
                    "round_trip_max_s": round(float(np.max(times)), 3),
                    "grid_page_ms": round(float(np.median(pages)), 1),
                    "scores_written_after_s": round(float(np.median(behind)), 2),
                    "by_score_page_ms": round(float(np.median(score_pages)), 1),
                    **{k: round(v, 1) for k, v in med.items()},
                }
            )
            print(rows[-1], file=sys.stderr)
    ds.untag_samples([POS_TAG, NEG_TAG])

    target_s = 1.0 if args.n <= 1_000_000 else 2.0
    header = (
        f"Panel refine round trip, N = {args.n:,} samples, {args.n_pos} positives + "
        f"{args.n_neg} negatives + 500 random negatives; medians of {args.repeats} "
        f"rounds after one warm-up; {machine()} (1-min load during the rounds "
        f"{min(loads):.1f}-{max(loads):.1f}); target <= {target_s} s\n"
    )
    cols = [
        "model",
        "target",
        "n_results",
        "round_trip_s",
        "round_trip_max_s",
        "grid_page_ms",
        "scores_written_after_s",
        "by_score_page_ms",
        *STEPS,
    ]
    lines = ["| " + " | ".join(cols) + " | ok |", "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        ok = "yes" if r["round_trip_s"] <= target_s else "NO"
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + f" | {ok} |")
    table = header + "\n" + "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench_panel_{args.n}_{stamp}.md").write_text(table + "\n")
    (RESULTS / f"bench_panel_{args.n}_{stamp}.json").write_text(
        json.dumps(rows, indent=1)
    )


if __name__ == "__main__":
    main()
