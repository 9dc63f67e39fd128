"""Bounded fuzzing of the real service: whatever a client sends, the answer is JSON,
a 4xx error with a stable code when the request is wrong, and never a 5xx."""

from __future__ import annotations

import urllib.parse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import DATASET

from fiftyone_clipbranches.service import requests as rq

KNOWN_CODES = {
    "invalid_request",
    "invalid_json",
    "unsupported_media_type",
    "body_too_large",
    "not_found",
    "method_not_allowed",
    "dataset_not_found",
    "index_not_found",
    "result_not_found",
    "unknown_sample_ids",
    "no_positives",
    "contradictory_labels",
    "unprocessable",
    "view_exists",
    "unauthorized",
    "result_of_another_dataset",
}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
hex_ids = st.text(alphabet="0123456789abcdef", min_size=24, max_size=24)


def _field_values(name: str):
    specific = {
        "dataset": st.sampled_from([DATASET, "nope", ""]),
        "index_key": st.sampled_from(["clipbranches", "other", "../x", "a" * 101]),
        "positives": st.lists(hex_ids, max_size=3),
        "negatives": st.lists(hex_ids, max_size=3),
        "sample_ids": st.lists(hex_ids, max_size=3),
        "exclude": st.lists(hex_ids, max_size=3),
        "exclude_result": st.sampled_from(["0" * 32, "zz", "a" * 40]),
        "model": st.sampled_from([*rq.MODELS, "svm"]),
        "random_negatives": st.integers(-5, 200),
        "negative_weight": st.floats(-1, 5, allow_nan=False),
        "k": st.integers(-1, 1500),
        "page_size": st.integers(-1, 20_000),
    }.get(name)
    return json_values if specific is None else specific | json_values


def _bodies(schema):
    fields = {name: _field_values(name) for name in schema.props}
    fields["unexpected"] = json_values
    return st.fixed_dictionaries({}, optional=fields) | json_values


def _check(status: int, body) -> None:
    assert status < 500, body
    assert isinstance(body, dict)
    if status >= 400:
        assert set(body) == {"error"}
        assert body["error"]["code"] in KNOWN_CODES, body
        assert isinstance(body["error"]["message"], str)
        assert "Traceback" not in body["error"]["message"]


@FUZZ
@given(body=_bodies(rq.REFINE))
def test_fuzz_refine(call, body):
    status, _, answer = call("POST", "/v1/refine", body)
    _check(status, answer)


@FUZZ
@given(body=_bodies(rq.SEARCH))
def test_fuzz_search(call, body):
    status, _, answer = call("POST", "/v1/search", body)
    _check(status, answer)


@FUZZ
@given(body=_bodies(rq.NEXT_TO_LABEL))
def test_fuzz_next_to_label(call, body):
    status, _, answer = call("POST", "/v1/next_to_label", body)
    _check(status, answer)


@FUZZ
@given(
    body=_bodies(rq.SAVE_VIEW), result_id=st.sampled_from(["0" * 32, "zz", "a" * 40])
)
def test_fuzz_save(call, body, result_id):
    status, _, answer = call("POST", f"/v1/results/{result_id}/save", body)
    _check(status, answer)
    assert status >= 400  # none of these results exists


@FUZZ
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/json", "text/plain", None, "application/x-www-form-urlencoded"]
    ),
    path=st.sampled_from(
        [
            "/v1/refine",
            "/v1/search",
            "/v1/next_to_label",
            "/v1/results/" + "0" * 32 + "/save",
        ]
    ),
)
def test_fuzz_raw_bodies(call, raw, content_type, path):
    status, _, answer = call("POST", path, raw=raw, content_type=content_type)
    _check(status, answer)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4),
    query=st.dictionaries(
        st.text(min_size=1, max_size=6), st.text(max_size=6), max_size=3
    ),
    authorized=st.booleans(),
)
def test_fuzz_paths(call, method, path, query, authorized):
    url = "/v1/" + "/".join(urllib.parse.quote(p, safe="") for p in path)
    if query:
        url += "?" + urllib.parse.urlencode(query)
    status, _, answer = call(method, url, auth=authorized)
    _check(status, answer)
