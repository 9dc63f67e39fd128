"""App polish: view targets, the orchestrator hint, readable panel inputs, and
search by an image file typed into the panel."""

import fiftyone as fo
from plugin_helpers import notifications, run_op
from test_plugin_operators import _resolve_input
from user_path import TINY_CLIP_NAME


def test_compute_embeddings_embeds_only_the_selected_samples(
    make_dataset_no_index, tiny_clip_checkpoint
):
    ds = make_dataset_no_index
    chosen = ds.values("id")[:3]
    params = {
        "field": "clip",
        "model": TINY_CLIP_NAME,
        "pretrained": str(tiny_clip_checkpoint),
        "view_target": "SELECTED_SAMPLES",
    }
    ctx = {"dataset": ds, "selected": chosen, "params": params}
    _, requests = run_op("compute_embeddings", ctx)
    assert notifications(requests, "success")[0].startswith("Embedded 3 samples")
    assert sorted(ds.exists("clip").values("id")) == sorted(chosen)


def test_compute_embeddings_offers_the_view_target_refine_the_apps_view(
    indexed_dataset,
):
    """Embedding works on the chosen target; a refinement, as a search and the
    panel's, learns from every label and finds matches within the App's view
    (test_plugin_operators), so it offers no target to choose."""
    assert "view_target" in _resolve_input("compute_embeddings", indexed_dataset, {})
    assert "view_target" not in _resolve_input("refine", indexed_dataset, {})


def test_long_running_forms_say_delegated_runs_need_an_orchestrator(
    indexed_dataset, monkeypatch
):
    import fiftyone as fo

    for allowed in (True, False):  # FiftyOne able to schedule, or not at all
        monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", allowed)
        for name in ("build_index", "update_index", "compute_embeddings"):
            props = _resolve_input(name, indexed_dataset, {"index_key": "fresh"})
            hint = props["orchestrator_hint"]["view"]
            assert hint["name"] == "Notice", name
            assert "fiftyone delegated launch" in hint["label"]
            assert "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true" in hint["label"]
            assert ("Schedule is not available" in hint["label"]) is not allowed


def test_panel_numbers_have_readable_labels_and_values(indexed_dataset):
    from test_plugin_panel import call, rendered

    props = rendered(call(indexed_dataset, "on_load"))
    slider = props["negative_weight"]["view"]
    assert slider["label"] == "Negative weight" and slider["label_position"] == "top"
    assert slider["value_precision"] == 1
    assert slider["value_label_display"] == "auto"  # a bubble shown covers the label
    for name in ("k", "random_negatives"):
        assert props[name]["type"]["int"] is True, name
        assert props[name]["view"]["name"] != "SliderView", name
    assert props["k"]["view"]["label"] == "Results (k, 1 to 1000)"


def test_refine_form_weight_slider_is_readable(indexed_dataset):
    slider = _resolve_input("refine", indexed_dataset, {})["negative_weight"]["view"]
    assert slider["label_position"] == "top" and slider["value_precision"] == 1
    assert slider["value_label_display"] == "auto"


def test_panel_searches_by_an_image_path_typed_in_the_query_box(make_user_index):
    from test_plugin_panel import call

    ds = make_user_index(5)
    sample = ds.skip(3).first()
    state = {"index_key": "clip", "query": sample.filepath, "k": 5}
    requests = call(ds, "search", state=state)
    assert notifications(requests, "success") == [
        f"5 nearest samples to the image {sample.filepath}"
    ]
    (stages,) = [p["view"] for uri, p in requests if uri == "set_view"]
    assert fo.DatasetView._build(ds, stages).first().id == sample.id

    state["query"] = "http://127.0.0.1:9/cat.jpg"
    requests = call(ds, "search", state=state)
    assert "offline" in notifications(requests, "error")[0]

    # a text search in the grid's filtered view keeps to it (and keeps the filter)
    cats = ds.match(fo.ViewField("ground_truth.label") == "cat")
    state = {"index_key": "clip", "query": "a photo of a cat", "k": 3}
    requests = call(ds, "search", state=state, view=cats)
    assert notifications(requests, "success") == [
        "3 nearest samples to 'a photo of a cat' in the current view"
    ]
    (stages,) = [p["view"] for uri, p in requests if uri == "set_view"]
    shown = fo.DatasetView._build(ds, stages)
    assert shown.values("ground_truth.label") == ["cat"] * 3
    # the operators on the same index: search says how many; saving shows the view
    params = {"index_key": "clip", "query_type": "text", "text": "a cat", "k": 4}
    _, requests = run_op("search", {"dataset": ds, "params": params})
    assert notifications(requests, "success") == ["4 nearest samples to 'a cat'"]
    ctx = {"dataset": ds, "view": shown, "params": {"name": "cats"}}
    _, requests = run_op("save_results_view", ctx)
    assert [uri for uri, _ in requests][:2] == ["reload_dataset", "set_view"]
    assert ds.load_saved_view("cats").values("id") == shown.values("id")
    # the panel's Save view never replaces a view the user saved by hand
    from test_plugin_panel import call as panel_call

    ds.save_view("hand", ds.limit(2), description="mine")
    requests = panel_call(ds, "save_view", state={"view_name": "hand"}, view=shown)
    assert "clipbranches did not save" in notifications(requests, "error")[0]
    assert ds.load_saved_view("hand").values("id") == ds.limit(2).values("id")
    # one it saved is replaced only once the user confirms
    from test_plugin_panel import patched_state

    named = {"view_name": "cats, panel"}
    panel_call(ds, "save_view", state=named, view=shown)
    asked = panel_call(ds, "save_view", state=named, view=shown[:1])
    pending = patched_state(asked)
    assert pending["confirm"] == "replace_view" and pending["replace_size"] == 3
    assert len(ds.load_saved_view("cats, panel")) == 3
    done = panel_call(ds, "confirm", state={**named, **pending}, view=shown[:1])
    assert notifications(done, "success") == ["Replaced view 'cats, panel' (1 sample)"]

    # that saved view, opened again by name, is where the next search looks
    from test_plugin_panel import patched_state, rendered

    state = {"index_key": "clip", "query": "a photo of a dog", "k": 10}
    requests = call(ds, "search", state=state, view_name="cats")
    (stages,) = [p["view"] for uri, p in requests if uri == "set_view"]
    assert set(fo.DatasetView._build(ds, stages).values("id")) == set(
        shown.values("id")
    )
    # an error stays in the panel after its toast; the operator's opens a dialog
    requests = call(ds, "refine", state={"index_key": "clip"})
    (error,) = notifications(requests, "error")
    assert patched_state(requests)["last_error"] == error
    assert "last_error" in rendered(call(ds, "redraw", state=patched_state(requests)))
    _, requests = run_op("refine", {"dataset": ds, "params": {"index_key": "clip"}})
    assert [uri for uri, _ in requests] == ["notify", "show_output"]
    # the App offers the models that meet the interactive target
    assert "branches" not in _resolve_input("refine", ds, {})["model"]["type"]["values"]

    # a sample added since the build: the panel's and the operator's search say so
    ds.add_sample(fo.Sample(filepath=ds.first().filepath))
    requests = call(ds, "search", state={"index_key": "clip", "query": "a cat", "k": 2})
    assert notifications(requests, "success") == [
        "2 nearest samples to 'a cat'; 1 sample added since the last build or update not searched (update the index)"
    ]
    _, requests = run_op("search", {"dataset": ds, "params": params})
    assert notifications(requests, "success") == [
        "4 nearest samples to 'a cat'; 1 sample added since the last build or update not searched (update the index)"
    ]
