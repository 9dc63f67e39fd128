"""A bounded pool for the CPU-heavy part of requests (training, index queries).

Request threads hand work to the pool and wait at most ``timeout_s`` for it. When
every worker is busy and ``max_queued`` more jobs already wait, a request is turned
away at once (HTTP 503, ``busy``) instead of piling up. A job past its time limit is
answered with HTTP 504 (``timeout``); Python cannot stop a running thread, so the
job finishes in the background, keeps its slot until then, and its result is dropped.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable

from fiftyone_clipbranches.service.errors import (
    ApiError,
    shutting_down_error,
    timeout_error,
)


class ComputePool:
    """Run callables on ``workers`` threads with admission control and time limits.

    Args:
        workers: threads doing CPU work at once.
        max_queued: jobs allowed to wait for a worker beyond those running.
        timeout_s: longest a request waits for its job's result.
    """

    def __init__(self, workers: int = 2, max_queued: int = 16, timeout_s: float = 60.0):
        if workers < 1 or max_queued < 0 or timeout_s <= 0:
            raise ValueError("workers >= 1, max_queued >= 0 and timeout_s > 0 required")
        self.workers = int(workers)
        self.max_queued = int(max_queued)
        self.timeout_s = float(timeout_s)
        self._slots = threading.BoundedSemaphore(self.workers + self.max_queued)
        self._executor = cf.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="clipbranches-compute"
        )
        self._pending: set[cf.Future] = set()
        self._lock = threading.Lock()

    def run(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a worker; its result, or its exception re-raised.

        Raises:
            ApiError: 503 ``busy`` when the pool is full, 504 ``timeout`` past the limit.
        """
        if not self._slots.acquire(blocking=False):
            raise ApiError(
                503,
                "busy",
                "the server is at capacity; retry in a moment",
                retry_after_s=1,
            )
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        try:
            return future.result(timeout=self.timeout_s)
        except cf.TimeoutError:
            future.cancel()
            raise timeout_error("the request did not finish", self.timeout_s) from None
        except cf.CancelledError:  # still waiting for a thread when the service stopped
            raise shutting_down_error() from None

    def _done(self, future: cf.Future) -> None:
        with self._lock:
            self._pending.discard(future)
        self._slots.release()

    def drain(self) -> None:
        """Cancel the jobs still waiting for a thread (their requests answer ``503
        shutting_down`` at once); the running ones go on."""
        with self._lock:
            waiting = list(self._pending)
        for future in waiting:
            future.cancel()  # False for one already running: it goes on

    def shutdown(self, wait: bool = True) -> None:
        """Cancel the queued jobs; with ``wait``, wait for the running ones."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
