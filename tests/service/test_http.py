"""Every endpoint of the real service process, over real HTTP, on a real dataset and
index; results compared with the sdk called in this process."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest
from service_helpers import CORS_ORIGIN, DATASET, NEG_TAG, POS_TAG

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.service.openapi import build_openapi

MISSING_ID = "ffffffffffffffffffffffff"


def _ids(ds, rows) -> list[str]:
    all_ids = ds.values("id")
    return [all_ids[r] for r in rows]


def _sdk_refine(ds, **kwargs):
    result = sdk.refine(ds, score_field=None, k_preview=1, **kwargs)
    return result.ids, np.asarray(result.scores), result.stats


def _all_items(call, result_id: str, limit: int = 37) -> list[dict]:
    items, offset = [], 0
    while offset is not None:
        status, _, page = call(
            "GET", f"/v1/results/{result_id}?offset={offset}&limit={limit}"
        )
        assert status == 200, page
        items.extend(page["items"])
        offset = page["next_offset"]
    return items


def test_health_ready_openapi_need_no_token(call):
    for path in ("/v1/health", "/v1/ready", "/v1/openapi.json"):
        status, headers, body = call("GET", path, auth=False)
        assert status == 200, body
        assert headers["Content-Type"] == "application/json"
    assert call("GET", "/v1/health", auth=False)[2] == {"status": "ok"}
    ready = call("GET", "/v1/ready", auth=False)[2]
    assert (ready["status"], ready["indexes"]) == ("ready", 1)
    assert "results" not in ready  # what clients hold: told to one with the token
    ready = call("GET", "/v1/ready")[2]
    assert set(ready["results"]) == {
        "held", "max_results", "bytes", "max_bytes", "dropped_for_room", "expired"
    }  # fmt: skip
    assert call("GET", "/v1/openapi.json", auth=False)[2] == build_openapi()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_auth_required(call, headers):
    for method, path, body in (
        ("GET", "/v1/datasets", None),
        ("POST", "/v1/refine", {"dataset": DATASET}),
        ("GET", "/v1/results/" + "0" * 32, None),
    ):
        status, hdrs, err = call(method, path, body, headers=headers, auth=False)
        assert status == 401
        assert err["error"]["code"] == "unauthorized"
        assert hdrs["WWW-Authenticate"].startswith("Bearer")
        basic = headers.get("Authorization", "").startswith("Basic")
        said = err["error"]["message"]
        assert ("of scheme 'Basic', not a bearer token" in said) == basic
    # the token sent without its scheme is not sent back
    status, _, err = call("GET", "/v1/datasets", None, auth=False,
                          headers={"Authorization": "secret-token-0123456789"})  # fmt: skip
    assert status == 401 and "secret-token" not in err["error"]["message"]
    assert "does not start with 'Bearer '" in err["error"]["message"]


def test_datasets_and_indexes(call, served_dataset):
    status, _, body = call("GET", "/v1/datasets")
    assert status == 200
    (entry,) = body["datasets"]
    assert entry["name"] == DATASET
    (index,) = entry["indexes"]
    assert index["key"] == "clipbranches"
    assert index["n_samples"] == len(served_dataset)
    assert index["code_dims"] == 32
    assert index["supports_text"] is False
    assert index["manifest"]["n_samples"] == len(served_dataset)
    assert "index_dir" not in index and "/" not in str(
        index["manifest"].get("dataset_id")
    )
    assert call("GET", f"/v1/datasets/{DATASET}")[2] == entry
    assert call("GET", f"/v1/datasets/{DATASET}/indexes/clipbranches")[2] == index

    status, _, err = call("GET", "/v1/datasets/nope")
    assert (status, err["error"]["code"]) == (404, "dataset_not_found")
    assert "restart" not in err["error"]["message"]
    assert "did you mean" not in err["error"]["message"]
    status, _, err = call("GET", f"/v1/datasets/{DATASET}/")  # a trailing slash
    assert (status, err["error"]["code"]) == (404, "dataset_not_found")
    assert err["error"]["message"].endswith(f"(did you mean {DATASET!r}?)")
    import fiftyone as fo

    later = fo.Dataset("made-after-the-service-started")
    try:
        status, _, err = call("GET", f"/v1/datasets/{later.name}")
        assert (status, err["error"]["code"]) == (404, "dataset_not_found")
        message = err["error"]["message"]
        assert f"restart it with --dataset {later.name} among them" in message
    finally:
        later.delete()
    status, _, err = call("GET", f"/v1/datasets/{DATASET}/indexes/other")
    assert (status, err["error"]["code"]) == (404, "index_not_found")
    status, _, err = call("GET", f"/v1/datasets/{DATASET}/indexes/..%2F..")
    assert status in (400, 404) and "error" in err


def test_search_by_samples_matches_sdk(call, served_dataset):
    query = _ids(served_dataset, [0, 1])
    status, _, body = call(
        "POST",
        "/v1/search",
        {"dataset": DATASET, "sample_ids": query, "k": 25, "page_size": 10},
    )
    assert status == 200, body
    ids, dists = sdk.search_ids(served_dataset, sample_ids=query, k=25)
    assert body["total"] == 25 and body["kind"] == "search"
    assert [it["id"] for it in body["items"]] == ids[:10]
    assert [it["score"] for it in body["items"]] == (-dists[:10].astype(float)).tolist()
    assert body["next_offset"] == 10
    assert {"search_s", "total_s"} <= set(body["timings"])
    assert [it["id"] for it in _all_items(call, body["result_id"])] == ids


def test_search_text_on_index_without_clip_model(call):
    status, _, err = call("POST", "/v1/search", {"dataset": DATASET, "text": "a dog"})
    assert status == 422
    assert err["error"]["code"] == "unprocessable"
    message = err["error"]["message"]
    assert "text" in message
    # the way out in the API's words: it takes no vector
    assert "search by sample_ids" in message and "a vector" not in message


@pytest.mark.parametrize("model", ["branches", "ensemble", "tree", "forest"])
def test_refine_by_ids_matches_sdk(call, served_dataset, model):
    pos = _ids(served_dataset, range(0, 8))
    neg = _ids(served_dataset, range(200, 204))
    body = {
        "dataset": DATASET,
        "positives": pos,
        "negatives": neg,
        "model": model,
        "random_negatives": 60,
        "negative_weight": 2.0,
        "page_size": 20,
    }
    status, _, res = call("POST", "/v1/refine", body)
    assert status == 200, res
    ids, scores, stats = _sdk_refine(
        served_dataset,
        positives=pos,
        negatives=neg,
        model=model,
        random_negatives=60,
        negative_weight=2.0,
    )
    assert res["total"] == len(ids) > 0
    assert res["stats"]["n_pos"] == 8 and res["stats"]["n_neg"] == 4
    assert res["stats"]["model"] == model
    assert res["stats"]["n_random_neg"] == stats["n_random_neg"]
    # 8 positives: their neighbours join them, as in the SDK
    assert res["stats"]["n_neighbour_pos"] == stats["n_neighbour_pos"] > 0
    assert res["stats"]["n_unindexed"] == stats["n_unindexed"] == 0
    assert {"train_ms", "query_ms", "total_ms"} <= set(res["stats"])
    assert set(res["timings"]) == {"total_s"}
    assert set(res["stats"]) == set(stats) - {"write_ms", "saved_view", "score_field"}
    assert len(res["items"]) == min(20, len(ids))
    items = _all_items(call, res["result_id"])
    assert [it["id"] for it in items] == ids
    np.testing.assert_array_equal([it["score"] for it in items], scores)


def test_refine_by_tags_matches_sdk(call, served_dataset):
    status, _, res = call(
        "POST", "/v1/refine", {"dataset": DATASET, "random_negatives": 50}
    )
    assert status == 200, res
    assert res["stats"]["label_source"] == "tags"
    ids, _, _ = _sdk_refine(
        served_dataset, tags=(POS_TAG, NEG_TAG), random_negatives=50
    )
    assert [it["id"] for it in _all_items(call, res["result_id"], limit=1000)] == ids
    assert res["stats"]["n_pos"] == 5 and res["stats"]["n_neg"] == 5

    status, _, same = call(
        "POST",
        "/v1/refine",
        {
            "dataset": DATASET,
            "positive_tag": POS_TAG,
            "negative_tag": NEG_TAG,
            "random_negatives": 50,
        },
    )
    assert status == 200 and same["total"] == res["total"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"positives": [MISSING_ID]}, 422, "unknown_sample_ids"),
        ({"positive_tag": "nobody-has-this"}, 422, "no_positives"),
        ({"positives": [], "negatives": []}, 422, "no_positives"),
        ({"index_key": "other"}, 404, "index_not_found"),
        ({"dataset": "nope"}, 404, "dataset_not_found"),
        ({"model": "ball"}, 422, "unprocessable"),
        ({"model": "ball", "query": "a dog"}, 422, "unprocessable"),
        ({"model": "ball", "query": ""}, 400, "invalid_request"),
    ],
)
def test_refine_errors(call, body, status, code):
    got, _, err = call("POST", "/v1/refine", {"dataset": DATASET, **body})
    assert (got, err["error"]["code"]) == (status, code), err
    if code == "unknown_sample_ids":
        assert err["error"]["details"] == {"field": "positives", "ids": [MISSING_ID]}
    if body.get("model") == "ball" and status == 422:
        assert ("query=" if "query" not in body else "CLIP") in err["error"]["message"]


def test_contradictory_labels(call, served_dataset):
    sid = _ids(served_dataset, [3])
    status, _, err = call(
        "POST", "/v1/refine", {"dataset": DATASET, "positives": sid, "negatives": sid}
    )
    assert (status, err["error"]["code"]) == (422, "contradictory_labels")
    assert err["error"]["details"] == {"ids": sid}  # every one, for the App's grid


def test_paging_bounds_and_delete(call, served_dataset):
    pos = _ids(served_dataset, range(100, 106))
    status, _, res = call(
        "POST", "/v1/refine", {"dataset": DATASET, "positives": pos, "page_size": 1}
    )
    assert status == 200 and len(res["items"]) == 1
    rid, total = res["result_id"], res["total"]
    status, _, page = call("GET", f"/v1/results/{rid}?offset={total}&limit=5")
    assert status == 200 and page["items"] == [] and page["next_offset"] is None
    status, _, page = call("GET", f"/v1/results/{rid}")
    assert page["offset"] == 0 and len(page["items"]) == min(total, 100)
    for query in (
        "limit=0",
        "limit=10001",
        "offset=-1",
        "limit=abc",
        "offset=1&offset=2",
        "x=1",
    ):
        status, _, err = call("GET", f"/v1/results/{rid}?{query}")
        assert (status, err["error"]["code"]) == (400, "invalid_request"), query
        assert not err["error"]["message"].startswith("body"), query
    err = call("GET", f"/v1/results/{rid}?x=1")[2]["error"]["message"]
    assert err.startswith("query: unknown parameter(s) ['x']")
    # an integer too large is out of range, not "not an integer"
    huge = call("GET", f"/v1/results/{rid}?limit=99999999999999999999")[2]["error"]
    assert "must be <=" in huge["message"] and "integer" not in huge["message"]
    huge = call("GET", f"/v1/results/{rid}?limit={'9' * 5000}")[2]["error"]
    assert huge["message"] == (
        "limit: must be >= 1 and <= 10000, got a number of 5000 digits"
    )
    body = b'{"dataset": "d", "text": "a", "k": ' + b"9" * 5000 + b"}"
    status, _, err = call("POST", "/v1/search", raw=body)
    assert (status, err["error"]["code"]) == (400, "invalid_json")
    assert "a number of 5000 digits" in err["error"]["message"]
    assert "set_int_max_str_digits" not in err["error"]["message"]
    assert call("DELETE", f"/v1/results/{rid}")[0] == 200
    for method in ("GET", "DELETE"):
        status, _, err = call(method, f"/v1/results/{rid}")
        assert (status, err["error"]["code"]) == (404, "result_not_found")
    status, _, err = call("GET", "/v1/results/not-a-result-id")
    assert (status, err["error"]["code"]) == (400, "invalid_request")


def test_save_view(call, served_dataset):
    pos = _ids(served_dataset, range(200, 206))
    status, _, res = call("POST", "/v1/refine", {"dataset": DATASET, "positives": pos})
    assert status == 200
    rid = res["result_id"]
    status, _, saved = call("POST", f"/v1/results/{rid}/save", {"name": "svc view"})
    assert status == 200, saved
    assert saved == {"dataset": DATASET, "name": "svc view", "n_samples": res["total"]}
    served_dataset.reload()
    view = served_dataset.load_saved_view("svc view")
    assert view.values("id") == [it["id"] for it in _all_items(call, rid, limit=500)]

    status, _, err = call("POST", f"/v1/results/{rid}/save", {"name": "svc view"})
    assert (status, err["error"]["code"]) == (409, "view_exists")
    assert 'pass "overwrite": true' in err["error"]["message"]
    # the name a save writes (spaces around it dropped) is the one it checks
    status, _, err = call("POST", f"/v1/results/{rid}/save", {"name": "svc view "})
    assert (status, err["error"]["code"]) == (409, "view_exists")
    status, _, _ = call(
        "POST", f"/v1/results/{rid}/save", {"name": "svc view", "overwrite": True}
    )
    assert status == 200
    # a name is a name: the sdk saves it (no path is made of it), so does the service
    status, _, saved = call("POST", f"/v1/results/{rid}/save", {"name": "../etc/x"})
    assert status == 200 and saved["name"] == "../etc/x"
    served_dataset.reload()
    assert "../etc/x" in served_dataset.list_saved_views()
    served_dataset.delete_saved_view("../etc/x")
    status, _, err = call("POST", f"/v1/results/{rid}/save", {"name": " "})
    assert (status, err["error"]["code"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b'{"dataset": NaN}', "application/json", 400, "invalid_json"),
        (b'{"dataset": "a", "dataset": "b"}', "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b"[" * 100_000, "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_json"),
        (b'"just a string"', "application/json", 400, "invalid_request"),
        (b'{"dataset": "x"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"dataset": "x"}', None, 415, "unsupported_media_type"),
        (b'{"dataset": "x", "extra": 1}', "application/json", 400, "invalid_request"),
        (
            b'{"dataset": "x"}',
            "application/json; charset=utf-8",
            404,
            "dataset_not_found",
        ),
    ],
)
def test_malformed_requests(call, raw, content_type, status, code):
    got, headers, err = call("POST", "/v1/refine", raw=raw, content_type=content_type)
    assert (got, err["error"]["code"]) == (status, code), err
    assert headers["Content-Type"] == "application/json"
    assert "Traceback" not in err["error"]["message"]


def test_oversized_body(call):
    big = b'{"dataset": "' + b"x" * (1 << 20) + b'"}'
    status, _, err = call("POST", "/v1/refine", raw=big)
    assert (status, err["error"]["code"]) == (413, "body_too_large")
    assert "send positive_tag / negative_tag instead of ids" in err["error"]["message"]
    # a search takes no tags: its 413 does not offer them
    status, _, err = call("POST", "/v1/search", raw=big)
    assert status == 413 and "positive_tag" not in err["error"]["message"]
    # so does a list of more ids than a request holds
    many = ["0" * 24] * 10_001
    status, _, err = call("POST", "/v1/refine", {"dataset": DATASET, "positives": many})
    assert (status, err["error"]["code"]) == (400, "invalid_request")
    assert "got 10001: tag the samples" in err["error"]["message"]


def test_unknown_endpoint_and_method(call):
    status, _, err = call("GET", "/v1/nothing-here")
    assert (status, err["error"]["code"]) == (404, "not_found")
    status, headers, err = call("GET", "/v1/refine")
    assert (status, err["error"]["code"]) == (405, "method_not_allowed")
    assert "POST" in headers["Allow"]
    status, _, err = call("POST", "/v1/refine?debug=1", {"dataset": DATASET})
    assert (status, err["error"]["code"]) == (400, "invalid_request")


def test_concurrent_refinements_equal_sequential(call, served_dataset):
    ids = served_dataset.values("id")
    bodies = []
    for i, model in enumerate(["branches", "ensemble", "tree", "branches"] * 3):
        start = 100 * (i % 3)
        bodies.append(
            {
                "dataset": DATASET,
                "positives": ids[start + i : start + i + 6],
                "negatives": ids[(start + 150 + i) % 300 : (start + 150 + i) % 300 + 3],
                "model": model,
                "random_negatives": 40 + i,
                "page_size": 300,
            }
        )

    def run(body):
        status, _, res = call("POST", "/v1/refine", body)
        assert status == 200, res
        return [(it["id"], it["score"]) for it in res["items"]], res["total"]

    sequential = [run(b) for b in bodies]
    with cf.ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(run, bodies))
    assert concurrent == sequential


def test_refine_neighbours_per_positive(call, served_dataset):
    body = {"dataset": DATASET, "positives": _ids(served_dataset, range(0, 4))}
    status, _, auto = call("POST", "/v1/refine", body)
    assert status == 200 and auto["stats"]["n_neighbour_pos"] > 0
    status, _, off = call("POST", "/v1/refine", {**body, "neighbours_per_positive": 0})
    assert status == 200 and off["stats"]["n_neighbour_pos"] == 0
    status, _, two = call("POST", "/v1/refine", {**body, "neighbours_per_positive": 2})
    assert status == 200 and 0 < two["stats"]["n_neighbour_pos"] <= 8
    linear = {**body, "model": "linear"}  # no neighbour positives by default
    status, _, res = call("POST", "/v1/refine", linear)
    assert status == 200 and res["stats"]["n_neighbour_pos"] == 0
    status, _, res = call(
        "POST", "/v1/refine", {**linear, "neighbours_per_positive": "auto"}
    )
    assert status == 200 and res["stats"]["n_neighbour_pos"] > 0
    for bad in (-1, 65, "Auto", 1.5):
        status, _, err = call(
            "POST", "/v1/refine", {**body, "neighbours_per_positive": bad}
        )
        assert status == 400, (bad, err)
        assert "neighbours_per_positive" in err["error"]["message"]


def test_a_dataset_not_served_is_told_what_would_serve_it(served_dataset):
    import fiftyone as fo

    from fiftyone_clipbranches.service.backend import SdkBackend

    every = SdkBackend()  # serves every dataset with an index (not loaded here)
    assert "restart" not in every._not_served("nope")
    later = fo.Dataset("not-served-yet")
    try:
        assert "no clipbranches index: build one" in every._not_served(later.name)
        served = every._not_served(served_dataset.name)
        assert "restart it to serve this one" in served
        chosen = SdkBackend([served_dataset.name])
        assert f"--dataset {later.name} among" in chosen._not_served(later.name)
    finally:
        later.delete()


def test_a_text_of_spaces_is_a_malformed_request_as_an_empty_one(call):
    """An empty text answered 400, a text of spaces 422 from deeper down."""
    for text in ("", "   ", "\t\n"):
        body = {"dataset": DATASET, "text": text}
        status, _, err = call("POST", "/v1/search", body)
        assert (status, err["error"]["code"]) == (400, "invalid_request"), text
        assert "text" in err["error"]["message"]


def test_a_burst_of_requests_logs_no_queue_warnings(call, service, served_dataset):
    """Requests waiting for one of the service's threads in a burst are answered
    in turn (or refused as busy): waitress's "Task queue depth" warnings are not
    for the service's operator."""
    ids = served_dataset.values("id")
    body = {"dataset": DATASET, "positives": ids[:6], "model": "ensemble"}

    def post(_):
        return call("POST", "/v1/refine", body)[0]

    with cf.ThreadPoolExecutor(64) as pool:
        assert set(pool.map(post, range(192))) <= {200, 503}
    assert "Task queue depth" not in service.output()


def test_browser_pages_of_an_allowed_origin_may_call_it(call):
    """CORS (``--cors-origin``): the preflight is answered without a token, the
    answers name the origin, and the token is still required."""
    preflight = {
        "Origin": CORS_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, headers, body = call("OPTIONS", "/v1/search", headers=preflight, auth=False)
    assert status == 204 and body is None
    assert headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    other = {**preflight, "Origin": "https://evil.example.org"}
    status, headers, err = call("OPTIONS", "/v1/search", headers=other, auth=False)
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert "--cors-origin" in err["error"]["message"]
    # the answers themselves, errors included, let the page read them
    origin = {"Origin": CORS_ORIGIN}
    status, headers, _ = call("GET", "/v1/datasets", headers=origin)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert headers["Access-Control-Expose-Headers"] == "Retry-After"
    status, headers, err = call("GET", "/v1/datasets", headers=origin, auth=False)
    assert status == 401 and headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    status, headers, _ = call(
        "GET", "/v1/datasets", headers={"Origin": "https://x.org"}
    )
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    assert "Origin" in headers["Vary"]


@pytest.mark.parametrize(
    "origins",
    ["https://app.example.org/", "app.example.org", ("ftp://x.org",), "http://:"],
)
def test_a_cors_origin_that_is_not_one_is_refused(origins):
    from fiftyone_clipbranches.service.server import ServiceConfig, _check_config

    with pytest.raises(ValueError, match="a CORS origin is a scheme and a host"):
        _check_config(ServiceConfig(cors_origins=origins))


def test_cors_origins_are_taken_as_browsers_send_them_and_need_a_token():
    from fiftyone_clipbranches.service.server import (
        ServiceConfig,
        _check_config,
        start_server,
    )

    config = ServiceConfig(cors_origins=("https://App.Example.org:443", "*"))
    _check_config(config)
    assert config.cors_origins == ("https://app.example.org", "*")
    # without a token, any page of those origins could use the service
    with pytest.raises(ValueError, match="--cors-origin needs a token"):
        start_server(
            object(), allow_no_token_on_localhost=True, cors_origins=("*",), port=0
        )


def test_positive_ids_alone_say_the_negative_tags_are_not_used(call, served_dataset):
    """The SDK warned; the service said nothing (5 samples tagged negative could
    be in the answer)."""
    pos = _ids(served_dataset, range(3))
    body = {"dataset": DATASET, "positives": pos}
    status, _, res = call("POST", "/v1/refine", body)
    assert status == 200, res
    assert res["stats"]["warning"] == (
        "5 samples tagged 'cb_negative' are not negatives of this refinement:"
        ' "positives" replaces the tags; send "negatives" too, or neither to read'
        " both tags"
    )
    neg = _ids(served_dataset, range(100, 105))
    status, _, res = call("POST", "/v1/refine", {**body, "negatives": neg})
    assert status == 200 and "warning" not in res["stats"]
