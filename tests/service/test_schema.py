"""Request schemas, the OpenAPI document built from them, the result store and the
compute pool: units below the HTTP layer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fiftyone_clipbranches.service import requests as rq
from fiftyone_clipbranches.service.compute import ComputePool
from fiftyone_clipbranches.service.errors import ApiError, ValidationError
from fiftyone_clipbranches.service.openapi import build_openapi
from fiftyone_clipbranches.service.results import FULL_WARNING_S, Ranking, ResultStore

SID = "0123456789abcdef01234567"


def test_refine_defaults_filled():
    req = rq.REFINE.validate({"dataset": "d", "positives": [SID]})
    assert req["index_key"] is None  # the default key, or the only index
    assert req["model"] == "cascade"
    assert req["random_negatives"] is None  # the model's default
    assert req["negative_weight"] == 1.0
    assert req["negatives"] is None
    assert req["page_size"] == rq.DEFAULT_PAGE_SIZE


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"dataset": "d", "bogus": 1}, "unknown field"),
        ({}, "dataset: is required"),
        ({"dataset": 3}, "must be a string"),
        ({"dataset": "d", "random_negatives": True}, "must be an integer"),
        ({"dataset": "d", "random_negatives": 1.0}, "must be an integer"),
        ({"dataset": "d", "random_negatives": -1}, "must be >= 0"),
        ({"dataset": "d", "negative_weight": "1"}, "must be a number"),
        ({"dataset": "d", "negative_weight": 0}, "must be >= 0.001"),
        ({"dataset": "d", "model": "svm"}, "must be one of"),
        ({"dataset": "d", "positives": [SID, SID]}, "must not repeat"),
        ({"dataset": "d", "positives": ["xyz"]}, "positives[0]"),
        ({"dataset": "d", "positives": [SID.upper()]}, "must match"),
        ({"dataset": "d", "positives": SID}, "must be an array"),
        ({"dataset": "d", "positives": [SID], "positive_tag": "p"}, "only one of"),
        ({"dataset": "d", "page_size": rq.MAX_PAGE_SIZE + 1}, "must be <="),
        ({"dataset": "d", "index_key": "../x"}, "must be letters, digits and"),
        ({"dataset": "d", "index_key": "9lives"}, "not starting with a digit"),
        ({"dataset": "d\ud800"}, "dataset: must be valid Unicode"),
        ({"dataset": "d", "positive_tag": "p\udfff"}, "lone surrogate"),
        ({"dataset": "d", "negative_tag": "  "}, "more than white space"),
        ({"dataset": "d", "model": "ball", "query": "   "}, "query: must hold more"),
        ([], "must be a JSON object"),
    ],
)
def test_refine_rejects(body, fragment):
    with pytest.raises(ValidationError) as info:
        rq.REFINE.validate(body)
    assert info.value.status == 400
    assert info.value.code == "invalid_request"
    assert fragment in info.value.message


def test_thousands_of_unknown_fields_are_not_echoed_back():
    body = {"dataset": "d", **{f"k{i:05d}": 1 for i in range(80_000)}, "x" * 10**6: 1}
    with pytest.raises(ValidationError) as info:
        rq.REFINE.validate(body)
    message = info.value.message
    assert "'k00009'] and 79991 more; allowed:" in message and len(message) < 2000


def test_search_needs_exactly_one_query():
    assert rq.SEARCH.validate({"dataset": "d", "text": "a cat"})["k"] == rq.DEFAULT_K
    for body in ({"dataset": "d"}, {"dataset": "d", "text": "x", "sample_ids": [SID]}):
        with pytest.raises(ValidationError, match="exactly one of"):
            rq.SEARCH.validate(body)
    with pytest.raises(ValidationError, match="must be <= 1000"):
        rq.SEARCH.validate({"dataset": "d", "text": "x", "k": 1001})


def test_too_many_ids_rejected():
    ids = [f"{i:024x}" for i in range(rq.MAX_IDS + 1)]
    with pytest.raises(ValidationError, match="between 0 and"):
        rq.REFINE.validate({"dataset": "d", "positives": ids})


def test_openapi_document_mirrors_the_schemas():
    doc = build_openapi()
    assert doc["openapi"].startswith("3.")
    refine = doc["components"]["schemas"]["RefineRequest"]
    assert refine["additionalProperties"] is False
    assert refine["required"] == ["dataset"]
    assert set(refine["properties"]) == set(rq.REFINE.props)
    assert (
        refine["properties"]["random_negatives"]["maximum"] == rq.MAX_RANDOM_NEGATIVES
    )
    assert refine["properties"]["model"]["enum"] == list(rq.MODELS)
    search = doc["components"]["schemas"]["SearchRequest"]
    assert search["oneOf"] == [{"required": ["text"]}, {"required": ["sample_ids"]}]
    for path, ops in doc["paths"].items():
        assert path.startswith("/v1/")
        for op in ops.values():
            assert "200" in op["responses"]
            assert "400" in op["responses"]  # every endpoint refuses query params
    # OpenAPI 3.0: a null default only on a nullable schema
    for schema in doc["components"]["schemas"].values():
        for prop in schema.get("properties", {}).values():
            if "default" in prop and prop["default"] is None:
                assert prop.get("nullable") is True, prop
    save = doc["paths"]["/v1/results/{result_id}/save"]["post"]["responses"]
    assert "view_exists" in save["409"]["description"]
    assert "503" in doc["paths"]["/v1/datasets"]["get"]["responses"]


def _ranking(n: int) -> Ranking:
    rows = np.arange(n, dtype=np.int64)
    return Ranking(rows, -rows.astype(float), lambda r: [f"{i:024x}" for i in r])


def test_ranking_pages():
    r = _ranking(5)
    assert r.page(3, 10) == [
        {"id": f"{3:024x}", "score": -3.0},
        {"id": f"{4:024x}", "score": -4.0},
    ]
    assert r.page(5, 10) == []
    with pytest.raises(ValueError):
        Ranking(np.arange(3), np.zeros(2), lambda r: [])


def test_store_lru_ttl_and_bytes():
    now = [0.0]
    store = ResultStore(max_items=2, max_bytes=10_000, ttl_s=10, clock=lambda: now[0])
    a = store.put("refine", "d", "k", _ranking(3), {})
    b = store.put("refine", "d", "k", _ranking(3), {})
    assert store.get(a.result_id) is a  # a is now the most recent
    c = store.put("refine", "d", "k", _ranking(3), {})
    assert store.get(b.result_id) is None
    assert {store.get(a.result_id), store.get(c.result_id)} == {a, c}
    now[0] = 11.0
    assert store.get(a.result_id) is None and len(store) == 0
    assert store.nbytes == 0
    big = store.put("refine", "d", "k", _ranking(400), {})  # 6400 bytes
    store.put("refine", "d", "k", _ranking(400), {})
    assert store.get(big.result_id) is None  # evicted for bytes, not count
    assert store.nbytes == 6400
    assert len(a.result_id) == 32 and a.result_id != b.result_id
    assert store.delete(c.result_id) is False
    # a 404 says why a result is gone
    assert store.why_missing(b.result_id).startswith("it was dropped to make room")
    assert store.why_missing(a.result_id) == "it expired (not read for 10 s)"
    d = store.put("refine", "d", "k", _ranking(3), {})
    assert store.delete(d.result_id) is True
    assert store.why_missing(d.result_id) == "it was deleted"
    assert store.why_missing("0" * 32).startswith("it never existed, expired, or")
    # how full it is and why results left, for /v1/ready
    stats = store.stats()
    assert stats == {
        "held": 1,
        "max_results": 2,
        "bytes": 6400,
        "max_bytes": 10_000,
        "dropped_for_room": 2,
        "expired": 2,
    }


def test_results_dropped_for_room_are_said_once_in_a_while(caplog):
    """An operator saw no sign that --max-results was too small but clients'
    404s."""
    now = [0.0]
    store = ResultStore(max_items=1, ttl_s=1e6, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="fiftyone_clipbranches.service.results"):
        for t in (0.0, 5.0, 10.0, 20.0):
            now[0] = t
            store.put("refine", "d", "k", _ranking(3), {})
        assert len(caplog.records) == 1  # at most every FULL_WARNING_S
        assert "one last read 5 s ago left (1 dropped so far" in caplog.text
        assert "raise --max-results" in caplog.text
        now[0] = 20.0 + FULL_WARNING_S
        store.put("refine", "d", "k", _ranking(3), {})
        assert len(caplog.records) == 2 and "(4 dropped so far" in caplog.text


def test_pool_busy_and_timeout():
    pool = ComputePool(workers=1, max_queued=0, timeout_s=0.2)
    release = threading.Event()
    started = threading.Event()

    def block():
        started.set()
        release.wait(10)
        return "done"

    try:
        with pytest.raises(ApiError) as info:
            pool.run(block)
        assert info.value.status == 504 and info.value.code == "timeout"
        assert started.is_set()
        with pytest.raises(ApiError) as info:  # the slot is still held
            pool.run(lambda: 1)
        assert info.value.status == 503 and info.value.code == "busy"
        release.set()
        for _ in range(100):
            try:
                assert pool.run(lambda: 41 + 1) == 42
                break
            except ApiError:
                time.sleep(0.05)
        else:
            pytest.fail("the pool never freed its slot")
        with pytest.raises(ZeroDivisionError):
            pool.run(lambda: 1 / 0)
    finally:
        release.set()
        pool.shutdown()


def test_refine_schema_and_the_request_agree():
    from fiftyone_clipbranches.sdk.request import (
        LOCAL_ONLY_FIELDS,
        RefineRequest,
        request_field_names,
    )

    props = set(rq.REFINE.props) - {"dataset", "page_size"}
    by_ids = RefineRequest(
        positives=["a" * 24], negatives=[], random_negatives=5,
        neighbours_per_positive=2, query="q", index_key="k",
    ).to_json()  # fmt: skip
    by_tags = RefineRequest(tags=("p", "n")).to_json()
    assert set(by_ids) | set(by_tags) == props
    wire = (props - {"positive_tag", "negative_tag"}) | {"tags"}
    assert wire | set(LOCAL_ONLY_FIELDS) == set(request_field_names())
    defaults = rq.REFINE.validate({"dataset": "d", **by_ids}, "body")
    assert RefineRequest.from_json(defaults) == RefineRequest.from_json(by_ids)
    for name, prop in rq.REFINE.props.items():
        if name in request_field_names() and name not in ("positives", "negatives"):
            assert prop.default == getattr(RefineRequest(), name), name


def test_error_answers_cut_server_paths_and_keep_the_api_s_routes(tmp_path):
    from fiftyone_clipbranches.service.errors import ApiError, without_paths

    home = tmp_path / ".fiftyone"
    manifest = home / "indexes" / "64ab" / "index" / "shard-0001" / "manifest.json"
    spaced = tmp_path / "John Smith" / "x" / "codes.npy"  # quoted: spaces allowed
    message = f"shard 1 of 2 ({manifest}) cannot be opened: cannot read '{spaced}'."
    assert without_paths(message) == (
        "shard 1 of 2 (.../shard-0001/manifest.json) cannot be opened: cannot read"
        " '.../x/codes.npy'."
    )
    # routes, ratios, URLs and what a client sent (no such folder here) are kept
    kept = (
        "see /v1/openapi.json; 16 / 4 and/or http://host:5152/v1/ready; /tmp;"
        " dataset '/no-such-top-folder/ds' at /no-such-top-folder/3"
    )
    assert without_paths(kept) == kept
    error = ApiError(503, "index_unavailable", message, {"file": str(manifest)})
    body = error.to_json()["error"]
    assert str(tmp_path) not in body["message"] + body["details"]["file"]


def test_names_the_sdk_makes_are_accepted():
    """Keys of any script, 300-character names and view names with spaces, signs
    and other scripts: the sdk and CLI make them, and the service refused them."""
    body = {"dataset": "é 日本 😀 " + "d" * 300, "index_key": "日本_" + "k" * 300}
    assert rq.REFINE.validate(body)["index_key"] == body["index_key"]
    assert rq.SEARCH.validate({**body, "text": "a cat"})["dataset"] == body["dataset"]
    saved = rq.SAVE_VIEW.validate({"name": "saved 日本 #1 (v2)"})
    assert saved["name"] == "saved 日本 #1 (v2)"
    with pytest.raises(ValidationError, match="more than white space"):
        rq.SAVE_VIEW.validate({"name": "   "})


def test_a_draining_pool_refuses_at_once_the_jobs_waiting_for_a_thread():
    """A stopping service started the requests waiting for a thread in its grace,
    only to stop them at its end (the client waited 11.6 s for its 503)."""
    pool = ComputePool(workers=1, max_queued=2, timeout_s=30)
    release, started = threading.Event(), threading.Event()
    answers = {}

    def block():
        started.set()
        release.wait(10)
        return "done"

    def run(name, fn):
        try:
            answers[name] = pool.run(fn)
        except ApiError as e:
            answers[name] = (e.status, e.code)

    running = threading.Thread(target=run, args=("running", block))
    running.start()
    assert started.wait(5)
    waiting = threading.Thread(target=run, args=("waiting", lambda: "ran"))
    waiting.start()
    time.sleep(0.2)  # queued behind the running one
    pool.drain()
    waiting.join(5)
    assert answers == {"waiting": (503, "shutting_down")}
    release.set()
    running.join(5)
    assert answers["running"] == "done"
    pool.shutdown()
