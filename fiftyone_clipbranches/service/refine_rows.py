"""Interim adapter: ``sdk.refine`` stopped before it turns rows into sample ids.

``sdk.refine`` converts every result row to a sample-id string, builds a view and
counts the dataset; at 10M codes that is most of a request's time, while the service
needs ids for one page only. Until the sdk exposes this step (proposed name
``sdk.refine_ranking``, same signature and return value as :func:`refine_rows`),
this module chains the very sdk and engine functions ``sdk.refine`` calls, in the
same order and with the same seeds; ``tests/service`` checks that its rows, scores
and counts equal ``sdk.refine``'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class RowsResult:
    """Rows a refinement accepts, best first.

    Attributes:
        rows: int64 ``(R,)`` index rows, by descending score then ascending row.
        scores: float64 ``(R,)``.
        rowmap: the index's ``SampleRowMap`` (``rowmap.ids_of(rows)`` -> sample ids).
        stats: the keys of ``RefineResult.stats`` that do not need the dataset:
            ``model``, ``label_source``, ``n_pos``, ``n_neg``, ``n_random_neg``,
            ``n_results``, ``n_index``, ``train_ms``, ``query_ms``, ``total_ms``.
    """

    rows: np.ndarray
    scores: np.ndarray
    rowmap: object
    stats: dict = field(default_factory=dict)


def refine_rows(
    dataset,
    positives=None,
    negatives=None,
    tags=None,
    model: str = "branches",
    random_negatives: int = 500,
    negative_weight: float = 1.0,
    index_key: str = "clipbranches",
    seed: int = 0,
) -> RowsResult:
    """Like ``sdk.refine(..., score_field=None)``, returning rows instead of a view.

    Raises:
        the sdk's errors (``NoPositivesError``, ``ContradictoryLabelsError``,
        ``IndexNotFoundError``, ``StaleIndexError``) for the same inputs.
    """
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.engine.search import apply_model
    from fiftyone_clipbranches.engine.training_set import make_training_set
    from fiftyone_clipbranches.sdk.freshness import alive_rows
    from fiftyone_clipbranches.sdk.labels import collect_labels
    from fiftyone_clipbranches.sdk.models import fit_model, make_model
    from fiftyone_clipbranches.sdk.refine import _rows
    from fiftyone_clipbranches.sdk.runs import root_dataset
    from fiftyone_clipbranches.sdk.settings import DEFAULT_TAGS

    t0 = time.perf_counter()
    ds = root_dataset(dataset)
    clf = make_model(model, random_state=seed)
    _, bundle = sdk.load_index(ds, index_key)
    labels = collect_labels(ds, positives, negatives, tags or DEFAULT_TAGS)
    pos_rows = _rows(bundle, labels.positives, "positive", index_key)
    neg_rows = _rows(bundle, labels.negatives, "negative", index_key)
    alive = alive_rows(ds, bundle.rowmap, str(bundle.path))

    t1 = time.perf_counter()
    index = bundle.index
    n_random = min(
        int(random_negatives), max(len(index) - len(pos_rows) - len(neg_rows), 0)
    )
    train = make_training_set(
        index.codes,
        pos_rows,
        neg_rows,
        n_random_negatives=n_random,
        negative_weight=float(negative_weight),
        seed=seed,
    )
    fit_model(clf, train.X, train.y, train.sample_weight, index.subsets)
    t2 = time.perf_counter()
    ranking = apply_model(clf, index)
    rows = np.asarray(ranking.ids, dtype=np.int64)
    scores = np.asarray(ranking.scores, dtype=np.float64)
    if alive is not None:
        keep = alive[rows]
        rows, scores = rows[keep], scores[keep]
    t3 = time.perf_counter()
    stats = {
        "model": model,
        "label_source": labels.source,
        "n_pos": len(pos_rows),
        "n_neg": len(neg_rows),
        "n_random_neg": int(np.count_nonzero(train.y == 0)) - len(neg_rows),
        "n_results": int(rows.size),
        "n_index": len(index) if alive is None else int(alive.sum()),
        "train_ms": 1e3 * (t2 - t1),
        "query_ms": 1e3 * (t3 - t2),
        "total_ms": 1e3 * (t3 - t0),
    }
    return RowsResult(rows, scores, bundle.rowmap, stats)
