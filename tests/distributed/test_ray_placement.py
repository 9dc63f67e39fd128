"""Shard actors are spread over a cluster's machines: a local cluster of 4 nodes
(Ray's own multi-node test cluster, in a child process: the session's cluster
cannot share this process), a 4-shard index, one actor on each node; the shards of
a node that leaves are opened again on the others."""

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


def _run_cluster(*args) -> dict:
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
            [sys.executable, str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        # Ray's own lines (a retried task of a replaced actor) may come after it
        (report,) = [line for line in out.stdout.splitlines() if line.startswith("{")]
        return json.loads(report)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_one_actor_per_node_before_a_second_on_any():
    placed = _run_cluster("4")
    assert placed == {"actors_per_node": [1, 1, 1, 1], "nodes": 4}


def test_shards_of_a_node_that_left_are_opened_again_on_the_live_ones():
    """Ray cannot restart an actor pinned to a node that is gone: the shards are
    opened again on the nodes left, and the query answers as before."""
    report = _run_cluster("2", "lose")
    assert report["actors_per_node"] == [1, 1]
    assert report["same_answer"] is True and report["restarts"] == 1
    assert report["nodes_after"] == 1


def test_a_cluster_whose_head_is_gone_fails_a_query_in_seconds():
    """A query to actors whose cluster head is gone waited (calls retried forever)
    until Ray ended the process a minute later: a service answered nothing, not
    even its unsharded indexes, and said ready. It now fails in seconds, saying
    what to restart, and the service's readiness says the same."""
    report = _run_cluster("1", "head")
    assert report["problem_before"] is None
    assert report["error"].startswith("ShardsUnavailableError: the Ray cluster's head")
    assert "restart it (ray start --head), then this process" in report["error"]
    assert report["failed_after_s"] < 20
    assert report["problem_after"].startswith("the Ray cluster's head at")


def test_a_cluster_with_no_live_node_is_unavailable_not_a_crash():
    """The head's control service answers while every raylet has stopped (the
    seconds of a `ray stop`, a killed raylet): placing the actors again divided by
    the number of live nodes (ZeroDivisionError, a service's 500)."""
    report = _run_cluster("1", "raylet")
    assert report["error"].startswith("ShardsUnavailableError: the Ray actors")
    assert "the Ray cluster has no live node" in report["error"]
