"""One relevance-feedback round: labels -> model -> every positive of the catalogue."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fiftyone_clipbranches.sdk.errors import StaleIndexError
from fiftyone_clipbranches.sdk.freshness import alive_rows
from fiftyone_clipbranches.sdk.indexes import load_index
from fiftyone_clipbranches.sdk.labels import collect_labels
from fiftyone_clipbranches.sdk.models import fit_model, make_model
from fiftyone_clipbranches.sdk.runs import root_dataset
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_INDEX_KEY,
    DEFAULT_SCORE_FIELD,
    DEFAULT_TAGS,
)
from fiftyone_clipbranches.sdk.views import save_view, write_scores


@dataclass
class RefineResult:
    """Outcome of :func:`refine`.

    Attributes:
        view: ordered view of the positives (best score first), or of the first
            ``k_preview`` of them.
        ids: all sample ids the model classifies positive, best score first.
        scores: float64 ``(len(ids),)`` decision scores, descending.
        stats: ``n_pos``, ``n_neg``, ``n_random_neg``, ``n_results``, ``n_index``,
            ``n_unindexed`` (samples added since the build, not searched),
            ``model``, ``train_ms``, ``query_ms``, ``write_ms``, ``total_ms``,
            ``saved_view``.
    """

    view: object
    ids: list[str]
    scores: np.ndarray
    stats: dict = field(default_factory=dict)


def refine(
    dataset,
    positives=None,
    negatives=None,
    tags=DEFAULT_TAGS,
    model: str = "branches",
    random_negatives: int = 500,
    negative_weight: float = 1.0,
    k_preview: int | None = None,
    score_field: str | None = DEFAULT_SCORE_FIELD,
    saved_view: str | None = None,
    index_key: str = DEFAULT_INDEX_KEY,
    model_params: dict | None = None,
    seed: int = 0,
) -> RefineResult:
    """Train ``model`` on the labelled samples and return every sample it accepts.

    Args:
        dataset: a FiftyOne dataset or view (its root dataset is used).
        positives, negatives: sample ids; when both are None they come from the
            sample tags ``tags`` (positive tag, negative tag).
        model: ``"branches"``, ``"ensemble"``, ``"tree"`` or ``"forest"``.
        random_negatives: unlabelled samples drawn as extra negatives.
        negative_weight: sample weight of every negative.
        k_preview: when set, the view holds only the first ``k_preview`` results.
        score_field: FloatField receiving the scores of the results (cleared on
            earlier results); None to write nothing.
        saved_view: when set, the view is also saved under this name.
        index_key: the index to search.
        model_params: extra keyword arguments of the model class.

    Raises:
        NoPositivesError, ContradictoryLabelsError, IndexNotFoundError,
        StaleIndexError (labelled samples missing from the index).
    """
    if isinstance(random_negatives, bool) or not isinstance(
        random_negatives, int | np.integer
    ):
        raise ValueError(
            f"random_negatives must be an int >= 0; got {random_negatives!r}"
        )
    if random_negatives < 0:
        raise ValueError(f"random_negatives must be >= 0; got {random_negatives}")
    if not np.isfinite(negative_weight) or negative_weight <= 0:
        raise ValueError(f"negative_weight must be > 0; got {negative_weight!r}")
    if k_preview is not None and (
        not isinstance(k_preview, int | np.integer) or k_preview < 1
    ):
        raise ValueError(f"k_preview must be None or a positive int; got {k_preview!r}")
    t0 = time.perf_counter()
    ds = root_dataset(dataset)
    clf = make_model(model, random_state=seed, **(model_params or {}))
    _, bundle = load_index(ds, index_key)
    labels = collect_labels(ds, positives, negatives, tags)
    pos_rows = _rows(bundle, labels.positives, "positive", index_key)
    neg_rows = _rows(bundle, labels.negatives, "negative", index_key)
    alive = alive_rows(ds, bundle.rowmap, str(bundle.path))

    from fiftyone_clipbranches.engine.search import apply_model
    from fiftyone_clipbranches.engine.training_set import make_training_set

    t1 = time.perf_counter()
    codes = bundle.index.codes
    n_random = min(
        int(random_negatives), max(len(bundle.index) - len(pos_rows) - len(neg_rows), 0)
    )
    train = make_training_set(
        codes,
        pos_rows,
        neg_rows,
        n_random_negatives=n_random,
        negative_weight=float(negative_weight),
        seed=seed,
    )
    fit_model(clf, train.X, train.y, train.sample_weight, bundle.index.subsets)
    t2 = time.perf_counter()
    ranking = apply_model(clf, bundle.index)
    rows, scores = np.asarray(ranking.ids), np.asarray(ranking.scores, np.float64)
    if alive is not None:
        keep = alive[rows]
        rows, scores = rows[keep], scores[keep]
    t3 = time.perf_counter()
    ids = bundle.rowmap.ids_of(rows)
    if score_field:
        write_scores(ds, score_field, ids, scores)
    view = ds.select(ids if k_preview is None else ids[:k_preview], ordered=True)
    if saved_view:
        save_view(ds, saved_view, view)
    t4 = time.perf_counter()

    n_alive = len(bundle.index) if alive is None else int(alive.sum())
    stats = {
        "model": model,
        "n_pos": len(pos_rows),
        "n_neg": len(neg_rows),
        "n_random_neg": int(np.count_nonzero(train.y == 0)) - len(neg_rows),
        "n_results": len(ids),
        "n_index": n_alive,
        "n_unindexed": max(ds.count() - n_alive, 0),
        "label_source": labels.source,
        "train_ms": 1e3 * (t2 - t1),
        "query_ms": 1e3 * (t3 - t2),
        "write_ms": 1e3 * (t4 - t3),
        "total_ms": 1e3 * (t4 - t0),
        "saved_view": saved_view,
        "score_field": score_field,
        "index_key": index_key,
    }
    return RefineResult(view=view, ids=ids, scores=scores, stats=stats)


def _rows(bundle, ids, what, index_key) -> np.ndarray:
    rows, found = bundle.rowmap.rows_of(ids)
    if not found.all():
        missing = [i for i, hit in zip(ids, found) if not hit]
        raise StaleIndexError(
            f"{len(missing)} {what} samples are not in index {index_key!r} (e.g. "
            f"{missing[0]}): they were added after the build; run update_index"
        )
    return np.sort(rows).astype(np.int64)
