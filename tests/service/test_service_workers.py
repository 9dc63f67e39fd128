"""``clipbranches serve`` computing in worker processes, end to end: the answers are
the sdk's, a killed worker is replaced without the service noticing more than one
request, and stopping the service leaves no process behind.

The service runs as a real subprocess over an index built the user's way
(``make_user_index``); the workers are its children, found by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil
from service_helpers import worker_pids
from service_process import running_service

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.service import Client

TOKEN = "workers-token-0123456789abcdef"


def _until(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _dead(pid: int) -> bool:
    """Exited with all its threads (a killed process's main thread turns zombie
    before the others are gone and its files, the pipes, are closed)."""
    try:
        zombie = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        return zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except (psutil.NoSuchProcess, FileNotFoundError):
        return True


def test_workers_answer_like_the_sdk_are_replaced_and_leave_nothing(make_user_index):
    from fiftyone import ViewField as F

    ds = make_user_index(n_per_class=6, name="svc-workers")
    ds.persistent = True
    cats = ds.match(F("ground_truth.label") == "cat").values("id")[:3]
    dogs = ds.match(F("ground_truth.label") == "dog").values("id")[:2]
    expected = sdk.refine(
        ds, positives=cats, negatives=dogs, index_key="clip", score_field=None
    )
    args = [f"--dataset={ds.name}", "--compute-workers", "2", "--compute-nice", "7"]
    with running_service(args, TOKEN) as service:
        pid = service.proc.pid
        client = Client(service.url, TOKEN)

        def via_http():
            res = client.refine(
                ds.name, positives=cats, negatives=dogs, index_key="clip"
            )
            items = list(client.iter_items(res["result_id"]))
            return [i["id"] for i in items], [i["score"] for i in items]

        workers = worker_pids(pid)
        assert len(workers) == 2
        # each worker loaded what a first search and refinement would wait for
        log = service.output()
        loaded = "worker: CLIP clipbranches-tiny-user of index 'clip' of dataset"
        assert log.count(f"{loaded} 'svc-workers' loaded") == 2
        assert log.count("worker: the refinement's kernels are ready") == 2
        service_nice = psutil.Process(pid).nice()
        assert all(psutil.Process(w).nice() >= service_nice + 7 for w in workers)
        for _ in range(3):  # both workers answer, each like the sdk
            assert via_http() == (expected.ids, expected.scores.tolist())

        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        assert _until(lambda: _dead(victim), 10)
        for _ in range(4):
            assert via_http()[0] == expected.ids
        assert _until(
            lambda: len(worker_pids(pid)) == 2 and victim not in worker_pids(pid)
        )
        assert "compute worker" in service.output()

        family = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(60) == 0, service.output()
    assert _until(lambda: not any(psutil.pid_exists(p) for p in family), 30), [
        p for p in family if psutil.pid_exists(p)
    ]


def test_a_save_does_not_wait_behind_stalled_computations_and_a_stop_answers_them(
    make_user_index,
):
    """Saves ran on the compute threads: with every one waiting on a stalled worker,
    a save of milliseconds waited for them (up to the time limit). A SIGTERM then
    closed the connections of requests still computing after the 10 s drain,
    without an answer."""
    import threading

    from service_helpers import Http

    ds = make_user_index(n_per_class=4, name="svc-save-apart")
    ds.persistent = True
    ids = ds.values("id")
    args = [f"--dataset={ds.name}", "--compute-workers", "1", "--timeout", "60"]
    with running_service(args, TOKEN) as service:
        call = Http(service.url, TOKEN)
        body = {"dataset": ds.name, "index_key": "clip", "sample_ids": ids[:1], "k": 5}
        status, _, found = call("POST", "/v1/search", body)
        assert status == 200, found
        stalled = worker_pids(service.proc.pid)
        for pid in stalled:
            os.kill(pid, signal.SIGSTOP)
        refine = {"dataset": ds.name, "index_key": "clip", "positives": ids[:2]}
        answers = []

        def ask():
            status, _, answer = call("POST", "/v1/refine", refine)
            answers.append((status, answer["error"]["code"] if status != 200 else ""))

        refines = [threading.Thread(target=ask) for _ in range(2)]
        try:
            for t in refines:
                t.start()
            time.sleep(1.0)  # both computing (one waits for the stalled worker)
            start = time.monotonic()
            save = {"name": "saved apart"}
            status, _, saved = call(
                "POST", f"/v1/results/{found['result_id']}/save", save
            )
            took = time.monotonic() - start
            assert status == 200 and saved["n_samples"] == 5, saved
            assert took < 10, took
            service.proc.send_signal(signal.SIGTERM)
            for t in refines:
                t.join(60)
            assert answers == [(503, "shutting_down")] * 2
            assert service.proc.wait(60) == 0
        finally:
            for pid in stalled:
                with contextlib.suppress(ProcessLookupError):  # stopped with it
                    os.kill(pid, signal.SIGCONT)
    ds.reload()
    assert len(ds.load_saved_view("saved apart")) == 5


def test_worker_answers_rows_of_a_served_index_ids_of_any_other(make_user_index):
    import numba

    from fiftyone_clipbranches.sdk.request import RefineRequest
    from fiftyone_clipbranches.service.backend import _worker_ranking
    from fiftyone_clipbranches.service.compute_worker import SdkWorker, task

    ds = make_user_index(n_per_class=4, name="svc-worker-rows")
    ids = ds.values("id")
    body = RefineRequest.build(
        None, positives=ids[:3], negatives=ids[-2:], index_key="clip"
    ).to_json()
    expected = sdk.refine(
        ds, positives=ids[:3], negatives=ids[-2:], index_key="clip", score_field=None
    )
    index_dir = str(sdk.index_info(ds, "clip", check=False).index_dir)
    worker = SdkWorker([ds.name], threads=numba.get_num_threads())
    dataset_id = str(ds._doc.id)

    served = worker(task("refine", ds.name, dataset_id, body, {index_dir}))
    assert served[0] == "rows" and served[1] == index_dir
    other = worker(task("refine", ds.name, dataset_id, body, set()))
    assert other[0] == "ids"
    for answer in (served, other):
        ranking = _worker_ranking(answer)
        page = ranking.page(0, len(ranking))
        assert [i["id"] for i in page] == expected.ids
        assert [i["score"] for i in page] == expected.scores.tolist()


def test_ctrl_c_while_workers_start_stops_quietly():
    """A Ctrl-C reaches the terminal's whole process group, workers included, and
    may come while they still import: the service stops them itself, so nothing
    but its own goodbye is printed (no worker traceback, no error)."""
    import subprocess
    import sys

    from service_process import LISTENING, service_env

    proc = subprocess.Popen(
        [sys.executable, "-m", "fiftyone_clipbranches.service", "--port", "0"],
        env=service_env(TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(LISTENING):
                break
        time.sleep(1.0)  # the workers are spawned and importing
        children = psutil.Process(proc.pid).children()
        assert children, "no compute worker was started"
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "clipbranches service stopped" in text
    assert "Traceback" not in text and "ERROR" not in text, text
    deadline = time.monotonic() + 10  # a worker stopped mid-import takes a moment
    while not all(_dead(c.pid) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_dead(c.pid) for c in children)


def test_a_stop_sent_to_the_whole_group_lets_requests_in_progress_finish(
    make_user_index,
):
    """``systemctl stop`` (KillMode=control-group) and ``timeout`` send SIGTERM to
    every process of the service: the workers died of it, and the requests they
    were computing answered 500 worker_crashed instead of finishing."""
    import threading

    from service_helpers import Http

    ds = make_user_index(n_per_class=4, name="svc-group-stop")
    ds.persistent = True
    ids = ds.values("id")
    args = [f"--dataset={ds.name}", "--compute-workers", "1", "--timeout", "60"]
    with running_service(args, TOKEN, own_group=True) as service:
        call = Http(service.url, TOKEN)
        refine = {"dataset": ds.name, "index_key": "clip", "positives": ids[:2]}
        assert call("POST", "/v1/refine", refine)[0] == 200
        (worker,) = worker_pids(service.proc.pid)
        os.kill(worker, signal.SIGSTOP)  # a request that takes a while
        answers, waited = [], []

        def ask():
            start = time.monotonic()
            status, _, answer = call("POST", "/v1/refine", refine)
            answers.append((status, answer.get("error", {}).get("code", "")))
            waited.append(time.monotonic() - start)

        asking = [threading.Thread(target=ask) for _ in range(2)]
        try:
            for t in asking:  # the second waits for the one worker
                t.start()
                time.sleep(1.0)
            os.killpg(service.proc.pid, signal.SIGTERM)
            time.sleep(3.0)
            # the one waiting for a worker is refused at once (it was started in
            # the grace, only to be stopped at its end)
            assert answers == [(503, "shutting_down")], service.output()
        finally:
            os.kill(worker, signal.SIGCONT)
        for t in asking:
            t.join(60)
        assert answers == [(503, "shutting_down"), (200, "")], service.output()
        assert service.proc.wait(60) == 0
        assert "died during a task" not in service.output()


def test_workers_end_with_a_service_stopped_before_it_could_stop_them(tmp_path):
    """A SIGTERM to the group while the workers still booted (they ignore it)
    killed the service by the signal's default and left them compiling, orphaned."""
    import subprocess
    import sys

    script = tmp_path / "service.py"
    script.write_text(
        "import time\n"
        "from fiftyone_clipbranches.service.workers import WorkerPool\n"
        "if __name__ == '__main__':\n"
        "    pool = WorkerPool('time:sleep', (60,), processes=2, start_timeout_s=90)\n"
        "    pool.start()\n"
        "    print('started', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "started"
        assert _until(lambda: psutil.Process(proc.pid).children(), 60)
        workers = psutil.Process(proc.pid).children()
        time.sleep(2.0)  # their watch on the service is running
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
        assert _until(lambda: not any(w.is_running() for w in workers), 15), workers
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


_SCRIPT = """
import sys
from fiftyone_clipbranches.service import Client, start_server
from fiftyone_clipbranches.service.backend import SdkBackend

{guard}
service = start_server(SdkBackend([]), port=0, compute_workers=1)
print("ready" if service.wait_ready(timeout={wait}) else "not ready", flush=True)
print(Client(service.url, token=service.token).health()["status"], flush=True)
service.stop()
"""


def test_a_script_that_starts_the_service_without_a_main_guard_is_told(tmp_path):
    """Each worker imports the script; without ``if __name__ == "__main__":`` it
    started the service again, Python refused in its own words, and the start was
    retried forever (the script hung)."""
    import subprocess
    import sys
    import textwrap

    def run(guard: str, wait: float) -> subprocess.CompletedProcess:
        body = _SCRIPT.format(guard=guard, wait=wait)
        if guard:  # the lines after it, indented under it
            head, tail = body.split(guard + "\n")
            body = head + guard + "\n" + textwrap.indent(tail, "    ")
        script = tmp_path / "serve_it.py"
        script.write_text(body)
        return subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True,
            timeout=300, cwd=tmp_path,
        )  # fmt: skip

    done = run("", 8)
    assert done.stdout.split() == ["not", "ready", "ok"], done.stderr[-2000:]
    assert "the service was started in a compute worker" in done.stderr
    assert "must do so under `if __name__ == '__main__':`" in done.stderr
    done = run('if __name__ == "__main__":', 120)
    assert done.stdout.split() == ["ready", "ok"], done.stderr[-2000:]
    # other failures to start are not blamed on a guard: said as they are
    from fiftyone_clipbranches.service.workers import _why_not_started

    assert _why_not_started(None, None, 30) == "no answer within 30 s"
    assert _why_not_started(None, -9, 30).startswith("it ended with code -9 while")
    assert "__main__" not in _why_not_started(None, 1, 30)


def test_a_script_starting_the_service_shows_no_info_lines_of_its_workers(
    make_user_index,
):
    """docs/service.md's start_server script, logging left unconfigured: the
    workers printed their INFO lines (models loaded, kernels ready), the service
    itself none. Workers show what the process that started them shows."""
    import subprocess
    import sys
    import textwrap

    from service_process import service_env

    ds = make_user_index(n_per_class=4, name="svc-quiet-workers")
    ds.persistent = True
    script = textwrap.dedent(
        f"""
        from fiftyone_clipbranches.service import Client, start_server
        from fiftyone_clipbranches.service.backend import SdkBackend

        if __name__ == "__main__":
            service = start_server(
                SdkBackend([{ds.name!r}]), port=0, compute_workers=1
            )
            service.wait_ready()
            print(Client(service.url, token=service.token).datasets()[0]["name"])
            service.stop()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=service_env(TOKEN), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [ds.name]
    assert "INFO" not in done.stderr and "worker:" not in done.stderr, done.stderr
