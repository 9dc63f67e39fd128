"""What a search or refinement started in the App looks in: the user's view,
without the results clipbranches itself put in the grid."""

from __future__ import annotations

import fiftyone.core.stages as fos

from fiftyone_clipbranches.sdk.views import writes_scores

#: Words of every face for an answer limited to the App's view (scope is not the
#: dataset), and for what such a search or refinement looks in.
IN_VIEW = "in the current view"
WITHIN_VIEW = "within the current view: clear it to search every sample"


def app_scope(view, dataset):
    """The samples a search or refinement from the App answers within.

    A saved view the user opened by name, as it is (the App shows a view the
    panel just saved by its stages, not by name); else the App's view (``ctx.view``:
    the user's filters and stages) without the stages of clipbranches' own results
    in it: the ordered selects of searches and refinements, and "Show all
    matches"' ``exists`` and descending sort by a score field clipbranches writes.
    With nothing left, ``dataset`` itself (the caller can test ``scope is
    dataset``).

    Args:
        view: the App's current view (``ctx.view``), or None.
        dataset: the App's dataset (``ctx.dataset``).
    """
    if view is not None and view.name:  # opened by name: the user's choice
        return view
    stages = list(view._stages) if view is not None else []
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
        return dataset
    scope = dataset.view()
    for stage in kept:
        scope = scope.add_stage(stage)
    return scope


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
