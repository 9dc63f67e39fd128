"""What a search or refinement started in the App looks in (``sdk.scope``)."""

from __future__ import annotations

from fiftyone import ViewField as F

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.scope import app_scope
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
