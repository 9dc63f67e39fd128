"""``build_index`` from a FiftyOne dataset of N 512-d embeddings: wall time, peak RSS.

    .venv/bin/python benchmarks/bench_build.py --sizes 1000000 5000000 --methods pca head

A private mongod (WiredTiger cache capped at 1 GiB) in a temporary folder holds the
datasets; both are deleted at the end. Each dataset holds N samples whose
``emb`` ``VectorField`` is a float32 unit vector drawn around one of 1000 random
centres. They are inserted in batches of 50k raw documents into the dataset's
sample collection (a template document written by ``add_sample``, the vector
serialised exactly as ``VectorField`` does: zlib-compressed ``numpy.save``
bytes), much faster than ``add_samples`` and the same data in the database.
Each build runs in a fresh child process, whose peak RSS (``ru_maxrss``) is the
figure; the mongod is not counted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

INSERT_ROWS = 50_000
N_CENTRES = 1000
DIM = 512


def unit_vectors(rng, centres, n: int) -> np.ndarray:
    """float32 ``(n, DIM)`` unit vectors around random ``centres``."""
    x = centres[rng.integers(len(centres), size=n)]
    x = x + rng.normal(0.0, 0.6 / np.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_dataset(name: str, n: int, seed: int = 0):
    import fiftyone as fo
    import fiftyone.core.utils as fou
    from bson import Binary, ObjectId
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    ds = fo.Dataset(name)
    ds.add_sample_field("emb", fo.VectorField)
    first = unit_vectors(rng, centres, 1)[0]
    ds.add_sample(fo.Sample(filepath="/synthetic/0.jpg", emb=first))
    coll = ds._sample_collection
    template = coll.find_one()
    del template["_id"]
    header = _npy_header(first)
    assert zlib.compress(header + first.tobytes()) == fou.serialize_numpy_array(first)
    with tqdm(total=n, initial=1, desc=f"insert {n} samples", unit="sample") as bar:
        for start in range(1, n, INSERT_ROWS):
            count = min(INSERT_ROWS, n - start)
            vectors = unit_vectors(rng, centres, count)
            rand = rng.random(count)
            docs = [
                dict(
                    template,
                    _id=ObjectId(),
                    filepath=f"/synthetic/{start + i}.jpg",
                    _rand=float(rand[i]),
                    emb=Binary(zlib.compress(header + vectors[i].tobytes())),
                )
                for i in range(count)
            ]
            coll.insert_many(docs, ordered=False)
            bar.update(count)
    return ds


def _npy_header(vector: np.ndarray) -> bytes:
    with io.BytesIO() as f:
        np.save(f, vector, allow_pickle=False)
        return f.getvalue()[: -vector.nbytes]


def measure_in_child(name: str, method: str) -> dict:
    """Run one build in a fresh process; its JSON line on stdout is the result."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, method],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(name: str, method: str) -> None:
    import fiftyone as fo

    import fiftyone_clipbranches as cb

    ds = fo.load_dataset(name)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()

    def progress(fraction: float, label: str) -> None:
        elapsed = time.perf_counter() - t0
        print(f"{elapsed:7.1f} s {100 * fraction:5.1f}% {label}", file=sys.stderr)

    info = cb.build_index(
        ds,
        f"bench_{method}",
        embeddings_field="emb",
        code_method=method,
        progress=progress,
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ds.delete_run(f"bench_{method}")
    result = {
        "n": info.n_samples,
        "method": method,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak / 2**20, 2),
        "rss_before_gib": round(rss_before / 2**20, 2),
    }
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--methods", nargs="+", default=["pca", "head"])
    parser.add_argument("--work-dir", default=None, help="parent of the temp folder")
    parser.add_argument("--child", nargs=2, metavar=("DATASET", "METHOD"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-build-", dir=args.work_dir))
    os.environ.update(
        FIFTYONE_DO_NOT_TRACK="true",
        FIFTYONE_DATABASE_VALIDATION="false",
        CLIPBRANCHES_INDEX_ROOT=str(work / "indexes"),
    )
    from fiftyone_clipbranches.private_db import start_private_mongod

    mongod = start_private_mongod(
        work / "mongod", extra_args=["--wiredTigerCacheSizeGB", "1"]
    )
    rows = []
    try:
        for n in args.sizes:
            t0 = time.perf_counter()
            ds = make_dataset(f"bench-build-{n}", n)
            made = time.perf_counter() - t0
            print(f"dataset of {n} samples made in {made:.0f} s", file=sys.stderr)
            for method in args.methods:
                rows.append(measure_in_child(ds.name, method))
                print(json.dumps(rows[-1]), file=sys.stderr)
            ds.delete()
    finally:
        mongod.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("| N | code_method | wall (s) | peak RSS (GiB) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['method']} | {r['wall_s']} | {r['peak_rss_gib']} |")


if __name__ == "__main__":
    main()
