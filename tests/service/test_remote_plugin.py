"""The plugin's remote switch: with the service secrets set, the refine operator and
the panel refine on the real service and write the same scores and views as a
local refinement."""

import json

import fiftyone.operators as foo
import numpy as np
import pytest

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.service.client import TOKEN_ENV, URL_ENV

PLUGIN = "@clipbranches/clipbranches"
PARAMS = {"index_key": "clipbranches", "model": "ensemble", "random_negatives": 60}


def _run(name: str, ctx: dict):
    out = foo.execute_operator(f"{PLUGIN}/{name}", ctx=ctx)
    requests = [
        (r["operator_uri"], r.get("params") or {})
        for r in out.executor.to_json()["requests"]
    ]
    return out.result, requests


def _shown_ids(requests) -> list[str]:
    (params,) = [p for uri, p in requests if uri == "set_view"]
    (stage,) = params["view"]
    return list(dict(stage["kwargs"])["sample_ids"])


def _scores(ds, field: str) -> dict:
    view = ds.exists(field)
    return dict(zip(*view.values(["id", field])))


@pytest.fixture
def no_remote(monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def test_refine_operator_uses_the_service_when_its_secrets_are_set(
    served_dataset, service, monkeypatch, no_remote
):
    ds = served_dataset
    params = {**PARAMS, "score_field": "local_score", "saved_view": "local"}
    local, requests = _run("refine", {"dataset": ds, "params": params})
    assert "error" not in local and "service_url" not in local
    local_ids = _shown_ids(requests)

    monkeypatch.setenv(URL_ENV, service.url)
    monkeypatch.setenv(TOKEN_ENV, service.token)
    params = {**PARAMS, "score_field": "remote_score", "saved_view": "remote"}
    remote, requests = _run("refine", {"dataset": ds, "params": params})
    assert remote["service_url"] == service.url
    assert _shown_ids(requests) == local_ids
    assert ds.load_saved_view("remote").values("id") == local_ids
    assert _scores(ds, "remote_score") == _scores(ds, "local_score")
    assert len(local_ids) == local["n_results"] == remote["n_results"]
    for key in ("model", "n_pos", "n_neg", "n_random_neg", "n_index", "n_unindexed"):
        assert remote[key] == local[key], key

    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    params["replace_view"] = True  # "remote" was saved above
    failed, requests = _run("refine", {"dataset": ds, "params": params})
    assert "unauthorized" in failed["error"] or "401" in failed["error"]
    assert [uri for uri, _ in requests] == ["notify", "show_output"]


def test_panel_refine_uses_the_service_when_its_secrets_are_set(
    served_dataset, service, monkeypatch, no_remote
):
    ds = served_dataset
    state = {**PARAMS, "score_field": "panel_score"}
    ctx = {
        "dataset": ds,
        "params": {"__method__": "refine", "panel_id": "p1", "panel_state": state},
    }
    _, requests = _run("clipbranches_panel", ctx)
    local_ids = _shown_ids(requests)
    sdk.wait_for_writes(ds)  # the panel writes the score field behind the grid
    local_scores = _scores(ds, "panel_score")

    monkeypatch.setenv(URL_ENV, service.url)
    monkeypatch.setenv(TOKEN_ENV, service.token)
    _, requests = _run("clipbranches_panel", ctx)
    (stats,) = [
        p["state"]["last_stats"]
        for uri, p in requests
        if uri == "patch_panel_state" and "last_stats" in p["state"]
    ]
    assert stats["service_url"] == service.url
    assert _shown_ids(requests) == local_ids
    sdk.wait_for_writes(ds)
    remote_scores = _scores(ds, "panel_score")
    assert remote_scores.keys() == local_scores.keys()
    assert np.array_equal(
        [remote_scores[i] for i in local_ids], [local_scores[i] for i in local_ids]
    )


def test_a_remote_failure_reads_the_same_in_the_panel_and_the_operator(
    served_dataset, service, monkeypatch, no_remote
):
    monkeypatch.setenv(URL_ENV, service.url)
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    ds = served_dataset
    _, op_requests = _run("refine", {"dataset": ds, "params": PARAMS})
    panel_ctx = {
        "dataset": ds,
        "params": {"__method__": "refine", "panel_id": "p1", "panel_state": PARAMS},
    }
    _, panel_requests = _run("clipbranches_panel", panel_ctx)
    (op_message,) = [p["message"] for uri, p in op_requests if uri == "notify"]
    panel_messages = [p["message"] for uri, p in panel_requests if uri == "notify"]
    assert panel_messages == [op_message]
    assert op_message.startswith("invalid bearer token")  # the service's words
    assert "HTTP 401, unauthorized" in op_message
    assert "Unexpected" not in op_message


def test_contradictory_labels_refused_by_the_service_are_shown_as_here(
    served_dataset, service, monkeypatch, no_remote, capsys
):
    """The service's 422 named 3 of the samples and no ids: the panel could not
    put them in the grid (its way out), and said "HTTP 422"."""
    from fiftyone_clipbranches.cli import main as cli_main

    monkeypatch.setenv(URL_ENV, service.url)
    monkeypatch.setenv(TOKEN_ENV, service.token)
    ds = served_dataset
    both = ds.match_tags("cb_positive").values("id")[:4]
    ds.select(both).tag_samples("cb_negative")
    try:
        ctx = {
            "dataset": ds,
            "params": {"__method__": "refine", "panel_id": "p1", "panel_state": PARAMS},
        }
        _, requests = _run("clipbranches_panel", ctx)
        (message,) = [p["message"] for uri, p in requests if uri == "notify"]
        assert "Mark positive or Mark negative" in message and "HTTP" not in message
        assert sorted(_shown_ids(requests)) == sorted(both)
        # the shell lists every one of them too
        monkeypatch.delenv(URL_ENV)
        capsys.readouterr()
        assert cli_main(["refine", ds.name, "--json"]) == 1
        said = capsys.readouterr()
        assert sorted(json.loads(said.out)["error"]["ids"]) == sorted(both)
        assert cli_main(["refine", ds.name]) == 1
        assert "(--json lists all 4 ids under error.ids)" in capsys.readouterr().err
    finally:
        ds.select(both).untag_samples("cb_negative")
