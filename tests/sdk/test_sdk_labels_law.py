"""Labels are law: every labelled positive is in a refinement's result and no
labelled negative is, for every registered model, on an index built the user's way."""

import numpy as np
import pytest
from sdk_testdata import doubtful_labels

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.models import MODELS
from fiftyone_clipbranches.sdk.refine import labels_are_law


@pytest.fixture(scope="module")
def labelled(request):
    ds = request.getfixturevalue("make_module_user_index")(
        n_per_class=10, index_key="clip"
    )
    # Positives the models will doubt (other classes) and negatives they would
    # accept (airplanes): both must be overruled by the labels.
    positives, negatives, *_ = doubtful_labels(ds, 7, 4, None, 6, seed=3)
    return ds, positives, negatives


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_returns_every_positive_and_no_negative(labelled, model):
    ds, positives, negatives = labelled
    query = None
    if MODELS[model].needs_query:  # the search refined: the positives' mean embedding
        query = np.mean(ds.select(positives).values("clip_embedding"), axis=0)
    result = sdk.refine(
        ds,
        positives=positives,
        negatives=negatives,
        model=model,
        index_key="clip",
        query=query,
        score_field="law_score",
    )
    found = set(result.ids)
    assert set(positives) <= found
    assert not found & set(negatives)
    assert len(found) == len(result.ids)
    assert (np.diff(result.scores) <= 0).all()
    stats = result.stats
    assert stats["n_results"] == len(result.ids)
    assert stats["n_forced_pos"] >= 0 and stats["n_dropped_neg"] >= 0
    # the score field holds exactly the ranking, forced positives included
    written = dict(zip(*ds.exists("law_score").values(["id", "law_score"])))
    assert written == dict(zip(result.ids, result.scores.tolist()))


def test_labels_law_by_tags_through_refine_ranking(labelled):
    ds, positives, negatives = labelled
    ds.select(positives).tag_samples("p")
    ds.select(negatives).tag_samples("n")
    try:
        ranked = sdk.refine_ranking(ds, tags=("p", "n"), index_key="clip")
    finally:
        ds.untag_samples(["p", "n"])
    ids = set(ranked.bundle.rowmap.ids_of(ranked.rows))
    assert set(positives) <= ids and not ids & set(negatives)


def test_forced_positives_take_the_best_score_and_negatives_leave():
    rows = np.array([5, 2, 9, 1], dtype=np.int64)
    scores = np.array([3.0, 2.0, 2.0, 1.0])
    out_rows, out_scores, n_forced, n_dropped = labels_are_law(
        rows, scores, pos_rows=np.array([0, 2, 7]), neg_rows=np.array([9, 4])
    )
    # 0 and 7 are added with the top score 3.0, ties by row; 9 is removed
    assert out_rows.tolist() == [0, 5, 7, 2, 1]
    assert out_scores.tolist() == [3.0, 3.0, 3.0, 2.0, 1.0]
    assert (n_forced, n_dropped) == (2, 1)
    empty = labels_are_law(
        np.zeros(0, np.int64), np.zeros(0), np.array([4]), np.zeros(0, np.int64)
    )
    assert empty[0].tolist() == [4] and empty[1].tolist() == [1.0]


def test_a_model_that_finds_nothing_but_the_positives_says_what_to_do(labelled):
    """The linear model returned a single positive alone, without a word."""
    ds, positives, negatives = labelled
    result = sdk.refine(
        ds, positives=positives[:1], negatives=negatives, model="linear",
        index_key="clip", score_field=None,
    )  # fmt: skip
    assert result.ids == positives[:1]
    assert result.stats["note"] == (
        "the model found no sample beyond the labelled positives: label more"
        f" positives, or try the default model, {sdk.models.DEFAULT_MODEL}"
    )
    found = sdk.refine(ds, positives=positives, negatives=negatives, index_key="clip")
    assert len(found.ids) > len(positives) and "note" not in found.stats
    # the same answer a page at a time says it too
    pages = sdk.refine_pages(
        ds, positives=positives[:1], negatives=negatives, model="linear",
        index_key="clip", first=10,
    )  # fmt: skip
    with pages:
        assert pages.count == 1 and pages.stats["note"] == result.stats["note"]


def test_a_view_concatenated_with_itself_answers_each_sample_once(labelled):
    """FiftyOne's concat makes a sample two rows: every answer came twice."""
    ds, positives, negatives = labelled
    head = ds.select(positives + negatives)
    twice = head.concat(head)
    assert len(twice) == 2 * len(head)
    found = sdk.search(twice, sample_ids=positives[:1], k=3, index_key="clip")
    assert len(found) == 3 and len(set(found.values("id"))) == 3
    result = sdk.refine(
        twice, positives=positives, negatives=negatives, index_key="clip",
        score_field=None,
    )  # fmt: skip
    assert sorted(result.view.values("id")) == sorted(result.ids) == sorted(positives)


def test_a_view_of_no_sample_is_refused_and_the_scores_stay(labelled):
    """A misspelt tag made the view empty: the refinement answered nothing and
    cleared every score of the last result, without a word."""
    ds, positives, negatives = labelled
    kept = sdk.refine(
        ds, positives=positives, negatives=negatives, index_key="clip",
        score_field="law_scores",
    )  # fmt: skip
    before = ds.exists("law_scores").count()
    assert before == len(kept.ids) > 0
    typo = ds.match_tags("cb_postive")
    with pytest.raises(ValueError, match="the view holds no sample"):
        sdk.refine(
            typo, positives=positives, negatives=negatives, index_key="clip",
            score_field="law_scores",
        )  # fmt: skip
    assert ds.exists("law_scores").count() == before
    # samples the index does not hold yet: the update is named
    copy = ds.first().copy()
    copy["law_scores"] = None
    (new,) = ds.add_samples([copy], progress=False)
    try:
        with pytest.raises(ValueError, match="none of the view's 1 sample is in"):
            sdk.refine(
                ds.select(new), positives=positives, negatives=negatives,
                index_key="clip", score_field="law_scores",
            )  # fmt: skip
        assert ds.exists("law_scores").count() == before
    finally:
        ds.delete_samples([new])
        ds.delete_sample_field("law_scores")
