"""What a search or refinement started in the App looks in (``sdk.scope``)."""

from __future__ import annotations

from fiftyone import ViewField as F

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.scope import app_scope, shown_record
from fiftyone_clipbranches.sdk.views import ensure_score_field


def test_the_apps_view_without_clipbranches_results(make_dataset):
    ds = make_dataset(3)
    ids = ds.values("id")
    assert app_scope(None, ds) is ds and app_scope(ds.view(), ds) is ds
    cats = ds.match(F("ground_truth.label") == "cat")
    # a search's or a round's ordered selection on top of the user's filter
    assert app_scope(cats.select(ids[:2], ordered=True), ds)._stages == cats._stages
    assert app_scope(ds.select(ids[:2], ordered=True), ds) is ds
    # "Show all matches" by a score field clipbranches writes; a user's own
    # exists-and-sort (here on a field of theirs) is theirs
    ensure_score_field(ds, "clipbranches_score")
    shown = cats.exists("clipbranches_score").sort_by(
        "clipbranches_score", reverse=True
    )
    assert app_scope(shown, ds)._stages == cats._stages
    ds.set_values("mine", [float(i) for i in range(len(ds))])
    own = ds.exists("mine").sort_by("mine", reverse=True)
    assert app_scope(own, ds)._stages == own._stages
    # a saved view opened by name stays whole, whoever saved it; the same stages
    # shown unnamed (as the panel shows what it just saved) are a result
    sdk.save_view(ds, "round", cats.select(ids[:5], ordered=True))
    round_view = ds.load_saved_view("round")
    assert app_scope(round_view, ds) is round_view
    unnamed = ds.view()
    for stage in round_view._stages:
        unnamed = unnamed.add_stage(stage)
    assert app_scope(unnamed, ds)._stages == cats._stages


def test_a_result_shown_from_a_saved_view_looks_in_that_saved_view(make_dataset):
    ds = make_dataset(3)
    ids = ds.values("id")
    cats = ds.match(F("ground_truth.label") == "cat")
    sdk.save_view(ds, "round", cats.select(ids[:5], ordered=True))
    saved = ds.load_saved_view("round")
    result = saved.select(ids[:2], ordered=True)  # what a search in it shows

    records = dict([shown_record(result, saved)])  # digest -> record
    assert shown_record(result, cats) is None  # not a saved view: nothing kept
    shown = records.get
    assert app_scope(result, ds, shown=shown) is not saved
    assert app_scope(result, ds, shown=shown).name == "round"
    # a stage the user adds on top of the result narrows the saved view
    on_top = result.match(F("filepath").exists())
    narrowed = app_scope(on_top, ds, shown=shown)
    assert narrowed._stages == [*saved._stages, on_top._stages[-1]]
    # not that result (another selection), or no records: as before
    other = saved.select(ids[:3], ordered=True)
    assert app_scope(other, ds, shown=shown)._stages == cats._stages
    assert app_scope(result, ds, shown=None)._stages == cats._stages
    # a result not built on its saved view (the conflicting samples of a round
    # in it): recognised all the same
    conflict = ds.select(ids[2:4], ordered=True)
    records.update([shown_record(conflict, saved)])
    assert app_scope(conflict, ds, shown=shown).name == "round"
    # the saved view renamed: still found; edited or deleted since: as before
    ds.update_saved_view_info("round", {"name": "round one"})
    assert app_scope(result, ds, shown=shown).name == "round one"
    ds.save_view("round one", cats.select(ids[:4], ordered=True), overwrite=True)
    assert app_scope(result, ds, shown=shown)._stages == cats._stages
    ds.delete_saved_view("round one")
    assert app_scope(result, ds, shown=shown)._stages == cats._stages


def test_the_result_is_recognised_after_the_apps_round_trip(make_dataset):
    """The App sends the stages it was given back through JSON: ``1.0`` is ``1``."""
    import json

    import fiftyone as fo

    ds = make_dataset(3)
    ids = ds.values("id")
    sdk.save_view(ds, "mine", ds.match(F("ground_truth.confidence") > 1.0))
    saved = ds.load_saved_view("mine")
    result = saved.select(ids[:2], ordered=True)
    round_trip = json.loads(json.dumps(result._serialize()).replace("1.0", "1"))
    assert "1.0" not in json.dumps(round_trip)
    back = fo.DatasetView._build(ds, round_trip)
    shown = dict([shown_record(result, saved)]).get
    assert app_scope(back, ds, shown=shown).name == "mine"
