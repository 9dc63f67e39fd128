"""The demo's App says where it is in its own line, not in FiftyOne's
instructions for a remote machine (an ssh tunnel to the default port)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import fiftyone as fo

_LAUNCH = """
import sys
from fiftyone_clipbranches.demo.pipeline import launch_demo_app
launch_demo_app(sys.argv[1], port=int(sys.argv[2]))
"""


def _stop(proc) -> None:
    """Terminate ``proc`` and the App server it started."""
    import psutil

    try:
        family = [*psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in [*family, proc]:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs([*family, psutil.Process(proc.pid)], timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_demo_app_names_its_own_address_only(cifar_dir, tmp_path):
    ds = fo.Dataset()
    ds.add_samples(
        [fo.Sample(filepath=str(p)) for p in sorted(cifar_dir.glob("*/*"))[:3]],
        progress=False,
    )
    ds.persistent = True
    port = _free_port()
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, ds.name, str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while "App: http" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        said = log.read_text()
        assert f"App: http://127.0.0.1:{port}/" in said
        assert "ssh -N" not in said and "remote App" not in said
    finally:
        _stop(proc)
        ds.delete()


def test_a_port_another_program_holds_is_refused_before_the_demo_runs(capsys):
    import socket

    from fiftyone_clipbranches import cli
    from fiftyone_clipbranches.demo import pipeline

    def no_demo(**kwargs):
        raise AssertionError("the demo ran before the port was checked")

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        original, pipeline.run_demo = pipeline.run_demo, no_demo
        try:
            assert cli.main(["demo", "--port", str(port)]) == 1
        finally:
            pipeline.run_demo = original
    said = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is taken by another program" in said
    assert "pass a free one, e.g. --port " in said


def test_a_fiftyone_app_already_on_the_port_is_used_not_refused():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from fiftyone_clipbranches.demo.pipeline import check_app_port

    class App(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"version": "1.0", "dev": False}).encode()
            self.send_response(200 if self.path == "/fiftyone" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_app_port(server.server_address[1])  # no error: FiftyOne answers
    finally:
        server.shutdown()
        server.server_close()
