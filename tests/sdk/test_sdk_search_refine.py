"""search and refine on real FiftyOne datasets, checked against brute force."""

import warnings
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from sdk_testdata import index_dataset

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.messages import round_summary, user_message
from fiftyone_clipbranches.sdk.settings import DEFAULT_TAGS


@pytest.fixture
def indexed(make_dataset):
    ds = make_dataset(20)
    codes = index_dataset(ds, "cb")
    return ds, codes


def _brute_knn(codes, query, k):
    d = ((codes.astype(np.int64) - query.astype(np.int64)) ** 2).sum(axis=1)
    order = np.lexsort((np.arange(len(codes)), d))[:k]
    return order, d[order]


def test_search_by_samples_equals_brute_force_knn_of_mean_code(indexed):
    ds, codes = indexed
    ids = ds.values("id")
    query_rows = [3, 50, 77]
    ranked, dists = sdk.search_ids(
        ds, sample_ids=[ids[r] for r in query_rows], k=25, index_key="cb"
    )
    mean = np.rint(codes[query_rows].astype(np.float64).mean(axis=0)).astype(np.uint8)
    rows, expected = _brute_knn(codes, mean, 25)
    assert ranked == [ids[r] for r in rows]
    assert dists.tolist() == expected.tolist()
    view = sdk.search(ds, sample_ids=[ids[r] for r in query_rows], k=25, index_key="cb")
    assert view.values("id") == ranked


def test_search_by_code_vector_and_argument_errors(indexed):
    ds, codes = indexed
    ranked, dists = sdk.search_ids(ds, vector=codes[10], k=1, index_key="cb")
    assert ranked == [ds.values("id")[10]] and dists.tolist() == [0]
    with pytest.raises(ValueError, match="exactly one query"):
        sdk.search(ds, index_key="cb")
    with pytest.raises(ValueError, match="k must be"):
        sdk.search(ds, vector=codes[0], k=0, index_key="cb")
    with pytest.raises(ValueError, match="CLIP model"):
        sdk.search(ds, text="a dog", index_key="cb")
    with pytest.raises(ValueError, match="uint8 code"):
        sdk.search(ds, vector=np.zeros(512, np.float32), index_key="cb")


def test_search_never_returns_deleted_samples(indexed):
    ds, codes = indexed
    ids = ds.values("id")
    rows, _ = _brute_knn(codes, codes[0], 10)
    deleted = [ids[r] for r in rows[1:6]]
    ds.delete_samples(deleted)
    found, _ = sdk.search_ids(ds, vector=codes[0], k=10, index_key="cb")
    assert len(found) == 10 and not set(found) & set(deleted)


def _tag_round(ds, n_pos=15, n_neg=30):
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    airplanes = ids[labels == "airplane"]
    others = ids[labels != "airplane"]
    ds.select(airplanes[:n_pos].tolist()).tag_samples("cb_positive")
    ds.select(others[::5][:n_neg].tolist()).tag_samples("cb_negative")
    return set(airplanes.tolist())


def test_refine_round_trip_scores_view_and_saved_view(indexed):
    ds, _ = indexed
    airplanes = _tag_round(ds)
    result = sdk.refine(ds, index_key="cb", saved_view="round_1", random_negatives=100)
    found = set(result.ids)
    assert len(found & airplanes) >= 15 and len(found - airplanes) <= 2
    assert set(ds.match_tags("cb_positive").values("id")) <= found
    assert np.all(np.diff(result.scores) <= 0)
    assert result.view.values("id") == result.ids
    assert ds.load_saved_view("round_1").values("id") == result.ids
    scored = ds.exists("clipbranches_score")
    assert set(scored.values("id")) == found
    by_id = dict(zip(*ds.values(["id", "clipbranches_score"])))
    assert np.allclose([by_id[i] for i in result.ids], result.scores)
    stats = result.stats
    assert (stats["n_pos"], stats["n_neg"], stats["n_results"]) == (15, 30, len(found))
    # 200 samples, 45 labelled: the default model draws at most 30% of the 155
    # others (the cap of its random negatives), whatever was asked for
    assert stats["n_random_neg"] == int(0.3 * 155) and stats["n_unindexed"] == 0
    assert stats["n_random_neg_requested"] == 100


def test_small_catalogue_caps_random_negatives_and_finds_untagged_matches(indexed):
    ds, _ = indexed
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    airplanes = ids[labels == "airplane"]
    tagged = set(airplanes[:8].tolist())
    result = sdk.refine(ds, positives=sorted(tagged), index_key="cb", score_field=None)
    # 8 positives: up to 4 neighbours each, from the cluster around them ("auto")
    n_near = result.stats["n_neighbour_pos"]
    assert 4 <= n_near <= 32
    # the default model (cascade) asks for 500 random negatives, capped at 30% of
    # the others; the ensemble at 90%
    assert result.stats["n_random_neg"] == int(0.3 * (200 - 8 - n_near))
    assert result.stats["n_random_neg_requested"] == 500
    ensemble = sdk.refine(
        ds, positives=sorted(tagged), model="ensemble", index_key="cb", score_field=None
    )
    assert ensemble.stats["n_random_neg"] == int(0.9 * (200 - 8 - n_near))
    few = sdk.refine(
        ds,
        positives=sorted(tagged),
        random_negatives=10,
        index_key="cb",
        score_field=None,
        neighbours_per_positive=0,
    )
    assert few.stats["n_random_neg"] == 10 and few.stats["n_neighbour_pos"] == 0
    # with few random negatives, untagged matches come back
    found = set(few.ids)
    assert found <= set(airplanes.tolist()) and len(found - tagged) >= 1


def test_the_default_model_sizes_its_class_ball_on_the_index(indexed, monkeypatch):
    """refine gives the cascade the index's codes (its neighbour pool: every row
    of a small catalogue) and its neighbour positives, and the class ball is
    sized on them; without neighbour positives there is none."""
    from fiftyone_clipbranches.engine import cascade
    from fiftyone_clipbranches.sdk.refine import fit_refinement
    from fiftyone_clipbranches.sdk.request import RefineRequest

    calls = []

    def recorded(*args):
        calls.append((args, class_ball_share(*args)))
        return calls[-1][1]

    class_ball_share = cascade.class_ball_share
    monkeypatch.setattr(cascade, "class_ball_share", recorded)
    ds, codes = indexed
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    rows = np.flatnonzero(labels == "airplane")[:6]
    fitted = fit_refinement(
        ds, RefineRequest(positives=ids[rows].tolist(), index_key="cb")
    )
    (positives, sample, reach, neighbours), (center, radius_sq, share) = calls[0]
    np.testing.assert_array_equal(sample, codes)
    np.testing.assert_array_equal(
        np.sort(positives, axis=0), np.sort(codes[rows], axis=0)
    )
    assert neighbours.shape[0] == fitted.stats["n_neighbour_pos"] > 0
    assert reach == fitted.model.ball_reach
    np.testing.assert_array_equal(fitted.model.ball_center_, center)
    assert fitted.model.ball_radius_sq_ == radius_sq >= 0
    assert fitted.model.class_share_ == share > 0
    none_near = RefineRequest(
        positives=ids[rows].tolist(), index_key="cb", neighbours_per_positive=0
    )
    without = fit_refinement(ds, none_near).model
    assert without.ball_radius_sq_ == -1 and np.isnan(without.class_share_)
    assert len(calls) == 1
    off = RefineRequest(
        positives=ids[rows].tolist(), index_key="cb", model_params={"ball_reach": None}
    )
    # without a ball, the class's share is still estimated (it caps the boxes)
    no_ball = fit_refinement(ds, off).model
    assert no_ball.ball_radius_sq_ == -1 and no_ball.class_share_ == share
    assert len(calls) == 2


def test_next_round_clears_scores_of_samples_no_longer_matched(indexed):
    ds, _ = indexed
    _tag_round(ds)
    first = sdk.refine(ds, index_key="cb")
    ds.untag_samples(["cb_positive", "cb_negative"])
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    second = sdk.refine(
        ds, positives=ids[labels == "ship"][:15].tolist(), index_key="cb"
    )
    assert not set(first.ids) & set(second.ids)
    assert set(ds.exists("clipbranches_score").values("id")) == set(second.ids)


@pytest.mark.parametrize("model", ["ensemble", "tree", "forest"])
def test_every_model_kind_finds_the_class(indexed, model):
    ds, _ = indexed
    airplanes = _tag_round(ds)
    result = sdk.refine(ds, model=model, index_key="cb", score_field=None)
    found = set(result.ids)
    assert len(found & airplanes) >= 15
    assert len(found - airplanes) <= 2
    assert not ds.has_field("clipbranches_score")


def test_query_ball_refines_the_search_it_is_given(indexed):
    ds, codes = indexed
    airplanes = _tag_round(ds)
    labels = np.array(ds.values("ground_truth.label"))
    query = np.rint(codes[labels == "airplane"].mean(axis=0)).astype(np.uint8)
    result = sdk.refine(ds, model="ball", query=query, index_key="cb")
    found = set(result.ids)
    assert len(found & airplanes) >= 18 and len(found - airplanes) <= 2
    assert (np.diff(result.scores) <= 0).all()
    # with the centre kept at the query, the ranking is the query's own
    kept = sdk.refine(
        ds, model="ball", query=query, index_key="cb",
        model_params={"beta": 0.0, "gamma": 0.0},
    )  # fmt: skip
    distances = ((codes.astype(np.int64) - query) ** 2).sum(axis=1)
    rows = [ds.values("id").index(i) for i in kept.ids]
    assert len(set(kept.ids) & airplanes) >= 18
    assert (np.diff(distances[rows]) >= 0).all()
    with pytest.raises(ValueError, match="as the query"):
        sdk.refine(ds, model="ball", index_key="cb")
    with pytest.raises(ValueError, match="not by sample ids.*go in as positives"):
        sdk.refine(ds, model="ball", query=[ds.first().id], index_key="cb")
    with pytest.raises(ValueError, match="CLIP model"):
        sdk.refine(ds, model="ball", query="an airplane", index_key="cb")


def test_refine_of_a_view_answers_inside_it(indexed):
    ds, _ = indexed
    airplanes = _tag_round(ds)
    whole = set(sdk.refine(ds, index_key="cb", score_field=None, seed=3).ids)
    half = ds.take(len(ds) // 2, seed=1)
    inside = set(half.values("id"))
    result = sdk.refine(half, index_key="cb", score_field=None, seed=3)
    # the same model (labels and training from the whole dataset), cut to the view
    assert set(result.ids) == whole & inside
    assert result.stats["n_index"] == len(inside)
    assert whole - inside and airplanes - inside  # the cut is not empty
    tagged = set(ds.match_tags("cb_positive").values("id"))
    assert tagged & inside <= set(result.ids) and not (set(result.ids) - inside)
    assert set(result.view.values("id")) == set(result.ids)


def test_refine_label_errors(indexed):
    ds, _ = indexed
    ids = ds.values("id")
    with pytest.raises(sdk.NoPositivesError, match="cb_positive") as said:
        sdk.refine(ds, index_key="cb")
    # a shell user is told the command, the App's user only the panel's buttons
    assert f"in a shell: clipbranches label {ds.name} --positive ID)" in str(said.value)
    in_app = user_message(said.value, in_app=True)
    assert "Mark positive)" in in_app and "clipbranches label" not in in_app
    with pytest.raises(sdk.NoPositivesError) as said:  # a tag a shell would split
        sdk.refine(ds, index_key="cb", tags=("my dogs)", "cb_negative"))
    assert "--positive ID --positive-tag 'my dogs)')" in str(said.value)
    with pytest.raises(sdk.NoPositivesError, match="its Positive tag set to 'dogs'"):
        sdk.refine(ds, index_key="cb", tags=("dogs", "cats"))
    # ids given replace the tags: said so when tagged positives go unused
    ds.select(ids[5:8]).tag_samples("cb_positive")
    with pytest.raises(
        sdk.NoPositivesError,
        match="ids given replace the tags, so the 3 samples tagged 'cb_positive'",
    ):
        sdk.refine(ds, negatives=ids[:1], index_key="cb")
    with pytest.raises(sdk.NoPositivesError, match="pass no ids at all") as said:
        sdk.refine(ds, positives=[], negatives=[], index_key="cb")
    assert "(neither positives nor negatives) to read the tags" in str(said.value)
    # a typo in the positive tag: the tags the samples hold, the likely one first
    with pytest.raises(
        sdk.NoPositivesError,
        match=r"no sample is tagged 'cb_postive' \(did you mean 'cb_positive'\? the"
        r" samples are tagged 'cb_positive'\);",
    ):
        sdk.refine(ds, index_key="cb", tags=("cb_postive", "cb_negative"))
    ds.untag_samples("cb_positive")
    # negatives alone: the negative tag is no guess for the positive one
    ds.select(ids[:2]).tag_samples("cb_negative")
    with pytest.raises(sdk.NoPositivesError) as err:
        sdk.refine(ds, index_key="cb")
    assert "did you mean" not in str(err.value)
    assert "tag some samples 'cb_positive'" in str(err.value)
    ds.select(ids[:2]).tag_samples(["cb_positive", "cb_negative"])
    with pytest.raises(sdk.ContradictoryLabelsError, match="2 samples are tagged"):
        sdk.refine(ds, index_key="cb")
    with pytest.raises(sdk.ContradictoryLabelsError, match="1 sample is in both"):
        sdk.refine(ds, positives=ids[:3], negatives=ids[2:4], index_key="cb")
    with pytest.raises(ValueError, match="model must be"):
        sdk.refine(ds, positives=ids[:3], model="svm", index_key="cb")


def test_refine_with_a_positive_added_after_the_build_is_stale(indexed, cifar_dir):
    ds, _ = indexed
    path = next(p for p in Path(cifar_dir).rglob("*.jpg"))
    (new_id,) = ds.add_samples([fo.Sample(filepath=str(path))], progress=False)
    with pytest.raises(sdk.StaleIndexError, match="update_index") as err:
        sdk.refine(ds, positives=[new_id], index_key="cb")
    assert "it was added since it was built" in str(err.value)  # one: not "they"
    # as a negative it is left out (it is not searched either), and counted
    ids = ds.values("id")
    result = sdk.refine(
        ds, positives=ids[:3], negatives=[new_id, ids[5]], index_key="cb"
    )
    assert result.stats["n_neg"] == 1 and result.stats["n_unindexed_neg"] == 1
    assert result.stats["n_unreadable_neg"] == 0 and new_id not in result.ids
    assert "(1 negative added since the build left out)" in round_summary(result.stats)


def test_refine_excludes_deleted_samples_and_reports_added_ones(indexed, cifar_dir):
    ds, _ = indexed
    airplanes = _tag_round(ds)
    deleted = sorted(airplanes - set(ds.match_tags("cb_positive").values("id")))[:3]
    ds.delete_samples(deleted)
    path = next(p for p in Path(cifar_dir).rglob("*.jpg"))
    ds.add_samples([fo.Sample(filepath=str(path))], progress=False)
    result = sdk.refine(ds, index_key="cb")
    assert not set(result.ids) & set(deleted)
    assert result.stats["n_unindexed"] == 1 and result.stats["n_index"] == 197


def test_results_beyond_the_selection_limit(indexed, monkeypatch):
    import importlib

    refine_module = importlib.import_module("fiftyone_clipbranches.sdk.refine")
    ds, _ = indexed
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    positives = ids[labels == "airplane"][:15].tolist()
    full = sdk.refine(ds, positives=positives, index_key="cb", score_field=None)
    assert len(full.ids) > 6
    monkeypatch.setattr(refine_module, "MAX_SELECTED_SAMPLES", 5)
    # saving would exceed the limit: refused before anything is written
    with pytest.raises(sdk.ResultTooLargeError, match="k_preview"):
        sdk.refine(
            ds, positives=positives, index_key="cb", saved_view="too_big", seed=0
        )
    assert not ds.has_saved_view("too_big")
    assert "clipbranches_score" not in ds.get_field_schema()
    with pytest.raises(sdk.ResultTooLargeError, match="score_field"):
        sdk.refine(ds, positives=positives, index_key="cb", score_field=None)
    # viewed through the score field instead of a selection of ids
    big = sdk.refine(ds, positives=positives, index_key="cb")
    assert big.ids == full.ids
    assert set(big.view.values("id")) == set(full.ids)
    shown = big.view.values("clipbranches_score")
    assert shown == sorted(shown, reverse=True)
    # the best few still fit a saved view
    best = sdk.refine(
        ds, positives=positives, index_key="cb", k_preview=5, saved_view="best"
    )
    assert ds.load_saved_view("best").values("id") == best.ids[:5]
    # a numpy int is a count like any other (it reaches the write journal)
    again = sdk.refine(
        ds,
        positives=positives,
        index_key="cb",
        k_preview=np.int64(3),
        saved_view="best",
    )
    assert ds.load_saved_view("best").values("id") == again.ids[:3]


def test_positive_ids_alone_say_the_negative_tags_are_not_used(indexed):
    ds, _ = indexed
    _tag_round(ds, n_neg=7)
    positives = ds.match_tags("cb_positive").values("id")
    with pytest.warns(UserWarning, match="7 samples tagged 'cb_negative' are not neg"):
        sdk.refine(ds, positives=positives, index_key="cb", score_field=None)
    negatives = ds.match_tags("cb_negative").values("id")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both given, or the tags read: no warning
        sdk.refine(ds, positives=positives, negatives=negatives, index_key="cb")
        sdk.refine(ds, index_key="cb", score_field=None)


def test_refine_takes_a_request_and_its_fields_alike(indexed):
    ds, _ = indexed
    _tag_round(ds)
    request = sdk.RefineRequest(model="ensemble", index_key="cb", seed=2)
    by_request = sdk.refine(ds, request=request, score_field=None)
    by_fields = sdk.refine(
        ds, model="ensemble", index_key="cb", seed=2, score_field=None
    )
    assert by_request.ids == by_fields.ids
    assert by_request.stats["n_random_neg_requested"] == 500  # the ensemble's
    ranked = sdk.refine_ranking(ds, request)
    assert ranked.bundle.rowmap.ids_of(ranked.rows) == by_request.ids
    assert ranked.stats["n_unindexed"] == by_request.stats["n_unindexed"] == 0
    with pytest.raises(ValueError, match="not both"):
        sdk.refine(ds, request=request, model="tree")


def test_refine_request_validates_once_and_round_trips_as_json():
    R = sdk.RefineRequest
    assert R().model == "cascade" and R().n_random_negatives_for(20) == 500
    assert R().n_random_negatives_for(100) == 1500  # 15 per positive above 33
    assert R(random_negatives=7).n_random_negatives_for(100) == 7
    assert R(model="branches").n_random_negatives_for(100) == 1500
    assert R(model="ensemble").n_random_negatives_for(100) == 500
    assert R(model="linear").n_neighbours_per_positive == 0
    assert R(model="ensemble", model_params={"n_estimators": 3}).model_params
    for bad, message in [
        ({"random_negatives": -1}, "random_negatives must be an int"),
        ({"seed": True}, "seed must be an int"),
        ({"negative_weight": 0}, "negative_weight must be a finite number"),
        ({"neighbours_per_positive": 1.5}, "neighbours_per_positive"),
        ({"model": "svm"}, "model must be one of"),
        ({"tags": ("a",)}, "tags must be"),
        ({"model_params": 3}, "model_params must be a dict"),
        # parameters the model does not take, named before any work
        ({"model_params": {"bogus": 1}}, "'cascade' takes no parameter 'bogus'"),
        ({"model_params": {"n_estimator": 3}}, "did you mean 'n_estimators'"),
        ({"model_params": {"random_state": 5}}, "pass seed="),
        ({"model": "ball", "model_params": {"center": [0]}}, "no parameter 'center'"),
    ]:
        with pytest.raises(ValueError, match=message):
            R(**bad)
    request = R(positives=["a" * 24], model="tree", random_negatives=7, seed=4)
    assert R.from_json(request.to_json()) == request  # negatives left out: None
    by_tags = R(tags=("p", "n"), query="red")
    assert R.from_json(by_tags.to_json()) == by_tags
    # an id given twice is sent once, as a local refinement counts it
    twice = R(positives=["a" * 24, "a" * 24, "b" * 24]).to_json()
    assert twice["positives"] == ["a" * 24, "b" * 24]
    # a tag is matched as written (stripped, "sp " became another user's "sp")
    spaced = R.from_json({"positive_tag": "sp ", "negative_tag": " no", "query": " a "})
    assert spaced.tags == ("sp ", " no") and spaced.query == "a"
    assert R.from_json({"positive_tag": "  "}).tags == DEFAULT_TAGS
    form = {"model": "ensemble", "random_negatives": "", "query": " ", "k": 60}
    assert R.from_json(form) == R(model="ensemble")
    assert R.from_json({"random_negatives": 100.0}).random_negatives == 100
    one = R.from_json({"positives": "a" * 24, "negatives": "b" * 24})  # one id each
    assert (one.positives, one.negatives) == (["a" * 24], ["b" * 24])
    with pytest.raises(ValueError, match="text query"):
        R(query=np.zeros(32, np.uint8)).to_json()
    auto = R(model="linear", neighbours_per_positive="auto")
    assert R.from_json(auto.to_json()) == auto  # the service takes "auto" too


def test_row_ids_read_like_the_list_of_their_ids():
    from fiftyone_clipbranches.sdk.rowmap import RowIds, SampleRowMap

    ids = [f"{i:024x}" for i in range(10)]
    rowmap = SampleRowMap(ids)
    rows = [7, 2, 9, 0]
    lazy = RowIds(rowmap, rows)
    want = [ids[r] for r in rows]
    assert len(lazy) == 4 and lazy == want and want == lazy
    assert lazy[0] == ids[7] and lazy[-1] == ids[0] and lazy[1:3] == want[1:3]
    assert list(lazy) == want and ids[9] in lazy and lazy.index(ids[2]) == 1
    assert lazy != want[:3] and lazy != "not a list"
    RowIds._CHUNK = 3  # iteration crosses chunks
    try:
        assert list(lazy) == want
    finally:
        RowIds._CHUNK = 1 << 16
