"""``label_samples`` / ``clear_labels``: the panel's Mark and Reset labels as SDK
calls (the shell's ``label``), on the root dataset of a view, with any tags."""

import pytest

from fiftyone_clipbranches import sdk


def test_labels_move_between_tags_on_the_root_dataset(make_dataset):
    ds = make_dataset(2)
    a, b, c = ds.values("id")[:3]
    tags = ("cats", "not-cats")
    view = ds.select([a])  # a view of the dataset labels its root dataset
    assert sdk.label_samples(view, [a, b], [c], tags) == (2, 1)
    assert sdk.label_samples(ds, negatives=[b], tags=tags) == (0, 1)
    assert ds.count_sample_tags() == {"cats": 1, "not-cats": 2}
    assert sdk.collect_labels(ds, tags=tags).positives == [a]
    with pytest.raises(sdk.ContradictoryLabelsError) as err:
        sdk.label_samples(ds, [c], [c], tags)
    assert err.value.ids == [c]
    with pytest.raises(sdk.SampleIdsError) as err:
        sdk.label_samples(ds, ["0123456789abcdef01234567"], tags=tags)
    assert err.value.ids == ["0123456789abcdef01234567"]
    assert ds.count_sample_tags() == {"cats": 1, "not-cats": 2}  # nothing changed
    # white space is no tag: " " and "  " were two labels no one could see
    for bad in ((" ", "  "), ("cats", "\t"), ("x", "x")):
        with pytest.raises(ValueError, match="white space|must differ"):
            sdk.label_samples(ds, [a], tags=bad)
    assert ds.count_sample_tags() == {"cats": 1, "not-cats": 2}
    ds.select([a]).tag_samples("mine")  # another tag is never touched
    assert sdk.clear_labels(ds, [a, b], tags) == 2
    # a view clears its own samples only (it cleared the whole dataset's)
    assert sdk.clear_labels(ds.select([a, b]), tags=tags) == 0
    assert sdk.clear_labels(ds, tags=tags) == 1
    assert ds.count_sample_tags() == {"mine": 1}


def test_a_relabelling_stopped_half_way_loses_no_label(make_dataset, monkeypatch):
    """Stopped between its two writes (Ctrl-C, a kill), a relabelled sample holds
    both labels (refused as contradictory, named), never neither: the old label
    went first, and 800 negatives were left unlabelled."""
    import fiftyone.core.collections as foc

    ds = make_dataset(2)
    a, b = ds.values("id")[:2]
    sdk.label_samples(ds, negatives=[a, b])

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(foc.SampleCollection, "untag_samples", stopped)
    with pytest.raises(KeyboardInterrupt):
        sdk.label_samples(ds, positives=[a, b])
    monkeypatch.undo()
    assert ds.count_sample_tags() == {"cb_positive": 2, "cb_negative": 2}
    with pytest.raises(sdk.ContradictoryLabelsError):
        sdk.collect_labels(ds)
    assert sdk.label_samples(ds, positives=[a, b]) == (2, 0)  # the same again
    assert ds.count_sample_tags() == {"cb_positive": 2}
