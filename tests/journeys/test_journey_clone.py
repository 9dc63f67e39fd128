"""Journey (c): a user clones an indexed dataset, deletes samples from the clone,
updates its index, then deletes the clone. The original stays intact."""

from __future__ import annotations

from pathlib import Path

from fiftyone_clipbranches import sdk


def _answers(ds):
    """What a user sees: a text search and a refine over it (ids, in order)."""
    found = sdk.search_ids(ds, text="a photo of a cat", k=15, index_key="clip")[0]
    labels = dict(zip(*ds.values(["id", "ground_truth.label"])))
    positives = [s for s in found if labels[s] == labels[found[0]]][:3]
    negatives = [s for s in found if labels[s] != labels[found[0]]][:3]
    result = sdk.refine(
        ds, positives, negatives, index_key="clip", score_field=None, seed=0
    )
    return found, list(result.ids)


def test_clone_delete_update_and_delete_the_clone_leave_the_original_intact(
    make_user_index,
):
    ds = make_user_index(n_per_class=5)
    before = _answers(ds)
    index_dir = Path(sdk.index_info(ds, "clip").index_dir)
    files = sorted(p for p in index_dir.rglob("*") if p.is_file())

    clone = ds.clone()
    try:
        gone = clone.values("id")[::4]
        clone.delete_samples(gone)
        # before any update the clone already answers with its own samples only
        found, refined = _answers(clone)
        assert not (set(found) | set(refined)) & set(gone)
        assert set(refined) <= set(clone.values("id"))

        info = sdk.update_index(clone, "clip", progress=False)
        assert info.n_samples == len(clone) and not info.freshness.is_stale
        assert Path(info.index_dir).parent.name == str(clone._doc.id)
        assert sdk.index_info(ds, "clip").index_dir == str(index_dir)
        sdk.delete_index(clone, "clip")
        assert not Path(info.index_dir).exists()
    finally:
        clone.delete()

    # a second clone cleaned up by FiftyOne's own run deletion
    other = ds.clone()
    other.delete_run("clip")
    other.delete()

    assert sorted(p for p in index_dir.rglob("*") if p.is_file()) == files
    assert sdk.verify_index(ds, "clip", level="full").unchecked == []
    assert _answers(ds) == before


def test_a_clone_made_after_deletions_never_answers_with_missing_samples(
    make_user_index,
):
    ds = make_user_index(n_per_class=5)
    ds.delete_samples(ds.values("id")[:10])
    clone = ds.clone()
    try:
        found, refined = _answers(clone)
        assert set(found) | set(refined) <= set(clone.values("id"))
        info = sdk.index_info(clone, "clip")
        assert info.freshness.n_deleted == 10  # reported until updated
    finally:
        clone.delete()
