"""What a search or refinement started in the App looks in: the user's view,
without the results clipbranches itself put in the grid."""

from __future__ import annotations

import hashlib
import json

import fiftyone.core.dataset as fod
import fiftyone.core.stages as fos
import fiftyone.core.view as fov

from fiftyone_clipbranches.sdk.rowmap import as_sample_ids, is_part_view
from fiftyone_clipbranches.sdk.views import is_ordered_selection, writes_scores

#: Words of every face for an answer limited to the App's view (scope is not the
#: dataset), and for what such a search or refinement looks in.
IN_VIEW = "in the current view"
WITHIN_VIEW = "within the current view: clear it to search every sample"

#: Execution store (one per dataset) holding, under ``SHOWN_PREFIX`` + the digest
#: of a result's stages, the scope that result was found in (:func:`show_result`):
#: the App replaces a saved view's name by the stages of a result found in it.
#: Several users of a dataset share it, each result recognised by its own stages.
#: A record lasts ``SHOWN_TTL_S``.
SHOWN_STORE = "clipbranches_scope"
SHOWN_PREFIX = "shown/"
SHOWN_TTL_S = 7 * 24 * 3600


def ctx_scope(ctx):
    """:func:`app_scope` of an App context (:func:`grid_view`, ``ctx.dataset``),
    knowing the scopes the grid's results were found in (:func:`show_result`)."""
    store = ctx.store(SHOWN_STORE)
    return app_scope(
        grid_view(ctx),
        ctx.dataset,
        shown=lambda digest: store.get(SHOWN_PREFIX + digest),
    )


def grid_view(ctx):
    """What the App's grid shows: ``ctx.view``, and the sidebar's filters on a
    saved view opened by name too (FiftyOne's ``ctx.view`` leaves them out
    there)."""
    params = ctx.request_params
    filters, view = params.get("filters"), ctx.view
    if not (filters and params.get("view_name")) or view is None:
        return view
    from fiftyone.server.view import get_extended_view

    return get_extended_view(view, filters)


def left_view_note(view) -> str:
    """Words for an answer given in a patches, frames or clips ``view`` (the App's
    ``ctx.view``), whose rows are parts of images, or in a view of dynamic groups:
    the answer is images, and the grid leaves that view (``""`` for any other
    view)."""
    if view is None:
        return ""
    if is_part_view(view):
        kind = next(
            k for k in ("patches", "frames", "clips") if getattr(view, f"_is_{k}")
        )
        return f" (whole images: the grid left the {kind} view)"
    if getattr(view, "_is_dynamic_groups", False):
        return " (samples, not groups: the grid left the grouped view)"
    return ""


def _images_behind(view):
    """The images a search or refinement from the App's ``view`` looks in: of a
    patches, frames or clips view, those its rows are parts of when stages after
    the split leave some rows out (a sort leaves none), else every image it was
    made of; a view of dynamic groups, flattened; any other view as it is (None:
    the whole dataset)."""
    if view is not None and is_part_view(view):
        source = view
        while is_part_view(source):
            source = source._source_collection
        narrowed = view._stages and view.count() != view._base_view.count()
        view = source.select(as_sample_ids(view)) if narrowed else source
    if view is not None and getattr(view, "_is_dynamic_groups", False):
        view = view.flatten()
    return None if isinstance(view, fod.Dataset) else view


def samples_behind(view, ids) -> list[str]:
    """The dataset's samples behind the grid's rows ``ids``: the rows themselves,
    or, in a patches, frames or clips ``view``, the samples they are parts of
    (order kept, each once): marking a selected patch labels its image."""
    ids = list(ids)
    if view is None or not is_part_view(view):
        return ids
    return list(dict.fromkeys(as_sample_ids(view.select(ids, ordered=True))))


def fold_sidebar_filters(ctx) -> None:
    """Show the sidebar's filters as view stages (the grid keeps its samples): the
    App drops them whenever the dataset reloads or a panel's state changes."""
    if ctx.request_params.get("filters"):
        ctx.ops.set_view(view=grid_view(ctx))


def show_result(ctx, view, scope, **extra) -> None:
    """Put ``view``, a result found in ``scope``, in the App's grid, and remember
    that scope: the next search or refinement from this result looks in it again
    (:func:`app_scope`), a saved view's selection included. ``extra``: what the
    operator that showed it reads back while it is shown (:func:`shown_now`)."""
    ctx.ops.set_view(view=view)
    digest, record = shown_record(view, scope)
    record = {**record, **extra}
    ctx.store(SHOWN_STORE).set(SHOWN_PREFIX + digest, record, ttl=SHOWN_TTL_S)


def shown_now(ctx) -> dict:
    """The record :func:`show_result` kept of the result the grid shows now
    (``ctx.view`` as it was shown, no stage added), else ``{}``."""
    view = grid_view(ctx)
    if view is None or not getattr(view, "_stages", None):
        return {}
    record = ctx.store(SHOWN_STORE).get(SHOWN_PREFIX + _stages_digest(view._stages))
    return record or {}


def shown_record(view, scope) -> tuple[str, dict]:
    """``(digest of view's stages, record)``: what :func:`app_scope` needs to know
    of ``view``, a result found in ``scope`` (a dataset or a view): how many of
    its first stages are the scope's (``n_scope``), or, for a view not built on
    its scope (the conflicting samples of a round), the scope's stages."""
    scope_stages = list(getattr(scope, "_stages", None) or [])
    n = len(scope_stages)
    if _stages_digest(view._stages[:n]) == _stages_digest(scope_stages):
        record = {"n_scope": n}
    else:
        record = {"scope": scope._serialize()}
    return _stages_digest(view._stages), record


def app_scope(view, dataset, shown=None):
    """The samples a search or refinement from the App answers within.

    A saved view the user opened by name, as it is; a result clipbranches showed
    (``shown`` has its record), the scope it was found in, with the stages the
    user added on it; else the App's view (``ctx.view``: the user's saved view,
    filters and stages; a saved view's stages at its start, as the App shows it
    once the user adds a stage, are kept whole) without the stages of
    clipbranches' own results in it: the ordered selects of searches and
    refinements, and "Show all matches"' ``exists`` and descending sort by a
    score field clipbranches writes. With nothing left, ``dataset`` itself (the
    caller can test ``scope is dataset``). In a patches, frames or clips view,
    or a view of dynamic groups, the images behind it (:func:`_images_behind`;
    :func:`left_view_note` says so).

    Args:
        view: the App's current view (``ctx.view``), or None.
        dataset: the App's dataset (``ctx.dataset``).
        shown: ``fn(digest) -> record or None``: the records :func:`show_result`
            keeps (:func:`shown_record`), or None.
    """
    view = _images_behind(view)  # a patch, frame or group is no sample
    if view is not None and view.name:  # opened by name: the user's choice
        return view
    stages = list(view._stages) if view is not None else []
    found = _recorded_result(dataset, stages, shown) if shown else None
    if found is not None:
        base, rest = found
    else:
        m = _saved_view_at_start(dataset, stages)
        base, rest = stages[:m], stages[m:]
    kept, i = [], 0
    while i < len(rest):
        stage = rest[i]
        if is_ordered_selection(stage):
            i += 1
        elif _by_score(dataset, rest[i : i + 2]):
            i += 2
        else:
            kept.append(stage)
            i += 1
    if not base and not kept:
        return dataset
    return view_of(dataset, [*base, *kept])


def view_of(dataset, stages):
    """A view of ``dataset`` with ``stages`` (FiftyOne view stages), in order."""
    view = dataset.view()
    for stage in stages:
        view = view.add_stage(stage)
    return view


def _recorded_result(dataset, stages, shown):
    """``(scope stages, stages after the result)`` when ``stages`` begin with a
    recorded result (the longest); else None."""
    for n in range(len(stages), 0, -1):
        record = shown(_stages_digest(stages[:n]))
        if isinstance(record, dict) and "n_scope" in record:
            return stages[: record["n_scope"]], stages[n:]
        if isinstance(record, dict) and "scope" in record:
            scope = fov.DatasetView._build(dataset, record["scope"])
            return list(scope._stages), stages[n:]
    return None


def _saved_view_at_start(dataset, stages) -> int:
    """The number of stages of the longest saved view of ``dataset`` that
    ``stages`` begin with (0: none), read from the saved views' stored stages
    (no view is loaded)."""
    best = 0
    for doc in dataset._doc.saved_views:
        stored = doc.view_stages or ()
        m = len(stored)
        if best < m <= len(stages):
            serialized = [json.loads(text) for text in stored]
            plain = [[d["_cls"].rsplit(".", 1)[-1], d["kwargs"]] for d in serialized]
            if _stages_digest(stages[:m]) == _digest(plain):
                best = m
    return best


def _stages_digest(stages) -> str:
    """A digest of view stages, by kind and arguments (not their uuids), the same
    after the App's round trip through JSON (which makes ``1.0`` ``1``)."""
    return _digest([[type(stage).__name__, stage._kwargs()] for stage in stages])


def _digest(plain: list) -> str:
    """The digest of ``[[stage kind, its arguments], ...]``."""
    text = json.dumps(_as_json(plain), default=str)
    return hashlib.sha1(text.encode()).hexdigest()


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
