"""Paged rankings (engine.pages): the count and pages of a refinement, on one index
and on S shards, concatenate to exactly the ranking ``apply_model`` returns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shard_cases import (
    MODEL_NAMES,
    assert_same_ranking,
    catalogue,
    fit_once,
    sharded,
    single_index,
    uneven_sizes,
)

from fiftyone_clipbranches.engine.pages import AnswerCache, HeldAnswer, rank_pages
from fiftyone_clipbranches.engine.search import (
    Ranking,
    apply_model,
    first_positions,
    ranking_order,
)


@pytest.fixture(scope="module")
def data():
    codes, label = catalogue()
    one = single_index(codes)
    # 10 positives: single branches then accept more rows than a first page
    models = {
        name: fit_once(one, name, codes, label, n_pos=10)[1] for name in MODEL_NAMES
    }
    want = {name: apply_model(m, one) for name, m in models.items()}
    return codes, one, models, want


def read_in_pages(paged, sizes) -> Ranking:
    """Every row of ``paged``, read front to back in pages of the given sizes."""
    ids, scores, offset, i = [], [], 0, 0
    while offset < len(paged):
        page = paged.page(offset, sizes[i % len(sizes)])
        ids.append(page.ids)
        scores.append(page.scores)
        offset += len(page)
        i += 1
    return Ranking(
        np.concatenate(ids or [np.zeros(0, np.int64)]),
        np.concatenate(scores or [np.zeros(0)]),
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([-1.0, -0.0, 0.0, 0.25, 0.5, 2.0]), max_size=60),
    st.integers(0, 70),
    st.booleans(),
)
def test_first_positions_are_the_ranking_s_first(scores, n, shuffled):
    scores = np.array(scores, np.float64)
    ids = np.arange(len(scores), dtype=np.int64) * 3
    if shuffled:
        ids = np.random.default_rng(n).permutation(ids)
    want = ranking_order(ids, scores)[:n]
    got = first_positions(ids, scores, n)
    np.testing.assert_array_equal(ids[got], ids[want])
    held = HeldAnswer(ids, scores)
    a, b = held.rows(n // 3, n)
    np.testing.assert_array_equal(a, ids[want][n // 3 :])
    np.testing.assert_array_equal(b, scores[want][n // 3 :])


@pytest.mark.parametrize("count", [True, False], ids=["counted", "count later"])
def test_one_index_pages_are_the_ranking(data, count):
    _, one, models, want = data
    for name, model in models.items():
        with rank_pages(model, one, first=7, count=count) as paged:
            assert_same_ranking(want[name].top(7), paged.page(0, 7))
            assert paged.count == len(want[name]) > 0, name
            assert_same_ranking(want[name], read_in_pages(paged, [7, 1, 50, 333]))
            assert len(paged.page(len(paged) + 5, 10)) == 0
        with rank_pages(model, one, first=len(want[name]) + 3, count=count) as paged:
            assert_same_ranking(want[name], paged.page(0, len(want[name]) + 3))
            assert paged.count == len(want[name])


@pytest.mark.parametrize("n_shards", [1, 2, 3, 4])
def test_shard_pages_are_the_one_index_ranking(data, tmp_path, n_shards):
    codes, _, models, want = data
    sizes = uneven_sizes(len(codes), n_shards, seed=10 + n_shards)
    index = sharded(codes, tmp_path / "ix", sizes)
    for name, model in models.items():
        expected = want[name]
        count = n_shards % 2 == 0
        with rank_pages(model, index, first=20, count=count) as paged:
            assert_same_ranking(expected.top(20), paged.page(0, 20))
            if name == "branches":  # the first page came from the deepest rows
                assert len(expected) > 20  # more than the first page
                held = [
                    h for w in index.executor.workers for h in w._answers._held.values()
                ]
                found = [h.found for h in held]
                # counted: every shard found its rows; else some needed none
                assert all(found) if count else not all(found)
            assert paged.count == len(expected), name
            # a deep page first, then the pages before it
            deep = max(0, len(expected) - 40)
            assert_same_ranking(
                Ranking(expected.ids[deep:], expected.scores[deep:]),
                paged.page(deep, 1000),
            )
            assert_same_ranking(expected, read_in_pages(paged, [20, 3, 64]))
        paged = rank_pages(model, index, first=0)
        assert_same_ranking(expected, read_in_pages(paged, [len(expected) // 2 + 1]))
        paged.close()
    # every answer released: nothing stays held in the shards
    assert all(len(w._answers) == 0 for w in index.executor.workers)


def test_pages_survive_answers_dropped_from_the_shards(data, tmp_path):
    """More open rankings than a shard holds: the dropped answers are computed again,
    with the same rows."""
    codes, _, models, want = data
    index = sharded(codes, tmp_path / "ix", [1200, 800, 1000])
    names = ["branches", "ensemble", "cascade", "linear", "forest", "ball"]
    open_rankings = [(n, rank_pages(models[n], index, first=5)) for n in names]
    assert len(names) > AnswerCache().capacity
    for name, paged in open_rankings:
        assert_same_ranking(want[name], read_in_pages(paged, [5, 17]))


def test_bad_page_arguments_are_refused(data):
    _, one, models, _ = data
    with pytest.raises(ValueError, match="first must be an int >= 0"):
        rank_pages(models["branches"], one, first=-1)
    paged = rank_pages(models["branches"], one)
    for offset, limit in ((-1, 5), (0, -2), (0.5, 3), (True, 3)):
        with pytest.raises(ValueError, match="must be an int >= 0"):
            paged.page(offset, limit)
    with pytest.raises(TypeError, match="engine model"):
        rank_pages(object(), one)


def test_a_ranking_closed_after_its_index_closes_quietly(data, tmp_path):
    codes, _, models, want = data
    index = sharded(codes, tmp_path / "ix", [1500, 1500])
    paged = rank_pages(models["branches"], index, first=3)
    assert_same_ranking(want["branches"].top(3), paged.page(0, 3))
    index.close()
    paged.close()
    paged.close()  # once is enough; twice is harmless


def test_a_closed_ranking_keeps_its_read_pages_and_refuses_others(data, tmp_path):
    codes, _, models, want = data
    index = sharded(codes, tmp_path / "ix", [900, 2100])
    paged = rank_pages(models["linear"], index, first=10)
    paged.page(0, 30)
    paged.close()
    assert_same_ranking(want["linear"].top(30), paged.page(0, 30))
    with pytest.raises(ValueError, match="closed"):
        paged.page(30, 10)
    assert all(len(w._answers) == 0 for w in index.executor.workers)
