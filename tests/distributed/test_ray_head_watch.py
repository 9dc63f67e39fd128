"""A head found gone once stays gone for this process: a cluster started anew at
the same address answers the check but not the process bound to the old one."""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("ray")

from fiftyone_clipbranches.distributed import ray_shards  # noqa: E402


@pytest.fixture
def head(monkeypatch):
    """A stand-in head this process is a driver of: a listening socket whose
    address ``head_address`` names; ``close()`` takes it down."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setattr(ray_shards, "head_address", lambda: address)
    monkeypatch.setattr(ray_shards, "HEAD_CHECK_S", 0.1)
    monkeypatch.setattr(ray_shards, "_lost_head", None)
    monkeypatch.setattr(ray_shards, "_watching", False)
    yield server, address
    server.close()


def test_a_head_down_and_up_again_between_requests_stays_lost(head):
    server, address = head
    assert ray_shards.head_problem() is None
    ray_shards.watch_head()  # as connect() does
    server.close()  # down for a moment ...
    deadline = time.monotonic() + 10
    while ray_shards._lost_head is None and time.monotonic() < deadline:
        time.sleep(0.05)
    again = socket.socket()  # ... and a new head at the same address
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    again.bind(("127.0.0.1", int(address.rsplit(":", 1)[1])))
    again.listen()
    try:
        problem = ray_shards.head_problem()
        assert problem is not None and f"head at {address} stopped answering" in problem
        assert (
            "then this process, which stays bound to the cluster it joined" in problem
        )
        with pytest.raises(
            ray_shards.ShardsUnavailableError, match="stopped answering"
        ):
            ray_shards._check_head()
    finally:
        again.close()


def test_a_cluster_that_answers_but_refuses_to_join_names_authentication(monkeypatch):
    import ray

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    address = f"127.0.0.1:{server.getsockname()[1]}"

    def refused(**kwargs):  # what ray.init raises when the token is not given
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refused)
    try:
        with pytest.raises(ray_shards.RayUnavailableError) as err:
            ray_shards.connect(address)
    finally:
        server.close()
    assert "though its address answers" in str(err.value)
    assert "RAY_AUTH_MODE=token" in str(err.value)
    assert "its nodes may have stopped (`ray status`" in str(err.value)
