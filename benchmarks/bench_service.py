"""Load test of the HTTP service: refine requests against a 10M-code index.

The service runs in its own process (``python -m fiftyone_clipbranches.service``);
this process is the load generator: ``c`` client threads, each with one keep-alive
``http.client`` connection on loopback, send refine requests back to back for
``--duration`` seconds per concurrency level. Reported per level: requests, failed
requests, throughput, p50/p90/p99/max latency, peak server RSS summed over the
service and its compute worker processes (and its anonymous part, i.e. without the
page cache of the memory-mapped index), the ``/v1/health`` latency while the clients
refine, the CPU time per request (the in-process baselines: this process; the
service: its process and its workers, not the HTTP clients) and the 1-minute load
average. On a shared machine the CPU time per request compares the paths better than
the throughput: 16 in-process threads win a larger share of the cores than 2 worker
processes. The same requests are also run in this process without HTTP, at the
same concurrency, through the engine alone (training set, fit, ``apply_model``) and through ``sdk.refine``, so the
table shows the service's share of the cost.

The codes come from ``synthetic_codes.py``; every request trains decision branches
on 20 positives of the 0.1% class, 10 explicit negatives and 500 random negatives,
with neighbour positives as ``--neighbours`` says (default: automatic, as the
service).
The index is registered on a FiftyOne dataset of minimal sample documents (one per
synthetic id, inserted raw) in a private database under ``--work-dir``: labelled
samples are given by id, so refinement reads no tags; the dataset's ids are read
once per process (the alive-rows mask), then cached.

Usage::

    python benchmarks/bench_service.py                      # 1, 4, 16 clients, 60 s each
    python benchmarks/bench_service.py --levels 16 --duration 300   # the 5-minute run
    python benchmarks/bench_service.py --n 1M --duration 10         # a quick check
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_codes import RESULTS, generate, parse_n  # noqa: E402

from fiftyone_clipbranches.private_db import start_private_mongod  # noqa: E402

TOKEN = "bench-service-token-0123456789"
INDEX_KEY = "bench"
N_POSITIVES, N_NEGATIVES, N_BODIES = 20, 10, 16


def synthetic_ids(n: int) -> np.ndarray:
    """``(n,)`` S24 ids: row ``i`` gets ``f"{i:024x}"`` (valid sample-id syntax)."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    rows = np.arange(n, dtype=np.uint64)
    shifts = np.arange(15, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = ((rows[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.uint8)
    out = np.full((n, 24), ord("0"), dtype=np.uint8)
    out[:, 8:] = digits[nibbles]
    return out.view("S24").reshape(n)


def setup_environment(work: Path) -> None:
    """A private index root and database settings (before fiftyone connects)."""
    os.environ["CLIPBRANCHES_INDEX_ROOT"] = str(work / "indexes")
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")
    work.mkdir(parents=True, exist_ok=True)


def prepare_dataset(n: int, codes) -> tuple[str, float]:
    """Dataset ``bench-service-<n>`` with index ``bench`` over ``codes`` (reused)."""
    import fiftyone as fo

    from fiftyone_clipbranches import sdk

    if fo.config.database_uri != os.environ["FIFTYONE_DATABASE_URI"]:
        raise RuntimeError("fiftyone is not connected to the private mongod")
    name = f"bench-service-{n}"
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if INDEX_KEY in sdk.list_indexes(ds):
            if sdk.index_info(ds, INDEX_KEY, check=False).n_samples == n:
                return name, 0.0
            sdk.delete_index(ds, INDEX_KEY)
    else:
        ds = fo.Dataset(name, persistent=True)
    t0 = time.perf_counter()
    ids = synthetic_ids(n)
    if len(ds) != n:
        ds.clear()
        insert_samples(ds, ids)
    sdk.build_index_from_codes(ds, codes, ids, INDEX_KEY)
    return name, time.perf_counter() - t0


def insert_samples(ds, ids, batch: int = 50_000) -> None:
    """One sample per id (``_id`` the synthetic id): the document FiftyOne writes for
    ``Sample(filepath=...)``, copied and inserted in batches (an index may only hold
    samples of its dataset)."""
    import fiftyone as fo
    from bson import ObjectId

    ds.add_sample(fo.Sample(filepath="/nonexistent/bench.jpg"))
    coll = ds._sample_collection
    template = coll.find_one()
    coll.delete_many({})
    template.pop("_id")
    for start in range(0, len(ids), batch):
        docs = [
            {**template, "_id": ObjectId(i.decode() if isinstance(i, bytes) else i)}
            for i in ids[start : start + batch]
        ]
        coll.insert_many(docs, ordered=False)


def make_bodies(
    dataset: str,
    labels,
    target: int,
    neighbours: int | None,
    seed: int = 0,
    model: str = "branches",
) -> list[dict]:
    """Refine requests; ``neighbours`` None leaves neighbour positives automatic."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    in_class = np.flatnonzero(labels == target)
    bodies = []
    for _ in range(N_BODIES):
        pos = np.sort(rng.choice(in_class, N_POSITIVES, replace=False))
        neg = []
        while len(neg) < N_NEGATIVES:
            row = int(rng.integers(0, labels.size))
            if labels[row] != target and row not in neg:
                neg.append(row)
        bodies.append(
            {
                "dataset": dataset,
                "index_key": INDEX_KEY,
                "positives": [f"{r:024x}" for r in pos],
                "negatives": [f"{r:024x}" for r in sorted(neg)],
                "model": model,
                "random_negatives": 500,
                "negative_weight": 1.0,
                "page_size": 100,
                **(
                    {}
                    if neighbours is None
                    else {"neighbours_per_positive": int(neighbours)}
                ),
            }
        )
    return bodies


def _neighbours(body: dict) -> int | str:
    return body.get("neighbours_per_positive", "auto")


def summarise(latencies: list[float], errors: int, seconds: float) -> dict:
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        "requests": len(latencies) + errors,
        "ok": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 2),
        "throughput_rps": round(len(latencies) / seconds, 3),
        "p50_ms": round(1e3 * float(np.percentile(lat, 50)), 1),
        "p90_ms": round(1e3 * float(np.percentile(lat, 90)), 1),
        "p99_ms": round(1e3 * float(np.percentile(lat, 99)), 1),
        "max_ms": round(1e3 * float(lat.max()), 1),
    }


def closed_loop(work, n_clients: int, duration: float, bodies: list[dict]) -> dict:
    """``n_clients`` threads calling ``work(client, body) -> bool`` back to back."""
    deadline = time.perf_counter() + duration
    lats: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(c: int):
        state: dict = {}
        i = c
        try:
            while time.perf_counter() < deadline:
                body = bodies[i % len(bodies)]
                i += n_clients
                t0 = time.perf_counter()
                ok = work(state, body)
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        lats.append(dt)
                    else:
                        errors[0] += 1
        finally:
            if "conn" in state:
                state["conn"].close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(lats, errors[0], time.perf_counter() - t0)


def engine_refiner(dataset: str):
    """``work(state, body)`` running one refinement without HTTP: the engine calls
    ``sdk.refine`` makes (labels by row, training set, fit, ``apply_model``)."""
    import fiftyone as fo

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.engine.search import apply_model
    from fiftyone_clipbranches.engine.training_set import make_training_set
    from fiftyone_clipbranches.sdk.models import fit_model, make_model

    ds = fo.load_dataset(dataset)
    _, bundle = sdk.load_index(ds, INDEX_KEY)
    index = bundle.index

    def work(state, body) -> bool:
        pos, _ = bundle.rowmap.rows_of(body["positives"])
        neg, _ = bundle.rowmap.rows_of(body["negatives"])
        train = make_training_set(
            index.codes,
            np.sort(pos),
            np.sort(neg),
            n_random_negatives=500,
            seed=0,
            neighbours_per_positive=_neighbours(body),
            neighbour_pool=index.neighbour_pool(),
        )
        model = make_model(body["model"], random_state=0)
        fit_model(
            model, train.X, train.y, train.sample_weight, index.subsets,
            train.unlabelled, train.neighbours,
            catalogue_sample=index.neighbour_pool().codes,
        )  # fmt: skip
        ranking = apply_model(model, index)
        return len(ranking) >= 0

    return work


def sdk_refiner(dataset: str):
    import fiftyone as fo

    from fiftyone_clipbranches import sdk

    ds = fo.load_dataset(dataset)

    def work(state, body) -> bool:
        sdk.refine(
            ds,
            positives=body["positives"],
            negatives=body["negatives"],
            model=body["model"],
            random_negatives=500,
            neighbours_per_positive=_neighbours(body),
            score_field=None,
            k_preview=1,
            index_key=INDEX_KEY,
        )
        return True

    return work


def http_refiner(host: str, port: int):
    payloads = {}

    def work(state, body) -> bool:
        key = id(body)
        data = payloads.get(key)
        if data is None:
            data = payloads[key] = json.dumps(body).encode()
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection(host, port, timeout=300)
        try:
            conn.request(
                "POST",
                "/v1/refine",
                body=data,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {TOKEN}",
                },
            )
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            state.pop("conn", None)
            return False
        if resp.status != 200:
            print(f"  HTTP {resp.status}: {payload[:200]!r}", file=sys.stderr)
            return False
        return bool(json.loads(payload)["result_id"])

    return work


class HealthProbe:
    """``GET /v1/health`` every ``period`` s on its own connection: how long a cheap
    request waits while refinements run (the GIL held by compute kernels shows here)."""

    def __init__(self, host: str, port: int, period: float = 0.1):
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(host, port, period), daemon=True
        )
        self._thread.start()

    def _run(self, host, port, period):
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/v1/health")
                conn.getresponse().read()
                self.latencies.append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException):
                conn.close()
            self._stop.wait(period)
        conn.close()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        lat = np.asarray(self.latencies or [0.0])
        return {
            "health_p50_ms": round(1e3 * float(np.percentile(lat, 50)), 1),
            "health_p99_ms": round(1e3 * float(np.percentile(lat, 99)), 1),
        }


class RssMonitor:
    """Peak RSS and peak anonymous RSS of a process and its children (the compute
    workers) summed, sampled every ``period`` s. Summed RSS counts the index pages
    the processes share once per process; the anonymous part is each one's own."""

    def __init__(self, pid: int, period: float = 0.5):
        self.pid = pid
        self.peak_rss = 0
        self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period):
        while not self._stop.is_set():
            rss = anon = 0
            for pid in (self.pid, *_children(self.pid)):
                r, a = _rss(pid)
                rss, anon = rss + r, anon + a
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_anon = max(self.peak_anon, anon)
            self._stop.wait(period)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.peak_rss, self.peak_anon


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children."""
    total = 0.0
    for p in (pid, *_children(pid)):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _rss(pid: int) -> tuple[int, int]:
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, anon


def start_service(dataset: str, args) -> tuple[subprocess.Popen, str, int]:
    env = dict(os.environ, CLIPBRANCHES_SERVICE_TOKEN=TOKEN)
    cmd = [
        sys.executable,
        "-m",
        "fiftyone_clipbranches.service",
        "--port",
        "0",
        "--dataset",
        dataset,
        "--threads",
        str(args.threads),
        "--compute-workers",
        str(args.compute_workers),
        "--timeout",
        "300",
        "--compute-nice",
        str(args.compute_nice),
        *(["--compute-threads"] if args.compute_threads else []),
        "--worker-threads",
        str(args.worker_threads),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue = queue.Queue()
    log_path = Path(args.work_dir) / "service.log"

    def pump():
        with open(log_path, "w") as log, proc.stdout:  # closed at the service's end
            for line in iter(proc.stdout.readline, ""):
                lines.put(line)
                log.write(line)
                log.flush()

    threading.Thread(target=pump, daemon=True).start()
    prefix = "clipbranches service listening on "
    deadline = time.monotonic() + 600
    url = None
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                raise RuntimeError("the service exited during start-up") from None
            continue
        if line.startswith(prefix):
            url = line[len(prefix) :].strip()
    if url is None:
        proc.terminate()
        raise RuntimeError("the service did not start")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", "/v1/ready")
            if conn.getresponse().status == 200:
                return proc, host, int(port)
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the service never became ready")


def stop_service(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def table(rows: list[dict]) -> str:
    head = (
        "| clients | path | requests | errors | req/s | p50 ms | p90 ms | p99 ms "
        "| max ms | req/s / engine's | server peak RSS GiB (anon) "
        "| /v1/health p50 / p99 ms during load | CPU ms per request "
        "| load average (1 min) |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        ratio = r.get("ratio_to_engine")
        ratio_text = "" if ratio is None else f"{ratio:.2f}"
        rss = r.get("server_rss_gib")
        rss_text = "" if rss is None else f"{rss:.2f} ({r['server_anon_gib']:.2f})"
        health_text = (
            f"{r['health_p50_ms']:.0f} / {r['health_p99_ms']:.0f}"
            if "health_p99_ms" in r
            else ""
        )
        lines.append(
            f"| {r['clients']} | {r['path']} | {r['requests']} | {r['errors']} "
            f"| {r['throughput_rps']:.2f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['max_ms']:.0f} "
            f"| {ratio_text} | {rss_text} | {health_text} "
            f"| {r.get('cpu_ms_per_request') or ''} | {r.get('load_1m', '')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", default="10M", help="codes in the index (default 10M)")
    p.add_argument("--levels", default="1,4,16", help="concurrent clients per level")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per level")
    p.add_argument(
        "--baseline-duration",
        type=float,
        default=None,
        help="seconds per level of the in-process baselines (default: --duration)",
    )
    p.add_argument("--threads", type=int, default=16, help="service HTTP threads")
    p.add_argument("--compute-workers", type=int, default=2)
    p.add_argument(
        "--compute-nice",
        type=int,
        default=10,
        help="niceness the service adds to its compute workers (default 10, the "
        "service's; 0 runs them at the priority of the in-process baselines, for "
        "a like-for-like throughput ratio when the machine is shared)",
    )
    p.add_argument(
        "--compute-threads",
        action="store_true",
        help="serve with --compute-threads (compute in the serving process)",
    )
    p.add_argument(
        "--worker-threads",
        type=int,
        default=1,
        help="numba threads of each compute worker (the service's option; default 1)",
    )
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument(
        "--neighbours",
        default="auto",
        help="neighbours_per_positive of every request: auto (default) or an int",
    )
    p.add_argument(
        "--model",
        default="branches",
        help="model of every request (default branches, as the tables of"
        " docs/service.md before 2026-12-02; the SDK's default is cascade)",
    )
    p.add_argument("--work-dir", default=str(RESULTS / "bench_service"))
    args = p.parse_args(argv)
    n = parse_n(args.n)
    levels = [int(x) for x in args.levels.split(",")]
    base_duration = args.baseline_duration or args.duration
    work = Path(args.work_dir)
    setup_environment(work)
    mongod = start_private_mongod(work)
    try:
        return run(args, n, levels, base_duration, work)
    finally:
        import fiftyone.core.odm.database as fodb

        fodb._disconnect()
        mongod.stop()


def run(args, n: int, levels: list[int], base_duration: float, work: Path) -> int:
    codes, labels, meta = generate(n, 0, RESULTS)
    dataset, build_s = prepare_dataset(n, codes)
    target = int(meta["target_components"]["0.1%"])
    neighbours = None if args.neighbours == "auto" else int(args.neighbours)
    bodies = make_bodies(dataset, labels, target, neighbours, model=args.model)
    print(
        f"index: {n:,} codes (build {build_s:.1f} s, 0 = reused); class 0.1%; "
        f"{len(bodies)} distinct refine requests; levels {levels}, {args.duration:g} s each;"
        f" NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}; {os.cpu_count()} CPUs,"
        f" load average {_load()} at the start",
        flush=True,
    )

    rows: list[dict] = []
    engine_rps: dict[int, float] = {}
    if not args.skip_baselines:
        for name, make in (("engine", engine_refiner), ("sdk", sdk_refiner)):
            work_fn = make(dataset)
            for body in bodies[:2]:  # compile and page in
                work_fn({}, body)
            for c in levels:
                cpu0 = time.process_time()
                res = closed_loop(work_fn, c, base_duration, bodies)
                cpu = time.process_time() - cpu0
                rows.append(
                    {
                        "clients": c,
                        "path": name,
                        **res,
                        "cpu_ms_per_request": _per_request(cpu, res),
                        "load_1m": _load_1m(),
                    }
                )
                if name == "engine":
                    engine_rps[c] = res["throughput_rps"]
                elif engine_rps.get(c):
                    rows[-1]["ratio_to_engine"] = res["throughput_rps"] / engine_rps[c]
                print(table(rows[-1:]).splitlines()[-1], flush=True)

    proc, host, port = start_service(dataset, args)
    try:
        work_fn = http_refiner(host, port)
        for body in bodies[:4]:
            work_fn({}, body)
        for c in levels:
            monitor = RssMonitor(proc.pid)
            probe = HealthProbe(host, port)
            cpu0 = _cpu_s(proc.pid)
            res = closed_loop(work_fn, c, args.duration, bodies)
            cpu = _cpu_s(proc.pid) - cpu0
            health = probe.stop()
            peak, anon = monitor.stop()
            row = {
                "clients": c,
                "path": "service",
                **res,
                **health,
                "cpu_ms_per_request": _per_request(cpu, res),
                "load_1m": _load_1m(),
            }
            row["server_rss_gib"] = peak / 2**30
            row["server_anon_gib"] = anon / 2**30
            if c in engine_rps and engine_rps[c] > 0:
                row["ratio_to_engine"] = res["throughput_rps"] / engine_rps[c]
            rows.append(row)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        stop_service(proc)

    print()
    print(table(rows))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = {
        "n": n,
        "levels": levels,
        "duration_s": args.duration,
        "neighbours_per_positive": args.neighbours,
        "model": args.model,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench_service_{stamp}.json").write_text(json.dumps(out, indent=1))
    (RESULTS / f"bench_service_{stamp}.md").write_text(
        table(rows)
        + f"\n\n{n:,} synthetic codes; refine = {args.model} on 20 positives of"
        " the 0.1% class + 10 negatives + 500 random negatives, neighbour positives"
        f" {args.neighbours}; closed-loop clients on loopback; {os.cpu_count()} CPUs,"
        f" load average {_load()} at the end.\n"
    )
    return 0


def _per_request(cpu_s: float, res: dict) -> float | None:
    return round(1e3 * cpu_s / res["ok"], 1) if res["ok"] else None


def _load_1m() -> float:
    return round(os.getloadavg()[0], 1)


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
