"""What a user's console shows when the package starts a local Ray cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

START_LOCAL_CLUSTER = """
import sys
from fiftyone_clipbranches.distributed import ray_shards
ray_shards.connect(None, _temp_dir=sys.argv[1], num_cpus=1, include_dashboard=False)
import ray
ray.shutdown()
print("connected")
"""


def test_a_local_cluster_starts_without_rays_default_token_notice():
    """Ray warned "Token authentication is enabled for this Ray cluster" on every
    local start: its own default, expected and harmless."""
    pytest.importorskip("ray")
    temp = Path(tempfile.mkdtemp(prefix="cbcon-"))  # short: Ray's socket paths
    try:
        (temp / "home").mkdir()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")
        }
        env["HOME"] = str(temp / "home")  # no token there yet: Ray makes one
        done = subprocess.run(
            [sys.executable, "-c", START_LOCAL_CLUSTER, str(temp / "r")],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "connected"
        assert (temp / "home" / ".ray" / "auth_token").exists()  # it was on
        assert "Token authentication is enabled" not in done.stderr, done.stderr
    finally:
        shutil.rmtree(temp, ignore_errors=True)
