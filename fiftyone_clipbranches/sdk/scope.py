"""What a search or refinement started in the App looks in: the user's view,
without the results clipbranches itself put in the grid."""

from __future__ import annotations

import hashlib
import json

import fiftyone.core.stages as fos

from fiftyone_clipbranches.sdk.views import writes_scores

#: Words of every face for an answer limited to the App's view (scope is not the
#: dataset), and for what such a search or refinement looks in.
IN_VIEW = "in the current view"
WITHIN_VIEW = "within the current view: clear it to search every sample"

#: Execution store (one per dataset) and its key for the results the faces of the
#: App showed from saved views, most recent last (:func:`show_result`); several
#: users of a dataset share it, each result recognised by its stages.
SHOWN_STORE = "clipbranches_scope"
SHOWN_KEY = "shown"
MAX_SHOWN = 32


def ctx_scope(ctx):
    """:func:`app_scope` of an App context (``ctx.view``, ``ctx.dataset``), knowing
    the saved views the grid's results were found in (:func:`show_result`)."""
    shown = ctx.store(SHOWN_STORE).get(SHOWN_KEY)
    return app_scope(ctx.view, ctx.dataset, shown=shown)


def show_result(ctx, view, scope) -> None:
    """Put ``view``, a result found in ``scope``, in the App's grid, and remember
    the saved view ``scope`` is (if it is one): a result replaces the saved view's
    name in the App, so the next search or refinement from this result looks in
    that saved view again (:func:`app_scope`), its selection included."""
    ctx.ops.set_view(view=view)
    record = shown_record(view, scope)
    if record is None:
        return
    store = ctx.store(SHOWN_STORE)
    kept = [r for r in store.get(SHOWN_KEY) or [] if r["digest"] != record["digest"]]
    store.set(SHOWN_KEY, [*kept, record][-MAX_SHOWN:])


def shown_record(view, scope) -> dict | None:
    """What :func:`app_scope` needs to know of ``view``, a result found in
    ``scope``: the saved view ``scope`` is, and ``view``'s stages; None when
    ``scope`` is not a saved view opened by name."""
    if scope is None or not getattr(scope, "name", None):
        return None
    return {
        "saved_view": scope.name,
        "n_stages": len(view._stages),
        "digest": _stages_digest(view._stages),
    }


def app_scope(view, dataset, shown=None):
    """The samples a search or refinement from the App answers within.

    A saved view the user opened by name, as it is (the App shows a view the
    panel just saved by its stages, not by name); else the App's view (``ctx.view``:
    the user's filters and stages) without the stages of clipbranches' own results
    in it: the ordered selects of searches and refinements, and "Show all
    matches"' ``exists`` and descending sort by a score field clipbranches writes.
    With nothing left, ``dataset`` itself (the caller can test ``scope is
    dataset``). A view that begins with a result clipbranches showed from a saved
    view (``shown``) looks in that saved view, whatever its stages select.

    Args:
        view: the App's current view (``ctx.view``), or None.
        dataset: the App's dataset (``ctx.dataset``).
        shown: the records :func:`show_result` keeps of the results shown from
            saved views (:func:`shown_record`), or None.
    """
    if view is not None and view.name:  # opened by name: the user's choice
        return view
    stages = list(view._stages) if view is not None else []
    scope = dataset
    saved = _saved_view_shown(dataset, stages, shown)
    if saved is not None:
        scope, stages = saved, stages[len(saved._stages) :]
    kept, i = [], 0
    while i < len(stages):
        stage = stages[i]
        if isinstance(stage, fos.Select) and stage.ordered:
            i += 1
        elif _by_score(dataset, stages[i : i + 2]):
            i += 2
        else:
            kept.append(stage)
            i += 1
    if not kept:
        return scope
    scope = scope.view()
    for stage in kept:
        scope = scope.add_stage(stage)
    return scope


def _saved_view_shown(dataset, stages, shown):
    """The saved view of the latest record of ``shown`` whose result ``stages``
    begin with, when that saved view's stages are still those it was shown with;
    else None."""
    for record in reversed(shown or []):
        n = record["n_stages"]
        if len(stages) >= n and _stages_digest(stages[:n]) == record["digest"]:
            break
    else:
        return None
    name = record["saved_view"]
    if not dataset.has_saved_view(name):
        return None
    saved = dataset.load_saved_view(name)
    m = len(saved._stages)
    if m > n or _stages_digest(stages[:m]) != _stages_digest(saved._stages):
        return None
    return saved


def _stages_digest(stages) -> str:
    """A digest of view stages, by kind and arguments (not their uuids), the same
    after the App's round trip through JSON (which makes ``1.0`` ``1``)."""
    plain = [[type(stage).__name__, _as_json(stage._kwargs())] for stage in stages]
    return hashlib.sha1(json.dumps(plain, default=str).encode()).hexdigest()


def _as_json(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _as_json(v) for k, v in value.items()}
    return value


def _by_score(dataset, stages) -> bool:
    """Whether ``stages`` are "Show all matches": ``exists(field)`` then a sort by
    that field, descending, where ``field`` is a score field clipbranches writes."""
    if len(stages) != 2:
        return False
    exists, sort = stages
    if not (
        isinstance(exists, fos.Exists)
        and isinstance(sort, fos.SortBy)
        and sort.reverse
        and str(sort.field_or_expr) == exists.field
    ):
        return False
    return writes_scores(dataset, exists.field)
