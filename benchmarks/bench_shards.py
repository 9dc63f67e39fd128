"""Sharded indexes, measured: S = 1, 2, 4 shards, in process and through Ray actors.

For each catalogue size (synthetic codes of ``synthetic_codes.py``, the generator of
``bench_index.py``) and shard count S it reports:

- build time: the shards built one after another in this process, and as Ray tasks
  (S > 1);
- refine latency (train + apply + merge, the SDK's path: ``sdk.models.fit_on_index``
  with the registry's training-set defaults of the model, then ``apply_model``), p50 / p99 over ``--repeats`` rounds (16
  positives of a class of 0.01% / 0.1% / 1% of the rows, a new seed each round),
  for decision branches and the ensemble: one index (S = 1), S shards in process,
  S shards through Ray actors. Every sharded answer is checked equal to the one
  index's;
- Ray overhead: the median over rounds of (Ray - in process) at the same S, the
  paths run one after another within each round on the same labels, and the round
  trip of an empty call to every actor (fan-out); "vs one index": the median over
  rounds of the refine time's ratio to one index's (S = 1);
- merge: the k-way merge of the per-shard rankings alone;
- first page (``engine.pages.rank_pages``): the count and the first ``--page`` rows,
  the rest left ranked-on-demand where each shard runs: p50 of the apply through
  the count and first page (the shards' work and the round trip) and of the
  driver's merge of the S first pages, checked equal to the full ranking's head;
- memory per actor (resident set of each actor process after the queries).

It ends with a model of 1B codes over 10 machines of this kind, built only from
the figures measured in the run (and the stated network assumptions).

Usage::

    nice -n 10 python benchmarks/bench_shards.py --n 1M,10M [--repeats 20]
        [--shards 1,2,4] [--models branches,ensemble] [--page 100]
        [--work-dir DIR] [--no-ray] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_codes import RESULTS, generate, parse_n  # noqa: E402

from fiftyone_clipbranches.engine.index import CodeIndex  # noqa: E402
from fiftyone_clipbranches.engine.pages import rank_pages  # noqa: E402
from fiftyone_clipbranches.engine.scan import SEARCH_CHUNK_ROWS  # noqa: E402
from fiftyone_clipbranches.engine.search import apply_model  # noqa: E402
from fiftyone_clipbranches.engine.shard_format import (  # noqa: E402
    build_sharded_index,
    shard_name,
    write_top_manifest,
)
from fiftyone_clipbranches.engine.shards import merge_rankings, open_index  # noqa: E402
from fiftyone_clipbranches.sdk.models import MODELS  # noqa: E402

TARGETS = ("0.01%", "0.1%", "1%")
N_POSITIVES = 16


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q))


def refine_round(index, model_name, pos, seed):
    """One round of the SDK's refine path; ``(train_ms, apply_ms, ranking)``."""
    spec = MODELS[model_name]
    t0 = time.perf_counter()
    model = spec.make(seed)
    spec.fit_with_defaults(model, index, pos, seed=seed)
    t1 = time.perf_counter()
    ranking = apply_model(model, index)
    t2 = time.perf_counter()
    return 1e3 * (t1 - t0), 1e3 * (t2 - t1), ranking, model


def first_page_round(index, model, ranking, page_rows):
    """The first page of ``model``'s answer, with its count, then without it:
    ``(counted_ms, first_ms, merge_ms, count_after_ms)``: the count and first page
    (shards' work, round trip, merge), the first page alone, its merge on the
    driver, and the count asked for after the first page."""
    t0 = time.perf_counter()
    paged = rank_pages(model, index, first=page_rows)
    page = paged.page(0, page_rows)
    counted = 1e3 * (time.perf_counter() - t0)
    paged.close()
    assert paged.count == len(ranking)
    assert np.array_equal(page.ids, ranking.ids[:page_rows])
    t0 = time.perf_counter()
    paged = rank_pages(model, index, first=page_rows, count=False)
    t1 = time.perf_counter()
    page = paged.page(0, page_rows)
    t2 = time.perf_counter()
    count = paged.count
    t3 = time.perf_counter()
    paged.close()
    assert count == len(ranking)
    assert np.array_equal(page.ids, ranking.ids[:page_rows])
    return counted, 1e3 * (t2 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2)


def build(codes, path: Path, n_shards: int, builder=None, reuse=False) -> float:
    """Seconds to build; None when ``reuse`` finds the index already built."""
    if reuse and path.exists():
        return None
    if path.exists():
        shutil.rmtree(path)
    t0 = time.perf_counter()
    if n_shards == 1:
        CodeIndex.build(codes, path=path)
    else:
        build_sharded_index(codes, path, n_shards, builder=builder)
    return time.perf_counter() - t0


def one_shard_index(plain: Path, path: Path) -> Path:
    """A one-shard index at ``path`` over the plain index at ``plain``, its files
    hard-linked (no copy, one page cache), so one Ray actor can serve it."""
    index = CodeIndex.load(plain, verify="none")
    if path.exists():
        shutil.rmtree(path)
    (path / shard_name(0)).mkdir(parents=True)
    for f in plain.iterdir():
        os.link(f, path / shard_name(0) / f.name)
    write_top_manifest(path, [len(index)], index.n_dims, index.subsets, index.leaf_size)
    return path


def start_ray(temp: str):
    """A local Ray cluster with a private temp dir ``temp`` and token; returns
    ``ray``."""
    import ray

    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray.init(
        num_cpus=os.cpu_count(),
        object_store_memory=256 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="error",
        namespace="clipbranches",
        _temp_dir=temp,
    )
    return ray


def run_size(
    n,
    shard_counts,
    repeats,
    work,
    use_ray,
    keep,
    ray_build=True,
    models=("branches", "ensemble"),
    page_rows=100,
    reuse=False,
) -> dict:
    """Every path of every shard count is opened at once and each round runs them
    one after another on the same labels, so drift of the machine hits every path
    alike; overheads and ratios are medians of per-round differences and ratios."""
    codes, labels, meta = generate(n, 0, work)
    labels = np.asarray(labels)
    classes = {
        t: np.flatnonzero(labels == meta["target_components"][t]) for t in TARGETS
    }
    rng = np.random.default_rng(0)
    positives = {
        t: [
            np.sort(rng.choice(rows, min(N_POSITIVES, len(rows)), replace=False))
            for _ in range(repeats)
        ]
        for t, rows in classes.items()
    }
    out = {"n": n, "repeats": repeats, "page_rows": page_rows, "shards": {}}
    ray_shards = None
    if use_ray:
        from fiftyone_clipbranches.distributed import ray_shards
    paths, built = {}, []
    for s in sorted(set(shard_counts) | {1}):
        path = work / f"shards_{n}_S{s}"
        seconds = build(codes, path, s, reuse=reuse)
        row = {"build_s": seconds and round(seconds, 2), "paths": {}}
        built.append(path)
        if s > 1 and use_ray and ray_build:
            ray_path = work / f"shards_{n}_S{s}_ray"
            row["build_ray_s"] = round(
                build(codes, ray_path, s, ray_shards.ray_builder()), 2
            )
            shutil.rmtree(ray_path)
        paths[(s, "in process")] = open_index(path)
        if use_ray:
            if s == 1:  # one actor: the layout of one shard per machine
                path = one_shard_index(path, work / f"shards_{n}_S1_one")
                built.append(path)
            paths[(s, "ray")] = open_index(
                path, executor_factory=ray_shards.ray_executor_factory()
            )
        out["shards"][s] = row
    times = {key: {} for key in paths}
    for model_name in models:
        for t in TARGETS:
            cell = f"{model_name} {t}"
            for key in paths:
                times[key][cell] = {
                    "train": [],
                    "apply": [],
                    "total": [],
                    "page": [],
                    "first": [],
                    "page_merge": [],
                    "count_after": [],
                }
            for r in range(repeats + 1):  # round 0 warms up (JIT, caches)
                reference = None
                for key, index in paths.items():
                    tr, ap, ranking, model = refine_round(
                        index, model_name, positives[t][r % repeats], r
                    )
                    if reference is None:
                        reference = ranking.ids
                    else:
                        assert np.array_equal(reference, ranking.ids), (key, cell, r)
                    page, first, page_merge, count_after = first_page_round(
                        index, model, ranking, page_rows
                    )
                    if r:
                        got = times[key][cell]
                        got["train"].append(tr)
                        got["apply"].append(ap)
                        got["page"].append(page)
                        got["first"].append(first)
                        got["page_merge"].append(page_merge)
                        got["count_after"].append(count_after)
                        got["total"].append(tr + ap)
                        got["results"] = len(ranking)
                        got["model"] = model
    one = times[(1, "in process")]
    for (s, label), index in paths.items():
        res = {}
        for cell, got in times[(s, label)].items():
            total = np.asarray(got["total"])
            entry = {
                "train_ms_p50": round(pct(got["train"], 50), 2),
                "apply_ms_p50": round(pct(got["apply"], 50), 2),
                "page_ms_p50": round(pct(got["page"], 50), 2),
                "first_ms_p50": round(pct(got["first"], 50), 2),
                "page_merge_ms_p50": round(pct(got["page_merge"], 50), 3),
                "count_after_ms_p50": round(pct(got["count_after"], 50), 2),
                "p50_ms": round(pct(total, 50), 2),
                "p99_ms": round(pct(total, 99), 2),
                "results": got["results"],
                "vs_one_index": round(
                    pct(total / np.asarray(one[cell]["total"]), 50), 3
                ),
            }
            if label == "ray":
                base = np.asarray(times[(s, "in process")][cell]["total"])
                entry["ray_overhead_ms_p50"] = round(pct(total - base, 50), 2)
            if hasattr(index, "executor"):
                parts = index.executor.map(
                    "apply", shared=(got["model"], True, SEARCH_CHUNK_ROWS)
                )
                merges = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    merge_rankings(parts)
                    merges.append(1e3 * (time.perf_counter() - t0))
                entry["merge_ms"] = round(pct(merges, 50), 3)
            res[cell] = entry
        if hasattr(index, "executor"):
            res["fanout_ms_p50"] = fanout_ms(index)
            if label == "ray":
                res["actor_rss_mib"] = [
                    round(m["rss"] / 2**20) for m in index.executor.map("memory")
                ]
            index.close()
        out["shards"][s]["paths"][label] = res
    if not keep and not reuse:  # indexes reused are kept for the next --reuse
        for path in built:
            shutil.rmtree(path)
    return out


def fanout_ms(index, rounds: int = 50) -> float:
    """p50 ms of an empty call to every shard of ``index``."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        index.executor.map("check")
        times.append(1e3 * (time.perf_counter() - t0))
    return round(pct(times, 50), 3)


def measure_fanout(actor_counts, work: Path, rounds: int = 50) -> dict:
    """``{S: p50 ms}`` of an empty call to every actor of an S-shard index (20,000
    rows, so only the calls count), for each S of ``actor_counts`` (Ray)."""
    from fiftyone_clipbranches.distributed import ray_shards

    codes = np.random.default_rng(0).integers(0, 256, (20_000, 32)).astype(np.uint8)
    out = {}
    for s in actor_counts:
        path = work / f"fanout_S{s}"
        if path.exists():
            shutil.rmtree(path)
        build_sharded_index(codes, path, s)
        index = open_index(path, executor_factory=ray_shards.ray_executor_factory())
        try:
            index.executor.map("check")
            out[s] = fanout_ms(index, rounds)
        finally:
            index.close()
            shutil.rmtree(path)
    return out


def to_markdown(result: dict) -> str:
    n = result["n"]
    lines = [
        f"### {n:,} codes ({result['repeats']} rounds per cell; load average"
        f" {result['load']}, {result['cpus']} CPUs)",
        "",
        "| S | path | build s | model | class | results | train p50 ms |"
        " apply+merge p50 ms | refine p50 ms | refine p99 ms | vs one index |"
        " merge ms | Ray overhead p50 ms | count + first page p50 ms |"
        " first page p50 ms | its merge ms | count after it p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, row in result["shards"].items():
        for label, res in row["paths"].items():
            build = row.get("build_ray_s", "") if label == "ray" else row["build_s"]
            build = "reused" if build is None else build
            for key, e in res.items():
                if not isinstance(e, dict):
                    continue
                model, t = key.split(" ")
                over = e.get("ray_overhead_ms_p50")
                over = "" if over is None else f"{over:+.1f}"
                lines.append(
                    f"| {s} | {label} | {build} | {model} | {t} | {e['results']:,} |"
                    f" {e['train_ms_p50']} | {e['apply_ms_p50']} | {e['p50_ms']} |"
                    f" {e['p99_ms']} | {e['vs_one_index']:.2f}x |"
                    f" {e.get('merge_ms', '')} | {over} |"
                    f" {e.get('page_ms_p50', '')} | {e.get('first_ms_p50', '')} |"
                    f" {e.get('page_merge_ms_p50', '')} |"
                    f" {e.get('count_after_ms_p50', '')} |"
                )
    lines += [
        "",
        "| S | path | fan-out p50 ms (empty call to every shard) | RSS per actor MiB |",
    ]
    lines += ["|---|---|---|---|"]
    for s, row in result["shards"].items():
        for label, res in row["paths"].items():
            if "fanout_ms_p50" in res:
                rss = res.get("actor_rss_mib", "")
                lines.append(f"| {s} | {label} | {res['fanout_ms_p50']} | {rss} |")
    by_actors = result.get("fanout_ms_by_actors") or {}
    if by_actors:
        lines += ["", "| actors (small indexes) | fan-out p50 ms |", "|---|---|"]
        lines += [f"| {s} | {ms} |" for s, ms in sorted(by_actors.items())]
    return "\n".join(lines)


def fanout_fit(result: dict) -> tuple[float, float, str]:
    """``(intercept, ms per actor, source)``: the run's empty-call fan-outs fitted
    linearly in the number of actors called."""
    shards = result["shards"]
    fan = {s: shards[s]["paths"].get("ray", {}).get("fanout_ms_p50") for s in shards}
    fan = {s: v for s, v in fan.items() if v is not None}
    source = "the run's indexes"
    if result.get("fanout_ms_by_actors"):
        fan = {int(s): v for s, v in result["fanout_ms_by_actors"].items()}
        source = "small indexes of " + ", ".join(str(s) for s in sorted(fan))
    if len(fan) >= 2:
        xs = np.array(sorted(fan))
        slope, icpt = np.polyfit(xs, [fan[x] for x in xs], 1)
        return float(icpt), float(slope), source
    (s_one, f_one) = next(iter(fan.items()))  # one point: proportional to actors
    return 0.0, f_one / s_one, source


def billion_model(result: dict, machines: int = 10, total: int = 10**9) -> str:
    """1B codes over ``machines`` machines of this kind, from the run's figures: one
    layout per shard count measured through Ray (that many actors per machine)."""
    n = result["n"]
    shards = result["shards"]
    per_machine = total // machines
    scale = per_machine / n
    layouts = [s for s in sorted(shards) if "ray" in shards[s]["paths"]]
    icpt, slope, fan_source = fanout_fit(result)
    page_rows = result.get("page_rows", 100)
    lines = [
        f"Model: {total:,} codes over {machines} machines of this kind"
        f" ({per_machine:,} rows per machine), one layout per measured number of"
        " shard actors per machine. Apply = the measured p50 apply + merge through"
        f" that many Ray actors at {n:,} rows"
        + (
            " (measured at the per-machine size)"
            if scale == 1
            else f" x {scale:g} (extrapolated linearly in rows: pessimistic for"
            " the index-aware models, whose tree queries grow slower than N)"
        )
        + "; training = the measured p50 (random negatives and the neighbour"
        " search do not grow with N) plus the extra cost of its one fan-out (the"
        " training rows' codes; the neighbour pool is gathered once per index);"
        " fan-out = the extra cost of calling every machine's actors instead of"
        f" one machine's, from the measured fan-outs (empty calls to {fan_source}"
        f" actors) fitted linearly in the actor count ({icpt:.2f} +"
        f" {slope:.2f} ms/actor), + 0.2 ms LAN round trip (assumed); merge ="
        " measured merge ms per result row x results at 1B; result transfer = 16"
        " bytes per result row at 10 Gb/s (assumed). With the count and first"
        f" page ({page_rows} rows): apply = the measured p50 through the count and"
        " first page less the driver's merge, merge = the driver's measured merge"
        f" of one machine's first pages x {machines}, transfer = one page per"
        " actor. First page: the same without the count (the count follows, at"
        ' the "count after it" cost).',
        "",
        "| actors per machine | model | class | answer | train ms |"
        " apply ms (per machine) | fan-outs ms | merge ms | transfer ms |"
        " **p50 ms** | dominant term |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in layouts:
        actors = machines * s
        # the measured rounds already paid a fan-out to one machine's s actors
        fanout_ms = slope * (actors - s) + 0.2  # + one LAN round trip (assumed)
        for answer in ("every row", "count + first page", "first page"):
            for key, e in shards[s]["paths"]["ray"].items():
                if not isinstance(e, dict):
                    continue
                terms = {"train": e["train_ms_p50"] + fanout_ms}  # training rows
                if answer == "every row":
                    results_1b = e["results"] * total / n
                    merge_per_row = e.get("merge_ms", 0.0) / max(e["results"], 1)
                    terms["apply"] = e["apply_ms_p50"] * scale
                    terms["merge"] = merge_per_row * results_1b
                else:  # the driver merges one page per actor
                    results_1b = actors * page_rows
                    key_ms = "page_ms_p50" if answer[0] == "c" else "first_ms_p50"
                    terms["apply"] = (e[key_ms] - e["page_merge_ms_p50"]) * scale
                    terms["merge"] = e["page_merge_ms_p50"] * machines
                terms["fan-out"] = fanout_ms
                terms["transfer"] = results_1b * 16 * 8 / 10e9 * 1e3
                total_ms = sum(terms.values())
                dominant = max(terms, key=terms.get)
                model, t = key.split(" ")
                lines.append(
                    f"| {s} | {model} | {t} | {answer} | {terms['train']:.1f} |"
                    f" {terms['apply']:.1f} | {terms['fan-out']:.1f} |"
                    f" {terms['merge']:.1f} | {terms['transfer']:.1f} |"
                    f" **{total_ms:.0f}** | {dominant} |"
                )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", default="1M", help="sizes, e.g. 1M,10M")
    p.add_argument("--shards", default="1,2,4")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--models", default="branches,ensemble")
    p.add_argument("--page", type=int, default=100, help="rows of the first page")
    p.add_argument("--work-dir", default=None, help="default benchmarks/results/")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument(
        "--no-ray-build", action="store_true", help="skip timing builds as Ray tasks"
    )
    p.add_argument("--keep", action="store_true", help="keep the built indexes")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="use indexes kept by an earlier --keep (and keep them)",
    )
    p.add_argument(
        "--fanout-actors",
        default="",
        help="also time empty calls to this many actors of small indexes, e.g."
        " 1,2,4,8, for the 1B model's fan-out cost",
    )
    p.add_argument(
        "--model-from",
        default=None,
        metavar="JSON",
        help="no run: the 1B model of a saved run (with --fanout-actors measured now)",
    )
    args = p.parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else RESULTS
    work.mkdir(parents=True, exist_ok=True)
    shard_counts = [int(s) for s in args.shards.split(",")]
    temp = tempfile.mkdtemp(prefix="cbray-")  # short: Ray's socket paths
    ray = None if args.no_ray else start_ray(temp)
    fan_actors = [int(x) for x in args.fanout_actors.split(",") if x]
    try:
        fanout = measure_fanout(fan_actors, work) if fan_actors and ray else {}
        if args.model_from:
            result = json.loads(Path(args.model_from).read_text())
            result["shards"] = {int(s): v for s, v in result["shards"].items()}
            result["fanout_ms_by_actors"] = fanout
            print(to_markdown(result), "", billion_model(result), sep="\n")
            return
        for n in [parse_n(x) for x in args.n.split(",")]:
            result = run_size(
                n,
                shard_counts,
                args.repeats,
                work,
                ray is not None,
                args.keep,
                ray_build=not args.no_ray_build,
                models=args.models.split(","),
                page_rows=args.page,
                reuse=args.reuse,
            )
            result["fanout_ms_by_actors"] = fanout
            result["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
            result["cpus"] = os.cpu_count()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            (work / f"bench_shards_{n}_{stamp}.json").write_text(
                json.dumps(result, indent=1)
            )
            print(to_markdown(result))
            print()
            if ray is not None:
                print(billion_model(result))
                print()
            sys.stdout.flush()
    finally:
        if ray is not None:
            ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
