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
    # a saved view opened by name stays whole, whoever saved it, and so do its
    # stages shown unnamed (as the App shows them once the user adds a stage);
    # shown by the panel after a Save (recorded), they are a result of its scope
    sdk.save_view(ds, "round", cats.select(ids[:5], ordered=True))
    round_view = ds.load_saved_view("round")
    assert app_scope(round_view, ds) is round_view
    unnamed = ds.view()
    for stage in round_view._stages:
        unnamed = unnamed.add_stage(stage)
    assert _ids(app_scope(unnamed, ds)) == _ids(round_view)
    shown = dict([shown_record(unnamed, cats)]).get
    assert app_scope(unnamed, ds, shown=shown)._stages == cats._stages


def _ids(view) -> set:
    return set(view.values("id"))


def test_a_result_shown_from_a_saved_view_looks_in_that_saved_view(make_dataset):
    ds = make_dataset(3)
    ids = ds.values("id")
    cats = ds.match(F("ground_truth.label") == "cat")
    cat_ids = cats.values("id")
    sdk.save_view(ds, "round", cats.select(cat_ids[:2], ordered=True))
    saved = ds.load_saved_view("round")
    inside = _ids(saved)
    assert len(inside) == 2 < len(cat_ids)
    result = saved.select(cat_ids[1:2], ordered=True)  # what a search in it shows
    records = dict([shown_record(result, saved)])  # digest -> record
    shown = records.get
    assert _ids(app_scope(result, ds, shown=shown)) == inside
    # a stage the user adds on top of the result narrows the saved view
    first = sorted(inside)[0]
    on_top = result.exclude([first])
    assert _ids(app_scope(on_top, ds, shown=shown)) == inside - {first}
    # a result not built on its saved view (the conflicting samples of a round
    # in it): its scope was recorded whole
    conflict = ds.select(ids[-2:], ordered=True)
    records.update([shown_record(conflict, saved)])
    assert _ids(app_scope(conflict, ds, shown=shown)) == inside
    # the saved view opened and a stage added (the App then drops its name, and
    # nothing recorded it): its stages are kept whole
    assert _ids(app_scope(saved.exclude([first]), ds)) == inside - {first}
    # the saved view deleted while its result is shown: still what it held then
    ds.delete_saved_view("round")
    assert _ids(app_scope(result, ds, shown=shown)) == inside
    assert _ids(app_scope(conflict, ds, shown=shown)) == inside
    # with no record and no saved view: the user's filter, without the selections
    assert app_scope(result, ds)._stages == cats._stages


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
    ds.delete_saved_view("mine")  # only the record can tell
    assert app_scope(back, ds, shown=shown)._stages == saved._stages
