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

import signal


def run_worker(conn, target: str, args: tuple, nice: int) -> None:
    """``service.workers.worker_main``, with Ctrl-C and SIGTERM ignored from the
    start."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    from fiftyone_clipbranches.service.workers import worker_main

    worker_main(conn, target, args, nice)
