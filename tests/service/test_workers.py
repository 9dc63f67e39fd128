"""The compute worker pool (``service/workers.py``) with real spawned processes and a
stand-in handler (``worker_standin.py``): answers, errors, time limits, crashes,
replacement, shutdown, and no worker outliving its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from fiftyone_clipbranches.service.errors import ApiError
from fiftyone_clipbranches.service.workers import WorkerPool

STANDIN = "worker_standin:StandInHandler"


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _gone(pids) -> bool:
    return not any(psutil.pid_exists(p) for p in pids)


@pytest.fixture(scope="module")
def pool():
    workers = WorkerPool(STANDIN, ("hi",), processes=2, timeout_s=2.0, nice=5)
    workers.start()
    try:
        assert workers.wait_ready(120)
        yield workers
    finally:
        pids = workers.pids()
        workers.shutdown()
        assert _wait_for(lambda: _gone(pids), 15), "workers survived shutdown"


def _replaced(pool, old: list[int]) -> bool:
    """Wait until the pool again runs 2 workers, none of them in ``old``."""
    return _wait_for(
        lambda: len(pool.pids()) == 2 and not set(old) & set(pool.pids()), 120
    )


def _dead(pid: int) -> bool:
    """Wait until child ``pid`` has wholly exited, without reaping it. (Its main
    thread shows as a zombie while its other threads still hold its pipes open.)"""

    def dead():
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, pid, flags) is not None
        except ChildProcessError:
            return True  # already reaped by the pool

    return _wait_for(dead, 10)


def test_answers_errors_and_priority(pool):
    first = pool.pids()
    assert len(first) == 2
    for pid in first:
        worker = psutil.Process(pid)
        assert worker.nice() >= psutil.Process().nice() + 5
        assert worker.ppid() == os.getpid()
    greeting, value, pid = pool.execute(("echo", [1, 2]))
    assert (greeting, value) == ("hi", [1, 2]) and pid in first
    with pytest.raises(ValueError, match="bad labels") as err:
        pool.execute(("raise", "bad labels"))
    assert any("compute worker" in n for n in getattr(err.value, "__notes__", []))
    assert pool.pids() == first  # an exception costs no worker


def test_past_the_time_limit_the_worker_is_replaced(pool):
    with pytest.raises(ApiError) as err:
        pool.execute(("sleep", 30))
    assert (err.value.status, err.value.code) == (504, "timeout")
    assert _wait_for(lambda: len(pool.pids()) == 2, 120)


def test_a_crash_answers_a_clear_error_and_is_replaced(pool, tmp_path):
    before = pool.pids()
    with pytest.raises(ApiError) as err:
        pool.execute(("exit", 3))
    assert (err.value.status, err.value.code) == (500, "worker_crashed")
    assert "exit code 3" in err.value.message
    assert _wait_for(lambda: len(pool.pids()) == 2 and pool.pids() != before, 120)

    # killed (SIGKILL) while it computes: that request fails clearly
    import threading

    report = tmp_path / "pid"
    answers = []
    busy = threading.Thread(
        target=lambda: answers.append(_outcome(pool, ("report", str(report))))
    )
    busy.start()
    assert _wait_for(lambda: report.exists() and report.read_text(), 10)
    victim = int(report.read_text())
    os.kill(victim, signal.SIGKILL)
    busy.join(30)
    assert answers == ["worker_crashed"]
    assert _replaced(pool, [victim])

    # killed while idle: no request fails, the pool replaces it
    idle = pool.pids()[0]
    os.kill(idle, signal.SIGKILL)
    assert _dead(idle)
    for i in range(4):
        assert pool.execute(("echo", i))[1] == i
    assert _replaced(pool, [idle])


def _outcome(pool, task):
    try:
        pool.execute(task)
        return "ok"
    except ApiError as e:
        return e.code


def test_workers_that_die_idle_are_replaced_before_a_request_finds_them(
    tmp_path: Path,
):
    """An idle worker killed was noticed only when a request took it (that
    request waited for a new one), and with every worker dead the pool still
    said ready. Now they are replaced as they die; with none alive the pool is
    not ready, says why, and a request is refused at once (503) rather than
    left waiting for a start."""
    gate = tmp_path / "gate"
    workers = WorkerPool(
        "worker_standin:gated_handler", (str(gate),), processes=2, timeout_s=30
    )
    workers.start()
    try:
        assert workers.wait_ready(120) and workers.not_ready_because() is None
        first = workers.pids()
        os.kill(first[0], signal.SIGKILL)  # no request follows
        assert _wait_for(lambda: first[0] not in workers.pids(), 10)
        assert _replaced(workers, first[:1])

        gate.touch()  # the next workers cannot start until it is gone
        now = workers.pids()
        for pid in now:
            os.kill(pid, signal.SIGKILL)
        assert _wait_for(lambda: not workers.ready(), 10)
        assert "no compute worker is running" in workers.not_ready_because()
        started = time.monotonic()
        with pytest.raises(ApiError) as err:
            workers.execute(("echo", 1))
        assert (err.value.status, err.value.code) == (503, "not_ready")
        assert err.value.retry_after_s and time.monotonic() - started < 5
        gate.unlink()
        assert workers.wait_ready(120)
        assert workers.execute(("echo", 2))[1] == 2
        assert not set(now) & set(workers.pids())
    finally:
        gate.unlink(missing_ok=True)
        workers.shutdown()


def test_a_handler_that_cannot_start_keeps_the_pool_not_ready():
    workers = WorkerPool("worker_standin:failing_handler", processes=1, timeout_s=1)
    workers.start()
    try:
        assert not workers.wait_ready(3)
        assert workers.pids() == []
    finally:
        workers.shutdown()


def test_shutdown_stops_a_worker_that_is_still_starting(tmp_path: Path):
    pid_file = tmp_path / "pid"
    workers = WorkerPool(
        "worker_standin:slow_starting_handler", (str(pid_file),), processes=1
    )
    workers.start()
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60)
        pid = int(pid_file.read_text())
        assert psutil.pid_exists(pid) and workers.pids() == []
    finally:
        workers.shutdown(timeout=5)
    assert _dead(pid), "a starting worker outlived the pool's shutdown"


def test_a_worker_ended_by_two_threads_at_once_closes_its_pipe_once():
    """The pool's shutdown and the thread starting a worker may end it together (a
    service stopped while a replacement starts): its pipe closed twice at once
    failed with EBADF, or closed a descriptor another thread had just opened."""
    import multiprocessing as mp
    import threading

    from fiftyone_clipbranches.service.workers import _Worker

    ctx = mp.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    process = ctx.Process(target=time.sleep, args=(60,), daemon=True)
    process.start()
    child_end.close()
    closes = []
    close = parent_end._close

    def slow_close():  # widen the window between checking the pipe and closing it
        closes.append(threading.get_ident())
        time.sleep(0.2)
        close()

    parent_end._close = slow_close
    worker = _Worker(process, parent_end)
    errors = []

    def end():
        try:
            worker.kill()
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=end) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(closes) == 1 and parent_end.closed
    assert not process.is_alive()


def test_arguments_are_checked():
    for bad in ({"processes": 0}, {"timeout_s": 0}, {"nice": 20}, {"processes": 1.5}):
        with pytest.raises(ValueError):
            WorkerPool(STANDIN, **bad)


def test_workers_exit_with_their_parent(tmp_path: Path):
    """A service killed with SIGKILL cannot shut its pool down: the workers see
    their pipe close and exit on their own."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, time
            from fiftyone_clipbranches.service.workers import WorkerPool
            if __name__ == "__main__":
                pool = WorkerPool({STANDIN!r}, processes=2, timeout_s=5)
                pool.start()
                assert pool.wait_ready(120)
                print(json.dumps(pool.pids()), flush=True)
                time.sleep(600)
            """
        )
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), env.get("PYTHONPATH", "")]
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    finally:
        parent.kill()
        parent.wait(30)
    assert _wait_for(lambda: _gone(pids), 30), "workers outlived their parent"


def test_workers_started_later_open_the_datasets_served_not_every_indexed_one(
    make_user_index,
):
    """A service serving every indexed dataset chose them when it started, but each
    replacement worker opened every dataset indexed since (and loaded its CLIP)."""
    from fiftyone_clipbranches.service.backend import SdkBackend

    ds = make_user_index(n_per_class=4, name="svc-served-at-start")
    backend = SdkBackend(None)
    workers = WorkerPool(
        "fiftyone_clipbranches.service.compute_worker:SdkWorker",
        (*backend.worker_args(), 1),
    )  # not started: only the arguments a worker would get are read
    backend.attach_workers(workers)
    assert workers.args == (None, 1)
    backend.load()
    served = [d["name"] for d in backend.list_datasets()]
    assert ds.name in served
    assert workers.args == (served, 1)


def test_a_worker_whose_service_is_gone_once_it_started_exits_quietly():
    """A service killed while its workers started left each a BrokenPipeError
    traceback once it had loaded."""
    script = textwrap.dedent(
        f"""
        import multiprocessing as mp
        from fiftyone_clipbranches.service.workers import worker_main
        if __name__ == "__main__":
            parent, child = mp.Pipe()
            parent.close()  # the service, gone
            worker_main(child, {STANDIN!r}, (), 0, 20)
            print("returned")
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), env.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and "returned" not in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
