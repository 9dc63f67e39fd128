"""One local Ray cluster for the whole test session, isolated and shut down.

Ray writes an auth token under ``~/.ray`` and session files under its temp folder:
the token is given in ``RAY_AUTH_TOKEN`` (so nothing is written to the home folder,
and subprocesses such as a service can join), the cluster's processes get a
temporary ``HOME`` and a short temp folder (Ray's socket paths are length-limited),
and ``ray.shutdown()`` stops them at the end of the session.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """The GCS address (``HOST:PORT``) of a local 2-CPU Ray cluster."""
    ray = pytest.importorskip("ray")
    temp = Path(tempfile.mkdtemp(prefix="cbray-"))
    (temp / "home").mkdir()
    token_before = os.environ.get("RAY_AUTH_TOKEN")
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(temp / "home")
    try:
        ray.init(
            num_cpus=2,
            object_store_memory=128 * 2**20,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="error",
            namespace="clipbranches",
            _temp_dir=str(temp / "r"),
        )
    finally:
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if token_before is None:
            os.environ.pop("RAY_AUTH_TOKEN", None)
        else:
            os.environ["RAY_AUTH_TOKEN"] = token_before
        shutil.rmtree(temp, ignore_errors=True)
