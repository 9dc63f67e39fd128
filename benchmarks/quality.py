"""Retrieval-quality benchmark: simulated users on real CLIP embeddings.

For every class of every dataset it runs

- the paper protocol (CLIP-Branches Figure 3): P positives of the class plus random
  catalogue negatives; F1 over the whole catalogue for decision branches, the ensemble,
  a decision tree, a random forest, the NN baseline (union of the k nearest neighbours of
  each positive, k = true class size) and Rocchio with the same oracle k;
- the whole-class protocol: every member of the class labelled positive;
- the interactive protocol: an example query (one random image of the class), its top 60
  labelled with the ground truth, then refined results, 3 rounds.

Every result goes through the SDK's ``labels_are_law``, as ``refine`` returns it. The
report gives, per catalogue, the best alternative at each P (the best of the forest,
Rocchio and NN), every model's ratio to it, F1 over the rows the user did not label,
wall times of training and application, and the targets as a PASS/FAIL table
(``--brief`` prints only the targets and the ratio tables).

and writes ``quality_<codes>.md``, ``quality_<codes>.json`` and ``quality_<codes>.png``
under ``--out``. Example::

    .venv/bin/python benchmarks/quality.py --data-dir ../shared/data/clip-vitb32 \\
        --datasets caltech101_test,oxford_pets_test,oxford_flowers_test,dtd_test \\
        --codes pca --seeds 3 --out benchmarks/results/quality
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_data import CODE_SPACES, Catalogue, load_catalogues  # noqa: E402
from quality_models import (  # noqa: E402
    ModelContext,
    available_models,
    known_models,
    merge_params,
)
from quality_protocols import (  # noqa: E402
    DISPLAYS,
    POSITIVE_COUNTS,
    interactive_protocol,
    paper_protocol,
    whole_class_protocol,
)
from quality_report import aggregate, check_targets, markdown, plot, write_json  # noqa: E402

DEFAULT_DATASETS = "caltech101_test,oxford_pets_test,oxford_flowers_test,dtd_test"
PROTOCOLS = ("paper", "whole", "interactive")


def panel_models() -> list[str]:
    """The models the App offers (``sdk.models.panel_models``)."""
    from fiftyone_clipbranches.sdk.models import panel_models as offered

    return list(offered())


def default_model() -> str | None:
    """The model the faces default to (``sdk.models.DEFAULT_MODEL``)."""
    try:
        from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL
    except ImportError:
        return None
    return DEFAULT_MODEL


def default_models() -> list[str]:
    """The harness's models plus every other registered one."""
    return list(known_models())


def default_interactive_models() -> list[str]:
    """The panel's models plus Rocchio (the search's own refinement)."""
    return [*panel_models(), "rocchio"]


_STATE: dict = {}
_CONTEXTS: dict = {}


def _context(i: int) -> ModelContext:
    if i not in _CONTEXTS:
        _CONTEXTS[i] = ModelContext(_STATE["catalogues"][i].features, _STATE["params"])
    return _CONTEXTS[i]


def _run_task(task: tuple[int, int, int]) -> list[dict]:
    i, cls, seed = task
    cat: Catalogue = _STATE["catalogues"][i]
    ctx = _context(i)
    models = _STATE["models"][i]
    records = []
    if "paper" in _STATE["protocols"]:
        records += paper_protocol(
            ctx, cat.labels, cat.name, cls, seed, models, _STATE["positives"]
        )
    if "whole" in _STATE["protocols"]:
        records += whole_class_protocol(ctx, cat.labels, cat.name, cls, seed, models)
    if "interactive" in _STATE["protocols"]:
        records += interactive_protocol(
            ctx,
            cat.labels,
            cat.name,
            cls,
            seed,
            [m for m in models if m in _STATE["interactive_models"]],
            rounds=_STATE["rounds"],
            display=_STATE["display"],
        )
    return records


def select_classes(cat: Catalogue, max_classes: int | None, seed: int = 0) -> list[int]:
    """All non-empty classes, or a fixed random subsample of ``max_classes``."""
    classes = np.flatnonzero(np.bincount(cat.labels) > 0)
    if max_classes is not None and max_classes < classes.shape[0]:
        rng = np.random.default_rng(seed)
        classes = np.sort(rng.choice(classes, size=max_classes, replace=False))
    return classes.tolist()


def evaluate(
    catalogues: list[Catalogue],
    *,
    models=None,
    interactive_models=None,
    protocols=PROTOCOLS,
    seeds: int = 3,
    positives=POSITIVE_COUNTS,
    rounds: int = 3,
    display: str = "result+further",
    params: dict | None = None,
    max_classes: int | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> dict:
    """Run the protocols on ``catalogues`` and return ``{"records", "skipped",
    "classes", "runtime_s"}``; ``records`` are flat dicts (see ``quality_protocols``).
    ``models`` defaults to :func:`default_models`, ``interactive_models`` to the
    same list."""
    known = known_models()
    models = default_models() if models is None else list(models)
    for m in [*models, *(interactive_models or ())]:
        if m not in known:
            raise ValueError(f"unknown model {m!r}; choose from {known}")
    for p in protocols:
        if p not in PROTOCOLS:
            raise ValueError(f"unknown protocol {p!r}; choose from {PROTOCOLS}")
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    skipped: dict[str, dict[str, str]] = {}
    per_cat_models = []
    for cat in catalogues:
        missing = available_models(cat.is_codes)
        skipped[cat.name] = {m: r for m, r in missing.items() if m in models}
        per_cat_models.append([m for m in models if m not in missing])
    _STATE.clear()
    _CONTEXTS.clear()
    _STATE.update(
        catalogues=catalogues,
        params=merge_params(params),
        models=per_cat_models,
        interactive_models=set(
            models if interactive_models is None else interactive_models
        ),
        protocols=set(protocols),
        positives=tuple(int(p) for p in positives),
        rounds=int(rounds),
        display=display,
    )
    classes = {cat.name: select_classes(cat, max_classes) for cat in catalogues}
    tasks = [
        (i, c, s)
        for i, cat in enumerate(catalogues)
        for c in classes[cat.name]
        for s in range(seeds)
    ]
    t0 = time.perf_counter()
    records: list[dict] = []
    if jobs == 1:
        for n, task in enumerate(tasks):
            records += _run_task(task)
            _progress(progress, n + 1, len(tasks), t0)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            for n, recs in enumerate(pool.map(_run_task, tasks, chunksize=2)):
                records += recs
                _progress(progress, n + 1, len(tasks), t0)
    return {
        "records": records,
        "skipped": skipped,
        "classes": classes,
        "runtime_s": time.perf_counter() - t0,
    }


def _progress(on: bool, done: int, total: int, t0: float) -> None:
    if on and (done == total or done % 20 == 0):
        el = time.perf_counter() - t0
        print(f"  {done}/{total} tasks, {el:.0f} s", file=sys.stderr, flush=True)


def _parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/clip-vitb32"))
    ap.add_argument("--datasets", default=DEFAULT_DATASETS)
    ap.add_argument("--codes", choices=CODE_SPACES, default="pca")
    ap.add_argument(
        "--fit-split",
        default="self",
        help='"self": codes fitted on each catalogue (as build_index does); or a split'
        ' name such as "val" (one code maker fitted on those held-out splits)',
    )
    ap.add_argument(
        "--codes-cache",
        type=Path,
        default=None,
        help="folder to keep the codes in between runs (keyed by the data, the space,"
        " the fit split and the code makers' source)",
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--positives", default=",".join(map(str, POSITIVE_COUNTS)))
    ap.add_argument(
        "--models",
        default=None,
        help="comma-separated (default: the harness's models and every registered one)",
    )
    ap.add_argument(
        "--interactive-models",
        default=None,
        help="comma-separated (default: the panel's models and rocchio)",
    )
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--display", choices=DISPLAYS, default=DISPLAYS[0],
        help="what a refined round shows the simulated user: 'result+further',"
        " the refinement's matches best first, then the panel's Look further"
        " page (default: what the panel offers); 'result', the matches alone;"
        " 'catalogue', the model's top rows by score over the whole catalogue,"
        " matches or not (a scan the index-answered models do not make)",
    )  # fmt: skip
    ap.add_argument(
        "--params", default=None, help="JSON overrides, e.g. '{\"ensemble\": {...}}'"
    )
    ap.add_argument("--max-classes", type=int, default=None, help="subsample classes")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    ap.add_argument(
        "--save-records",
        type=Path,
        default=None,
        help="also write this run's raw records (gzipped JSON) to this path",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=None,
        help="add the records saved by an earlier run (--save-records) with the same"
        " data and codes, for this run's classes and seeds only; this run's records"
        " replace the same ones there",
    )
    ap.add_argument("--tag", default=None, help="output name suffix (default: codes)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument(
        "--brief",
        action="store_true",
        help="print only the targets and the ratio tables (the files are complete)",
    )
    return ap.parse_args(argv)


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


#: What a run must leave at its defaults to be the full run the run-time target
#: is about.
FULL_RUN_ARGS = (
    "datasets", "models", "interactive_models", "protocols", "seeds", "positives",
    "rounds", "display", "max_classes", "params",
)  # fmt: skip


def _is_full_run(args) -> bool:
    defaults = _parse_args([])
    return all(getattr(args, k) == getattr(defaults, k) for k in FULL_RUN_ARGS)


def main(argv=None) -> dict:
    args = _parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1" if args.jobs > 1 else "2")
    params = json.loads(args.params) if args.params else None
    load_before = _load_average()
    t_load = time.perf_counter()
    catalogues = load_catalogues(
        args.data_dir,
        _csv(args.datasets),
        args.codes,
        args.fit_split,
        cache_dir=args.codes_cache,
    )
    load_s = time.perf_counter() - t_load
    result = evaluate(
        catalogues,
        models=default_models() if args.models is None else _csv(args.models),
        interactive_models=(
            default_interactive_models()
            if args.interactive_models is None
            else _csv(args.interactive_models)
        ),
        protocols=_csv(args.protocols),
        seeds=args.seeds,
        positives=[int(p) for p in _csv(args.positives)],
        rounds=args.rounds,
        display=args.display,
        params=params,
        max_classes=args.max_classes,
        jobs=args.jobs,
        progress=not args.quiet,
    )
    runtime = load_s + result["runtime_s"]
    if args.save_records is not None:
        save_records(args.save_records, result["records"], runtime)
    records, merged_s = result["records"], 0.0
    tasks = {
        (name, c, seed)
        for name, classes in result["classes"].items()
        for c in classes
        for seed in range(args.seeds)
    }
    for path in args.merge or ():
        earlier, earlier_s = load_records(path)
        earlier = [r for r in earlier if (r["dataset"], r["class"], r["seed"]) in tasks]
        records = merge_records(earlier, records)
        merged_s += earlier_s
    agg = aggregate(records)
    this_run = runtime
    runtime += merged_s
    cpu_s = _cpu_seconds()
    load = f"{load_before} at the start, {_load_average()} at the end"
    targets = check_targets(
        agg,
        runtime,
        default_model=default_model(),
        panel_models=panel_models(),
        load=load,
        full_run=_is_full_run(args),
    )
    n_classes = {k: len(v) for k, v in result["classes"].items()}
    meta = {
        "codes": args.codes,
        "codes origin": catalogues[0].codes_origin,
        "datasets": ", ".join(f"{c.name} (N={len(c)})" for c in catalogues),
        "classes evaluated": ", ".join(f"{k}: {v}" for k, v in n_classes.items())
        + ("" if args.max_classes is None else " (random subsample)"),
        "models": ", ".join(dict.fromkeys(r["model"] for r in records)),
        "fit split": args.fit_split,
        "seeds": args.seeds,
        "default model": default_model(),
        "panel models": ", ".join(panel_models()),
        "params": merge_params(params),
        "skipped models": "; ".join(
            f"{ds}: {m} ({why})"
            for ds, d in result["skipped"].items()
            for m, why in d.items()
        )
        or "none",
        "runtime": f"{this_run:.0f} s wall (codes {load_s:.0f} s)"
        + (f" + {merged_s:.0f} s in the merged runs" if args.merge else "")
        + f" with {args.jobs}"
        f" worker(s), {os.cpu_count()} CPUs seen, load average {load};"
        f" {cpu_s:.0f} CPU s in all (this process and its workers)",
        "host": platform.node(),
    }
    tag = args.tag or args.codes
    out = Path(args.out)
    report = {
        "meta": meta,
        "aggregate": agg,
        "targets": targets,
        "per_class_paper_f1": _per_class(records),
    }
    write_json(out / f"quality_{tag}.json", report)
    md = markdown(agg, targets, meta)
    from quality_report import atomic_write

    atomic_write(out / f"quality_{tag}.md", md.encode())
    plot(agg, out / f"quality_{tag}.png", f"retrieval quality, {args.codes} space")
    if not args.quiet:
        print(markdown(agg, targets, meta, brief=True) if args.brief else md)
    return report


def _load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def save_records(path: Path, records: list[dict], runtime_s: float) -> None:
    """Write ``records`` and the run's wall seconds as gzipped JSON."""
    import gzip

    from quality_report import atomic_write

    body = json.dumps({"runtime_s": runtime_s, "records": records})
    atomic_write(Path(path), gzip.compress(body.encode()))


def load_records(path: Path) -> tuple[list[dict], float]:
    """``(records, wall seconds)`` written by :func:`save_records`."""
    import gzip

    data = json.loads(gzip.decompress(Path(path).read_bytes()))
    return data["records"], float(data["runtime_s"])


def _record_key(r: dict) -> tuple:
    return (
        r["protocol"],
        r["dataset"],
        r["class"],
        r["seed"],
        r["model"],
        r.get("positives"),
        r.get("round"),
    )


def merge_records(earlier: list[dict], later: list[dict]) -> list[dict]:
    """``earlier`` + ``later``, a record of ``later`` replacing the one of
    ``earlier`` for the same protocol, dataset, class, seed, model and P or round."""
    replaced = {_record_key(r) for r in later}
    return [r for r in earlier if _record_key(r) not in replaced] + list(later)


def _per_class(records: list[dict]) -> dict:
    """``{dataset: {model: {P: [seed-mean F1 per class, class order]}}}``."""
    acc: dict = {}
    for r in records:
        if r["protocol"] != "paper":
            continue
        d = acc.setdefault(r["dataset"], {}).setdefault(r["model"], {})
        d.setdefault(r["positives"], {}).setdefault(r["class"], []).append(r["f1"])
    return {
        ds: {
            m: {
                str(p): [round(float(np.mean(v)), 4) for _, v in sorted(c.items())]
                for p, c in pm.items()
            }
            for m, pm in md.items()
        }
        for ds, md in acc.items()
    }


if __name__ == "__main__":
    main()
