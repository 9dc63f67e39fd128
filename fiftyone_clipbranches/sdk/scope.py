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

#: Execution store (one per dataset) holding, under ``SHOWN_PREFIX`` + the digest
#: of a result's stages, the saved view that result was found in
#: (:func:`show_result`); several users of a dataset share it, each result
#: recognised by its own stages. A record lasts ``SHOWN_TTL_S``.
SHOWN_STORE = "clipbranches_scope"
SHOWN_PREFIX = "shown/"
SHOWN_TTL_S = 30 * 24 * 3600


def ctx_scope(ctx):
    """:func:`app_scope` of an App context (``ctx.view``, ``ctx.dataset``), knowing
    the saved views the grid's results were found in (:func:`show_result`)."""
    store = ctx.store(SHOWN_STORE)
    return app_scope(
        ctx.view, ctx.dataset, shown=lambda digest: store.get(SHOWN_PREFIX + digest)
    )


def show_result(ctx, view, scope) -> None:
    """Put ``view``, a result found in ``scope``, in the App's grid, and remember
    the saved view ``scope`` is (if it is one): a result replaces the saved view's
    name in the App, so the next search or refinement from this result looks in
    that saved view again (:func:`app_scope`), its selection included."""
    ctx.ops.set_view(view=view)
    shown = shown_record(view, scope)
    if shown is not None:
        digest, record = shown
        ctx.store(SHOWN_STORE).set(SHOWN_PREFIX + digest, record, ttl=SHOWN_TTL_S)


def shown_record(view, scope) -> tuple[str, dict] | None:
    """``(digest of view's stages, record)``: what :func:`app_scope` needs to know
    of ``view``, a result found in ``scope``: the saved view ``scope`` is (its id,
    and its stages' digest, to see a later edit); None when ``scope`` is not a
    saved view opened by name."""
    name = getattr(scope, "name", None) if scope is not None else None
    if not name:
        return None
    ids = [str(v.id) for v in scope._root_dataset._doc.saved_views if v.name == name]
    if not ids:
        return None
    record = {"saved_view_id": ids[0], "saved_digest": _stages_digest(scope._stages)}
    return _stages_digest(view._stages), record


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
        shown: ``fn(digest) -> record or None``, the records :func:`show_result`
            keeps of the results shown from saved views (:func:`shown_record`),
            or None.
    """
    if view is not None and view.name:  # opened by name: the user's choice
        return view
    stages = list(view._stages) if view is not None else []
    scope = dataset
    found = _saved_view_shown(dataset, stages, shown) if shown else None
    if found is not None:
        scope, n = found
        stages = stages[n:]
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
    """``(saved view, n)`` when the first ``n`` of ``stages`` are a result shown
    from that saved view (the longest such; ``shown`` looks the records up by
    digest) and the saved view is as it was then; else None."""
    for n in range(len(stages), 0, -1):
        record = shown(_stages_digest(stages[:n]))
        if isinstance(record, dict) and "saved_view_id" in record:
            break
    else:
        return None
    for doc in dataset._doc.saved_views:
        if str(doc.id) == record["saved_view_id"]:
            saved = dataset.load_saved_view(doc.name)
            if _stages_digest(saved._stages) == record.get("saved_digest"):
                return saved, n
            return None  # edited since: its result no longer says what it holds
    return None


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
