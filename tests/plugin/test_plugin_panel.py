"""The relevance-feedback panel driven headlessly, method by method."""

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from plugin_helpers import notifications, run_op, uris

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.models import MODELS
from fiftyone_clipbranches.sdk.round_history import STORE_NAME


def call(
    ds,
    method,
    state=None,
    selected=(),
    alt=(),
    view=None,
    view_name=None,
    filters=None,
    panel_id="p1",
):
    ctx = {
        "dataset": ds,
        "selected": list(selected) + list(alt),
        "selected_samples": [{"id": i, "type": "default"} for i in selected]
        + [{"id": i, "type": "alt"} for i in alt],
        "params": {
            "__method__": method,
            "panel_id": panel_id,
            "panel_state": dict(state or {}),  # the panel writes into its state
        },
    }
    if view is not None:
        ctx["view"] = view
    if view_name is not None:  # a saved view opened in the App's selector
        ctx["view_name"] = view_name
    if filters is not None:  # the sidebar's
        ctx["filters"] = filters
    return run_op("clipbranches_panel", ctx)[1]


def shown_stages(requests) -> list[dict]:
    """The stages of the view a request put in the grid."""
    (view,) = [p["view"] for uri, p in requests if uri == "set_view"]
    return view


def shown_ids(requests) -> list[str]:
    """The ids of the ordered selection a request put in the grid."""
    (view,) = [p["view"] for uri, p in requests if uri == "set_view"]
    return dict(view[-1]["kwargs"])["sample_ids"]


def reset_labels(ds, **tags):
    """Reset labels, then confirm it, as the panel asks."""
    state = patched_state(call(ds, "reset_labels", state=tags))
    assert state["confirm"] == "reset_labels"
    return call(ds, "confirm", state={**tags, **state})


def patched_state(requests) -> dict:
    state = {}
    for uri, params in requests:
        if uri == "patch_panel_state":
            state.update(params["state"])
    return state


def rendered(requests) -> dict:
    (output,) = [p["output"] for uri, p in requests if uri == "show_panel_output"]
    return output["type"]["properties"]


def test_on_load_sets_defaults_selection_style_and_renders(indexed_dataset):
    requests = call(indexed_dataset, "on_load")
    state = patched_state(requests)
    assert (
        state["index_key"] == "cb" and state["k"] == 60 and state["model"] == "cascade"
    )
    style = [p for uri, p in requests if uri == "set_sample_selection_style"]
    assert style == [{"default": "green-checkmark", "alt": "red-checkmark"}]
    props = rendered(requests)
    for name in ("query", "k", "search", "model", "random_negatives", "refine"):
        assert name in props
    weight = props["negative_weight"]["view"]["description"]
    assert weight.endswith("times a positive: now 1.0")  # the slider hides it
    props = rendered(call(indexed_dataset, "on_load", state={"negative_weight": 2.5}))
    assert props["negative_weight"]["view"]["description"].endswith("now 2.5")
    assert props["random_negatives"]["type"]["max"] == 2000
    labels = [c["label"] for c in props["model"]["view"]["choices"]]
    assert [label for label in labels if label.endswith(" (default)")] == [
        MODELS["cascade"].label + " (default)"
    ]
    # the whole dataset is searched, unless a view narrows the grid: said so
    assert "scope" not in props
    narrowed = rendered(call(indexed_dataset, "on_load", view=indexed_dataset[:5]))
    assert (
        "Searches and refinements look within the current view"
        in narrowed["scope"]["default"]
    )


def test_mark_buttons_tag_samples_alt_selection_is_negative(indexed_dataset):
    ds = indexed_dataset
    a, b, c = ds.values("id")[:3]
    requests = call(ds, "mark_positive", selected=[a, b], alt=[c])
    assert {"clear_selected_samples", "reload_dataset"} <= set(uris(requests))
    assert set(ds.match_tags("cb_positive").values("id")) == {a, b}
    assert ds.match_tags("cb_negative").values("id") == [c]
    call(ds, "mark_negative", selected=[a])
    assert ds.match_tags("cb_positive").values("id") == [b]
    assert set(ds.match_tags("cb_negative").values("id")) == {a, c}
    requests = call(ds, "mark_positive")
    assert "select samples" in notifications(requests, "error")[0]
    # Reset labels asks first; Cancel keeps them
    asked = call(ds, "reset_labels")
    props = rendered(asked)
    assert "1 positive and 2 negative labels" in props["confirm_question"]["view"][
        "label"
    ] and not notifications(asked, "success")
    assert ds.count_sample_tags() == {"cb_positive": 1, "cb_negative": 2}
    switched = call(
        ds,
        "on_change_dataset",
        state={"confirm": "reset_labels", "showing": "all", "by_score": True},
    )
    assert patched_state(switched)["confirm"] is None  # asked about another dataset
    assert patched_state(switched)["showing"] is None  # a result of the other one
    assert notifications(switched, "warning") == []
    assert "confirm_question" not in rendered(switched)
    cancelled = call(ds, "cancel", state={"confirm": "reset_labels"})
    assert patched_state(cancelled) == {"confirm": None}
    assert "confirm_question" not in rendered(cancelled)
    assert ds.count_sample_tags() == {"cb_positive": 1, "cb_negative": 2}
    requests = reset_labels(ds)
    assert notifications(requests, "success") == ["Removed 3 labels"]
    assert ds.count_sample_tags() == {}
    # a confirmation with nothing asked does nothing
    assert not notifications(call(ds, "confirm"), "success")


def test_reset_labels_asks_again_when_the_labels_changed_since(image_indexed_dataset):
    """Another user's labels made since the question were removed with it."""
    ds = image_indexed_dataset
    ids = ds.values("id")
    call(ds, "mark_positive", selected=ids[:2])
    asked = patched_state(call(ds, "reset_labels"))
    counts = ["cb_positive", 2, "cb_negative", 0]
    assert asked == {"confirm": "reset_labels", "reset_counts": counts}
    call(ds, "mark_negative", selected=ids[5:10], panel_id="p2")  # another user
    shown = rendered(call(ds, "redraw", state=asked))  # the question as asked
    assert "the 2 positive and 0 negative labels" in str(shown["confirm_question"])
    again = call(ds, "confirm", state=asked)
    assert ds.count_sample_tags() == {"cb_positive": 2, "cb_negative": 5}
    (warning,) = notifications(again, "warning")
    assert "there are now 2 positives and 5 negatives" in warning
    counts = ["cb_positive", 2, "cb_negative", 5]
    assert patched_state(again) == {"confirm": "reset_labels", "reset_counts": counts}
    done = call(ds, "confirm", state=patched_state(again))
    assert notifications(done, "success") == ["Removed 7 labels"]
    assert ds.count_sample_tags() == {}


def test_two_panels_on_one_dataset_keep_their_own_results(
    image_indexed_dataset, monkeypatch
):
    """Save view and Show all took whichever panel refined last on the dataset
    (another user's ranking, without this user's positives)."""
    ds = image_indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    planes, ships = ids[labels == "airplane"], ids[labels == "ship"]
    state = {"index_key": "cb", "model": "linear", "showing": "refine"}
    a = {**state, "positive_tag": "a_pos", "negative_tag": "a_neg"}
    b = {**state, "positive_tag": "b_pos", "negative_tag": "b_neg"}
    call(ds, "mark_positive", state=a, selected=planes[:4].tolist())
    call(ds, "mark_negative", state=a, selected=ships[:4].tolist())
    call(ds, "mark_positive", state=b, selected=ships[4:8].tolist(), panel_id="p2")
    call(ds, "mark_negative", state=b, selected=planes[4:8].tolist(), panel_id="p2")
    n_a = patched_state(call(ds, "refine", state=a))["last_stats"]["n_results"]
    call(ds, "refine", state=b, panel_id="p2")  # the score field now holds b's
    mine = sdk.refine(
        ds, index_key="cb", model="linear", tags=("a_pos", "a_neg"), score_field=None
    )
    expected = list(mine.ids)
    assert len(expected) == n_a
    # Show all: a's ranking, by id, as the field holds b's round
    requests = call(ds, "show_all", state=a)
    (said,) = notifications(requests, "success")
    assert said.startswith(f"{n_a} matches in ranking order (the score field")
    (view,) = [p["view"] for uri, p in requests if uri == "set_view"]
    assert dict(view[-1]["kwargs"])["sample_ids"] == expected
    # Save view: a's ranking, every positive of a's in it
    call(ds, "save_view", state={**a, "view_name": "a result"})
    saved = ds.load_saved_view("a result").values("id")
    assert saved == expected and set(planes[:4]) <= set(saved)
    ds.delete_saved_view("a result")
    # a saved workspace gives the panels of two Apps one panel id: each App
    # server keeps its own
    from fiftyone_clipbranches.sdk import round_history

    mine = round_history.APP_PROCESS
    monkeypatch.setattr(round_history, "APP_PROCESS", "another-app")
    call(ds, "refine", state=b)  # "p1" in the other App
    monkeypatch.setattr(round_history, "APP_PROCESS", mine)
    call(ds, "save_view", state={**a, "view_name": "a result"})
    assert ds.load_saved_view("a result").values("id") == expected
    ds.delete_saved_view("a result")
    # a reload or a new tab: a question or error of before is gone; the grid's
    # view by a score field another round wrote since is said, Show all offered
    stale = {**a, "showing": "all", "confirm": "reset_labels", "last_error": "old"}
    shown_by_id = call(ds, "on_load", state={**stale, "by_score": False})
    assert notifications(shown_by_id, "warning") == []  # its own ranking, by id
    requests = call(ds, "on_load", state={**stale, "by_score": True})
    assert patched_state(requests)["showing"] == "refine"
    assert patched_state(requests)["confirm"] is None
    assert patched_state(requests)["last_error"] is None
    (warning,) = notifications(requests, "warning")
    assert "another round" in warning and "Show all shows your last result" in warning
    # a ranking no longer kept: Save view and Show all say so; on_load says
    # nothing of a score field it cannot judge
    store = foo.ExecutionStore.create(STORE_NAME, ds._doc.id)
    store.delete(f"last_result/p1@{mine}")
    requests = call(ds, "on_load", state={**stale, "by_score": True})
    assert notifications(requests, "warning") == []
    for method in ("save_view", "show_all"):
        requests = call(ds, method, state={**a, "view_name": "a result"})
        assert "no longer kept" in notifications(requests, "error")[0]
    assert "a result" not in ds.list_saved_views()
    ds.untag_samples(["a_pos", "a_neg", "b_pos", "b_neg"])


def test_show_all_by_score_with_tied_scores(image_indexed_dataset):
    """A tree's matches all tie: the field's order of ties is not the ranking's,
    and Show all took the field for another round's."""
    ds = image_indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    vehicles = ids[np.isin(labels, ["airplane", "ship", "automobile", "truck"])]
    call(ds, "mark_positive", selected=vehicles[::3].tolist())
    call(ds, "mark_negative", selected=ids[labels == "cat"][:10].tolist())
    state = {"index_key": "cb", "model": "tree"}
    n = patched_state(call(ds, "refine", state=state))["last_stats"]["n_results"]
    sdk.wait_for_writes(ds, "clipbranches_score")  # written behind the grid
    scores = ds.exists("clipbranches_score").values("clipbranches_score")
    assert n == len(scores) and len(set(scores)) < n / 2  # ties
    (said,) = notifications(call(ds, "show_all", state=state))
    assert said == f"{n} matches by score"
    reset_labels(ds)


def test_round_history_keeps_every_record_of_concurrent_appends(indexed_dataset):
    """Two appends at once each wrote back the list it had read: records lost."""
    import threading

    from fiftyone.operators.executor import ExecutionContext

    from fiftyone_clipbranches.sdk.round_history import RoundHistory

    ds = indexed_dataset

    def history(panel):
        return RoundHistory(
            ExecutionContext(
                request_params={"dataset_name": ds.name, "params": {"panel_id": panel}}
            )
        )

    history("w0").clear()

    def work(panel):
        h = history(panel)
        for i in range(8):
            h.append("search", query=f"{panel} {i}", k=1)

    threads = [threading.Thread(target=work, args=(f"w{j}",)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = history("w0").list()
    assert len(records) == 32
    assert sorted(r["round"] for r in records) == list(range(1, 33))
    assert {r["panel"].split("@")[0] for r in records} == {"w0", "w1", "w2", "w3"}
    history("w0").clear()


def test_custom_tag_names_are_used(image_indexed_dataset):
    ds = image_indexed_dataset
    a = ds.values("id")[0]
    call(ds, "mark_positive", state={"positive_tag": "good"}, selected=[a])
    assert ds.count_sample_tags() == {"good": 1}
    # a tag box holding white space is an emptied box: the default tag
    b = ds.values("id")[1]
    call(ds, "mark_negative", state={"negative_tag": "  "}, selected=[b])
    assert ds.count_sample_tags() == {"good": 1, "cb_negative": 1}
    # a tag is matched as written: "sp " is not "sp" (the refinement took the
    # samples tagged "sp" for the user's "sp " positives)
    ids = ds.values("id")
    mine, other = ids[2:5], ids[5:10]
    ds.select(other).tag_samples("sp")
    state = {"positive_tag": "sp ", "index_key": "cb", "model": "ensemble"}
    call(ds, "mark_positive", state=state, selected=mine)
    requests = call(ds, "refine", state=state)
    stats = patched_state(requests)["last_stats"]
    assert stats["n_pos"] == 3
    # one tag for both labels: said at once, not only when a button is pressed
    same = {"positive_tag": "sp", "negative_tag": "sp", "index_key": "cb"}
    assert "must differ" in str(rendered(call(ds, "redraw", state=same))["same_tags"])
    assert "same_tags" not in rendered(call(ds, "redraw", state=state))


def test_refine_rounds_are_recorded_in_the_execution_store(indexed_dataset):
    ds = indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    planes, others = ids[labels == "airplane"], ids[labels != "airplane"]
    call(ds, "mark_positive", selected=planes[:10].tolist(), alt=others[:15].tolist())
    state = {"index_key": "cb", "model": "ensemble", "random_negatives": 100}
    requests = call(ds, "refine", state=state)
    assert uris(requests)[:2] == ["set_view", "patch_panel_state"]
    assert "matches" in notifications(requests, "success")[0]
    stats = patched_state(requests)["last_stats"]
    assert (
        stats["n_pos"] == 10 and stats["n_neg"] == 15 and stats["model"] == "ensemble"
    )
    assert "last_round" in rendered(requests)
    # samples selected but not marked: refused, not left out without a word
    unmarked = others[20:23].tolist()
    requests = call(ds, "refine", state=state, selected=[planes[0], *unmarked])
    (error,) = notifications(requests, "error")
    assert error.startswith("3 selected samples are not marked: press Mark positive")
    assert "set_view" not in uris(requests)
    # marked ones selected are refined from as they are
    requests = call(ds, "refine", state=state, selected=planes[:2].tolist())
    assert patched_state(requests)["last_stats"]["n_pos"] == 10
    too_many = {"index_key": "cb", "random_negatives": 99999}
    (error,) = notifications(call(ds, "refine", state=too_many), "error")
    assert "Random negatives must be from 0 to 2000" in error
    requests = call(ds, "refine", state={"index_key": "cb", "model": "tree"})
    assert "history" in rendered(requests)
    rounds = foo.ExecutionStore.create(STORE_NAME, ds._doc.id).get("rounds")
    assert [(r["round"], r["kind"], r["model"]) for r in rounds] == [
        (1, "refine", "ensemble"),
        (2, "refine", "ensemble"),
        (3, "refine", "tree"),
    ]
    asked = call(ds, "clear_history", state={"confirm": None})
    assert "3 rounds" in rendered(asked)["confirm_question"]["view"]["label"]
    assert len(foo.ExecutionStore.create(STORE_NAME, ds._doc.id).get("rounds")) == 3
    call(ds, "confirm", state=patched_state(asked))
    assert foo.ExecutionStore.create(STORE_NAME, ds._doc.id).get("rounds") is None


def test_mark_and_reset_keep_a_sidebar_filter_as_view_stages(indexed_dataset):
    """The App's reload after a Mark drops the sidebar's filters: the grid showed
    every sample, and the next search ran over all of them."""
    import fiftyone.core.view as fov

    ds = indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    ships = np.array(ds.values("id"))[labels == "ship"]
    filters = {
        "ground_truth.label": {
            "values": ["ship"],
            "exclude": False,
            "isMatching": False,
        }
    }

    def asked_now():  # the question of Reset labels, with the labels it counts
        tags = ds.count_sample_tags()
        counts = ["cb_positive", tags.get("cb_positive", 0)]
        counts += ["cb_negative", tags.get("cb_negative", 0)]
        return {"state": {"confirm": "reset_labels", "reset_counts": counts}}

    for method, args in (
        ("mark_positive", lambda: {"selected": ships[:2].tolist()}),
        ("confirm", asked_now),
    ):
        requests = call(ds, method, filters=filters, **args())
        order = uris(requests)
        assert order.index("set_view") == order.index("reload_dataset") + 1, order
        (stages,) = [p["view"] for uri, p in requests if uri == "set_view"]
        kept = fov.DatasetView._build(ds, stages)
        assert sorted(kept.values("id")) == sorted(ships.tolist()), method
        # without a filter, nothing but the reload
        plain = call(ds, method, **args())
        assert "set_view" not in uris(plain) and "reload_dataset" in uris(plain)
    # a question (Reset labels asks first) changes the panel's state, which drops
    # the filters at once: they are stages before it is asked
    asked = call(ds, "reset_labels", filters=filters)
    assert patched_state(asked)["confirm"] == "reset_labels"
    (stages,) = [p["view"] for uri, p in asked if uri == "set_view"]
    assert len(fov.DatasetView._build(ds, stages)) == len(ships)
    # over a saved view opened by name (FiftyOne's ctx.view leaves its filters out)
    ds.save_view("half", ds.take(len(ds) // 2, seed=1))
    half = ds.load_saved_view("half")
    in_half = sorted(set(half.values("id")) & set(ships.tolist()))
    requests = call(
        ds, "mark_negative", selected=in_half[:1], view_name="half", filters=filters
    )
    (stages,) = [p["view"] for uri, p in requests if uri == "set_view"]
    assert sorted(fov.DatasetView._build(ds, stages).values("id")) == in_half
    ds.delete_saved_view("half")
    # an action that fails changes the panel's state too (its error): the
    # filters became stages, the grid kept its samples
    failed = call(ds, "mark_positive", filters=filters)  # nothing selected
    assert patched_state(failed)["last_error"]
    (stages,) = [p["view"] for uri, p in failed if uri == "set_view"]
    assert sorted(fov.DatasetView._build(ds, stages).values("id")) == sorted(
        ships.tolist()
    )
    reset_labels(ds)


def test_query_ball_refines_the_panel_query(indexed_dataset):
    ds = indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    call(ds, "mark_positive", selected=ids[labels == "airplane"][:5].tolist())
    requests = call(ds, "refine", state={"index_key": "cb", "model": "ball"})
    (error,) = notifications(requests, "error")
    assert error.startswith("Query ball refines a text search: type the text")
    assert "in the query box (Text, or an image path or URL)" in error
    state = {"index_key": "cb", "model": "ball", "query": "an airplane"}
    requests = call(ds, "refine", state=state)
    # the query reaches the model: this index has no CLIP model to embed it
    assert "CLIP model" in notifications(requests, "error")[0]
    assert "set_view" not in uris(requests)
    # a score field the App's words name
    state = {"index_key": "cb", "score_field": "my score!"}
    (error,) = notifications(call(ds, "refine", state=state), "error")
    assert error.startswith("Score field 'my score!' is not a field name: use letters")
    ds.add_sample_field("a_label", fo.StringField)
    state = {"index_key": "cb", "score_field": "a_label"}
    (error,) = notifications(call(ds, "refine", state=state), "error")
    assert "not a number field: enter another name in Score field" in error
    ds.delete_sample_field("a_label")


def test_a_search_by_example_and_the_query_ball_on_an_index_from_images(
    cifar_dir, tiny_clip_checkpoint
):
    """Alt-clicked samples (marked negative) were searched by as examples; the
    query ball refused an empty query box after a text search, and its history row
    did not say which text it refined."""
    import fiftyone.core.view as fov
    from fiftyone import ViewField as F
    from user_path import build_user_index, images_dataset

    ds = images_dataset(cifar_dir, 6)
    try:
        build_user_index(ds, tiny_clip_checkpoint, "t")
        ids = ds.values("id")
        base = {"index_key": "t", "k": 8}
        requests = call(ds, "search", state=base, alt=ids[:2])
        (error,) = notifications(requests, "error")
        assert error.startswith("the selected samples are all alt-clicked")
        assert "set_view" not in uris(requests)
        requests = call(ds, "search", state=base, selected=ids[2:3], alt=ids[:2])
        (found,) = notifications(requests, "success")
        assert found.startswith("8 nearest samples to 1 selected sample (2 alt-clicked")
        shown = rendered(
            call(ds, "on_load", state=base, selected=ids[2:4], alt=ids[:1])
        )
        assert "3 selected (1 alt-clicked);" in str(shown["labels"])
        (view,) = [p["view"] for uri, p in requests if uri == "set_view"]
        shown = dict(view[0]["kwargs"])["sample_ids"]
        assert shown == sdk.search_ids(ds, sample_ids=[ids[2]], k=8, index_key="t")[0]
        # a text search, then the ball with the box emptied: it refines that text
        call(ds, "search", state={**base, "query": "an airplane"})
        nearest, _ = sdk.search_ids(ds, text="an airplane", k=3, index_key="t")
        call(ds, "mark_positive", selected=nearest)
        ball = {**base, "model": "ball", "query": ""}
        requests = call(ds, "refine", state=ball)
        assert notifications(requests, "error") == []
        assert "set_view" in uris(requests)
        table = rendered(call(ds, "on_load", state=ball))["history"]
        assert "ball 'an airplane': 3+ / 0-" in str(table), table
        # a search by selection since: the last text searched still; another
        # user's panel searching another text since changes nothing here
        call(ds, "search", state=base, selected=ids[5:6])
        call(ds, "search", state={**base, "query": "a ship"}, panel_id="p2")
        requests = call(ds, "refine", state=ball)
        assert notifications(requests, "error") == []
        table = str(rendered(call(ds, "on_load", state=ball))["history"])
        assert table.count("ball 'an airplane': 3+ / 0-") == 2, table
        call(ds, "refine", state=ball, panel_id="p2")
        table = str(rendered(call(ds, "on_load", state=ball))["history"])
        assert "ball 'a ship': 3+ / 0-" in table, table
        # no negative and Random negatives 0: refused in words (not the ball's
        # case: it has its query for reference)
        none = {**base, "model": "linear", "random_negatives": 0}
        (error,) = notifications(call(ds, "refine", state=none), "error")
        assert error.startswith("no negatives to learn from: no sample is marked")
        # Mark keeps a sidebar filter as view stages
        filters = {
            "ground_truth.label": {
                "values": ["cat"],
                "exclude": False,
                "isMatching": False,
            }
        }
        cats = ds.match(F("ground_truth.label") == "cat").values("id")
        requests = call(ds, "mark_negative", selected=cats[:1], filters=filters)
        (stages,) = [p["view"] for uri, p in requests if uri == "set_view"]
        kept = fov.DatasetView._build(ds, stages)
        assert sorted(kept.values("id")) == sorted(cats)
        # another index is proposed a key no index has
        (prompt,) = [
            p
            for uri, p in call(ds, "open_build_index")
            if uri == "prompt_user_for_operation"
        ]
        assert prompt["params"] == {"index_key": "clipbranches"}
        sdk.rename_index(ds, "t", "clipbranches")
        (prompt,) = [
            p
            for uri, p in call(ds, "open_build_index")
            if uri == "prompt_user_for_operation"
        ]
        assert prompt["params"] == {"index_key": "clipbranches_2"}
    finally:
        ds.delete()


def test_a_refinement_without_any_negative_is_refused_in_words(indexed_dataset):
    """With no negative marked and Random negatives 0, the linear classifier failed
    in its own words ("y has no negative (0) label") and the cascade returned the
    positives and their neighbours, saying nothing."""
    ds = indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    planes = np.array(ds.values("id"))[labels == "airplane"][:5].tolist()
    call(ds, "mark_positive", selected=planes)
    for model in ("linear", "cascade"):
        state = {"index_key": "cb", "model": model, "random_negatives": 0}
        requests = call(ds, "refine", state=state)
        (error,) = notifications(requests, "error")
        assert error.startswith("no negatives to learn from: no sample is marked")
        assert "empty Random negatives" in error and "set_view" not in uris(requests)
    with pytest.raises(ValueError, match="random_negatives is 0"):
        sdk.refine(ds, index_key="cb", random_negatives=0, score_field=None)
    # a negative labelled on a sample added since the build: said so
    added = ds.add_sample(fo.Sample(filepath=ds.first().filepath))
    sdk.label_samples(ds, [], [added])
    with pytest.raises(ValueError, match="the 1 sample labelled negative is not in"):
        sdk.refine(ds, index_key="cb", random_negatives=0, score_field=None)


def test_refine_without_labels_is_a_notification_that_stays(indexed_dataset):
    ds = indexed_dataset
    requests = call(ds, "refine", state={"index_key": "cb"})
    (error,) = notifications(requests, "error")
    assert "no positive samples" in error and "set_view" not in uris(requests)
    # the toast goes in seconds; the panel keeps saying it until the next action
    state = {"index_key": "cb", **patched_state(requests)}
    assert state["last_error"] == error
    shown = rendered(call(ds, "redraw", state=state))["last_error"]["view"]
    assert shown["name"] == "Error" and shown["description"] == error
    state = {**state, "k": 5}
    after = call(ds, "search", state=state, selected=ds.values("id")[:1])
    assert patched_state(after)["last_error"] is None
    assert "last_error" not in rendered(after)
    # cleared before the action's own operations: clearing the selection makes
    # the App call the panel again, with the state it has by then
    failed = {**state, "last_error": error}
    after = call(ds, "mark_positive", state=failed, selected=ds.values("id")[:1])
    order = uris(after)
    assert order.index("patch_panel_state") < order.index("clear_selected_samples")
    assert patched_state(after)["last_error"] is None
    # which the App does with the state from before the action: the selection it
    # cleared clears the error, a selection made later keeps it
    stale = call(ds, "on_change_selected", state=failed)
    assert patched_state(stale)["last_error"] is None
    assert "last_error" not in rendered(stale)
    kept = call(ds, "on_change_selected", state=failed, selected=ds.values("id")[:1])
    # no other state either: the App drops the grid's sidebar filters whenever a
    # panel's state changes
    assert patched_state(kept) == {}
    assert rendered(kept)["last_error"]["view"]["description"] == error
    reset_labels(ds)


def test_contradictory_labels_are_shown_and_the_next_round_looks_past_them(
    indexed_dataset,
):
    """The samples tagged both ways are put in the grid: as the panel's own
    result (an ordered select), so the next round looks in the user's view, not
    in them; and the error stays though showing them cleared the selection."""
    ds = indexed_dataset
    ids = ds.values("id")
    call(ds, "mark_positive", selected=ids[:6], alt=ids[-4:])
    ds.select(ids[:1]).tag_samples("cb_negative")
    requests = call(ds, "refine", state={"index_key": "cb"})
    (error,) = notifications(requests, "error")
    assert "Mark positive or Mark negative" in error
    (shown,) = [p["view"] for uri, p in requests if uri == "set_view"]
    assert dict(shown[-1]["kwargs"]) == {"sample_ids": ids[:1], "ordered": True}
    state = {"index_key": "cb", **patched_state(requests)}
    assert state["last_error"] == error
    assert state["showing"] == "conflict"  # not a round's result: Save view saves it
    # the App calls the panel as the selection goes with the view: the error stays
    first = call(ds, "on_change_selected", state=state)
    state.update(patched_state(first))
    assert state["last_error"] == error
    assert rendered(first)["last_error"]["view"]["description"] == error
    # mended, the next round looks past the panel's own view of the conflict
    call(ds, "mark_positive", state=state, selected=ids[:1])
    conflict = ds.select(ids[:1], ordered=True)
    requests = call(ds, "refine", state={"index_key": "cb"}, view=conflict)
    assert patched_state(requests)["last_stats"]["in_view"] is False
    reset_labels(ds)


def test_a_folder_in_the_query_box_is_refused(indexed_dataset, tmp_path):
    ds = indexed_dataset
    state = {"index_key": "cb", "k": 5, "query": str(tmp_path)}
    (error,) = notifications(call(ds, "search", state=state), "error")
    assert "is a folder" in error and "give one image file in it" in error


def test_a_second_click_on_refine_while_a_round_runs_runs_no_second_round(
    indexed_dataset,
):
    """The App runs each click in its own thread: a double click trained and
    recorded two rounds. One runs; a click meanwhile is told so."""
    from types import SimpleNamespace

    from fiftyone_clipbranches.panels.panel import _one_at_a_time

    ds = indexed_dataset
    ids = ds.values("id")
    call(ds, "mark_positive", selected=ids[:6], alt=ids[-4:])
    state = {"index_key": "cb"}
    running = SimpleNamespace(dataset=ds, params={"panel_id": "p1"})  # call()'s id
    with _one_at_a_time(running) as first:
        assert first
        requests = call(ds, "refine", state=state)
        assert notifications(requests) == ["A refinement of this panel is running"]
        assert "set_view" not in uris(requests) and patched_state(requests) == {}
    requests = call(ds, "refine", state=state)  # done: the next click runs
    assert patched_state(requests)["last_stats"]["n_results"] > 0
    reset_labels(ds)


def test_an_emptied_score_field_writes_no_score(make_user_index):
    """On an index built the user's way (images -> tiny CLIP -> build_index)."""
    ds = make_user_index(4)
    ids = ds.values("id")
    call(ds, "mark_positive", selected=ids[:6], alt=ids[-4:])
    requests = call(ds, "refine", state={"index_key": "clip", "score_field": ""})
    assert patched_state(requests)["last_stats"]["n_results"] > 0
    assert "clipbranches_score" not in ds.get_field_schema()
    # every match all the same, in the ranking's order (it failed: "set a score
    # field")
    n = patched_state(requests)["last_stats"]["n_results"]
    requests = call(ds, "show_all", state={"index_key": "clip"})
    assert notifications(requests, "success") == [f"{n} matches in ranking order"]
    (view,) = [p["view"] for uri, p in requests if uri == "set_view"]
    assert len(dict(view[-1]["kwargs"])["sample_ids"]) == n
    reset_labels(ds)


def test_save_view_says_a_result_too_large_before_asking_to_replace(
    make_user_index, monkeypatch
):
    """It asked to replace the saved view, then refused the result as too large."""
    from fiftyone_clipbranches.panels import actions

    ds = make_user_index(4)
    ids = ds.values("id")
    sdk.save_view(ds, "kept", ds.limit(3))
    call(ds, "mark_positive", selected=ids[:6], alt=ids[-4:])
    requests = call(ds, "refine", state={"index_key": "clip", "score_field": ""})
    n = patched_state(requests)["last_stats"]["n_results"]
    assert n > 2
    monkeypatch.setattr(actions, "MAX_SELECTED_SAMPLES", n - 1)
    state = {"index_key": "clip", "view_name": "kept", "showing": "refine"}
    requests = call(ds, "save_view", state=state)
    refused = notifications(requests, "error")[0]
    assert f"the result holds {n} samples" in refused
    assert "refine with a score field, then dataset.clone_sample_field" in refused
    assert "confirm" not in patched_state(requests)  # nothing asked
    assert len(ds.load_saved_view("kept")) == 3
    monkeypatch.setattr(actions, "MAX_SELECTED_SAMPLES", n)
    asked = patched_state(call(ds, "save_view", state=state))
    assert asked["confirm"] == "replace_view"
    done = call(ds, "confirm", state={**state, **asked})
    assert notifications(done, "success") == [f"Replaced view 'kept' ({n} samples)"]
    saved = ds.load_saved_view("kept")
    # opened again from the App's selector and saved again: one selection, not
    # the saved one and the ranking's again (the same samples, a stage repeated)
    again = patched_state(call(ds, "save_view", state=state, view=saved))
    call(ds, "confirm", state={**state, **again}, view=saved, view_name="kept")
    resaved = ds.load_saved_view("kept")
    assert [type(st).__name__ for st in resaved._stages] == ["Select"]
    assert resaved.values("id") == saved.values("id")
    reset_labels(ds)


def test_search_by_selection_then_save_view(indexed_dataset):
    ds = indexed_dataset
    ids = ds.values("id")
    requests = call(ds, "search", state={"index_key": "cb", "k": 9}, selected=ids[:1])
    (view_params,) = [p for uri, p in requests if uri == "set_view"]
    (stage,) = view_params["view"]
    assert len(dict(stage["kwargs"])["sample_ids"]) == 9
    requests = call(ds, "search", state={"index_key": "cb"})
    assert "type a query" in notifications(requests, "error")[0]
    view = ds.take(4, seed=2)
    requests = call(ds, "save_view", state={"view_name": "panel view"}, view=view)
    assert ds.load_saved_view("panel view").values("id") == view.values("id")
    assert notifications(requests, "success") == ["Saved view 'panel view' (4 samples)"]
    # the App's list of saved views is refreshed, and the view itself is shown
    # (by name, the App would look it up in its stale list and fail)
    assert uris(requests)[:2] == ["reload_dataset", "set_view"]
    shown = requests[1][1]["view"]
    assert [stage["_cls"].rsplit(".", 1)[-1] for stage in shown] == ["Take"]
    # the name of a saved view: asked first, replaced once confirmed
    named = {"view_name": "panel view"}
    asked = call(ds, "save_view", state=named, view=view[:3])
    pending = patched_state(asked)
    assert pending == {
        "confirm": "replace_view", "replace_name": "panel view", "replace_size": 4
    }  # fmt: skip
    question = rendered(asked)["confirm_question"]["view"]["label"]
    assert (
        question
        == "Replace the saved view 'panel view' (4 samples) with what is shown?"
    )
    assert len(ds.load_saved_view("panel view")) == 4  # not yet
    # the name changed to another view since the question: asked about that one
    call(ds, "save_view", state={"view_name": "other view"}, view=view[:2])
    moved = call(
        ds, "confirm", state={**pending, "view_name": "other view"}, view=view[:2]
    )
    assert patched_state(moved)["replace_name"] == "other view"
    assert len(ds.load_saved_view("other view")) == 2  # not replaced unasked
    again = call(ds, "confirm", state={**named, **pending}, view=view[:3])
    assert notifications(again, "success") == ["Replaced view 'panel view' (3 samples)"]
    # the whole dataset is no result: refused, as the save-results operator does
    # (a fresh panel, or an App started again, replaced a result by every sample)
    every = call(ds, "save_view", state=named, view=ds.sort_by("filepath"))
    assert "the grid shows every sample of the dataset" in notifications(every)[0]
    assert len(ds.load_saved_view("panel view")) == 3
    # nor the grid left after a search (the panel still says it shows one)
    left = {"view_name": "every one", "showing": "search"}
    refused = call(ds, "save_view", state=left, view=ds.view())
    assert "the grid shows every sample of the dataset" in notifications(refused)[0]
    # but a search that ranked every sample is a result
    every = call(
        ds, "search", state={"index_key": "cb", "k": len(ds)}, selected=[ids[0]]
    )
    ranked = fo.DatasetView._build(ds, shown_stages(every))
    saved = call(ds, "save_view", state=left, view=ranked)
    assert notifications(saved, "success") == [
        f"Saved view 'every one' ({len(ds)} samples)"
    ]
    ds.delete_saved_view("every one")
    blank = call(ds, "save_view", state={"view_name": "  "}, view=view)
    assert "type a name in Saved view name" in notifications(blank, "error")[0]
    # typed queries that are not text: a missing image file, k out of range
    for state, error in (
        ({"query": "/no/such/picture.jpg"}, "no image file at"),
        ({"query": "a cat", "k": 5000}, "must be a whole number from 1 to 1000"),
        (
            {"query": "a cat", "k": 2.5},
            "must be a whole number from 1 to 1000, got 2.5",
        ),
        ({"query": "a cat", "k": "ten"}, "from 1 to 1000, got 'ten'"),
    ):
        requests = call(ds, "search", state={"index_key": "cb", **state})
        assert error in notifications(requests, "error")[0]
        assert "set_view" not in uris(requests)


def test_panel_without_index_says_how_to_build_one(make_dataset_no_index):
    ds = make_dataset_no_index
    props = rendered(call(ds, "on_load"))
    assert "no_index" in props and "check_again" in props and "refine" not in props
    # "Build index" opens the operator's form, and checks again when it succeeds
    (prompt,) = [
        p
        for uri, p in call(ds, "open_build_index")
        if uri == "prompt_user_for_operation"
    ]
    assert prompt["operator_uri"] == "@clipbranches/clipbranches/build_index"
    assert prompt["on_success"].endswith("clipbranches_panel#check_again")
    # an index built meanwhile (by the operator, say) shows on "Check again"
    from fiftyone_clipbranches import sdk

    codes = np.random.default_rng(0).integers(0, 256, (len(ds), 32), dtype=np.uint8)
    sdk.build_index_from_codes(ds, codes, ds.values("id"), "fresh")
    requests = call(ds, "check_again", state={"index_key": "clipbranches"})
    assert patched_state(requests)["index_key"] == "fresh"
    assert "search" in rendered(requests) and "no_index" not in rendered(requests)
    # with an index, the panel opens the update form on it, and the build form for
    # another: the list is read again when either succeeds
    actions = str(rendered(requests)["index_actions"])
    assert "'update_index'" in actions and "'build_another'" in actions
    (prompt,) = [
        p
        for uri, p in call(ds, "open_update_index", state={"index_key": "fresh"})
        if uri == "prompt_user_for_operation"
    ]
    assert prompt["operator_uri"] == "@clipbranches/clipbranches/update_index"
    assert prompt["params"] == {"index_key": "fresh"}
    assert prompt["on_success"].endswith("clipbranches_panel#check_again")


def test_an_index_renamed_elsewhere_is_said_and_found_again(image_indexed_dataset):
    """Renamed from the operator browser (which does not reach the panel): the
    panel says so at its next render, and "Check again" (beside the index
    actions) moves it to the new key."""
    from fiftyone_clipbranches import sdk

    ds = image_indexed_dataset
    actions = str(rendered(call(ds, "on_load"))["index_actions"])
    assert "'check_again'" in actions
    sdk.rename_index(ds, "cb", "renamed")
    stale = rendered(call(ds, "redraw", state={"index_key": "cb"}))
    assert "Index 'cb' is no longer on this dataset" in str(stale["index_gone"])
    requests = call(ds, "check_again", state={"index_key": "cb"})
    assert patched_state(requests)["index_key"] == "renamed"
    assert "index_gone" not in rendered(requests)


def test_samples_added_since_the_build_are_said_beside_update_index(
    image_indexed_dataset,
):
    """Samples added outside the App: Check again said nothing of them (only a
    search's message did), and Update index's form had to be opened to learn it."""
    import fiftyone as fo

    from fiftyone_clipbranches import sdk

    ds = image_indexed_dataset
    assert "unsearched" not in rendered(
        call(ds, "check_again", state={"index_key": "cb"})
    )
    (added,) = ds.add_samples([fo.Sample(filepath=ds.first().filepath)])
    try:
        requests = call(ds, "check_again", state={"index_key": "cb"})
        said = str(rendered(requests)["unsearched"])
        assert "1 sample not searched yet" in said and "Update index adds" in said
        # a search says it too, and keeps it said
        requests = call(ds, "search", state={"index_key": "cb", "query": "a cat"})
        assert patched_state(requests)["unsearched"] == {"index_key": "cb", "n": 1}
        sdk.update_index(ds, "cb", progress=False)
        requests = call(ds, "check_again", state={"index_key": "cb"})
        assert "unsearched" not in rendered(requests)
        # updated elsewhere (the CLI): a round counts them again
        said = {"unsearched": {"index_key": "cb", "n": 1}}
        ds.select(ds.values("id")[:2]).tag_samples("cb_positive")
        no_scores = {"index_key": "cb", "score_field": "", **said}
        refined = call(ds, "refine", state=no_scores)
        assert patched_state(refined)["unsearched"] == {"index_key": "cb", "n": 0}
        assert "unsearched" not in rendered(refined)
        ds.untag_samples("cb_positive")
    finally:
        ds.delete_samples([added])
        sdk.update_index(ds, "cb", progress=False)


def test_stats_line_names_the_neighbour_positives():
    from fiftyone_clipbranches.panels.panel import _stats_markdown

    stats = {
        "n_results": 40,
        "n_index": 300,
        "n_pos": 4,
        "n_neg": 2,
        "n_random_neg": 100,
        "model": "ensemble",
        "train_ms": 3.0,
        "query_ms": 1.0,
    }
    assert "neighbours" not in _stats_markdown(stats)
    line = _stats_markdown({**stats, "n_neighbour_pos": 12})
    assert (
        "4 positives (+12 of their nearest neighbours, taken as positives),"
        " 2 negatives" in line
    )
    assert "service" not in line
    remote = _stats_markdown({**stats, "service_url": "http://127.0.0.1:5172"})
    assert remote.endswith("computed by the service at http://127.0.0.1:5172")


def test_refine_shows_the_best_at_once_then_all_by_score_and_saves_the_ranking(
    indexed_dataset, monkeypatch
):
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.panels import actions, panel

    monkeypatch.setattr(actions, "PREVIEW_RESULTS", 5)
    monkeypatch.setattr(panel, "PREVIEW_RESULTS", 5)
    ds = indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    planes, others = ids[labels == "airplane"], ids[labels != "airplane"]
    call(ds, "mark_positive", selected=planes[:10].tolist(), alt=others[:5].tolist())
    state = {"index_key": "cb", "model": "tree"}
    requests = call(ds, "refine", state=state)
    (stage,) = [p for uri, p in requests if uri == "set_view"][0]["view"]
    shown = dict(stage["kwargs"])["sample_ids"]
    state.update(patched_state(requests))
    assert state["last_stats"]["n_results"] > 5 and len(shown) == 5
    assert "show_all" in rendered(requests)
    # the score field is written behind the view: exactly the ranking
    sdk.wait_for_writes(ds)
    scored = dict(
        zip(*ds.exists("clipbranches_score").values(["id", "clipbranches_score"]))
    )
    assert set(planes[:10]) <= set(scored)
    assert [scored[i] for i in shown] == sorted(scored.values(), reverse=True)[:5]
    assert "showing the best 5" in rendered(requests)["last_round"]["default"]
    requests = call(ds, "show_all", state=state)
    assert "by score" in notifications(requests, "success")[0]
    state.update(patched_state(requests))
    props = rendered(requests)
    assert "show_all" not in props  # every match is shown now
    assert "showing the best" not in props["last_round"]["default"]
    state["view_name"] = "all planes"
    call(ds, "save_view", state=state)
    saved = ds.load_saved_view("all planes").values("id")
    assert saved[:5] == shown and set(saved) == set(scored)
    assert len(saved) == state["last_stats"]["n_results"]
    # a later search is not described by the round before it
    searched = call(ds, "search", state={**state, "k": 3}, selected=shown[:1])
    assert "last_round" not in rendered(searched)


def test_search_looks_in_the_grids_view_but_not_in_the_panels_last_result(
    indexed_dataset,
):
    import fiftyone as fo

    ds = indexed_dataset
    labels = dict(zip(ds.values("id"), ds.values("ground_truth.label")))
    cats = ds.match(fo.ViewField("ground_truth.label") == "cat")
    query = cats.first().id
    state = {"index_key": "cb", "k": 30}

    def shown(requests):
        (params,) = [p for uri, p in requests if uri == "set_view"]
        stages = params["view"]
        return stages, dict(stages[-1]["kwargs"])["sample_ids"]

    # the user's filter holds: 20 cats only, all of them, and the filter stays
    requests = call(ds, "search", state=state, selected=[query], view=cats)
    stages, ids = shown(requests)
    assert len(ids) == 20 and {labels[i] for i in ids} == {"cat"}
    assert stages[0]["_cls"].endswith("Match")
    assert "in the current view" in notifications(requests, "success")[0]
    # the panel's own last result (an ordered select) is not a filter
    last = ds.select(ids, ordered=True)
    _, again = shown(call(ds, "search", state=state, selected=[query], view=last))
    everywhere, _ = sdk_search_ids(ds, query)
    assert again == everywhere and {labels[i] for i in again} != {"cat"}
    # nor is "Show all matches" (every scored sample, by score), on the score field
    # a refinement makes (marked as clipbranches')
    from fiftyone_clipbranches.sdk.views import ensure_score_field

    ensure_score_field(ds, "clipbranches_score")
    ds.select(ids).set_values("clipbranches_score", [1.0] * len(ids))
    by_score = ds.exists("clipbranches_score").sort_by(
        "clipbranches_score", reverse=True
    )
    _, also = shown(call(ds, "search", state=state, selected=[query], view=by_score))
    assert also == everywhere
    # a filter added on top of the panel's result filters the dataset, not it
    shown_before = ds.select(everywhere[:10], ordered=True)
    on_top = shown_before.match(fo.ViewField("ground_truth.label") == "cat")
    _, within = shown(call(ds, "search", state=state, selected=[query], view=on_top))
    assert len(within) == 20 and {labels[i] for i in within} == {"cat"}
    # a round the user saved and opened again by name is the scope, as it is
    ds.save_view("my round", last)
    requests = call(ds, "search", state=state, selected=[query], view_name="my round")
    stages, saved = shown(requests)
    assert sorted(saved) == sorted(ids)  # its 20 cats, nearest first
    assert "in the current view" in notifications(requests, "success")[0]
    # the search's result replaced the saved view's name in the grid: the next
    # search and refinement from it still look in that saved view (its selection)
    result = fo.DatasetView._build(ds, stages)
    assert result.name is None
    _, again = shown(call(ds, "search", state=state, selected=[query], view=result))
    assert sorted(again) == sorted(ids)
    # another user of the dataset searches everywhere meanwhile: no matter
    _, elsewhere = shown(call(ds, "search", state=state, selected=[query]))
    assert not set(elsewhere) <= set(ids)
    dogs = [i for i, label in labels.items() if label == "dog"]
    call(ds, "mark_positive", selected=saved[:4], alt=dogs[:3])
    ds.select(saved[4]).tag_samples(["cb_positive", "cb_negative"])  # a conflict
    refine = {**state, "model": "tree", "random_negatives": 5}
    requests = call(ds, "refine", state=refine, view=result)
    assert "tagged both 'cb_positive' and" in notifications(requests, "error")[0]
    conflict = fo.DatasetView._build(ds, shown(requests)[0])
    assert conflict.values("id") == [saved[4]]
    # marked from the conflict's grid, then refined: still in the saved view
    call(ds, "mark_positive", selected=[saved[4]], view=conflict)
    requests = call(ds, "refine", state=refine, view=conflict)
    stats = patched_state(requests)["last_stats"]
    assert stats["n_index"] == 20 and stats["in_view"] is True
    _, found = shown(requests)
    assert set(saved[:5]) <= set(found) <= set(ids)
    # once the user leaves the result (here: clears the view), the dataset again
    _, everywhere_again = shown(
        call(ds, "search", state=state, selected=[query], view=ds.view())
    )
    assert len(everywhere_again) == 30 and not set(everywhere_again) <= set(ids)


def sdk_search_ids(ds, query):
    from fiftyone_clipbranches import sdk

    return sdk.search_ids(ds, sample_ids=[query], k=30, index_key="cb")


def test_an_index_renamed_or_deleted_elsewhere_is_said_in_the_panels_words(
    indexed_dataset, make_dataset_no_index
):
    from fiftyone_clipbranches import sdk

    ds = indexed_dataset
    sdk.rename_index(ds, "cb", "cb_renamed")
    try:
        requests = call(ds, "search", state={"index_key": "cb", "query": "x"})
        (error,) = notifications(requests, "error")
        assert "index 'cb' is no longer on this dataset" in error
        assert "now uses 'cb_renamed'" in error and "CLI" not in error
        assert patched_state(requests)["index_key"] == "cb_renamed"
    finally:
        sdk.rename_index(ds, "cb_renamed", "cb")
    bare = make_dataset_no_index
    requests = call(bare, "refine", state={"index_key": "cb"})
    (error,) = notifications(requests, "error")
    assert "press Build index" in error and "build_index(" not in error
    assert "no_index" in rendered(requests)


def test_the_round_line_says_what_was_left_out():
    from fiftyone_clipbranches.panels.panel import _stats_markdown

    stats = dict(
        n_results=7, n_index=300, n_pos=3, n_neg=1, n_unreadable_neg=2,
        n_random_neg=20, model="cascade", train_ms=5.0, query_ms=2.0,
    )  # fmt: skip
    line = _stats_markdown(stats)
    assert "1 negative (2 unreadable negatives left out), 20 random" in line
    assert "unreadable" not in _stats_markdown({**stats, "n_unreadable_neg": 0})


def test_a_round_on_an_index_built_from_images(make_user_index):
    """The panel's mark, refine, stale-error and reset steps on an index built the
    user's way (images -> tiny CLIP embeddings -> build_index)."""
    ds = make_user_index(6)
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    cats, others = ids[labels == "cat"], ids[labels != "cat"]
    requests = call(ds, "mark_positive", selected=cats[:4].tolist(), alt=others[:2])
    assert notifications(requests, "success") == ["Marked 4 positive, 2 negative"]
    assert "reload_dataset" in uris(requests)
    state = {"index_key": "clip", "random_negatives": 10}
    requests = call(ds, "refine", state=state)
    stats = patched_state(requests)["last_stats"]
    assert (stats["n_pos"], stats["n_neg"]) == (4, 2)
    assert "last_round" in rendered(requests)
    # a query in the box wins over a selection, and the message says so
    text = {"index_key": "clip", "k": 5, "query": "a photo"}
    requests = call(ds, "search", state=text, selected=ds.values("id")[:2])
    assert notifications(requests, "success") == [
        "5 nearest samples to 'a photo' (the query box was searched, not the 2"
        " selected samples: empty it to search by the selection)"
    ]
    shown = str(rendered(requests))
    assert "'a photo'" in shown and "query box" not in shown  # the history's words
    # a 40 kB query is searched, and repeated in 80 characters
    pasted = {"index_key": "clip", "k": 5, "query": "red car " * 5000}
    requests = call(ds, "search", state=pasted)
    (message,) = notifications(requests, "success")
    assert (
        message.startswith("5 nearest samples to 'red car red car")
        and len(message) < 120
    )
    assert "red car " * 12 not in str(rendered(requests))
    # a sample labelled both ways: named, and shown in the grid to be marked again
    both = cats[0]
    sample = ds[both]
    sample.tags = sorted({*sample.tags, "cb_negative"})
    sample.save()
    requests = call(ds, "refine", state={"index_key": "clip", "random_negatives": 10})
    (error,) = notifications(requests, "error")
    assert "tagged both 'cb_positive' and 'cb_negative'" in error
    assert "They are shown in the grid: select each, then Mark" in error
    (shown,) = [p["view"] for uri, p in requests if uri == "set_view"]
    assert dict(shown[0]["kwargs"])["sample_ids"] == [both]
    call(ds, "mark_positive", selected=[both])  # the way out
    assert "cb_negative" not in ds[both].tags
    # the App's call after the Mark cleared the selection drops the old error
    stale = {**state, "last_error": "an earlier failure"}
    assert (
        patched_state(call(ds, "on_change_selected", state=stale))["last_error"] is None
    )
    requests = reset_labels(ds)
    assert notifications(requests, "success") == ["Removed 6 labels"]
    assert ds.count_sample_tags() == {}


def test_refine_and_save_keep_the_grids_filter(indexed_dataset):
    """A refinement in a filtered grid answers inside the filter, says so in its
    round line and history, and Save view keeps the filter in the saved view."""
    import fiftyone as fo

    ds = indexed_dataset
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    two = ds.match(fo.ViewField("ground_truth.label").is_in(["airplane", "ship"]))
    planes, others = ids[labels == "airplane"], ids[labels != "airplane"]
    call(ds, "mark_positive", selected=planes[:8].tolist(), alt=others[:4].tolist())
    state = {"index_key": "cb", "model": "tree", "view_name": "planes in two"}
    requests = call(ds, "refine", state=state, view=two)
    stats = patched_state(requests)["last_stats"]
    assert stats["n_index"] == len(two) and stats["in_view"] is True
    props = rendered(requests)
    assert "indexed samples in the current view" in props["last_round"]["default"]
    assert "in the current view" in props["history"]["default"]
    (shown,) = [p["view"] for uri, p in requests if uri == "set_view"]
    state = {**state, **patched_state(requests)}
    shown_view = fo.DatasetView._build(ds, shown)
    requests = call(ds, "save_view", state=state, view=shown_view)
    assert notifications(requests, "success")
    saved = ds.load_saved_view("planes in two")
    assert saved._stages[0]._kwargs() == two._stages[0]._kwargs()  # the filter
    assert set(saved.values("id")) <= set(two.values("id"))


def test_patches_selected_in_a_patches_view_stand_for_their_images(
    image_indexed_dataset,
):
    """Marking or searching by patches selected in a patches view was refused as
    "not samples of the dataset" (in Python's words): they stand for the images
    they belong to."""
    ds = image_indexed_dataset
    ids = ds.values("id")
    box = [0.1, 0.1, 0.4, 0.4]
    for sid, n in zip(ids[:3], (2, 1, 1)):
        sample = ds[sid]
        sample["dets"] = fo.Detections(
            detections=[fo.Detection(label="thing", bounding_box=box) for _ in range(n)]
        )
        sample.save()
    patches = ds.to_patches("dets")
    patch_ids = patches.values("id")
    assert len(patch_ids) == 4 and not set(patch_ids) & set(ids)
    requests = call(ds, "mark_positive", selected=patch_ids[:3], view=patches)
    assert notifications(requests, "error") == []
    assert sorted(ds.match_tags("cb_positive").values("id")) == sorted(ids[:2])
    state = {"index_key": "cb", "k": 5}
    requests = call(ds, "search", state=state, selected=patch_ids[3:], view=patches)
    (message,) = notifications(requests, "success")
    assert message.startswith("5 nearest samples to 1 selected sample")
    # the answer is images, and the grid leaves the patches view: said so
    assert message.endswith("(whole images: the grid left the patches view)")
    requests = call(ds, "refine", state=state, view=patches)
    (message,) = notifications(requests, "success")
    assert message.endswith("(whole images: the grid left the patches view)")
    assert set(ids[:2]) <= set(shown_ids(requests))
    # patches of a view of some images: the refinement looks in those images
    few = ds.select(ids[:40])
    requests = call(ds, "refine", state=state, view=few.to_patches("dets"))
    (message,) = notifications(requests, "success")
    assert message.endswith("(whole images: the grid left the patches view)")
    assert patched_state(requests)["last_stats"]["in_view"]
    assert set(shown_ids(requests)) <= set(ids[:40])
    # patches filtered after the split: the images of those patches (a filter of
    # patches applied to images matched none: 0 results, the positives dropped)
    one_box = patches.match(fo.ViewField("dets.label") == "thing").limit(1)
    requests = call(ds, "search", state=state, selected=patch_ids[:1], view=one_box)
    (message,) = notifications(requests, "success")
    assert message.startswith("1 nearest samples to 1 selected sample in the current")
    assert shown_ids(requests) == [one_box.first().sample_id]
    # a sort leaves every patch: every image it was made of, as without it
    requests = call(ds, "refine", state=state, view=patches.sort_by("dets.label"))
    assert not patched_state(requests)["last_stats"]["in_view"]
    # a view of dynamic groups: its samples, not one standing for each group
    grouped = ds.group_by("ground_truth.label")
    requests = call(ds, "refine", state=state, view=grouped)
    (message,) = notifications(requests, "success")
    assert message.endswith("(samples, not groups: the grid left the grouped view)")
    assert patched_state(requests)["last_stats"]["n_index"] == len(ds)
    assert set(ids[:2]) <= set(shown_ids(requests))
    reset_labels(ds)


def test_a_positive_added_since_the_build_is_said_in_the_apps_words(
    image_indexed_dataset,
):
    """The panel told the user to run update_index and a CLI command."""
    ds = image_indexed_dataset
    (added,) = ds.add_samples([fo.Sample(filepath=ds.first().filepath)])
    call(ds, "mark_positive", selected=[added, *ds.values("id")[:2]])
    (error,) = notifications(call(ds, "refine", state={"index_key": "cb"}), "error")
    assert f"1 positive sample is not in index 'cb' (e.g. {added})" in error
    assert "Update index (under the panel's index choice" in error
    assert "update_index" not in error and "CLI:" not in error


def test_a_view_concatenated_with_itself_shows_each_match_once(image_indexed_dataset):
    """Show all and Save view (its ranking by id) showed every match twice
    (FiftyOne's concat makes one sample two rows)."""
    ds = image_indexed_dataset
    ids = ds.values("id")
    head = ds.select(ids[:40])
    twice = head.concat(head)
    call(ds, "mark_positive", selected=ids[:3])
    call(ds, "mark_negative", selected=ids[-3:])
    state = {"index_key": "cb", "score_field": "twice_score"}
    state = {**state, **patched_state(call(ds, "refine", state=state, view=twice))}
    shown = call(ds, "show_all", state=state, view=twice)  # by score
    rows = fo.DatasetView._build(ds, shown_stages(shown)).values("id")
    assert len(rows) == len(set(rows)) > 0
    call(ds, "save_view", state={**state, "view_name": "twice"}, view=twice)
    saved = ds.load_saved_view("twice").values("id")
    assert len(saved) == len(set(saved)) and set(saved) <= set(ids[:40])
    ds.delete_saved_view("twice")
    reset_labels(ds)


def test_look_further_shows_what_is_neither_labelled_nor_in_the_result(
    make_user_index,
):
    """A round labelled within the result teaches the model little (it holds only
    what the model accepts): Look further shows the samples nearest the positives
    that are neither labelled nor in the result (an index built from images)."""
    import fiftyone_clipbranches as cb

    ds = make_user_index(6)
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    cats, others = ids[labels == "cat"], ids[labels != "cat"]
    state = {"index_key": "clip", "random_negatives": 10, "k": 8}
    (error,) = notifications(call(ds, "look_further", state=state), "error")
    assert "refine first" in error
    call(ds, "mark_positive", selected=cats[:3].tolist(), alt=others[:2])
    requests = call(ds, "refine", state=state)
    assert "look_further" in rendered(requests)
    state.update(patched_state(requests))
    sdk.wait_for_writes(ds, "clipbranches_score")  # the round's scores: its result
    result = set(ds.exists("clipbranches_score").values("id"))
    assert result
    requests = call(ds, "look_further", state=state)
    assert notifications(requests, "success") == [
        "8 samples nearest the positives, neither labelled nor in the result: mark"
        " them, then Refine"
    ]
    shown = shown_ids(requests)
    assert not set(shown) & (result | {*cats[:3], *others[:2]})
    expected = cb.next_to_label(ds, exclude=list(result), k=8, index_key="clip")
    assert shown == expected.values("id")
    assert "look_further" in rendered(requests)  # once more, after marking some

    # pressed again (nothing marked): the next page, past the one it showed
    state.update(patched_state(requests))
    requests = call(ds, "look_further", state=state)
    second = shown_ids(requests)
    assert notifications(requests, "success") == [
        f"{len(second)} samples further from the positives, neither labelled nor"
        " in the result: mark them, then Refine"
    ]
    beyond = cb.next_to_label(
        ds, exclude=[*result, *shown], k=8, index_key="clip"
    ).values("id")
    assert second == beyond and second and not set(second) & set(shown)
    # pressed until nothing is left: a warning, the grid as it was
    state.update(patched_state(requests))
    while True:
        requests = call(ds, "look_further", state=state)
        if "set_view" not in uris(requests):
            break
        state.update(patched_state(requests))
    assert notifications(requests) == [
        "Every sample is labelled, in the result or shown already: Refine"
    ]
    assert notifications(requests, "warning") and not patched_state(requests)
    # a Refine starts again from the positives
    state.update(patched_state(requests))
    state.update(patched_state(call(ds, "refine", state=state)))
    sdk.wait_for_writes(ds, "clipbranches_score")
    result = ds.exists("clipbranches_score").values("id")
    again = shown_ids(call(ds, "look_further", state=state))
    expected = cb.next_to_label(ds, exclude=result, k=8, index_key="clip")
    assert again == expected.values("id")


def test_the_history_table_says_when_it_shows_only_the_last_rounds():
    from fiftyone_clipbranches.panels.panel import HISTORY_SHOWN, _history_markdown

    rounds = [
        {"round": i, "kind": "search", "query": "'a cat'", "k": 60}
        for i in range(1, HISTORY_SHOWN + 4)
    ]
    table = _history_markdown(rounds)
    assert (
        f"| {HISTORY_SHOWN + 3} | search |" in table and "| 3 | search |" not in table
    )
    assert table.endswith(f"*The last {HISTORY_SHOWN} of {HISTORY_SHOWN + 3} rounds.*")
    assert "The last" not in _history_markdown(rounds[:HISTORY_SHOWN])
