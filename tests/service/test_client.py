"""The Python client and the remote-refine switch against the real service."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from service_helpers import DATASET

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.service import (
    Client,
    ServiceError,
    remote_refine,
    service_settings,
)


@pytest.fixture(scope="module")
def client(service) -> Client:
    return Client(service.url, service.token)


def test_client_endpoints(client, served_dataset):
    assert client.health() == {"status": "ok"}
    assert client.ready()["status"] == "ready"
    assert client.openapi()["openapi"].startswith("3.")
    (entry,) = client.datasets()
    assert client.dataset(DATASET) == entry
    assert client.index(DATASET, "clipbranches")["n_samples"] == len(served_dataset)

    ids = served_dataset.values("id")
    found = client.search(DATASET, sample_ids=ids[:1], k=5)
    assert found["items"][0] == {"id": ids[0], "score": 0.0}

    res = client.refine(DATASET, positives=ids[:6], random_negatives=30, page_size=2)
    assert res["stats"]["n_neighbour_positives"] > 0
    plain = client.refine(DATASET, positives=ids[:6], neighbours_per_positive=0)
    assert plain["stats"]["n_neighbour_positives"] == 0
    items = list(client.iter_items(res["result_id"], page_size=7))
    assert len(items) == res["total"] and items[:2] == res["items"]
    saved = client.save_view(res["result_id"], "client view", overwrite=True)
    assert saved["n_samples"] == res["total"]
    assert client.delete_result(res["result_id"]) == {"deleted": res["result_id"]}
    with pytest.raises(ServiceError) as info:
        client.page(res["result_id"])
    assert (info.value.status, info.value.code) == (404, "result_not_found")


def test_client_errors(service):
    with pytest.raises(ServiceError) as info:
        Client(service.url, "wrong-token-0123456789").datasets()
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    with pytest.raises(ServiceError) as info:
        Client(service.url, service.token).refine(DATASET, positives=["f" * 24])
    assert info.value.code == "unknown_sample_ids"
    assert info.value.details["ids"] == ["f" * 24]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServiceError) as info:
        Client(f"http://127.0.0.1:{port}", timeout_s=2).health()
    assert (info.value.status, info.value.code) == (0, "unreachable")
    with pytest.raises(ValueError, match="http://host:port"):
        Client("127.0.0.1:5152")


def test_remote_refine_equals_local(service, served_dataset, monkeypatch):
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_URL", service.url)
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_TOKEN", service.token)
    ids = served_dataset.values("id")
    pos, neg = ids[200:207], ids[0:3]
    remote = remote_refine(DATASET, pos, neg, model="ensemble", random_negatives=80)
    local = sdk.refine(
        served_dataset,
        positives=pos,
        negatives=neg,
        model="ensemble",
        random_negatives=80,
        score_field=None,
    )
    assert remote.ids == local.ids and remote.total == len(local.ids)
    np.testing.assert_array_equal(remote.scores, local.scores)
    assert remote.stats["n_positives"] == 7
    by_tags = remote_refine(DATASET, random_negatives=50)
    local_tags = sdk.refine(served_dataset, random_negatives=50, score_field=None)
    assert by_tags.ids == local_tags.ids
    head = remote_refine(
        DATASET, pos, neg, model="ensemble", random_negatives=80, max_items=3
    )
    assert head.ids == local.ids[:3] and head.total == remote.total


def test_service_settings(monkeypatch):
    monkeypatch.delenv("CLIPBRANCHES_SERVICE_URL", raising=False)
    monkeypatch.delenv("CLIPBRANCHES_SERVICE_TOKEN", raising=False)
    assert service_settings() is None
    with pytest.raises(ValueError, match="CLIPBRANCHES_SERVICE_URL"):
        remote_refine(DATASET, ["0" * 24])
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_URL", "http://env:1")
    assert service_settings() == ("http://env:1", None)
    secrets = {
        "CLIPBRANCHES_SERVICE_URL": "http://secret:2",
        "CLIPBRANCHES_SERVICE_TOKEN": "t",
    }
    assert service_settings(secrets) == ("http://secret:2", "t")
