"""``clipbranches serve`` as a real subprocess of the test session.

The service is pinned to the session's private mongod (left alone, FiftyOne attaches
to whichever database service it finds first on the machine), listens on a free
loopback port, and is stopped by PID.
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
import urllib.request

LISTENING = "clipbranches service listening on "


class ServiceProcess:
    """Handle of a service subprocess: ``url``, ``token``, and its output lines."""

    def __init__(
        self, proc: subprocess.Popen, url: str, token: str, lines: queue.Queue
    ):
        self.proc = proc
        self.url = url
        self.token = token
        self.lines = lines
        self.seen: list[str] = []

    def output(self) -> str:
        """Everything the service printed so far (stdout and stderr)."""
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.seen)


def service_env(token: str, database_uri: str | None = None) -> dict:
    """The service's environment: the session's database, or ``database_uri``."""
    import fiftyone.core.odm.database as fodb

    env = dict(os.environ)
    env["CLIPBRANCHES_SERVICE_TOKEN"] = token
    if database_uri is None:
        host, port = fodb.get_db_client().address
        database_uri = f"mongodb://{host}:{port}"
    env["FIFTYONE_DATABASE_URI"] = database_uri
    env["FIFTYONE_DATABASE_VALIDATION"] = "false"
    env["NUMBA_NUM_THREADS"] = "2"
    return env


@contextlib.contextmanager
def running_service(
    args: list[str],
    token: str,
    timeout: float = 300,
    command: list[str] | None = None,
    database_uri: str | None = None,
    wait_ready: bool = True,
    own_group: bool = False,
):
    """Run ``command --port 0 *args`` (default ``python -m
    fiftyone_clipbranches.service``) on the session's database (or
    ``database_uri``) until the block ends; yields a :class:`ServiceProcess` once
    ``/v1/ready`` answers (once it listens, without ``wait_ready``); with
    ``own_group``, in a process group of its own (a signal to the group, as
    ``systemctl stop`` sends it, reaches its workers and not the tests)."""
    command = command or [sys.executable, "-m", "fiftyone_clipbranches.service"]
    cmd = [*command, "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, *args],
        env=service_env(token, database_uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=own_group,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        url = _wait_for_url(proc, lines, seen, timeout)
        if wait_ready:
            _wait_ready(url, proc, seen, timeout)
        service = ServiceProcess(proc, url, token, lines)
        service.seen = seen
        yield service
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _pump(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    stream.close()


def _wait_for_url(proc, lines, seen, timeout) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith(LISTENING):
            return line[len(LISTENING) :].strip()
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
