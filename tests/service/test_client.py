"""The Python client and the remote-refine switch against the real service."""

from __future__ import annotations

import math
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
    assert math.copysign(1.0, found["items"][0]["score"]) == 1.0  # not -0.0
    # the text is the second argument, as in sdk.search (this index has no CLIP)
    with pytest.raises(ServiceError, match="text") as no_text:
        client.search(DATASET, "a cat")
    assert (no_text.value.status, no_text.value.code) == (422, "unprocessable")

    res = client.refine(DATASET, positives=ids[:6], random_negatives=30, page_size=2)
    assert res["stats"]["n_neighbour_pos"] > 0
    plain = client.refine(DATASET, positives=ids[:6], neighbours_per_positive=0)
    assert plain["stats"]["n_neighbour_pos"] == 0
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
    assert remote.stats["n_pos"] == 7
    by_tags = remote_refine(DATASET, random_negatives=50)
    local_tags = sdk.refine(served_dataset, random_negatives=50, score_field=None)
    assert by_tags.ids == local_tags.ids
    head = remote_refine(
        DATASET, pos, neg, model="ensemble", random_negatives=80, max_items=3
    )
    assert head.ids == local.ids[:3] and head.total == remote.total
    # shown in a notebook: the sizes, never the ids
    assert repr(head).startswith(f"RemoteRefineResult({remote.total} results, scores")
    assert "3 in .ids" in repr(head) and head.ids[0] not in repr(head)


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


def test_remote_and_local_rounds_have_the_same_stats(service, served_dataset):
    from fiftyone_clipbranches.sdk.remote import refine_here_or_remote

    ids = served_dataset.values("id")
    request = sdk.RefineRequest(
        positives=ids[200:207], negatives=ids[0:3], model="linear"
    )
    local = refine_here_or_remote(served_dataset, request, score_field=None)
    secrets = {
        "CLIPBRANCHES_SERVICE_URL": service.url,
        "CLIPBRANCHES_SERVICE_TOKEN": service.token,
    }
    remote = refine_here_or_remote(
        served_dataset, request, score_field=None, secrets=secrets
    )
    assert set(remote.stats) == set(local.stats) | {"service_url"}
    for key, value in local.stats.items():
        if not key.endswith("_ms"):
            assert remote.stats[key] == value, key
    assert remote.stats["n_random_neg_requested"] == 1500  # linear's default
    assert remote.ids == local.ids
    # a view: labels of the whole dataset, the answer inside the view, as here
    view = served_dataset.skip(150)
    local = refine_here_or_remote(view, request, score_field=None)
    remote = refine_here_or_remote(view, request, score_field=None, secrets=secrets)
    assert remote.ids == local.ids and set(local.ids) <= set(view.values("id"))
    for key in ("n_results", "n_index", "n_neg"):
        assert remote.stats[key] == local.stats[key], key


def test_a_request_is_sent_as_given(service, served_dataset):
    ids = served_dataset.values("id")
    client = Client(service.url, service.token)
    request = sdk.RefineRequest(
        positives=ids[:5], negatives=[], seed=3, random_negatives=40
    )
    res = client.refine(DATASET, request, page_size=1000)
    local = sdk.refine(served_dataset, request=request, score_field=None)
    assert [it["id"] for it in res["items"]] == local.ids
    assert res["stats"]["n_random_neg_requested"] == 40
    with pytest.raises(ValueError, match="not both"):
        client.refine(DATASET, request, model="tree")
    with pytest.raises(ValueError, match="model_params"):
        client.refine(DATASET, model_params={"n_trees": 2})


def test_serve_refuses_unknown_datasets_before_binding(served_dataset, capsys):
    from fiftyone_clipbranches.cli import main as cli_main

    argv = ["serve", "--dataset", served_dataset.name, "--dataset", "no-such-ds"]
    assert cli_main([*argv, "--port", "0"]) == 1
    out = capsys.readouterr()
    assert "serve: error: dataset(s) ['no-such-ds'] do not exist" in out.err
    assert "listening" not in out.out
    # a time limit that is no number of seconds is named by its option
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SystemExit):
            cli_main(["serve", "--timeout", bad, "--port", "0"])
        err = capsys.readouterr().err
        assert f"argument --timeout: {bad!r} is not a number of seconds > 0" in err
    # so are counts out of range
    for option, bad, bounds in [
        ("--max-queued", "-5", ">= 0"),
        ("--compute-workers", "0", ">= 1"),
        ("--port", "70000", "from 0 to 65535"),
        ("--compute-nice", "x", "from 0 to 19"),
    ]:
        with pytest.raises(SystemExit):
            cli_main(["serve", option, bad])
        err = capsys.readouterr().err
        assert f"argument {option}: {bad!r} is not a whole number {bounds}" in err


def test_serve_refuses_settings_it_would_trip_on_later(
    served_dataset, capsys, monkeypatch
):
    """--no-token was overridden by the token variable without a word, and a bad
    cache size was said index by index, each told to be rebuilt."""
    from fiftyone_clipbranches.cli import main as cli_main

    argv = ["serve", "--dataset", served_dataset.name, "--port", "0"]
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_TOKEN", "t" * 32)
    # usage errors: exit status 2, as argparse's own
    assert cli_main([*argv, "--no-token"]) == 2
    assert "--no-token, but $CLIPBRANCHES_SERVICE_TOKEN is set" in (
        capsys.readouterr().err
    )
    # a proxy trusted by name, or every peer trusted: refused
    monkeypatch.delenv("CLIPBRANCHES_SERVICE_TOKEN")
    for bad in ("*", "localhost"):
        assert cli_main([*argv, "--trusted-proxy", bad]) == 2
        assert "give the proxy's IP address" in capsys.readouterr().err
    assert cli_main([*argv, "--no-token", "--host", "0.0.0.0"]) == 2
    assert "may only be disabled on a loopback address" in capsys.readouterr().err
    origin = ["--no-token", "--cors-origin", "http://localhost:5151"]
    assert cli_main([*argv, *origin]) == 2
    assert "--cors-origin needs a token" in capsys.readouterr().err
    assert cli_main([*argv, "--trusted-proxy", "*"]) == 2
    assert "error: --trusted-proxy '*'" in capsys.readouterr().err  # said once
    # a token too short: refused before a Ray cluster is joined
    short = [*argv, "--token", "short", "--ray-address", "127.0.0.1:1"]
    assert cli_main(short) == 2
    said = capsys.readouterr()
    assert "clipbranches serve: error: the service token must be at least 16" in (
        said.err
    )
    assert "Ray" not in said.out + said.err
    monkeypatch.setenv("CLIPBRANCHES_INDEX_CACHE_SIZE", "four")
    assert cli_main(argv) == 1
    out = capsys.readouterr()
    assert "CLIPBRANCHES_INDEX_CACHE_SIZE must be an integer >= 0" in out.err
    assert "listening" not in out.out


def test_unknown_clipbranches_variables_are_named():
    from fiftyone_clipbranches.sdk.settings import ENVIRONMENT, unknown_environment

    environ = {"CLIPBRANCHES_SERVICE_TOKN": "x", "CLIPBRANCHES_PORT": "1", "HOME": "/"}
    assert unknown_environment({**environ, **dict.fromkeys(ENVIRONMENT, "")}) == [
        "CLIPBRANCHES_PORT is not a setting of clipbranches",
        "CLIPBRANCHES_SERVICE_TOKN is not a setting of clipbranches (did you mean"
        " CLIPBRANCHES_SERVICE_TOKEN?)",
    ]


def test_refusals_for_now_are_retried_after_their_retry_after(monkeypatch):
    """503 busy / not_ready are sent again after the Retry-After the service asks
    for (a malformed one: 1 s), as many times as the client is told; others not."""
    import http.server
    import json
    import random
    import threading
    import time

    answers = []  # (status, code, Retry-After) per request, in order

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, code, wait = answers.pop(0) if answers else (200, None, None)
            body = {"datasets": []} if status == 200 else {
                "error": {"code": code, "message": "m"}
            }  # fmt: skip
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if wait is not None:
                self.send_header("Retry-After", wait)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        answers[:] = [(503, "busy", "1"), (503, "not_ready", "nan")]
        waits = []
        real_sleep = time.sleep
        mine = threading.current_thread()  # the client's: other threads sleep too

        def sleep(seconds):
            if threading.current_thread() is mine:
                waits.append(seconds)
            real_sleep(seconds)

        monkeypatch.setattr(time, "sleep", sleep)
        monkeypatch.setattr(random, "uniform", lambda a, b: b)  # the longest draw
        assert Client(url, retries=2).datasets() == []
        assert waits == [1.5, 3.0] and not answers  # 1 s, then 2 x 1 s, + half
        monkeypatch.undo()
        answers[:] = [(503, "busy", "0"), (503, "busy", "0")]
        with pytest.raises(ServiceError, match="HTTP 503, busy"):
            Client(url, retries=1).datasets()
        answers[:] = [(503, "busy", "0")]
        with pytest.raises(ServiceError, match="busy"):
            Client(url, retries=0).datasets()
        answers[:] = [(503, "index_unavailable", "0")]
        with pytest.raises(ServiceError, match="index_unavailable"):
            Client(url, retries=3).datasets()
        assert not answers  # not retried
        with pytest.raises(ValueError, match="retries"):
            Client(url, retries=-1)
    finally:
        server.shutdown()
        server.server_close()


def test_a_dataset_named_with_a_slash_is_described(make_user_index):
    """FiftyOne names may hold "/": the client sends it as %2F, which the server
    decodes before routing."""
    from fiftyone_clipbranches.service.backend import SdkBackend
    from fiftyone_clipbranches.service.server import start_server

    ds = make_user_index(n_per_class=4, name="team/cats")
    service = start_server(
        SdkBackend([ds.name]), port=0, token=None, allow_no_token_on_localhost=True,
        compute_mode="threads", compute_workers=1,
    )  # fmt: skip
    try:
        assert service.wait_ready(60)
        assert (
            repr(service) == f"RunningService({service.url}, running; .token, .stop())"
        )
        client = Client(service.url)
        assert client.dataset("team/cats")["name"] == "team/cats"
        assert client.index("team/cats", "clip")["n_samples"] == len(ds)
        with pytest.raises(ServiceError) as err:
            client.index("team/cats", "nope")
        assert err.value.code == "index_not_found"
        # no key given: the service answers from the dataset's only index, as it
        # does for a raw request without one
        found = client.search("team/cats", text="a cat", k=5)
        assert found["index_key"] == "clip" and found["total"] == 5
        ids = ds.values("id")
        for given in ({}, {"index_key": None}):
            res = client.refine(
                "team/cats", positives=ids[:2], negatives=ids[-1:], **given
            )
            assert res["index_key"] == "clip" and ids[0] in {
                item["id"] for item in client.iter_items(res["result_id"])
            }
        with pytest.raises(ServiceError) as err:  # a key given is a key sent
            client.refine("team/cats", positives=ids[:2], index_key="clipbranches")
        assert err.value.code == "index_not_found"
    finally:
        service.stop()


def test_next_to_label_leaves_out_the_result_and_the_labels(make_user_index):
    """``/v1/next_to_label`` answers what ``sdk.next_to_label`` answers: the
    samples nearest the positives, less the labelled ones and the result seen
    (by its result_id or by ids), on an index built from images; its refusals."""
    from fiftyone_clipbranches.service.backend import SdkBackend
    from fiftyone_clipbranches.service.server import start_server

    ds = make_user_index(n_per_class=6, name="svc-next-to-label")
    ids = ds.values("id")
    pos, neg = ids[:2], ids[-2:]
    other = make_user_index(n_per_class=7, name="svc-next-to-label-other")
    service = start_server(
        SdkBackend([ds.name, other.name]), port=0, token=None,
        allow_no_token_on_localhost=True, compute_mode="threads", compute_workers=1,
    )  # fmt: skip
    try:
        assert service.wait_ready(60)
        client = Client(service.url)
        refined = client.refine(ds.name, positives=pos, negatives=neg)
        seen = [item["id"] for item in client.iter_items(refined["result_id"])]
        expected = sdk.next_to_label_ids(
            ds, exclude=seen, k=7, positives=pos, negatives=neg
        )
        answer = client.next_to_label(
            ds.name, exclude_result=refined["result_id"], k=7, positives=pos,
            negatives=neg,
        )  # fmt: skip
        assert (answer["kind"], answer["index_key"]) == ("next_to_label", "clip")
        assert [item["id"] for item in answer["items"]] == expected[0]
        assert [item["score"] for item in answer["items"]] == [
            0.0 - d for d in expected[1].tolist()
        ]
        assert answer["stats"]["n_unindexed"] == 0
        assert not {item["id"] for item in answer["items"]} & set(seen + pos + neg)
        # by ids, as an array, repeated (pages seen so far): the same
        by_ids = client.next_to_label(
            ds.name, exclude=np.array(seen + seen[:3]), k=7, positives=pos,
            negatives=neg,
        )  # fmt: skip
        assert by_ids["items"] == answer["items"]
        found = client.search(ds.name, sample_ids=np.array(pos), k=3)  # as before
        assert found["total"] == 3
        # the next page: the result by its id, the page seen by ids
        shown = [item["id"] for item in answer["items"]]
        page2 = client.next_to_label(
            ds.name, exclude_result=refined["result_id"], exclude=shown, k=7,
            positives=pos, negatives=neg,
        )  # fmt: skip
        expected = sdk.next_to_label_ids(
            ds, exclude=seen + shown, k=7, positives=pos, negatives=neg
        )[0]
        assert [item["id"] for item in page2["items"]] == expected

        # labels from the tags, as /v1/refine reads them; one id is one id
        ds.select(pos).tag_samples("cb_positive")
        tagged = client.next_to_label(ds.name, exclude=ids[2], k=3)
        plain = sdk.next_to_label_ids(ds, exclude=ids[2], k=3)[0]
        assert [item["id"] for item in tagged["items"]] == plain
        assert ids[2] not in plain

        for given, status, code in (
            ({"exclude_result": "0" * 32}, 404, "result_not_found"),
            ({"positives": ["f" * 24]}, 422, "unknown_sample_ids"),
            ({"positive_tag": "nobody"}, 422, "no_positives"),
        ):
            with pytest.raises(ServiceError) as err:
                client.next_to_label(ds.name, **given)
            assert (err.value.status, err.value.code) == (status, code)
        with pytest.raises(ServiceError) as err:  # served: another one's result
            client.next_to_label(other.name, exclude_result=refined["result_id"])
        assert (err.value.status, err.value.code) == (422, "result_of_another_dataset")
        assert ds.name in err.value.message and other.name in err.value.message
        with pytest.raises(ServiceError) as err:  # no such dataset: said first
            client.next_to_label("nope", exclude_result=refined["result_id"])
        assert (err.value.status, err.value.code) == (404, "dataset_not_found")
    finally:
        service.stop()
