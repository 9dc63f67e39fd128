"""``sdk.refine_pages``: a refinement's answer a page at a time equals
``refine_ranking``'s (rows, scores, order, count, labels enforced, deleted samples
left out), for every registered model, on indexes built the user's way."""

import re
from types import SimpleNamespace

import numpy as np
import pytest
from sdk_testdata import doubtful_labels

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.engine.pages import HeldAnswer, held_pages
from fiftyone_clipbranches.sdk.models import MODELS
from fiftyone_clipbranches.sdk.refine import FittedRefinement, labels_are_law
from fiftyone_clipbranches.sdk.refine_pages import RefinePages


def labelled_with_deletions(ds):
    """Odd labels (positives the model doubts, negatives it would accept) and
    deleted samples of the class: every adjustment of the answer is exercised."""
    positives, negatives, ids, planes, rest = doubtful_labels(ds, 6, 3, 2, 5, seed=5)
    ds.delete_samples(ids[np.concatenate([planes[8:], rest[:3]])].tolist())
    return positives, negatives


@pytest.fixture(scope="module")
def user_indexes(request):
    make = request.getfixturevalue("make_module_user_index")
    one = make(n_per_class=10, index_key="clip")
    sharded = make(n_per_class=10, index_key="clip", shards=3)
    return {
        "one index": (one, labelled_with_deletions(one)),
        "3 shards": (sharded, labelled_with_deletions(sharded)),
    }


@pytest.mark.parametrize("where", ["one index", "3 shards"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_pages_equal_the_whole_ranking(user_indexes, where, model):
    ds, (positives, negatives) = user_indexes[where]
    query = None
    if MODELS[model].needs_query:
        query = np.mean(ds.select(positives).values("clip_embedding"), axis=0)
    fields = dict(
        positives=positives,
        negatives=negatives,
        model=model,
        query=query,
        seed=1,
        index_key="clip",
    )
    whole = sdk.refine_ranking(ds, **fields)
    with sdk.refine_pages(ds, first=3, **fields) as pages:
        got = [pages.page(0, 3), pages.page(3, 5), pages.page(8, 10_000)]
        count = pages.count
        stats = pages.stats
        # a notebook shows counts and where the rest is, never every id
        assert repr(pages).startswith(f"RefinePages({count} results, model ")
    shown = repr(got[2])
    assert shown.startswith(f"RefinedPage(ranks 8 to {8 + len(got[2].ids)}")
    assert len(shown) < 120 and not any(i in shown for i in got[2].ids)
    rows = np.concatenate([p.rows for p in got])
    scores = np.concatenate([p.scores for p in got])
    assert rows.tolist() == whole.rows.tolist()
    assert np.array_equal(scores, whole.scores)
    assert count == len(whole.rows)
    ids = [i for p in got for i in p.ids]
    assert ids == whole.bundle.rowmap.ids_of(whole.rows)
    assert set(positives) <= set(ids)
    assert not set(ids) & set(negatives)
    for key in ("n_forced_pos", "n_dropped_neg", "n_pos", "n_neg", "n_index"):
        assert stats[key] == whole.stats[key], key


@pytest.mark.parametrize("where", ["one index", "3 shards"])
def test_the_default_model_has_its_class_ball_on_a_user_built_index(
    user_indexes, where
):
    """Images -> embeddings -> build_index, a few labels: the cascade is sized on
    the index's codes (its class ball is fitted), and what it accepts is what its
    rule accepts row by row on the index's codes."""
    from fiftyone_clipbranches.sdk.refine import fit_refinement
    from fiftyone_clipbranches.sdk.request import RefineRequest

    ds, (positives, negatives) = user_indexes[where]
    request = RefineRequest(
        positives=positives, negatives=negatives, seed=1, index_key="clip"
    )
    fitted = fit_refinement(ds, request)
    model = fitted.model
    assert 2 <= fitted.stats["n_pos"] <= model.ball_max_positives
    assert fitted.stats["n_neighbour_pos"] > 0
    assert model.ball_radius_sq_ >= 0
    codes = np.asarray(fitted.bundle.index.codes[:])
    whole = sdk.refine_ranking(ds, request)
    accepted = np.flatnonzero(model.predict(codes))
    forced = np.setdiff1d(whole.rows, accepted)
    assert np.isin(forced, fitted.pos_rows).all()


def test_first_page_then_count_with_everything_labelled(make_dataset_index):
    ds = make_dataset_index
    ids = ds.values("id")
    labels = dict(positives=ids[:5], negatives=ids[5:], index_key="clip")
    whole = sdk.refine_ranking(ds, **labels)
    pages = sdk.refine_pages(ds, first=2, **labels)
    assert pages.page(0, 2).rows.tolist() == whole.rows[:2].tolist()
    assert pages.count == 5 and pages.all().rows.tolist() == whole.rows.tolist()
    assert "nothing left to classify" in pages.stats["note"]


@pytest.fixture
def make_dataset_index(make_user_index):
    return make_user_index(n_per_class=4, index_key="clip")


@pytest.mark.parametrize("seed", range(12))
def test_forced_and_excluded_rows_merge_like_labels_are_law(seed):
    """Many ties at the top score, forced rows among and after them, excluded rows
    anywhere, read in steps smaller and larger than the ties."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    rows = rng.choice(20_000, n, replace=False).astype(np.int64)
    scores = rng.choice([9.0, 9.0, 9.0, 7.0, 5.5, 2.0], n)
    order = np.lexsort((rows, -scores))  # a ranking, as labels_are_law takes
    rows, scores = rows[order], scores[order]
    others = np.setdiff1d(np.arange(20_000), rows)
    forced = rng.choice(others, int(rng.integers(0, 40)), replace=False)
    excluded = rng.choice(rows, int(rng.integers(0, min(n, 300) + 1)), replace=False)
    want = labels_are_law(rows, scores, np.sort(forced), excluded)
    bundle = SimpleNamespace(rowmap=SimpleNamespace(ids_of=lambda r: r.tolist()))
    fitted = FittedRefinement(None, bundle, forced, excluded, None, {}, 0.0)
    paged = held_pages(HeldAnswer(rows, scores), int(rng.integers(0, 50)))
    pages = RefinePages(fitted, paged, excluded, forced, excluded.size)
    got, at = [], 0
    while at < pages.count:
        size = int(rng.integers(1, 2500))
        got.append(pages.page(at, size))
        at += size
    assert pages.page(at, 10).rows.size == 0
    assert np.concatenate([g.rows for g in got]).tolist() == want[0].tolist()
    assert np.array_equal(np.concatenate([g.scores for g in got]), want[1])
    assert pages.count == want[0].size


def test_closed_pages_keep_what_was_read_and_say_how_much():
    rows = np.arange(5000, dtype=np.int64)
    scores = np.linspace(1.0, 0.0, rows.size)
    bundle = SimpleNamespace(rowmap=SimpleNamespace(ids_of=lambda r: r.tolist()))
    excluded = rows[:300:2]
    fitted = FittedRefinement(None, bundle, rows[:0], excluded, None, {}, 0.0)
    paged = held_pages(HeldAnswer(rows, scores), 10)
    pages = RefinePages(fitted, paged, excluded, (), excluded.size)
    first = pages.page(0, 10)
    pages.close()
    assert pages.page(0, 10).rows.tolist() == first.rows.tolist()
    with pytest.raises(ValueError, match=r"read before close\(\) remain") as caught:
        pages.page(0, 5000)
    held = int(re.search(r"\(0 to (\d+)\)", str(caught.value)).group(1))
    assert 10 <= held < 5000 - excluded.size  # the rows read, excluded ones left out
    assert pages.page(0, held).rows.size == held


def test_bad_first_is_refused_before_any_work(make_dataset_index):
    with pytest.raises(ValueError, match="first must be an int >= 0"):
        sdk.refine_pages(make_dataset_index, positives=["x"], first=-1)
