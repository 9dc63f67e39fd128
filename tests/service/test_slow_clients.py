"""Slow clients cannot lock everyone out: with 200 connections trickling one byte
every 2 s, ``/v1/health`` keeps answering within a second, and a connection whose
request takes too long to arrive is closed (a real waitress server on loopback)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time

import numpy as np
import pytest

from fiftyone_clipbranches.service.server import start_server

N_SLOW = 200
TRICKLE_EVERY_S = 2.0


class IdleBackend:
    """Serves nothing; enough for probes."""

    load_error = None

    def load(self):
        pass

    def is_ready(self):
        return True

    def n_indexes(self):
        return 0


@pytest.fixture
def make_service():
    started = []

    def make(**options):
        service = start_server(
            IdleBackend(),
            port=0,
            token=None,
            allow_no_token_on_localhost=True,
            **options,
        )
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


def _slow_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return sock


def _health_latency(port: int) -> float:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/health")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    return time.perf_counter() - start


def _trickle(socks, stop: threading.Event) -> None:
    while not stop.wait(TRICKLE_EVERY_S):
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(b"a")


def test_health_answers_within_a_second_under_200_slow_clients(make_service):
    service = make_service()
    socks = [_slow_socket(service.port) for _ in range(N_SLOW)]
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(socks, stop), daemon=True)
    trickler.start()
    latencies = []
    try:
        deadline = time.monotonic() + 8.0  # four trickles of every client
        while time.monotonic() < deadline:
            latencies.append(_health_latency(service.port))
            time.sleep(0.1)
    finally:
        stop.set()
        trickler.join(5)
        for sock in socks:
            sock.close()
    p50, p99 = np.percentile(latencies, [50, 99])
    print(
        f"/v1/health under {N_SLOW} slow clients: {len(latencies)} probes, "
        f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, max "
        f"{max(latencies) * 1e3:.1f} ms"
    )
    assert max(latencies) < 1.0


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Keep trickling into ``sock``; True once the server has closed it."""
    deadline = time.monotonic() + within_s
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            sock.send(b"a")
            if sock.recv(1) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_a_request_trickling_past_the_read_timeout_is_closed(make_service):
    service = make_service(request_read_timeout_s=1, cleanup_interval_s=1)
    sock = _slow_socket(service.port)
    try:
        start = time.monotonic()
        assert _closed_by_server(sock, within_s=8)
        assert time.monotonic() - start >= 1
    finally:
        sock.close()
    assert _health_latency(service.port) < 1.0


def test_slow_clients_beyond_the_connection_limit_are_evicted(make_service):
    """More slow clients than connection slots: each is closed after the read
    timeout, so a new client is answered within a few seconds, not never."""
    service = make_service(
        connection_limit=20, request_read_timeout_s=1, cleanup_interval_s=1
    )
    socks = [_slow_socket(service.port) for _ in range(30)]
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(socks, stop), daemon=True)
    trickler.start()
    try:
        assert _health_latency(service.port) < 6.0
    finally:
        stop.set()
        trickler.join(5)
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    "option", ["connection_limit", "request_read_timeout_s", "channel_timeout_s"]
)
def test_limits_are_checked(option):
    with pytest.raises(ValueError, match=option):
        start_server(IdleBackend(), port=0, token=None, **{option: 0})
