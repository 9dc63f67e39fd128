"""What to label next beside a refinement's result.

A refinement returns only what its model accepts, so a user who labels what it
shows labels within the result; the samples just outside it, which would teach
the model most, are never shown. :func:`next_to_label` shows them: the samples
nearest the labelled positives that are neither labelled nor in the result
(docs/quality.md, "Interactive protocol": with them, a round of labelling gains
far more).
"""

from __future__ import annotations

import numpy as np

from fiftyone_clipbranches.sdk.freshness import searchable_rows
from fiftyone_clipbranches.sdk.labels import collect_labels
from fiftyone_clipbranches.sdk.rowmap import ID_LENGTH, as_sample_ids
from fiftyone_clipbranches.sdk.runs import root_dataset
from fiftyone_clipbranches.sdk.search import (
    opened_for_search,
    query_code,
)
from fiftyone_clipbranches.sdk.settings import DEFAULT_K, DEFAULT_TAGS
from fiftyone_clipbranches.sdk.views import result_view, wait_for_writes, writes_scores


def next_to_label(
    dataset,
    exclude=(),
    k: int = DEFAULT_K,
    positives=None,
    negatives=None,
    tags=DEFAULT_TAGS,
    index_key: str | None = None,
):
    """The ``k`` samples nearest the labelled positives (the mean of their codes,
    as a search by example) that are neither labelled nor in ``exclude``, as an
    ordered view of ``dataset`` (nearest first): the samples to label next, beside
    a refinement's result (``exclude=result.ids``).

    Args:
        dataset: a dataset or view (only its samples are returned; the labels
            come from its root dataset, as :func:`~.refine.refine` reads them).
        exclude: sample ids (one, a list, ``RefineResult.ids``, samples or a
            view; of a patches view, their images; an ``S24`` array of ids) not
            to return: the result the user has seen. None: none.
        k: int >= 1, how many.
        positives, negatives, tags: the labels, as :func:`~.refine.refine` takes
            them (ids, else the sample tags ``tags``).
        index_key: the index to search; None: ``"clipbranches"``, else the
            dataset's only index.

    Raises:
        NoPositivesError, ContradictoryLabelsError, StaleIndexError (a positive
        added since the build), IndexNotFoundError, ValueError.
    """
    ids, _ = next_to_label_ids(
        dataset, exclude, k, positives, negatives, tags, index_key
    )
    return result_view(dataset, ids)


def next_to_label_ids(
    dataset,
    exclude=(),
    k: int = DEFAULT_K,
    positives=None,
    negatives=None,
    tags=DEFAULT_TAGS,
    index_key: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """Like :func:`next_to_label`, returning ``(sample ids, int64 squared code
    distances to the positives' mean code)``, nearest first."""
    ds, index_key, config, bundle = opened_for_search(dataset, k, index_key)
    labels = collect_labels(ds, positives, negatives, tags)
    query = query_code(
        config, bundle, index_key, sample_ids=labels.positives, ds=ds, what="positive"
    )
    allowed = searchable_rows(dataset, ds, bundle)
    allowed = np.ones(len(bundle.index), bool) if allowed is None else allowed.copy()
    rows, found = bundle.rowmap.rows_of([*labels.positives, *labels.negatives])
    allowed[rows[found]] = False
    allowed[_rows_of(bundle.rowmap, exclude)] = False
    rows, dists = bundle.index.knn(query, int(k), allowed)  # one scan, skipping
    return bundle.rowmap.ids_of(rows), np.asarray(dists, dtype=np.int64)


def refined_ids(dataset, score_field: str) -> list[str]:
    """The ids of the samples of ``dataset``'s root dataset holding ``score_field``:
    the last refinement's result written there (its scores written first), which
    :func:`next_to_label` leaves out where the result is not at hand (the CLI,
    the operator).

    Raises:
        ValueError: the dataset has no such field, or one no refinement wrote.
    """
    ds = root_dataset(dataset)
    if not ds.has_sample_field(score_field):
        raise ValueError(
            f"dataset {ds.name!r} has no field {score_field!r}: refine first (the"
            " samples its scores mark, the result, are left out)"
        )
    if not writes_scores(ds, score_field):
        raise ValueError(
            f"field {score_field!r} of dataset {ds.name!r} holds no refinement's"
            " scores (clipbranches writes them into a field it makes): name the"
            " refinement's score field"
        )
    wait_for_writes(ds, score_field)
    return ds.exists(score_field).values("id")


def _rows_of(rowmap, exclude) -> np.ndarray:
    """The index rows of the samples ``exclude`` names (those the index holds);
    an ``S24`` array of ids (many: a large result's) is looked up as it is."""
    if isinstance(exclude, np.ndarray) and exclude.dtype == np.dtype(f"S{ID_LENGTH}"):
        rows, found = rowmap.rows_of_array(exclude.reshape(-1))
    else:
        rows, found = rowmap.rows_of(as_sample_ids(exclude, "exclude"))
    return rows[found]
