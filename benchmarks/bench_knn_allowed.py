"""k-NN among allowed rows (Look further, a search within a view), measured.

``sdk.next_to_label`` and a search of a view rank only the rows they may return:
``index.knn(query, k, allowed)``, one scan that skips the rows left out (on a
sharded index, each shard scans its part, sent as bits). Before, the scan was
asked for ``k`` plus the rows left out and filtered, which grew with them; this
script times both on one index and on S shards in this process, checks their
answers equal, and prints a table (medians of ``--repeats``, ms).

Usage::

    nice -n 10 python benchmarks/bench_knn_allowed.py --n 1M,10M [--shards 1,4]
        [--left-out 0,10000,60000,1000000] [--k 60] [--repeats 5] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shards import build  # noqa: E402
from synthetic_codes import generate, parse_n  # noqa: E402

from fiftyone_clipbranches.engine.shards import open_index  # noqa: E402


def asking_for_more(index, query, k: int, allowed):
    """The way before: ``k`` plus the rows left out, filtered afterwards."""
    ask = min(len(index), k + int(np.count_nonzero(~allowed)))
    rows, dists = index.knn(query, ask)
    keep = allowed[rows]
    return rows[keep][:k], dists[keep][:k]


def median_ms(fn, repeats: int):
    """``(median ms, last answer)`` of ``repeats`` calls after one warm-up."""
    answer = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        answer = fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times)), answer


def measure(index, codes, left_out, k, repeats, rng) -> list[tuple]:
    rows = []
    for n_out in left_out:
        allowed = np.ones(len(index), bool)
        allowed[rng.choice(len(index), min(n_out, len(index)), replace=False)] = False
        query = np.asarray(codes[int(rng.integers(len(index)))])
        before, want = median_ms(
            lambda a=allowed, q=query: asking_for_more(index, q, k, a), repeats
        )
        now, got = median_ms(lambda a=allowed, q=query: index.knn(q, k, a), repeats)
        for x, y in zip(want, got):
            np.testing.assert_array_equal(x, y)  # the same answer, both ways
        rows.append((n_out, before, now))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1M", help="sizes, e.g. 1M,10M")
    p.add_argument("--shards", default="1,4", help="shard counts (1: one index)")
    p.add_argument("--left-out", default="0,10000,60000,1000000")
    p.add_argument("--k", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--work-dir", default=None, help="codes and indexes (temp dir)")
    args = p.parse_args(argv)
    left_out = [int(x) for x in args.left_out.split(",")]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-knn-"))
    rng = np.random.default_rng(0)
    table = []
    try:
        for n in [parse_n(x) for x in args.n.split(",")]:
            codes, _labels, _meta = generate(n, work_dir=work)
            for n_shards in [int(x) for x in args.shards.split(",")]:
                path = work / f"ix_{n}_{n_shards}"
                seconds = build(codes, path, n_shards)
                print(f"built N={n:,} S={n_shards} in {seconds:.0f} s", file=sys.stderr)
                index = open_index(path)
                try:
                    for row in measure(
                        index, codes, left_out, args.k, args.repeats, rng
                    ):
                        table.append((n, n_shards, *row))
                finally:
                    if hasattr(index, "close"):
                        index.close()
                shutil.rmtree(path)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nk = {args.k}, medians of {args.repeats}, ms\n")
    print("| N | shards | rows left out | k + left out | skipping scan | ratio |")
    print("|---|---|---|---|---|---|")
    for n, s, n_out, before, now in table:
        print(
            f"| {n:,} | {s} | {n_out:,} | {before:,.1f} | {now:,.1f} |"
            f" {before / now:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
