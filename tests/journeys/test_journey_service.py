"""User journey (b): the index a user builds, served by ``clipbranches serve`` in
its own process, searched and refined through ``Client`` and through the App's
panel with the service configured.

Images on disk -> embeddings by a tiny open_clip checkpoint -> ``build_index``
(``make_user_index``) -> the ``clipbranches serve`` command -> HTTP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import fiftyone.operators as foo
import pytest
from fiftyone import ViewField as F
from service_process import running_service

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.service import Client
from fiftyone_clipbranches.service.client import TOKEN_ENV, URL_ENV

TOKEN = "journey-service-token-0123456789"
PANEL = "@clipbranches/clipbranches/clipbranches_panel"
REFINE = {"index_key": "clip", "model": "ensemble", "random_negatives": 30}


def _serve_command() -> list[str]:
    """The installed ``clipbranches`` command beside this interpreter."""
    script = Path(sys.executable).with_name("clipbranches")
    if not script.is_file():
        pytest.skip("the clipbranches command is not installed beside python")
    return [str(script), "serve"]


def _panel_refine(ds, state: dict, view=None) -> tuple[list[str], dict]:
    ctx = {
        "dataset": ds,
        "params": {"__method__": "refine", "panel_id": "p1", "panel_state": state},
    }
    if view is not None:
        ctx["view"] = view
    out = foo.execute_operator(PANEL, ctx=ctx)
    requests = [
        (r["operator_uri"], r.get("params") or {})
        for r in out.executor.to_json()["requests"]
    ]
    (view,) = [p for uri, p in requests if uri == "set_view"]
    stage = view["view"][-1]  # the round's ordered select, after the view's own
    stats = [
        p["state"]["last_stats"]
        for uri, p in requests
        if uri == "patch_panel_state" and "last_stats" in p["state"]
    ]
    return list(dict(stage["kwargs"])["sample_ids"]), stats[-1]


def test_user_index_served_and_refined_by_client_and_panel(
    make_user_index, monkeypatch
):
    ds = make_user_index(n_per_class=5, name="journey-service")
    ds.persistent = True  # visible to the service's process as it is to the App's
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    args = ["--dataset", ds.name, "--compute-workers", "2"]
    with running_service(args, TOKEN, command=_serve_command()) as service:
        client = Client(service.url, TOKEN)
        (served,) = client.datasets()
        (index,) = served["indexes"]
        assert (index["key"], index["n_samples"]) == ("clip", len(ds))
        assert index["supports_text"] is True
        # the local checkpoint by name and digest, not where it lies on the server
        clip = index["clip_model"]
        assert "/" not in clip["pretrained"] and clip["pretrained"].endswith(".pt")
        assert clip["checkpoint_sha256"]

        # Text search, then refinement on the user's picks, through Client.
        found = client.search(ds.name, text="a photo of a cat", k=30, index_key="clip")
        ranked = [item["id"] for item in found["items"]]
        assert len(ranked) == 30 and found["total"] == 30
        positives, negatives = ranked[:4], ranked[-3:]
        remote = client.refine(
            ds.name,
            positives=positives,
            negatives=negatives,
            index_key="clip",
            model="ensemble",
            random_negatives=30,
        )
        remote_ids = [item["id"] for item in client.iter_items(remote["result_id"])]
        local = sdk.refine_ranking(
            ds,
            positives=positives,
            negatives=negatives,
            model="ensemble",
            random_negatives=30,
            index_key="clip",
        )
        assert remote_ids == local.bundle.rowmap.ids_of(local.rows)
        assert set(positives) <= set(remote_ids)
        # What to label next beside that result (the panel's Look further)
        further = client.next_to_label(
            ds.name, exclude_result=remote["result_id"], positives=positives,
            negatives=negatives, index_key="clip", k=5,
        )  # fmt: skip
        here = sdk.next_to_label(
            ds, exclude=remote_ids, k=5, positives=positives, negatives=negatives,
            index_key="clip",
        )  # fmt: skip
        assert [item["id"] for item in further["items"]] == here.values("id")
        saved = client.save_view(remote["result_id"], "journey picks")
        assert saved["n_samples"] == len(remote_ids)
        ds.reload()  # saved by the service's process
        assert ds.load_saved_view("journey picks").values("id") == remote_ids

        # The panel: the same tags refined locally, then on the service.
        ds.select(positives).tag_samples("cb_positive")
        ds.select(negatives).tag_samples("cb_negative")
        state = {**REFINE, "score_field": "journey_score"}
        local_ids, local_stats = _panel_refine(ds, state)
        assert "service_url" not in local_stats and local_ids

        monkeypatch.setenv(URL_ENV, service.url)
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        panel_ids, panel_stats = _panel_refine(ds, state)
        assert panel_stats["service_url"] == service.url
        assert panel_ids == local_ids
        sdk.wait_for_writes(ds)  # the panel writes the score field behind the grid
        scored = ds.exists("journey_score")
        assert set(scored.values("id")) == set(panel_ids)

        # In a filtered grid: the service's ranking cut to the view, as here
        two = ds.match(F("ground_truth.label").is_in(["cat", "dog"]))
        served_ids, served_stats = _panel_refine(ds, state, view=two)
        monkeypatch.delenv(URL_ENV)
        here_ids, here_stats = _panel_refine(ds, state, view=two)
        assert served_ids == here_ids and set(here_ids) <= set(two.values("id"))
        assert served_stats["n_results"] == here_stats["n_results"]
        assert served_stats["in_view"] is here_stats["in_view"] is True
        assert service.proc.poll() is None
