"""The first code a service compute worker process runs.

It lives outside the ``service`` package on purpose: a spawned process imports its
target's module before running it, and importing ``service`` loads FiftyOne (seconds).
A Ctrl-C in the terminal reaches the whole process group, so a worker still booting
would die of it with a traceback; this module imports nothing heavy, ignores Ctrl-C
(the service stops its workers itself) and only then loads the worker.
"""

from __future__ import annotations

import signal


def run_worker(conn, target: str, args: tuple, nice: int) -> None:
    """``service.workers.worker_main``, with Ctrl-C ignored from the start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from fiftyone_clipbranches.service.workers import worker_main

    worker_main(conn, target, args, nice)
