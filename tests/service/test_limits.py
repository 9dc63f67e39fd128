"""Time limits, admission control, readiness, unexpected errors and token rules, on a
real waitress server in this process with a tiny stand-in backend (the sdk cannot be
made slow or broken on demand)."""

from __future__ import annotations

import argparse
import socket
import threading
import time

import numpy as np
import pytest
from service_helpers import Http

from fiftyone_clipbranches.service import Client, ServiceError
from fiftyone_clipbranches.service.cli_command import add_serve_arguments
from fiftyone_clipbranches.service.results import Ranking
from fiftyone_clipbranches.service.server import resolve_token, start_server

SID = "0123456789abcdef01234567"


class StandInBackend:
    """Serves dataset ``d`` with index ``k``; ``refine`` blocks until released,
    ``search`` raises an unexpected error."""

    def __init__(self):
        self.loaded = threading.Event()
        self.release = threading.Event()
        self.ready = False
        self.load_error = None

    def load(self):
        self.loaded.wait(30)
        self.ready = True

    def is_ready(self):
        return self.ready

    def n_indexes(self):
        return 1

    def list_datasets(self):
        return [{"name": "d", "indexes": [{"key": "k", "n_samples": 1}]}]

    def dataset_info(self, name):
        return self.list_datasets()[0]

    def index_info(self, name, key):
        return self.list_datasets()[0]["indexes"][0]

    def refine(self, req):
        self.release.wait(30)
        rows = np.arange(3, dtype=np.int64)
        return Ranking(rows, np.ones(3), lambda r: [SID] * len(r), {"timings": {}})

    def search(self, req):
        raise KeyError("secret internal detail")

    def save_view(self, result, name, overwrite):
        return {"name": name}


@pytest.fixture
def stand_in():
    backend = StandInBackend()
    service = start_server(
        backend,
        port=0,
        threads=6,
        token=None,
        allow_no_token_on_localhost=True,
        compute_workers=1,
        max_queued=1,
        request_timeout_s=0.5,
    )
    try:
        yield backend, service, Http(service.url, None)
    finally:
        backend.loaded.set()
        backend.release.set()
        service.stop()


def test_readiness_timeout_busy_and_internal_errors(stand_in):
    backend, service, call = stand_in
    assert service.token is None  # loopback, explicitly allowed
    assert call("GET", "/v1/health")[0] == 200
    status, headers, err = call("GET", "/v1/ready")
    assert (status, err["error"]["code"]) == (503, "not_ready")
    assert headers["Retry-After"] == "2"
    # the client's probe says so at once (its other calls retry: test_client.py)
    started = time.monotonic()
    with pytest.raises(ServiceError) as refused:
        Client(service.url, retries=3).ready()
    assert refused.value.code == "not_ready" and time.monotonic() - started < 1.5
    backend.loaded.set()
    assert service.wait_ready(10)
    ready = call("GET", "/v1/ready")[2]
    assert (ready["status"], ready["indexes"]) == ("ready", 1)
    assert call("GET", "/v1/datasets")[0] == 200  # no token needed in this mode

    body = {"dataset": "d", "positives": [SID]}
    status, _, err = call("POST", "/v1/refine", body)
    assert (status, err["error"]["code"]) == (504, "timeout")
    # one worker is still busy with the abandoned job and one more may queue
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(call("POST", "/v1/refine", body))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r[2]["error"]["code"] for r in results)
    assert codes == ["busy", "timeout"]
    (busy,) = [r for r in results if r[0] == 503]
    assert busy[1]["Retry-After"] == "1"
    assert "Retry-After" not in [r for r in results if r[0] == 504][0][1]

    backend.release.set()
    for _ in range(100):
        status, _, res = call("POST", "/v1/refine", body)
        if status == 200:
            break
        threading.Event().wait(0.05)
    assert status == 200 and res["total"] == 3

    status, _, err = call("POST", "/v1/search", {"dataset": "d", "text": "x"})
    assert (status, err["error"]["code"]) == (500, "internal_error")
    assert "secret" not in err["error"]["message"]


def test_stop_frees_the_port(stand_in):
    _, service, call = stand_in
    port = service.port
    assert call("GET", "/v1/health")[0] == 200
    service.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_token_rules(monkeypatch):
    monkeypatch.delenv("CLIPBRANCHES_SERVICE_TOKEN", raising=False)
    token, generated = resolve_token(None, "127.0.0.1", False)
    assert generated and len(token) >= 32
    assert resolve_token(None, "::1", True) == (None, False)
    assert resolve_token(None, "localhost", True) == (None, False)
    with pytest.raises(ValueError, match="loopback"):
        resolve_token(None, "0.0.0.0", True)
    with pytest.raises(ValueError, match="at least 16"):
        resolve_token("short", "127.0.0.1", False)
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_TOKEN", "from-the-environment-1234")
    assert resolve_token(None, "0.0.0.0", True) == ("from-the-environment-1234", False)
    with pytest.raises(ValueError, match="port"):
        start_server(StandInBackend(), port=70000)


def test_a_port_in_use_is_named():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            start_server(StandInBackend(), port=port)


def test_serve_arguments():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.no_token, args.datasets, args.token) == (
        "127.0.0.1",
        False,
        None,
        None,
    )
    args = parser.parse_args(
        ["--port", "0", "--dataset", "a", "--dataset", "b", "--no-token"]
    )
    assert (args.port, args.datasets, args.no_token) == (0, ["a", "b"], True)


def test_tokens_a_header_cannot_carry_are_refused_or_trimmed(monkeypatch):
    """A token read from an env file ends in a line break: accepted at start, no
    client could send it (every request 401); non-ASCII ones the same."""
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_TOKEN", "from-an-env-file-0123456789\n")
    assert resolve_token(None, "127.0.0.1", False)[0] == "from-an-env-file-0123456789"
    for bad in ("€uro-tökén-0123456789abcdef", "two words 0123456789abcdef", " " * 20):
        with pytest.raises(ValueError, match="visible ASCII"):
            resolve_token(bad, "127.0.0.1", False)
        if bad.strip():
            with pytest.raises(ValueError, match="visible ASCII"):
                Client("http://127.0.0.1:1", bad)
    for blank in ("", " "):  # an unset variable's default: no token
        assert Client("http://127.0.0.1:1", blank).token is None


def test_without_a_token_only_loopback_names_are_answered():
    """DNS rebinding: a page whose name points at 127.0.0.1 reached a --no-token
    service as its own origin (search, save over a user's view)."""
    import http.client

    backend = StandInBackend()
    backend.loaded.set()
    service = start_server(backend, port=0, allow_no_token_on_localhost=True)
    try:
        assert service.wait_ready(30)
        for host, status in (
            (f"rebind.example:{service.port}", 403),
            ("rebind.example", 403),
            (f"localhost:{service.port}", 200),
            (f"127.0.0.1:{service.port}", 200),
            (f"[::1]:{service.port}", 200),
        ):
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
            conn.request("GET", "/v1/datasets", headers={"Host": host})
            answer = conn.getresponse()
            body = answer.read().decode()
            conn.close()
            assert answer.status == status, (host, body)
            if status == 403:
                assert "answers only requests addressed to 127.0.0.1" in body
    finally:
        service.stop()


def test_the_client_follows_no_redirect_with_the_token():
    """A redirect to another host took the bearer token along."""
    import http.server

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.server.server_port, self.headers.get("Authorization")))
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{other.server_port}/x")
            self.end_headers()

        def log_message(self, *args):
            pass

    first = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    other = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    for server in (first, other):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(
            f"http://127.0.0.1:{first.server_port}", "a-secret-token-0123456789"
        )
        with pytest.raises(ServiceError) as err:
            client.datasets()
        assert (err.value.status, err.value.code) == (307, "redirect")
        assert [port for port, _ in seen] == [first.server_port]  # not followed
    finally:
        for server in (first, other):
            server.shutdown()
            server.server_close()
