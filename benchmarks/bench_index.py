"""Benchmark of the k-d tree set index against parallel full scans.

For each catalogue size: build time, bytes/point, peak RSS, 30-box union query time
(index vs ``scan_boxes``) at ~0.01%, 0.1% and 1% selectivity, and exact k-NN time.
Synthetic codes come from ``synthetic_codes.py``. Each size runs in its own process
so that peak RSS belongs to that size alone (it includes resident pages of the
memory-mapped files). Timings are medians of ``--repeats`` runs with a warm page cache.

Usage::

    python benchmarks/bench_index.py                  # 1M and 10M
    python benchmarks/bench_index.py --n 100M         # needs ~N*130 bytes of disk
    python benchmarks/bench_index.py --n 1M --leaf-sizes 256,512,1024,2048,4096
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_codes import RESULTS, generate, make_query_boxes, parse_n  # noqa: E402

SELECTIVITIES = {"0.01%": 0.0001, "0.1%": 0.001, "1%": 0.01}


def median_time(fn, repeats, cpu=None):
    """Median wall seconds of ``repeats`` calls; median CPU seconds appended to ``cpu``."""
    times, cpus = [], []
    out = None
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    if cpu is not None:
        cpu.append(float(np.median(cpus)))
    return float(np.median(times)), out


class AnonPeak:
    """Peak anonymous RSS (``RssAnon``: excludes page cache of memory-mapped files)."""

    def __init__(self, period=0.2):
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_anon())
            self._stop.wait(period)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_anon())
        return self.peak


def _rss_anon():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_one(n, leaf_size, repeats, work_dir, keep, scan_repeats=None):
    from fiftyone_clipbranches.engine.index import CodeIndex
    from fiftyone_clipbranches.engine.scan import knn_scan, scan_boxes

    codes, labels, meta = generate(n, 0, work_dir)
    warm = np.ascontiguousarray(codes[:5000])
    CodeIndex.build(warm, leaf_size=64).query_boxes(
        make_query_boxes(warm, CodeIndex.build(warm).subsets, 0.01, 3)[0]
    )
    knn_scan(warm, warm[0], 3)
    path = Path(work_dir) / f"index_{n}_l{leaf_size}"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    anon = AnonPeak()
    t0 = time.perf_counter()
    CodeIndex.build(codes, leaf_size=leaf_size, path=path)
    build_s = time.perf_counter() - t0
    anon_peak = anon.stop()
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    index = CodeIndex.load(path, verify="fast")
    load_s = time.perf_counter() - t0
    row = {
        "n": n,
        "leaf_size": leaf_size,
        "depth": index.depth,
        "build_s": round(build_s, 2),
        "load_fast_s": round(load_s, 3),
        "bytes_per_point": round(index.bytes_per_point, 2),
        "bytes_by_part": index.nbytes_by_part(),
        "peak_rss_gib": round(max(rss0, rss_build) / 2**20, 2),
        "build_peak_anon_gib": round(anon_peak / 2**30, 2),
        "queries": {},
    }
    for name, frac in SELECTIVITIES.items():
        boxes, _ = make_query_boxes(
            codes,
            index.subsets,
            frac,
            30,
            seed=1,
            labels=labels,
            target=meta["target_components"][name],
        )
        cpu = []
        t_idx, (ids, hit) = median_time(
            lambda b=boxes: index.query_boxes(b), repeats, cpu
        )
        scan_cpu = []
        t_scan, (s_ids, s_hit) = median_time(
            lambda b=boxes: scan_boxes(index.codes, index.subsets, b),
            scan_repeats or max(3, repeats // 2),
            scan_cpu,
        )
        assert np.array_equal(ids, s_ids) and np.array_equal(hit, s_hit), "mismatch"
        row["queries"][name] = {
            "hits": int(len(ids)),
            "selectivity": len(ids) / n,
            "index_ms": round(1000 * t_idx, 2),
            "index_cpu_ms": round(1000 * cpu[0], 2),
            "scan_ms": round(1000 * t_scan, 2),
            "scan_cpu_ms": round(1000 * scan_cpu[0], 2),
            "speedup": round(t_scan / t_idx, 1),
        }
    rng = np.random.default_rng(2)
    queries = np.asarray(codes[rng.integers(0, n, 5)])
    t_knn = []
    for q in queries:
        t, _ = median_time(lambda q=q: index.knn(q, 100), 3)
        t_knn.append(t)
    row["knn100_ms"] = round(1000 * float(np.median(t_knn)), 2)
    row["peak_rss_gib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
    )
    if not keep:
        shutil.rmtree(path, ignore_errors=True)
    return row


def _rss(r):
    return f"{r['peak_rss_gib']} ({r.get('build_peak_anon_gib', '?')})"


def to_markdown(rows):
    head = (
        "| N | leaf | build s | B/pt | peak RSS (anon) GiB | sel. target | hits |"
        " index ms | index CPU ms | scan ms | scan CPU ms | scan/index | knn@100 ms (scan) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        for i, (name, q) in enumerate(r["queries"].items()):
            first = i == 0
            lines.append(
                f"| {r['n']:,} | {r['leaf_size']} | {r['build_s'] if first else ''} |"
                f" {r['bytes_per_point'] if first else ''} |"
                f" {_rss(r) if first else ''} | {name} |"
                f" {q['hits']:,} ({100 * q['selectivity']:.3f}%) | {q['index_ms']} |"
                f" {q['index_cpu_ms']} |"
                f" {q['scan_ms']} | {q['scan_cpu_ms']} | {q['speedup']}x |"
                f" {r['knn100_ms'] if first else ''} |"
            )
    return head + "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", default="1M,10M", help="comma-separated sizes (1M,10M,100M)")
    p.add_argument(
        "--leaf-sizes", default=None, help="comma-separated; default: index default"
    )
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--work-dir", default=str(RESULTS))
    p.add_argument(
        "--keep", action="store_true", help="keep the built index directories"
    )
    p.add_argument("--scan-repeats", type=int, default=None, help="default repeats/2")
    p.add_argument("--single", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single:
        n, leaf = (int(x) for x in args.single.split(":"))
        row = run_one(
            n, leaf, args.repeats, args.work_dir, args.keep, args.scan_repeats
        )
        print(json.dumps(row))
        return
    from fiftyone_clipbranches.engine.index import DEFAULT_LEAF_SIZE

    leaves = (
        [int(x) for x in args.leaf_sizes.split(",")]
        if args.leaf_sizes
        else [DEFAULT_LEAF_SIZE]
    )
    rows = []
    env = {**os.environ, "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "2")}
    for n in (parse_n(x) for x in args.n.split(",")):
        for leaf in leaves:
            cmd = [
                sys.executable,
                __file__,
                "--single",
                f"{n}:{leaf}",
                "--repeats",
                str(args.repeats),
                "--work-dir",
                args.work_dir,
            ]
            if args.keep:
                cmd.append("--keep")
            if args.scan_repeats:
                cmd += ["--scan-repeats", str(args.scan_repeats)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                raise SystemExit(f"benchmark at n={n} leaf={leaf} failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(to_markdown(rows[-1:]), flush=True)
    md = to_markdown(rows)
    print("\nAll sizes (shared 2-core machine; medians; warm page cache):\n")
    print(md)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.work_dir)
    (out_dir / f"bench_index_{stamp}.json").write_text(json.dumps(rows, indent=1))
    (out_dir / f"bench_index_{stamp}.md").write_text(md)


if __name__ == "__main__":
    main()
