"""Test isolation: a private FiftyOne database, plugins dir, index root and data dir.

The environment is set before anything imports fiftyone, and every process this test
session started (mongod, App servers, services) is terminated when it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import psutil
import pytest

from fiftyone_clipbranches.private_db import start_private_mongod

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

_SANDBOX = Path(tempfile.mkdtemp(prefix="clipbranches-tests-"))
_ENV = {
    "FIFTYONE_DATABASE_DIR": str(_SANDBOX / "db"),
    "FIFTYONE_PLUGINS_DIR": str(_SANDBOX / "plugins"),
    "FIFTYONE_DO_NOT_TRACK": "true",
    "FIFTYONE_DATABASE_VALIDATION": "false",
    "FIFTYONE_DEFAULT_DATASET_DIR": str(_SANDBOX / "fiftyone"),
    "CLIPBRANCHES_INDEX_ROOT": str(_SANDBOX / "indexes"),
    "CLIPBRANCHES_DATA_DIR": str(_SANDBOX / "data"),
    "HF_HUB_OFFLINE": "1",
    "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "2"),
}
os.environ.update(_ENV)
os.environ.pop("FIFTYONE_DATABASE_URI", None)
for _key in ("FIFTYONE_DATABASE_DIR", "FIFTYONE_PLUGINS_DIR"):
    Path(_ENV[_key]).mkdir(parents=True, exist_ok=True)

# FiftyOne would attach to any database service already running on this machine;
# a mongod of our own (reached by FIFTYONE_DATABASE_URI, inherited by every
# subprocess the tests start) keeps this session's data to itself.
_MONGOD = start_private_mongod(_SANDBOX / "mongod")
atexit.register(_MONGOD.stop)  # also when the session ends before sessionfinish


def _link_plugin() -> None:
    from fiftyone_clipbranches.plugin_install import install_plugin

    install_plugin(Path(_ENV["FIFTYONE_PLUGINS_DIR"]))


_link_plugin()


def terminate_process_tree(pid: int, timeout: float = 10.0) -> None:
    """Terminate a process and all its descendants, by PID, never by name."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [*root.children(recursive=True), root]
    _terminate(procs, timeout)


def _terminate(procs, timeout: float) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


@pytest.fixture(scope="session")
def sandbox_dir() -> Path:
    """The temporary folder holding this test session's database, plugins and indexes."""
    return _SANDBOX


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar_dir(shared_data) -> Path:
    path = shared_data / "cifar10-test-2000"
    if not path.is_dir():
        pytest.skip(f"real images not found at {path}")
    return path


@pytest.fixture(scope="session")
def clip_embeddings_dir(shared_data) -> Path:
    path = shared_data / "clip-vitb32"
    if not path.is_dir():
        pytest.skip(f"real CLIP embeddings not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(sandbox_dir) -> Path:
    """A random-weight tiny open_clip checkpoint with its config beside it
    (``user_path.TINY_CLIP_NAME``), loadable by any process."""
    from user_path import write_tiny_clip_checkpoint

    return write_tiny_clip_checkpoint(sandbox_dir / "tiny_clip")


def _user_index_factory(cifar_dir, checkpoint):
    from user_path import build_user_index, images_dataset

    made = []

    def make(n_per_class=10, index_key="clip", name=None, **kwargs):
        ds = images_dataset(cifar_dir, n_per_class, name=name)
        made.append(ds)
        build_user_index(ds, checkpoint, index_key, **kwargs)
        return ds

    yield make
    for ds in made:
        if not ds.deleted:
            ds.delete()


@pytest.fixture
def make_user_index(cifar_dir, tiny_clip_checkpoint):
    """Factory ``make(n_per_class=10, index_key="clip", name=None, **build_kwargs)
    -> dataset``: real images on disk, embedded by the tiny CLIP, indexed by
    ``build_index`` (the user's path). Datasets are deleted after the test."""
    yield from _user_index_factory(cifar_dir, tiny_clip_checkpoint)


@pytest.fixture(scope="module")
def make_module_user_index(cifar_dir, tiny_clip_checkpoint):
    """:func:`make_user_index` whose datasets live until the module's end."""
    yield from _user_index_factory(cifar_dir, tiny_clip_checkpoint)


def _runs_tests(config) -> bool:
    """False in pytest-xdist's controller (``-n``), which hands the tests to its
    workers: each worker is a session of its own, with its own sandbox."""
    return hasattr(config, "workerinput") or config.getoption("dist", "no") == "no"


def pytest_sessionfinish(session, exitstatus):
    import sys

    if not _runs_tests(session.config):  # its children are the workers: left be
        _MONGOD.stop()
        shutil.rmtree(_SANDBOX, ignore_errors=True)
        return
    if "fiftyone" in sys.modules:
        try:
            import fiftyone.core.odm.database as fodb

            fodb._disconnect()
        except Exception:
            pass
    children = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid != _MONGOD.process.pid
    ]
    _terminate(children, timeout=10.0)
    _MONGOD.stop()
    shutil.rmtree(_SANDBOX, ignore_errors=True)
