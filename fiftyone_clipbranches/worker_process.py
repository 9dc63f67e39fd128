"""The first code a service compute worker process runs.

It lives outside the ``service`` package on purpose: a spawned process imports its
target's module before running it, and importing ``service`` loads FiftyOne (seconds).
A Ctrl-C in the terminal reaches the whole process group, and so does the SIGTERM
of ``systemctl stop`` (systemd's default ``KillMode=control-group``) or of
``timeout``: a worker would die of it mid-request (the request answered 500) or,
still booting, with a traceback. This module imports nothing heavy, ignores both
(the service stops its workers itself, after the requests in progress had their
time; a worker also ends when the service's end of its pipe closes) and only then
loads the worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time


def run_worker(conn, target: str, args: tuple, nice: int, log_level: int) -> None:
    """``service.workers.worker_main``, with Ctrl-C and SIGTERM ignored from the
    start, ending when the service does."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    _end_with_parent()
    from fiftyone_clipbranches.service.workers import worker_main

    worker_main(conn, target, args, nice, log_level)


#: How often a worker looks whether the service that started it still runs.
PARENT_CHECK_S = 1.0


def _end_with_parent() -> None:
    """End this process once its parent is gone: a service stopped before it
    could stop its workers (a SIGTERM to the group while they still boot, which
    they ignore) left them compiling for their minute, orphaned."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(
        target=watch, name="clipbranches-parent-watch", daemon=True
    ).start()
