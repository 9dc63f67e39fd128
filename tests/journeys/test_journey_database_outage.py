"""User journey: the FiftyOne database of a running service goes away, then comes back.

A database of its own (this test stops it): images on disk -> the tiny CLIP ->
``build_index`` in a process on that database -> ``clipbranches serve`` -> HTTP while
the database is down and after it restarts. Before, every request waited 30 s for
the database, one after the other, then answered a bare 500, and ``/v1/ready`` said
ready.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from service_process import running_service

from fiftyone_clipbranches.private_db import spawn_mongod

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "service"))

from service_helpers import Http  # noqa: E402

TOKEN = "journey-outage-token-0123456789ab"
DATASET = "journey-outage"

BUILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from user_path import build_user_index, images_dataset

    ds = images_dataset(Path(sys.argv[1]), 8, name=sys.argv[3])
    ds.persistent = True
    build_user_index(ds, Path(sys.argv[2]), "clip")
    """
)


def _build_on(uri: str, cifar_dir, checkpoint) -> None:
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(cifar_dir), str(checkpoint), DATASET],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _port_no_one_is_given() -> int:
    """A free port below the ephemeral range (where the system hands out ports to
    whoever asks for any, e.g. a parallel test worker's Ray) and above Ray's worker
    ports: the mongod restarted on it finds it free again."""
    import random
    import socket

    for port in random.sample(range(20_000, 32_000), 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port from 20000 to 32000")


def test_a_service_whose_database_is_down_answers_503_at_once_and_recovers(
    tmp_path, cifar_dir, tiny_clip_checkpoint
):
    port = _port_no_one_is_given()
    mongod = spawn_mongod(tmp_path / "mongod", port=port)
    try:
        _build_on(mongod.uri, cifar_dir, tiny_clip_checkpoint)
        args = ["--dataset", DATASET, "--compute-workers", "1", "--timeout", "120"]
        with running_service(args, TOKEN, database_uri=mongod.uri) as service:
            call = Http(service.url, service.token)
            body = {"dataset": DATASET, "index_key": "clip", "text": "a ship", "k": 5}
            status, _, found = call("POST", "/v1/search", body)
            assert status == 200, found
            page = f"/v1/results/{found['result_id']}"

            mongod.stop()
            time.sleep(2.5)  # past the service's recheck of the dataset
            start = time.monotonic()
            status, headers, err = call("POST", "/v1/search", body)
            assert time.monotonic() - start < 15
            assert (status, err["error"]["code"]) == (503, "database_unavailable")
            assert "does not answer" in err["error"]["message"]
            assert headers.get("Retry-After") == "2"
            # a result already made is still paged (from memory)
            status, _, items = call("GET", page)
            assert status == 200 and len(items["items"]) == 5
            status, _, ready = call("GET", "/v1/ready")
            assert (status, ready["error"]["code"]) == (503, "not_ready")
            assert "database does not answer" in ready["error"]["message"]
            # requests do not queue one behind the other's wait
            answers, start = [], time.monotonic()

            def ask():
                answers.append(call("GET", f"/v1/datasets/{DATASET}")[0])

            askers = [threading.Thread(target=ask) for _ in range(4)]
            for t in askers:
                t.start()
            for t in askers:
                t.join(60)
            assert answers == [503] * 4 and time.monotonic() - start < 15

            mongod = spawn_mongod(tmp_path / "mongod", port=port)  # back
            deadline = time.monotonic() + 60
            while call("GET", "/v1/ready")[0] != 200:
                assert time.monotonic() < deadline, service.output()[-3000:]
                time.sleep(0.5)
            status, _, again = call("POST", "/v1/search", body)
            assert status == 200 and again["total"] == found["total"]
            assert "Traceback" not in service.output()
    finally:
        mongod.stop()
