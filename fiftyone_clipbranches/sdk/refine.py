"""One relevance-feedback round: labels -> model -> every positive of the catalogue.

:func:`refine_ranking` stops at ranked index rows (what the service pages through);
:func:`refine` turns them into sample ids and applies them with
:func:`apply_refine_result` (score field, ordered view, saved view), which is also
how the plugin applies the ids and scores a remote service returns.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fiftyone_clipbranches.sdk.errors import (
    ResultTooLargeError,
    SampleIdsError,
    UnknownModelError,
)
from fiftyone_clipbranches.sdk.freshness import (
    alive_rows,
    searchable_rows,
    unindexed_count,
)
from fiftyone_clipbranches.sdk.indexes import check_ids_in_dataset, load_index
from fiftyone_clipbranches.sdk.labelled_rows import index_rows
from fiftyone_clipbranches.sdk.labels import collect_labels, tagged_ids
from fiftyone_clipbranches.sdk.media import require_image_samples
from fiftyone_clipbranches.sdk.messages import (
    counted,
    result_repr,
    short,
    too_large_to_save,
)
from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL, fit_on_index, make_model
from fiftyone_clipbranches.sdk.request import RefineRequest
from fiftyone_clipbranches.sdk.rowmap import RowIds, SampleRowMap, as_sample_ids
from fiftyone_clipbranches.sdk.runs import chosen_index_key, root_dataset
from fiftyone_clipbranches.sdk.search import query_code
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_SCORE_FIELD,
    DEFAULT_TAGS,
    MAX_SELECTED_SAMPLES,
)
from fiftyone_clipbranches.sdk.views import (
    by_score_view,
    check_view_name,
    check_writable,
    recover_unfinished_writes,
    result_view,
    write_result,
)


@dataclass
class RefineResult:
    """Outcome of :func:`refine`.

    Attributes:
        view: ordered view of the positives (best score first), or of the first
            ``k_preview`` of them.
        ids: all sample ids the model classifies positive, best score first: a
            sequence of str (a list when scores or a view were written; after a
            local refinement that wrote nothing, ``sdk.rowmap.RowIds``, turned
            into str only where read: ``list(result.ids)`` makes a list).
        scores: float64 ``(len(ids),)`` decision scores, descending.
        stats: the keys of :attr:`RankedRows.stats` plus ``write_ms``,
            ``saved_view``, ``score_field``; ``total_ms`` covers the writes too.
    """

    view: object
    ids: Sequence[str]
    scores: np.ndarray
    stats: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return result_repr(self, len(self.ids), self.scores, ".ids, .scores, .view")


@dataclass(frozen=True, eq=False)
class RankedRows:
    """Index rows a refinement accepts, best first (see :func:`refine_ranking`).

    Attributes:
        rows: int64 ``(R,)`` index rows, by descending score then ascending row;
            rows of samples deleted since the build are left out.
        scores: float64 ``(R,)``, descending.
        bundle: the loaded index (``bundle.rowmap.ids_of(rows)`` -> sample ids).
        stats: ``model``, ``label_source``, ``n_pos``, ``n_neg``,
            ``n_unreadable_neg`` (labelled negatives left out: their image could
            not be read at the build), ``n_unindexed_neg`` (labelled negatives
            left out: added after the build, not searched), ``n_neighbour_pos`` (neighbour positives
            added), ``n_random_neg`` (random negatives actually drawn),
            ``n_random_neg_requested``,
            ``n_relabelled`` (random negatives the linear classifier, the query
            ball, the ensemble or the cascade (a broad concept's; then the
            cascade's forest's) left out as likely matches; 0 for the other
            models),
            ``n_forced_pos`` (labelled positives the model did not accept, added
            with the best score: see
            :func:`labels_are_law`), ``n_dropped_neg`` (labelled negatives the
            model accepted, removed), ``n_results``, ``n_index`` (searched
            samples), ``n_unindexed`` (samples added since the build, not
            searched), ``index_key``, ``recovered_fields`` (score fields of
            rounds whose writer died, finished before this one; usually empty),
            ``train_ms``, ``query_ms``, ``total_ms``. When every searched sample
            is labelled no model is fit: the rows are the labelled positives
            (score 1.0) and ``note`` says so.
    """

    rows: np.ndarray
    scores: np.ndarray
    bundle: object
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class FittedRefinement:
    """A refinement's model, fitted on the labels, and what its answer must honour
    (see :func:`fit_refinement`).

    Attributes:
        model: the fitted engine model; None when every searched sample is
            labelled (nothing left to classify: the answer is the positives).
        bundle: the loaded index (``bundle.index``, ``bundle.rowmap``).
        pos_rows, neg_rows: int64 index rows of the labelled samples.
        alive: bool ``(N,)``, the rows the answer may hold: False for samples
            deleted since the build and, when a view was refined, for samples
            outside it; None when every row may be returned.
        stats: :attr:`RankedRows.stats` known before the model is applied (every
            key but ``n_forced_pos``, ``n_dropped_neg``, ``n_results``,
            ``query_ms`` and ``total_ms``).
        started: ``time.perf_counter()`` when the refinement began.
    """

    model: object
    bundle: object
    pos_rows: np.ndarray
    neg_rows: np.ndarray
    alive: np.ndarray | None
    stats: dict
    started: float

    @property
    def live_positives(self) -> np.ndarray:
        """The labelled positive rows whose samples still exist."""
        if self.alive is None:
            return self.pos_rows
        return self.pos_rows[self.alive[self.pos_rows]]


def fit_refinement(dataset, request: RefineRequest) -> FittedRefinement:
    """Labels -> training set -> fitted model: the steps every form of a
    refinement's answer shares. Reads the dataset; writes nothing.

    Raises:
        as :func:`refine_ranking`.
    """
    t0 = time.perf_counter()
    req = request
    ds = root_dataset(dataset)
    require_image_samples(dataset, ds)
    model, index_key = req.model, chosen_index_key(ds, req.index_key)
    model_params = dict(req.model_params or {})
    recovered = recover_unfinished_writes(ds)
    config, bundle = load_index(ds, index_key)
    if req.spec.needs_query:
        model_params["center"] = _refined_query_code(
            config, bundle, index_key, model, req.query
        )
    clf = make_model(model, random_state=req.seed, **model_params)
    labels = collect_labels(ds, req.positives, req.negatives, req.tags)
    alive = alive_rows(ds, bundle.rowmap, str(bundle.path))
    pos_rows = index_rows(
        ds, bundle, labels.positives, "positive", index_key, alive=alive
    )
    neg_rows = index_rows(
        ds, bundle, labels.negatives, "negative", index_key, skip_unindexed=True,
        alive=alive,
    )  # fmt: skip
    n_unreadable_neg = sum(i in bundle.unembeddable for i in labels.negatives)
    index = bundle.index
    n_unindexed = unindexed_count(ds, bundle, alive, config.embeddings_field)
    # the answer stays inside a view, as a search's does; labels and training
    # use the whole dataset
    within = alive if dataset is ds else searchable_rows(dataset, ds, bundle)
    n_alive = len(index) if within is None else int(within.sum())
    if not n_alive and dataset is not ds:
        _refuse_empty_view(dataset)
    stats = {
        "model": model,
        "label_source": labels.source,
        "n_pos": len(pos_rows),
        "n_neg": len(neg_rows),
        "n_unreadable_neg": n_unreadable_neg,
        "n_unindexed_neg": len(labels.negatives) - len(neg_rows) - n_unreadable_neg,
        "n_neighbour_pos": 0,
        "n_random_neg": 0,
        "n_random_neg_requested": req.n_random_negatives_for(len(pos_rows)),
        "n_relabelled": 0,
        "n_index": n_alive,
        "n_unindexed": n_unindexed,
        "index_key": index_key,
        "train_ms": 0.0,
        "recovered_fields": recovered,
    }
    if _nothing_left_to_classify(alive, len(index), pos_rows, neg_rows):
        stats["note"] = (
            "every sample is labelled positive: there is nothing left to classify;"
            " the result is your positives"
            if neg_rows.size == 0
            else "every sample is labelled: there is nothing left to classify; the"
            " result is your positives"
        )
        return FittedRefinement(None, bundle, pos_rows, neg_rows, within, stats, t0)

    _check_some_negatives(req, len(pos_rows), len(neg_rows), len(labels.negatives))
    t1 = time.perf_counter()
    train = fit_on_index(
        clf,
        index,
        pos_rows,
        neg_rows,
        n_random_negatives=req.n_random_negatives_for(len(pos_rows)),
        max_random_fraction=req.spec.max_random_fraction,
        neighbours_per_positive=req.n_neighbours_per_positive,
        negative_weight=float(req.negative_weight),
        seed=req.seed,
    )
    stats.update(
        n_neighbour_pos=int(train.neighbour_rows.size),
        n_random_neg=int(np.count_nonzero(train.y == 0)) - len(neg_rows),
        n_relabelled=int(clf.n_relabelled_),
        train_ms=1e3 * (time.perf_counter() - t1),
    )
    return FittedRefinement(clf, bundle, pos_rows, neg_rows, within, stats, t0)


def _refuse_empty_view(view) -> None:
    """Refuse a view none of whose samples the index holds: its answer would be
    empty and would clear the scores of the last result (a misspelt tag or
    filter in the App, or in a script, wiped them)."""
    n = view.count()
    if n == 0:
        refused = ValueError(
            "the view holds no sample: there is nothing to refine within (is a"
            " tag or filter misspelt?); refine the dataset, or a view with samples"
        )
        refused.in_app = (
            "the grid's view holds no sample: there is nothing to refine within (is"
            " a filter misspelt?); clear it, or show some samples"
        )
        raise refused
    refused = ValueError(
        f"none of the view's {counted(n, 'sample')} is in the index: added since"
        " it was built (update_index adds them; CLI: update-index), or left out as"
        " unreadable (update_index(retry_failed=True); CLI: --retry-failed)"
    )
    refused.in_app = (
        f"none of the {counted(n, 'sample')} of the grid's view is in the index:"
        " press Update index (it adds the samples added since the build), then"
        " Refine"
    )
    raise refused


def _check_some_negatives(
    req: RefineRequest, n_pos: int, n_neg: int, n_labelled_neg: int
) -> None:
    """Refuse a training set without negatives (none labelled in the index, no
    random ones): a classifier has nothing to tell the positives from (the linear
    one failed in its own words, the others returned the positives and their
    neighbours). A model that refines the search query has the query for
    reference. ``n_labelled_neg``: the samples labelled negative, in the index or
    not."""
    if n_neg or req.n_random_negatives_for(n_pos) or req.spec.needs_query:
        return
    why, app_why = "no sample is labelled negative", "no sample is marked negative"
    if n_labelled_neg:
        why = app_why = (
            f"the {counted(n_labelled_neg, 'sample')} labelled negative"
            f" {'is' if n_labelled_neg == 1 else 'are'} not in the index (added"
            " since it was built, or unreadable: update the index)"
        )
    error = ValueError(
        f"no negatives to learn from: {why} and random_negatives is 0; label some"
        " negatives, or leave random_negatives unset (CLI: --random-negatives)"
    )
    error.in_app = (
        f"no negatives to learn from: {app_why} and Random negatives is 0; mark"
        " some samples negative, or empty Random negatives (the model's default)"
    )
    raise error


def refine_ranking(
    dataset, request: RefineRequest | None = None, **fields
) -> RankedRows:
    """Labels -> training set -> model -> every index row it accepts.

    Reads the dataset (labels, deleted samples) but writes nothing and converts no
    row to a sample id. Pass a :class:`RefineRequest`, or its fields as keywords
    (as :func:`refine`'s). ``sdk.refine_pages`` gives the same answer a page at a
    time.

    Raises:
        NoPositivesError, ContradictoryLabelsError, IndexNotFoundError,
        StaleIndexError (positives added after the build; such negatives are
        left out, counted in ``stats["n_unindexed_neg"]``), SampleIdsError
        (labelled ids that are not samples of the dataset, or not ids at all;
        positives whose image could not be read at the build; such negatives
        are left out), ValueError (an argument out of range or of the wrong
        type).
    """
    request = RefineRequest.build(request, **fields)
    fitted = fit_refinement(dataset, request)
    t2 = time.perf_counter()
    rows, scores, n_forced, n_dropped = ranked_answer(fitted)
    t3 = time.perf_counter()
    stats = {
        **fitted.stats,
        "n_forced_pos": n_forced,
        "n_dropped_neg": n_dropped,
        "n_results": int(rows.size),
        "query_ms": 1e3 * (t3 - t2) if fitted.model is not None else 0.0,
        "total_ms": 1e3 * (t3 - fitted.started),
    }
    if fitted.model is not None and not np.any(~in_few(rows, fitted.live_positives)):
        stats["note"] = nothing_found_note(fitted)
    if request.negatives is None and request.positives is not None:
        # after the ranking: a refinement that fails says only why
        unused = _negative_tags_unused(dataset, request.tags[1])
        if unused:  # every face says it: refine warns, the service sends it
            stats["warning"] = unused
    return RankedRows(rows, scores, fitted.bundle, stats)


def ranked_answer(fitted: FittedRefinement):
    """Every row of a fitted refinement's answer: the model's ranking over the
    samples that still exist, labels enforced (:func:`labels_are_law`).

    Returns:
        ``(rows, scores, n_forced_pos, n_dropped_neg)`` as :func:`labels_are_law`.
    """
    if fitted.model is None:
        rows = fitted.live_positives
        return rows, np.ones(rows.size), int(rows.size), 0
    from fiftyone_clipbranches.engine.search import apply_model

    ranking = apply_model(fitted.model, fitted.bundle.index)
    rows = np.asarray(ranking.ids, dtype=np.int64)
    scores = np.asarray(ranking.scores, dtype=np.float64)
    if fitted.alive is not None:
        keep = fitted.alive[rows]
        rows, scores = rows[keep], scores[keep]
    return labels_are_law(rows, scores, fitted.live_positives, fitted.neg_rows)


def apply_refine_result(
    dataset,
    ids: Sequence[str],
    scores,
    score_field: str | None = DEFAULT_SCORE_FIELD,
    saved_view: str | None = None,
    k_preview: int | None = None,
    *,
    write_in_background: bool = False,
):
    """Write a refinement's scores and return its ordered view.

    Args:
        dataset: a dataset or view (its root dataset receives the writes; the
            returned view is built on it, its stages kept).
        ids: sample ids, best first.
        scores: ``(len(ids),)`` scores of ``ids``.
        score_field: FloatField set to ``scores`` on ``ids`` and cleared on every
            other sample; None writes nothing.
        saved_view: when set, the view is also saved under this name.
        k_preview: when set, the view holds only the first ``k_preview`` ids.
        write_in_background: return once the round is journaled; the scores (and
            saved view) are written by a writer thread (``sdk.wait_for_writes``).
            The returned view is the ordered select of the ids, which needs no
            score (a result viewed by score is written first).

    Returns:
        the ordered ``DatasetView`` of ``ids`` (or of the first ``k_preview``).
        Beyond ``settings.MAX_SELECTED_SAMPLES`` ids it is the samples holding a
        score, by descending score (the same samples, ties in storage order).

    Raises:
        SampleIdsError: an id is malformed or not a sample of the dataset.
        ValueError: ``scores`` is not finite, or not one per id.
        ResultTooLargeError: more than ``MAX_SELECTED_SAMPLES`` ids would be
            saved as a view, or viewed without a score field. Raised before any
            write.
    """
    ids = as_sample_ids(ids, "ids")
    if len(set(ids)) != len(ids):
        raise SampleIdsError("ids must be distinct: a sample is ranked once")
    check_ids_in_dataset(root_dataset(dataset), SampleRowMap(ids))
    check_writable(dataset, score_field, saved_view)
    finite = np.isfinite(np.asarray(scores, dtype=np.float64))
    if finite.shape != (len(ids),):
        raise ValueError(
            f"scores must have shape ({len(ids)},) like ids; got {finite.shape}"
        )
    if not finite.all():
        raise ValueError(
            f"scores must be finite numbers, as a ranking's are; got"
            f" {int((~finite).sum())} NaN or infinite"
        )
    return _write_and_view(
        dataset,
        ids,
        scores,
        score_field,
        saved_view,
        k_preview,
        write_in_background=write_in_background,
    )


def _write_and_view(
    dataset,
    ids: Sequence[str],
    scores,
    score_field,
    saved_view,
    k_preview,
    *,
    write_in_background: bool,
):
    """:func:`apply_refine_result` of ``ids`` known to be the dataset's (a
    ranking's)."""
    k_preview = _checked_k_preview(k_preview)
    if saved_view is not None:
        check_view_name(saved_view, "saved_view")
    if not isinstance(ids, Sequence) or isinstance(ids, str):
        ids = list(ids)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(ids),):
        raise ValueError(
            f"scores must have shape ({len(ids)},) like ids; got {scores.shape}"
        )
    shown = ids if k_preview is None else ids[:k_preview]
    by_score = len(shown) > MAX_SELECTED_SAMPLES
    if by_score and saved_view:
        raise ResultTooLargeError(
            too_large_to_save(len(shown), MAX_SELECTED_SAMPLES, score_field)
            + "; or pass k_preview to save the best ones"
        )
    if by_score and not score_field:
        raise ResultTooLargeError(
            f"the result holds {len(shown)} samples, more than the "
            f"{MAX_SELECTED_SAMPLES} a view can select by id (pass a score_field"
            " to view it by score): pass k_preview to keep the best ones, or refine"
            " further (more negatives) first"
        )
    ds = root_dataset(dataset)
    wait = by_score or not write_in_background
    write_result(ds, score_field, ids, scores, saved_view, k_preview, wait=wait)
    # on top of the refined view, so its stages (the App's filters) stay
    if by_score:
        return by_score_view(dataset, score_field)
    return result_view(dataset, shown)


def refine(
    dataset,
    positives=None,
    negatives=None,
    tags=DEFAULT_TAGS,
    model: str = DEFAULT_MODEL,
    random_negatives: int | None = None,
    negative_weight: float = 1.0,
    k_preview: int | None = None,
    score_field: str | None = DEFAULT_SCORE_FIELD,
    saved_view: str | None = None,
    index_key: str | None = None,
    model_params: dict | None = None,
    seed: int = 0,
    neighbours_per_positive: int | str | None = None,
    query=None,
    *,
    request: RefineRequest | None = None,
    write_in_background: bool = False,
) -> RefineResult:
    """Train ``model`` on the labelled samples and return every sample it accepts.

    Args:
        dataset: a FiftyOne dataset or view. The labels (tags or ids) and the
            training come from its root dataset; the answer holds the samples of
            ``dataset`` only (labelled positives outside a view are left out of
            it), as a search of the view's does.
        positives, negatives: sample ids; when both are None they come from the
            sample tags ``tags`` (positive tag, negative tag).
        model: a registered model name (``sdk.models.MODELS``: what each is for
            and its defaults; the README's table).
        random_negatives: unlabelled samples drawn as extra negatives; None picks
            the measured default of the model (``ModelSpec.random_negatives_for``
            in ``sdk.models``: 1500 for branches, linear and ball, max(500, 15 x
            positives) for cascade, 500 for the others). At most a share of the
            unlabelled samples is drawn (``ModelSpec.max_random_fraction``: 30%
            for cascade, 90% for the others): on a small catalogue drawing them
            all would turn every unmarked match into a negative.
            ``stats["n_random_neg"]`` is the number drawn.
        negative_weight: sample weight of every negative.
        k_preview: when set, the view holds only the first ``k_preview`` results
            (and so does ``saved_view``: labelled positives further down are in
            the round, ``stats["n_results"]`` and the score field, not in it).
        score_field: FloatField receiving the scores of the results (cleared on
            earlier results); None to write nothing.
        saved_view: when set, the view is also saved under this name.
        index_key: the index to search; None: ``"clipbranches"``, else the
            dataset's only index (as every face chooses).
        model_params: extra keyword arguments of the model class.
        seed: seed of the model and of the random negatives.
        neighbours_per_positive: with fewer than 64 positives, the nearest code
            neighbours of each positive train as positives too: ``"auto"`` adds
            ``round(32 / P)`` of them (``round(48 / P)`` where their cluster has
            no boundary; from 32 positives only while the class is estimated to
            hold 2.5 times them; measured in docs/quality.md), an int that
            many, 0 none; None picks the model's default
            (``ModelSpec.neighbours_per_positive``: none for linear and ball, auto
            for the others). ``stats["n_neighbour_pos"]`` is the number added.
        query: the search the labels refine: its text (str) or a vector (a float
            embedding or a uint8 code). Needed by the models whose spec
            ``needs_query`` (the query ball), ignored by the others.
        request: a :class:`RefineRequest` instead of its fields (``positives`` to
            ``query``); giving both is an error.
        write_in_background: return before the scores are written (journaled,
            written by a writer thread; ``sdk.wait_for_writes``): the panel's path.

    Raises:
        NoPositivesError, ContradictoryLabelsError, IndexNotFoundError,
        StaleIndexError (positives added after the build; such negatives are
        left out, counted in ``stats["n_unindexed_neg"]``), SampleIdsError
        (ids that are not samples of the dataset; positives whose image could
        not be read at the build), ViewNameTakenError (the
        saved view's name collides with another view's), ValueError.
    """
    k_preview = _checked_k_preview(k_preview)
    check_writable(dataset, score_field, saved_view)  # refused before any work
    request = RefineRequest.build(
        request,
        positives=positives,
        negatives=negatives,
        tags=tags,
        model=model,
        random_negatives=random_negatives,
        negative_weight=negative_weight,
        index_key=index_key,
        model_params=model_params,
        seed=seed,
        neighbours_per_positive=neighbours_per_positive,
        query=query,
    )
    ranked = refine_ranking(dataset, request)
    if ranked.stats.get("warning"):
        warnings.warn(ranked.stats["warning"], UserWarning, stacklevel=3)
    ids = RowIds(ranked.bundle.rowmap, ranked.rows)
    return written_result(
        dataset,
        ids,
        ranked.scores,
        ranked.stats,
        score_field,
        saved_view,
        k_preview,
        write_in_background=write_in_background,
    )


def written_result(
    dataset,
    ids,
    scores,
    stats: dict,
    score_field,
    saved_view,
    k_preview=None,
    *,
    write_in_background: bool = False,
) -> RefineResult:
    """:func:`apply_refine_result` of a ranking (local or remote) whose
    :attr:`RankedRows.stats` are ``stats``, as a :class:`RefineResult` (stats plus
    ``write_ms``, ``saved_view``, ``score_field``; ``total_ms`` with the writes, or
    with their journaling when they are written in the background)."""
    t0 = time.perf_counter()
    scores = np.asarray(scores, dtype=np.float64)
    if score_field or saved_view:
        ids = list(ids)  # every id gets written: make them once, here
    view = _write_and_view(
        dataset,
        ids,
        scores,
        score_field,
        saved_view,
        k_preview,
        write_in_background=write_in_background,
    )
    write_ms = 1e3 * (time.perf_counter() - t0)
    stats = {
        **stats,
        "write_ms": write_ms,
        "total_ms": stats["total_ms"] + write_ms,
        "saved_view": saved_view,
        "score_field": score_field,
    }
    return RefineResult(view=view, ids=ids, scores=scores, stats=stats)


def labels_are_law(rows, scores, pos_rows, neg_rows):
    """The model's ranking with the user's labels enforced.

    Labelled positive rows the model did not accept are added with the best score
    of the ranking (1.0 when it is empty), so they rank first (ties by ascending
    row, like every tie); labelled negative rows are removed. Positives the model
    accepted keep their own score.

    Returns:
        ``(rows, scores, n_forced_pos, n_dropped_neg)``, rows by descending score
        then ascending row.
    """
    # np.isin sorts the whole ranking (100+ ms at 10M rows); the labels are few
    dropped = in_few(rows, neg_rows)
    n_dropped = int(dropped.sum())
    if n_dropped:
        rows, scores = rows[~dropped], scores[~dropped]
    missing = pos_rows[~in_few(pos_rows, rows[in_few(rows, pos_rows)])]
    if missing.size:
        top = float(scores.max()) if scores.size else 1.0
        rows = np.concatenate([missing.astype(np.int64), rows])
        scores = np.concatenate([np.full(missing.size, top), scores])
        order = np.lexsort((rows, -scores))
        rows, scores = rows[order], scores[order]
    return rows, scores, int(missing.size), n_dropped


def in_few(values: np.ndarray, few: np.ndarray) -> np.ndarray:
    """bool, shaped like ``values``: which are in ``few`` (a short int array)."""
    few = np.sort(np.asarray(few, dtype=np.int64).reshape(-1))
    if few.size == 0:
        return np.zeros(np.shape(values), dtype=bool)
    at = np.minimum(np.searchsorted(few, values), few.size - 1)
    return few[at] == values


def nothing_found_note(fitted: FittedRefinement) -> str:
    """Words for a model that accepted no sample but the labelled positives."""
    from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL

    n_rows = len(fitted.bundle.index)
    if fitted.alive is not None and _nothing_left_to_classify(
        fitted.alive, n_rows, fitted.pos_rows, fitted.neg_rows
    ):
        return (
            "every sample of the view is labelled: there is nothing left in it to"
            " classify; the result is your positives in it"
        )
    model = fitted.stats["model"]

    other = (
        f", or try the default model, {DEFAULT_MODEL}" if model != DEFAULT_MODEL else ""
    )
    return (
        "the model found no sample beyond the labelled positives: label more"
        f" positives{other}"
    )


def _nothing_left_to_classify(alive, n_rows, pos_rows, neg_rows) -> bool:
    """Whether every searched sample is labelled (no unlabelled row to classify);
    counts the few labelled rows instead of scanning every row."""
    labelled = np.unique(np.concatenate([pos_rows, neg_rows]).astype(np.int64))
    if alive is None:
        return labelled.size >= n_rows
    return int(np.count_nonzero(alive[labelled])) >= int(np.count_nonzero(alive))


def _refined_query_code(config, bundle, index_key, model, query) -> np.ndarray:
    if query is None:
        raise ValueError(
            f"model {model!r} refines a search: give the text that was searched as"
            ' the query (query= in Python, also a vector; --query in the CLI; "query"'
            " over HTTP)"
        )
    if isinstance(query, str):
        try:
            return query_code(config, bundle, index_key, text=query)
        except UnknownModelError as e:  # the query ball needs the text in its space
            refused = type(e)(  # its own class: CheckpointUnavailableError, ...
                f"{e}; or refine with another model (model {model!r} refines the"
                " text query, which this index cannot embed)"
            )
            refused.in_app = (
                f"{getattr(e, 'in_app', e)}; or choose another model than the query"
                " ball (it refines the text query, which this index cannot embed)"
            )
            raise refused from None
    if isinstance(query, list | tuple) and any(isinstance(q, str) for q in query):
        raise ValueError(
            f"model {model!r} refines a search by text or by a vector, not by sample"
            " ids: give the searched text as query (or the vector searched with);"
            " samples go in as positives"
        )
    if np.ndim(query) != 1:
        raise ValueError(
            f"query must be the searched text or its 1-d vector; got {short(query)}"
        )
    return query_code(config, bundle, index_key, vector=query)


def _negative_tags_unused(dataset, neg_tag: str) -> str | None:
    """Words saying that samples tagged ``neg_tag`` are no negatives of a
    refinement given positive ids alone (ids replace the tags): they may be in its
    result. None when no sample has that tag."""
    n_tagged = len(tagged_ids(root_dataset(dataset), neg_tag))
    if not n_tagged:
        return None
    return (
        f"{counted(n_tagged, 'sample')} tagged {neg_tag!r}"
        f" {'is not a negative' if n_tagged == 1 else 'are not negatives'} of"
        " this refinement: positives= replaces the tags; pass negatives= too"
        " (CLI: --negative), or neither to read both tags"
    )


def _checked_k_preview(k_preview) -> int | None:
    """``k_preview`` as a Python int (numpy's would not reach the database)."""
    if k_preview is None:
        return None
    if (
        isinstance(k_preview, bool)
        or not isinstance(k_preview, int | np.integer)
        or k_preview < 1
    ):
        raise ValueError(f"k_preview must be None or a positive int; got {k_preview!r}")
    return int(k_preview)
