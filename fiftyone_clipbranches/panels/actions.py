"""What the panel's buttons do, over the SDK; the panel class handles errors and
rendering. Every function takes the execution context and the panel settings."""

from __future__ import annotations

import dataclasses

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.panels.constants import (
    DEFAULTS,
    EMPTY_MEANS_NONE,
    MAX_RANDOM_NEGATIVES,
    PREVIEW_RESULTS,
)
from fiftyone_clipbranches.sdk.errors import (
    ContradictoryLabelsError,
    ResultTooLargeError,
)
from fiftyone_clipbranches.sdk.labels import count_tagged
from fiftyone_clipbranches.sdk.messages import (
    counted,
    counted_are,
    shortened,
    too_large_to_save,
    unsearched_note,
)
from fiftyone_clipbranches.sdk.models import panel_models
from fiftyone_clipbranches.sdk.remote import refine_here_or_remote
from fiftyone_clipbranches.sdk.request import RefineRequest, shown_k
from fiftyone_clipbranches.sdk.round_history import RESULT_TTL_S, RoundHistory
from fiftyone_clipbranches.sdk.scope import (
    IN_VIEW,
    ctx_scope,
    fold_sidebar_filters,
    left_view_note,
    samples_behind,
    show_result,
    view_of,
)
from fiftyone_clipbranches.sdk.search import (
    is_folder,
    is_image_reference,
    looks_like_image_path,
)
from fiftyone_clipbranches.sdk.settings import MAX_SELECTED_SAMPLES
from fiftyone_clipbranches.sdk.views import (
    by_score_view,
    final_selection,
    refuse_every_sample,
    result_view,
)


def settings(ctx) -> dict:
    """The panel's settings: its state over :data:`DEFAULTS`."""
    state = ctx.panel.state
    out = {}
    for key, default in DEFAULTS.items():
        value = state.get(key)
        blank = isinstance(value, str) and not value.strip()  # " " is no tag
        emptied = blank and default != "" and key not in EMPTY_MEANS_NONE
        out[key] = default if value is None or emptied else value
    if out["model"] not in panel_models():  # a choice the App no longer offers
        out["model"] = DEFAULTS["model"]
    return out


def tags(opts: dict) -> tuple[str, str]:
    return opts["positive_tag"], opts["negative_tag"]


def check_index(ctx, opts: dict) -> None:
    """The panel's index is still on the dataset (an operator may have renamed or
    deleted it since the panel read the dataset's indexes); else the panel moves to
    another index, or to its Build index screen, and says so."""
    key = opts["index_key"]
    keys = sdk.list_indexes(ctx.dataset)
    if key in keys:
        return
    if keys:
        ctx.panel.state.set("index_key", keys[0])
        raise ValueError(
            f"index '{key}' is no longer on this dataset (renamed or deleted): the"
            f" panel now uses '{keys[0]}' (Index); try again"
        )
    raise ValueError(
        f"index '{key}' is no longer on this dataset (deleted): press Build index"
        " to build one"
    )


def run_search(ctx, opts: dict) -> str:
    """Search by the query box: an image file path or URL, else text; by the
    selected samples when it is empty."""
    check_index(ctx, opts)
    text = (opts.get("query") or "").strip()
    k = shown_k(opts["k"])
    if text and looks_like_image_path(text) and not is_image_reference(text):
        shown = shortened(text)
        if is_folder(text):
            raise ValueError(
                f"{shown!r} is a folder (on the machine running the App): give one"
                " image file in it, or type words to search by text"
            )
        raise ValueError(
            f"no image file at {shown!r} (on the machine running the App): check the"
            " path, or type words to search by text"
        )
    within = search_scope(ctx)
    ignored = ""
    if text and is_image_reference(text):
        view = sdk.search(within, image=text, k=k, index_key=opts["index_key"])
        what = f"the image {shortened(text)}"
    elif text:
        view = sdk.search(within, text=text, k=k, index_key=opts["index_key"])
        what = f"'{shortened(text)}'"
    elif ctx.selected:
        examples, alt = _examples(ctx)
        view = sdk.search(within, sample_ids=examples, k=k, index_key=opts["index_key"])
        what = counted(len(examples), "selected sample")
        if alt:
            what += f" ({counted(alt, 'alt-clicked sample')}, negatives, left out)"
    else:
        raise ValueError("type a query or select samples to search by example")
    if within is not ctx.dataset:
        what += f" {IN_VIEW}"
    if text and ctx.selected:  # the box wins: say so, the selection goes with the view
        ignored = (
            f" (the query box was searched, not the"
            f" {counted(len(ctx.selected), 'selected sample')}: empty it to search by"
            " the selection)"
        )
    show_result(ctx, view, within)
    ctx.panel.state.set("showing", "search")
    searched = {"text": text} if text and not is_image_reference(text) else {}
    RoundHistory(ctx).append(
        "search", query=what, k=k, index_key=opts["index_key"], **searched
    )
    unsearched = count_unsearched(ctx, opts["index_key"])
    found = f"{len(view)} nearest samples to {what}{ignored}{left_view_note(ctx.view)}"
    return found + unsearched_note(unsearched)


def count_unsearched(ctx, index_key: str) -> int:
    """The samples a search of ``index_key`` cannot return yet
    (``sdk.unsearched_count``), kept in the panel's state (:func:`keep_unsearched`)."""
    n = sdk.unsearched_count(ctx.dataset, index_key)
    keep_unsearched(ctx, index_key, n)
    return n


def keep_unsearched(ctx, index_key: str, n: int) -> None:
    """Keep ``n``, the samples ``index_key`` cannot return yet, in the panel's
    state, which shows them beside Update index until they are counted again."""
    ctx.panel.state.set("unsearched", {"index_key": index_key, "n": n})


def alt_clicked(ctx) -> set[str]:
    """The ids of the selected samples that were alt-clicked (marked negative)."""
    return {s["id"] for s in ctx.selected_samples or () if s.get("type") == "alt"}


def selection(ctx) -> tuple[list[str], list[str]]:
    """``(clicked, alt-clicked)``: the dataset's samples the grid's selection
    stands for (``sdk.scope.samples_behind``: a patch's image)."""
    alt = alt_clicked(ctx)
    clicked = [sid for sid in ctx.selected if sid not in alt]
    return samples_behind(ctx.view, clicked), samples_behind(ctx.view, alt)


def _examples(ctx) -> tuple[list[str], int]:
    """``(ids, n_alt)``: the selected samples a search by example looks near, and
    how many alt-clicked ones (which the panel marks negative) it leaves out."""
    examples, alt = selection(ctx)
    if not examples:
        raise ValueError(
            "the selected samples are all alt-clicked, which marks negatives: click"
            " samples (without alt) to search by them, or press Mark negative to"
            " label these"
        )
    return examples, len(alt)


def search_scope(ctx):
    """What the panel's searches and refinements look in (``sdk.scope.ctx_scope``)."""
    return ctx_scope(ctx)


def mark(ctx, opts: dict, label: str) -> str:
    """Tag the selected samples ``label`` ("positive"/"negative"); alt-selected
    samples are always tagged negative. The opposite tag is removed."""
    pos_tag, neg_tag = tags(opts)
    chosen, alt = selection(ctx)
    if not chosen and not alt:
        raise ValueError("select samples in the grid first (alt-click marks negatives)")
    positives = chosen if label == "positive" else []
    negatives = alt + (chosen if label == "negative" else [])
    sdk.label_samples(ctx.dataset, positives, negatives, (pos_tag, neg_tag))
    ctx.ops.clear_selected_samples()
    show_sample_tags(ctx)
    # the tiles show the new tags (after reload_samples, those of a refined result
    # or a saved view keep their old ones)
    reload_keeping_filters(ctx)
    return f"marked {len(positives)} positive, {len(negatives)} negative"


def reload_keeping_filters(ctx) -> None:
    """Reload the App's dataset (the tiles show new tags) without losing the grid's
    samples: the reload drops the sidebar's filters, which the grid then keeps as
    view stages (as a search or refinement within them shows its result)."""
    ctx.ops.reload_dataset()
    fold_sidebar_filters(ctx)


def show_sample_tags(ctx) -> None:
    """Turn on the sidebar's sample tags, so the tiles show the labels, keeping the
    fields the user shows (when the App says which: else nothing is changed)."""
    active = list(ctx.active_fields or [])
    if active and "tags" not in active:
        ctx.ops.set_active_fields([*active, "tags"])


def reset_labels(ctx, opts: dict) -> str:
    n = sdk.clear_labels(ctx.dataset, tags=tags(opts))
    reload_keeping_filters(ctx)
    return f"removed {n} labels"


def run_refine(ctx, opts: dict) -> dict:
    """One refinement round from the tags (on the service when one is configured);
    shows the best results at once (ordered, no score written first), records the
    round and its ranking, and lets the score field be written in the background.
    Labels come from the whole dataset, matches from :func:`search_scope`. The
    text query box is the search the labels refine (the query ball uses it)."""
    check_index(ctx, opts)
    wanted = opts.get("random_negatives")
    if wanted is not None and not 0 <= wanted <= MAX_RANDOM_NEGATIVES:
        raise ValueError(
            f"Random negatives must be from 0 to {MAX_RANDOM_NEGATIVES} (empty: the"
            f" model's default), got {wanted}"
        )
    refuse_unmarked_selection(ctx, opts)
    score_field = opts["score_field"] or None
    scope = search_scope(ctx)
    request = _with_searched_text(ctx, RefineRequest.from_json(opts))
    try:
        result = refine_here_or_remote(
            scope,
            request,
            score_field=score_field,
            secrets=ctx.secrets,
            k_preview=PREVIEW_RESULTS,
            write_in_background=True,
        )
    except ContradictoryLabelsError as e:
        if not e.ids:
            raise
        # the way out, at hand, from the whole dataset (labels come from all of
        # it); ordered, as the panel's own results are, so that the next round
        # does not take these few samples for the user's view
        show_result(ctx, ctx.dataset.select(e.ids, ordered=True), scope)
        ctx.panel.state.set("showing", "conflict")  # Save view: what is shown
        raise ContradictoryLabelsError(
            f"{e}. They are shown in the grid: select each, then Mark positive or"
            " Mark negative (marking removes the other label)",
            ids=e.ids,
        ) from e
    show_result(ctx, result.view, scope)
    ctx.panel.state.set("showing", "refine")
    history = RoundHistory(ctx)
    # a model that refines the text search says which text it refined
    searched = {"text": request.query} if request.spec.needs_query else {}
    record = history.append(
        "refine", **result.stats, in_view=scope is not ctx.dataset, **searched
    )
    history.set_result(result.ids, score_field, result.scores)
    return {k: record[k] for k in [*result.stats, "in_view"]}


def _with_searched_text(ctx, request: RefineRequest) -> RefineRequest:
    """``request``, for a model that refines a text search with the query box
    empty, taking the last text this panel searched (or refined)."""
    if not request.spec.needs_query or request.query is not None:
        return request
    text = RoundHistory(ctx).last_text()
    return dataclasses.replace(request, query=text) if text else request


def refuse_unmarked_selection(ctx, opts: dict) -> None:
    """Refuse a refinement while samples are selected but not marked: it learns
    from the marked samples only, and its result clears the selection."""
    if not ctx.selected:
        return
    unmarked = ctx.dataset.select(samples_behind(ctx.view, ctx.selected)).match_tags(
        list(tags(opts)), bool=False
    )
    n = len(unmarked)
    if n:
        raise ValueError(
            f"{counted_are(n, 'selected sample')} not marked: press Mark positive or"
            " Mark negative first (alt-clicked samples are marked negative), or clear the"
            " selection. Refine learns from the marked samples only"
        )


_NO_LONGER_KEPT = (
    f"the last result is no longer kept (it is kept for {RESULT_TTL_S // 86400} days,"
    " while the App runs): refine again"
)


def show_all(ctx, opts: dict) -> str:
    """Every match of the last refinement, by descending score (waits for the
    score field's background write); without a score field, or when another
    round (another user's, another process's) wrote the field since, its ranking
    selected by id (up to what a view can select)."""
    last = RoundHistory(ctx).result()
    if last is None:
        if ctx.panel.state.get("showing") in ("refine", "all"):
            raise ValueError(_NO_LONGER_KEPT)
        raise ValueError("refine first: there is no result to show")
    ids, score_field = last.ids, last.score_field
    scope = search_scope(ctx)
    overwritten = False
    if score_field:
        sdk.wait_for_writes(ctx.dataset, score_field)
        overwritten = not _field_holds(ctx.dataset, score_field, last)
        if not overwritten:
            show_result(ctx, by_score_view(scope, score_field), scope)
            ctx.panel.state.set({"showing": "all", "by_score": True})
            return f"{len(ids)} matches by score"
    if len(ids) > MAX_SELECTED_SAMPLES:
        raise ResultTooLargeError(
            f"the result holds {len(ids)} samples, more than the"
            f" {MAX_SELECTED_SAMPLES} a view can select by id: "
            + (
                f"the score field '{score_field}' now holds another round (another"
                " user's or process's): give this panel a score field of its own"
                if overwritten
                else "set a score field"
            )
            + " and refine again to view every match by score"
        )
    show_result(ctx, result_view(scope, ids), scope)
    ctx.panel.state.set({"showing": "all", "by_score": False})
    if overwritten:
        return (
            f"{len(ids)} matches in ranking order (the score field '{score_field}'"
            " now holds another round: another user's or process's)"
        )
    return f"{len(ids)} matches in ranking order"


def look_further(ctx, opts: dict) -> str:
    """The samples nearest the positives that are neither labelled nor in the
    last result, to label next (``sdk.next_to_label``): a result holds only what
    the model accepts, and labelling within it teaches the model little."""
    check_index(ctx, opts)
    last = RoundHistory(ctx).result()
    if last is None:
        if ctx.panel.state.get("showing") in ("refine", "all", "further"):
            raise ValueError(_NO_LONGER_KEPT)
        raise ValueError("refine first: there is no result to look beyond")
    # pressed again without a Refine: the next page, past what it showed
    state = ctx.panel.state
    further = state.get("showing") == "further"
    shown = list(state.get("further_shown") or ()) if further else []
    scope = search_scope(ctx)
    view = sdk.next_to_label(
        scope,
        exclude=[*last.ids, *shown],
        k=shown_k(opts["k"]),
        tags=tags(opts),
        index_key=opts["index_key"],
    )
    if not len(view):  # the grid as it was
        seen = ", in the result or shown already" if shown else " or in the result"
        ctx.ops.notify(f"Every sample is labelled{seen}: Refine", variant="warning")
        return ""
    show_result(ctx, view, scope)
    state.set({"showing": "further", "further_shown": [*shown, *view.values("id")]})
    nearest = "further from" if shown else "nearest"
    return (
        f"{len(view)} samples {nearest} the positives, neither labelled nor in the"
        " result: mark them, then Refine"
    )


def score_field_overwritten(ctx) -> bool:
    """Whether the grid shows this panel's last result by its score field ("Show
    all"), which another round has written since (False when no result is kept,
    or it was shown by id)."""
    last = RoundHistory(ctx).result()
    if last is None or not last.score_field or not ctx.panel.state.get("by_score"):
        return False
    if ctx.dataset.get_field(last.score_field) is None:
        return True
    return not _field_holds(ctx.dataset, last.score_field, last)


def _field_holds(dataset, field: str, last) -> bool:
    """Whether the score ``field`` holds the round of ``last`` (a
    :class:`~fiftyone_clipbranches.sdk.round_history.LastResult`): as many samples
    scored, and the scores its probe kept (the database's index on the field
    counts them)."""
    if len(last.ids) != dataset.exists(field).count():
        return False
    if not last.probe:
        return True
    probe = list(last.probe)
    held = dict(zip(*dataset.select(probe).values(["id", field])))
    return all(held.get(i) == score for i, score in last.probe.items())


def save_results(ctx, opts: dict) -> str:
    """Save what is shown; after a refinement, exactly its ranking (every match, in
    order), not only the part shown."""
    name = (opts.get("view_name") or "").strip()
    if not name:
        raise ValueError("type a name in Saved view name first")
    view = view_to_save(ctx)
    scope = search_scope(ctx)
    replaced = name in ctx.dataset.list_saved_views()
    name = sdk.save_view(ctx.dataset, name, view)
    # the App checks a view's name against the saved views it has loaded, which
    # do not hold this one yet: refresh them, and show the view itself
    ctx.ops.reload_dataset()
    saved = ctx.dataset.load_saved_view(name)
    show_result(ctx, saved, scope)  # shown by its stages: still a result of scope
    what = "replaced" if replaced else "saved"
    return f"{what} view '{name}' ({counted(len(saved), 'sample')})"


def view_to_save(ctx):
    """What Save view saves: after a refinement, its whole ranking (the user's
    filters kept), else the grid's view.

    Raises:
        ResultTooLargeError: a ranking longer than a saved view can select.
    """
    if ctx.panel.state.get("showing") not in ("refine", "all"):
        refuse_every_sample(ctx.view, ctx.dataset)
        return ctx.view
    last = RoundHistory(ctx).result()
    if last is None:  # the grid shows its best only: saving those would say less
        raise ValueError(_NO_LONGER_KEPT)
    ids = last.ids
    if len(ids) > MAX_SELECTED_SAMPLES:
        raise ResultTooLargeError(
            too_large_to_save(len(ids), MAX_SELECTED_SAMPLES, last.score_field)
        )
    return result_view(_without_a_selection_of(search_scope(ctx), ids), ids)


def _without_a_selection_of(scope, ids):
    """``scope`` without its last stage when that is an ordered selection holding
    every one of ``ids`` (a saved result opened again, saved again): selecting
    ``ids`` after it would repeat it, the samples the same."""
    last = final_selection(scope)
    if last is None or not set(ids) <= set(last.sample_ids):
        return scope
    return view_of(scope._dataset, list(scope._stages)[:-1])


def tag_counts(ctx, opts: dict) -> tuple[int, int]:
    """Samples tagged positive and negative (by the tags index: no scan)."""
    pos_tag, neg_tag = tags(opts)
    counts = count_tagged(ctx.dataset, (pos_tag, neg_tag))
    return counts[pos_tag], counts[neg_tag]
