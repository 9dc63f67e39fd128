"""next_to_label: the samples nearest the positives that are neither labelled nor
in the result, equal to a brute-force ranking over the codes."""

from __future__ import annotations

import numpy as np
import pytest

import fiftyone_clipbranches as cb
from fiftyone_clipbranches import sdk


def _brute_force(ds, positives, excluded, k):
    _, bundle = sdk.load_index(ds, "clip")
    codes = np.asarray(bundle.index.codes, np.int64)
    rows, _ = bundle.rowmap.rows_of(positives)
    centre = np.rint(codes[rows].mean(axis=0))
    d = ((codes - centre) ** 2).sum(axis=1)
    ids = np.array(bundle.rowmap.ids_of(np.arange(len(codes))))
    order = np.lexsort((np.arange(len(codes)), d))
    return [i for i in ids[order] if i not in excluded][:k]


def test_it_ranks_what_is_neither_labelled_nor_in_the_result(make_user_index):
    ds = make_user_index(n_per_class=6)
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    cats, dogs = ids[labels == "cat"], ids[labels == "dog"]
    cb.label_samples(ds, positives=cats[:3].tolist(), negatives=dogs[:2].tolist())
    result = cb.refine(ds, score_field=None)
    view = cb.next_to_label(ds, exclude=result.ids, k=10)
    shown = view.values("id")
    seen = {*cats[:3], *dogs[:2], *result.ids}
    assert len(shown) == 10 and not seen & set(shown)
    assert shown == _brute_force(ds, list(cats[:3]), seen, 10)
    # a view: only its samples; labels by ids replace the tags
    half = ds.match({"ground_truth.label": {"$in": ["cat", "dog", "bird"]}})
    within = cb.next_to_label(half, positives=list(cats[:2]), k=5).values("id")
    outside = set(ids) - set(half.values("id"))
    assert within == _brute_force(ds, list(cats[:2]), {*cats[:2], *outside}, 5)


def test_exclude_takes_what_sample_ids_take(make_user_index):
    ds = make_user_index(n_per_class=4)
    ids = ds.values("id")
    nearest = cb.next_to_label(ds, positives=ids[:1], k=3, exclude=None).values("id")
    one = cb.next_to_label(ds, positives=ids[:1], k=3, exclude=nearest[0])
    assert nearest[0] not in one.values("id") and one.values("id")[:2] == nearest[1:]
    gen = cb.next_to_label(ds, positives=ids[:1], k=3, exclude=iter(nearest[:1]))
    assert gen.values("id") == one.values("id")


def test_errors_are_said(make_user_index):
    ds = make_user_index(n_per_class=4)
    with pytest.raises(sdk.NoPositivesError):
        cb.next_to_label(ds)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        cb.next_to_label(ds, positives=ds.values("id")[:1], k=0)
    with pytest.raises(sdk.SampleIdsError):
        cb.next_to_label(ds, positives=ds.values("id")[:1], exclude=["nope"])
    import fiftyone as fo

    added = ds.add_sample(fo.Sample(filepath=ds.first().filepath))
    with pytest.raises(sdk.StaleIndexError, match="positive") as said:
        cb.next_to_label(ds, positives=[added])
    assert "query" not in str(said.value)
