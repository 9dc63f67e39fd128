"""A pool of compute worker processes: the CPU work of requests, off the HTTP process.

Each worker is a spawned Python process that builds a handler once (for the service,
:class:`fiftyone_clipbranches.service.compute_worker.SdkWorker`: its own FiftyOne
connection and the memory-mapped indexes, whose pages the operating system shares
between processes through the page cache) and then answers one task at a time over
a pipe. Workers run at a lower CPU priority (``os.nice``), so the HTTP threads of the
serving process, which answer probes and page results, get a core when they need one.

What the request thread sees (:meth:`WorkerPool.execute`):

* the task's result, or the exception the handler raised (re-raised here);
* HTTP 504 ``timeout`` when no answer came within ``timeout_s``: the worker is
  killed (a process, unlike a thread, can be stopped) and replaced;
* HTTP 500 ``worker_crashed`` when the worker died while running the task (killed,
  out of memory, a native crash): it is replaced and the pool carries on.

A worker whose parent disappears reads end-of-file on its pipe and exits, so no
worker outlives the service; :meth:`WorkerPool.shutdown` asks idle workers to stop,
terminates busy ones and kills any that linger.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing as mp
import os
import pickle
import queue
import sys
import threading
import time
import traceback
from multiprocessing.connection import wait

from fiftyone_clipbranches.service.errors import (
    ApiError,
    shutting_down_error,
    timeout_error,
)
from fiftyone_clipbranches.service.log_setup import configure_logging, package_log_level
from fiftyone_clipbranches.worker_process import run_worker

logger = logging.getLogger(__name__)

#: Seconds between attempts to start a worker whose start failed.
RESTART_BACKOFF_S = 5.0
#: Longest an idle worker that died stays in the pool before it is replaced.
WATCH_S = 0.5


class _Worker:
    """Parent-side handle of one worker process."""

    def __init__(self, process, conn):
        self.process = process
        self.conn = conn
        # The pool's shutdown and the thread starting this worker may both end
        # it; closing the pipe twice at once closes a descriptor already reused.
        self._ending = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        with self._ending:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
            self.conn.close()


class WorkerPool:
    """``processes`` worker processes, each running ``target`` tasks one at a time.

    Args:
        target: ``"module:callable"``; each worker calls it with ``*args`` once, at
            start, and calls the object it returns with every task.
        args: picklable arguments of ``target`` (``.args``: those of the workers
            started from now on, replacements included).
        processes: worker processes kept running.
        timeout_s: longest :meth:`execute` waits for a worker and its answer.
        nice: niceness added to each worker (0: same priority as the service).
        start_timeout_s: longest a worker may take to build its handler.
    """

    def __init__(
        self,
        target: str,
        args: tuple = (),
        *,
        processes: int = 2,
        timeout_s: float = 60.0,
        nice: int = 10,
        start_timeout_s: float = 600.0,
    ):
        if isinstance(processes, bool) or not isinstance(processes, int):
            raise ValueError(f"processes must be an int >= 1, got {processes!r}")
        if processes < 1 or not timeout_s > 0 or not 0 <= nice <= 19:
            raise ValueError(
                "processes >= 1, timeout_s > 0 and nice in [0, 19] required, got "
                f"{processes!r}, {timeout_s!r}, {nice!r}"
            )
        self.target = target
        self.args = tuple(args)
        self.processes = processes
        self.timeout_s = float(timeout_s)
        self.nice = int(nice)
        self.start_timeout_s = float(start_timeout_s)
        self._ctx = mp.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._starting: set[_Worker] = set()
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._draining = threading.Event()
        self._n_ready = 0
        self._started = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Spawn the workers (returns at once; each joins the pool when ready)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        for _ in range(self.processes):
            self._start_in_background()
        threading.Thread(
            target=self._watch, name="clipbranches-worker-watch", daemon=True
        ).start()

    def ready(self) -> bool:
        """True once every worker of the initial start has answered ready, and at
        least one worker is alive and serving."""
        return self.not_ready_because() is None

    def not_ready_because(self) -> str | None:
        """Why the pool cannot take tasks now, for people; None when it can."""
        with self._lock:
            alive = sum(w.process.is_alive() for w in self._all)
            first_start = self._n_ready < self.processes
        if alive and not first_start:
            return None
        if first_start:
            return (
                "the compute workers are starting (the first start after an install"
                " also compiles the engine's kernels, about a minute); retry shortly"
            )
        return (
            "no compute worker is running: the workers exited and new ones are"
            " starting (the server log says why); retry shortly"
        )

    def wait_ready(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready():
            if self._closing.is_set():
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def pids(self) -> list[int]:
        """Process ids of the workers currently running."""
        with self._lock:
            return sorted(w.pid for w in self._all if w.pid is not None)

    def drain(self) -> None:
        """Let the tasks that hold a worker finish, and refuse at once (``503
        shutting_down``) those still waiting for one: a stopping service started
        them in its grace, only to stop them at its end."""
        self._draining.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every worker: idle ones are asked to exit, busy and starting ones
        killed (they ignore SIGTERM: ``worker_process``); any still alive after
        ``timeout`` seconds is killed."""
        self._closing.set()
        with self._lock:
            workers = list(self._all | self._starting)
            self._all.clear()
            self._starting.clear()
        idle = set()
        while True:
            try:
                idle.add(self._idle.get_nowait())
            except queue.Empty:
                break
        for w in workers:
            try:
                if w in idle:
                    w.conn.send(None)
                else:
                    w.process.kill()
            except OSError:
                w.process.kill()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            w.kill()

    # -- tasks -----------------------------------------------------------------

    def execute(self, task):
        """Run ``task`` on an idle worker; its result, or the handler's exception.

        Raises:
            ApiError: 503 ``shutting_down``, 504 ``timeout`` (no worker free or no
                answer in time; the worker is replaced), 500 ``worker_crashed``.
        """
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self._closing.is_set() or self._draining.is_set():
                raise shutting_down_error()
            why = self.not_ready_because()
            if why is not None:  # rather than wait the time limit for a start
                raise ApiError(503, "not_ready", why, None, 2)
            left = deadline - time.monotonic()
            if left <= 0:
                raise timeout_error("no compute worker became free", self.timeout_s)
            try:  # in steps: the last worker may die meanwhile
                worker = self._idle.get(timeout=min(left, WATCH_S))
            except queue.Empty:
                continue
            if not wait([worker.process.sentinel], timeout=0):
                break  # alive (the sentinel becomes ready when the process ends)
            self._replace(worker, "exited while idle")
        with self._lock:
            self._busy.add(worker)
        try:
            status, payload = self._run(worker, task, deadline)
        finally:
            with self._lock:  # before it is idle again: another request may take it
                self._busy.discard(worker)
        self._idle.put(worker)
        if status == "error":
            raise payload
        return payload

    def _run(self, worker: _Worker, task, deadline: float) -> tuple:
        """Send ``task`` to the busy ``worker``; its ``(status, payload)`` answer."""
        try:
            worker.conn.send(task)
        except OSError:
            self._replace(worker, "its pipe broke")
            raise self._crash_error(worker) from None
        ready = wait(
            [worker.conn, worker.process.sentinel],
            timeout=max(0.0, deadline - time.monotonic()),
        )
        if not ready:
            self._replace(worker, f"it ran past the {self.timeout_s:g} s time limit")
            raise timeout_error("the computation did not finish", self.timeout_s)
        try:
            return worker.conn.recv()
        except (EOFError, OSError):
            if self._closing.is_set():  # stopped by shutdown, not crashed
                raise shutting_down_error(
                    "stopped this request's computation"
                ) from None
            self._replace(worker, "it died during a task")
            raise self._crash_error(worker) from None

    # -- internals -------------------------------------------------------------

    def _watch(self) -> None:
        """Replace idle workers that die (killed, out of memory) as they die, not
        when a request next finds them: until then the pool looked ready with no
        worker able to answer, and that request waited for a new one."""
        while not self._closing.is_set():
            with self._lock:
                idle = [w for w in self._all if w not in self._busy]
            if not idle:
                self._closing.wait(WATCH_S)
                continue
            with contextlib.suppress(OSError, ValueError):  # one ended meanwhile
                wait([w.process.sentinel for w in idle], timeout=WATCH_S)
            for worker in idle:
                with self._lock:
                    idle_still = worker in self._all and worker not in self._busy
                if idle_still and not worker.process.is_alive():
                    self._replace(worker, "exited while idle")

    @staticmethod
    def _crash_error(worker: _Worker) -> ApiError:
        code = worker.process.exitcode
        return ApiError(
            500,
            "worker_crashed",
            f"the compute worker running this request exited (exit code {code}); "
            "a new one is starting. Retry the request; if it crashes again, the "
            "server log says why",
        )

    def _replace(self, worker: _Worker, why: str) -> None:
        with self._lock:
            known = worker in self._all
            self._all.discard(worker)
        worker.kill()
        if known and not self._closing.is_set():
            logger.warning(
                "compute worker %s replaced: %s (exit code %s)",
                worker.pid,
                why,
                worker.process.exitcode,
            )
            self._start_in_background()

    def _start_in_background(self) -> None:
        threading.Thread(
            target=self._start_one, name="clipbranches-worker-start", daemon=True
        ).start()

    def _start_one(self) -> None:
        while not self._closing.is_set():
            worker = self._spawn()
            if worker is not None:
                return
            self._closing.wait(RESTART_BACKOFF_S)

    def _spawn(self) -> _Worker | None:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=run_worker,
            args=(child_end, self.target, self.args, self.nice, package_log_level()),
            name="clipbranches-compute",
            daemon=True,
        )
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        with self._lock:
            self._starting.add(worker)
        if self._closing.is_set():  # shutdown may have missed it: stop it here
            worker.kill()
        try:
            return self._join(worker)
        finally:
            with self._lock:
                self._starting.discard(worker)

    def _join(self, worker: _Worker) -> _Worker | None:
        """Wait for a started ``worker`` to answer ready, then make it idle."""
        process, parent_end = worker.process, worker.conn
        try:
            ready = wait([parent_end, process.sentinel], timeout=self.start_timeout_s)
        except (OSError, ValueError):  # its pipe closed by shutdown meanwhile
            ready = []
        message = None
        if parent_end in ready:
            try:
                message = parent_end.recv()
            except (EOFError, OSError):
                message = None
        if not (isinstance(message, tuple) and message[0] == "ready"):
            exitcode = process.exitcode  # before the kill gives it one
            worker.kill()
            if self._closing.is_set():
                return None  # stopped while it started: nothing went wrong
            detail = _why_not_started(message, exitcode, self.start_timeout_s)
            logger.error(
                "compute worker %s failed to start (%s); retrying in %g s",
                process.pid,
                detail,
                RESTART_BACKOFF_S,
            )
            return None
        with self._lock:
            if self._closing.is_set():
                closing = True
            else:
                closing = False
                self._all.add(worker)
                self._n_ready += 1
        if closing:
            worker.kill()
            return worker
        logger.info("compute worker %s ready", process.pid)
        self._idle.put(worker)
        return worker


def worker_main(conn, target: str, args: tuple, nice: int, log_level: int) -> None:
    """Body of a worker process: build the handler, then answer tasks until told to
    stop (``None``) or until the parent's end of the pipe closes. Started by
    ``worker_process.run_worker``, which has Ctrl-C ignored already.
    ``log_level``: the package's records it logs from (the parent's,
    ``log_setup.package_log_level``)."""
    if nice:
        os.nice(nice)
    if not logging.getLogger().handlers:
        configure_logging(
            "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
            log_level,
        )
    try:
        module, _, name = target.partition(":")
        handler = getattr(importlib.import_module(module), name)(*args)
    except BaseException as e:
        logger.exception("compute worker could not start")
        _send_or_exit(conn, ("failed", f"{type(e).__name__}: {e}"))
        return
    _send_or_exit(conn, ("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            _exit_now()  # the service is gone
        if task is None:
            _exit_now()
        try:
            answer = ("ok", handler(task))
        except Exception as e:
            e.add_note(f"(in compute worker {os.getpid()})\n{traceback.format_exc()}")
            answer = ("error", _portable(e))
        try:
            conn.send(answer)
        except (OSError, ValueError):
            _exit_now()  # the service is gone
        except Exception as e:  # an answer that cannot be pickled
            _send_or_exit(conn, ("error", RuntimeError(f"unsendable answer: {e}")))


def _send_or_exit(conn, message) -> None:
    """Send ``message`` to the service, or end quietly when it is gone (killed
    while this worker started: a BrokenPipeError traceback said nothing useful)."""
    try:
        conn.send(message)
    except (OSError, ValueError):
        _exit_now()


def _exit_now() -> None:
    """End a worker that holds nothing to save: its answers are sent and it never
    writes. The interpreter's usual exit (FiftyOne's and torch's exit handlers)
    takes seconds; a service stopping waits for every worker."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling, else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _why_not_started(message, exitcode, timeout_s: float) -> str:
    """Why a worker did not answer ready: its error, its exit, or the time it
    took."""
    if isinstance(message, tuple):
        return str(message[1])
    if exitcode is None:
        return f"no answer within {timeout_s:g} s"
    from fiftyone_clipbranches.service.server import UNGUARDED, UNGUARDED_EXIT

    if exitcode == UNGUARDED_EXIT:
        return UNGUARDED
    return f"it ended with code {exitcode} while it started: its output above says why"
