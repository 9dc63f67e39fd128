"""Shard actors are spread over a cluster's machines: a local cluster of 4 nodes
(Ray's own multi-node test cluster, in a child process: the session's cluster
cannot share this process), a 4-shard index, one actor on each node."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray")


def test_one_actor_per_node_before_a_second_on_any():
    temp = Path(tempfile.mkdtemp(prefix="cbn-"))  # short: Ray's socket paths
    try:
        (temp / "ray").mkdir()  # where Ray's test cluster writes its address
        env = {
            **os.environ,
            "HOME": str(temp),
            "RAY_TMPDIR": str(temp),
            "TMPDIR": str(temp),
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        script = Path(__file__).with_name("spread_cluster.py")
        out = subprocess.run(
            [sys.executable, str(script), "4"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        placed = json.loads(out.stdout.strip().splitlines()[-1])
        assert placed == {"actors_per_node": [1, 1, 1, 1], "nodes": 4}
    finally:
        shutil.rmtree(temp, ignore_errors=True)
