"""A real FiftyOne dataset with a real index, and a real service process serving it.

The dataset (300 samples in three clusters of codes, a few tagged) lives in the
session's private database; the service runs as ``python -m
fiftyone_clipbranches.service`` on a free loopback port, started once per session
and stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from service_helpers import DATASET, NEG_TAG, POS_TAG, TOKEN, Http

N_PER_CLUSTER = 100


def make_codes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(codes uint8 (300, 32), cluster int (300,))``: three noisy clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(40, 216, size=(3, 32))
    cluster = np.repeat(np.arange(3), N_PER_CLUSTER)
    noise = rng.integers(-30, 31, size=(cluster.size, 32))
    codes = np.clip(centers[cluster] + noise, 0, 255).astype(np.uint8)
    return codes, cluster


@pytest.fixture(scope="session")
def served_dataset():
    """The dataset: index ``clipbranches`` over its codes; samples 0-4 of cluster 0
    tagged positive, samples 100-104 (cluster 1) tagged negative."""
    import fiftyone as fo

    from fiftyone_clipbranches import sdk

    if fo.dataset_exists(DATASET):
        fo.delete_dataset(DATASET)
    codes, cluster = make_codes()
    ds = fo.Dataset(DATASET)
    samples = []
    for i in range(codes.shape[0]):
        tags = [POS_TAG] if i < 5 else [NEG_TAG] if 100 <= i < 105 else []
        samples.append(
            fo.Sample(filepath=f"/nonexistent/img_{i:04d}.jpg", tags=tags, row=i)
        )
    ids = ds.add_samples(samples)
    sdk.build_index_from_codes(ds, codes, ids, "clipbranches")
    ds.info["cluster"] = cluster.tolist()
    yield ds
    with contextlib.suppress(Exception):
        fo.delete_dataset(DATASET)


class ServiceProcess:
    """Handle of the service subprocess."""

    def __init__(
        self, proc: subprocess.Popen, url: str, token: str, lines: queue.Queue
    ):
        self.proc = proc
        self.url = url
        self.token = token
        self.lines = lines


def _pump(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    stream.close()


@pytest.fixture(scope="session")
def service(served_dataset):
    import fiftyone.core.odm.database as fodb

    env = dict(os.environ)
    env["CLIPBRANCHES_SERVICE_TOKEN"] = TOKEN
    # Pin the service to this session's mongod: left alone, FiftyOne attaches to
    # whichever database service it finds first on the machine.
    host, port = fodb.get_db_client().address
    env["FIFTYONE_DATABASE_URI"] = f"mongodb://{host}:{port}"
    env["FIFTYONE_DATABASE_VALIDATION"] = "false"
    env["NUMBA_NUM_THREADS"] = "2"
    cmd = [
        sys.executable,
        "-m",
        "fiftyone_clipbranches.service",
        "--port",
        "0",
        "--dataset",
        DATASET,
        "--compute-workers",
        "2",
        "--threads",
        "8",
        "--timeout",
        "120",
    ]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    seen = []
    try:
        url = _wait_for_url(proc, lines, seen, timeout=300)
        _wait_ready(url, proc, seen, timeout=300)
        yield ServiceProcess(proc, url, TOKEN, lines)
    finally:
        _stop(proc)


def _wait_for_url(proc, lines, seen, timeout) -> str:
    deadline = time.monotonic() + timeout
    prefix = "clipbranches service listening on "
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise RuntimeError("service did not start:\n" + "".join(seen[-40:]))


def _wait_ready(url, proc, seen, timeout) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("service exited:\n" + "".join(seen[-40:]))
        try:
            with urllib.request.urlopen(f"{url}/v1/ready", timeout=5) as resp:
                if json.loads(resp.read())["status"] == "ready":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("service never became ready:\n" + "".join(seen[-40:]))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def call(service) -> Http:
    return Http(service.url, service.token)
