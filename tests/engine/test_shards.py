"""Sharded indexes in process: the same answers as one index, and a format that
fails loudly (naming the shard) when a shard is damaged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shard_cases import (
    MODEL_NAMES,
    assert_same_ranking,
    assert_same_training_set,
    catalogue,
    refine_once,
    sharded,
    single_index,
    uneven_sizes,
)

from fiftyone_clipbranches.engine.errors import IndexAccessError, IndexFormatError
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.neighbours import neighbour_rows
from fiftyone_clipbranches.engine.search import apply_model
from fiftyone_clipbranches.engine.shard_format import (
    build_sharded_index,
    shard_sizes,
)
from fiftyone_clipbranches.engine.shards import open_index
from fiftyone_clipbranches.sdk.models import make_model


@pytest.fixture(scope="module")
def data():
    codes, label = catalogue()
    return codes, label, single_index(codes)


@pytest.fixture(scope="module")
def expected(data):
    """Every model's training set and ranking on one index."""
    codes, label, one = data
    return {name: refine_once(one, name, codes, label) for name in MODEL_NAMES}


@pytest.mark.parametrize("n_shards", [1, 2, 3, 4])
@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 10**6))
def test_every_model_answers_as_one_index(
    data, expected, tmp_path_factory, n_shards, seed
):
    codes, label, _ = data
    sizes = uneven_sizes(len(codes), n_shards, seed)
    index = sharded(codes, tmp_path_factory.mktemp("s") / "ix", sizes)
    assert index.n_shards == n_shards and len(index) == len(codes)
    for name in MODEL_NAMES:
        want_train, want = expected[name]
        got_train, got = refine_once(index, name, codes, label)
        assert_same_training_set(want_train, got_train)
        assert want_train.neighbour_rows.size > 0  # the cross-shard k-NN was used
        assert_same_ranking(want, got)
        assert len(want) > 0, name
    _, scan = refine_once(index, "branches", codes, label, use_index=False)
    assert_same_ranking(expected["branches"][1], scan)


def test_knn_gathers_and_boxes_equal_one_index(data, tmp_path):
    codes, label, one = data
    index = sharded(codes, tmp_path / "ix", [1, 1700, 299, 1000])
    rng = np.random.default_rng(1)
    for q in codes[rng.choice(len(codes), 5)]:
        for k in (1, 7, 500, len(codes) + 10):
            want, got = one.knn(q, k), index.knn(q, k)
            np.testing.assert_array_equal(want[0], got[0])
            np.testing.assert_array_equal(want[1], got[1])
    # among allowed rows: the shards skip the rest, whole shards left out included
    for allowed in (
        rng.random(len(codes)) < 0.3,
        np.arange(len(codes)) >= 1701,  # shards 0 and 1 (and 1 row of 2) left out
        np.zeros(len(codes), bool),
    ):
        for q in codes[rng.choice(len(codes), 3)]:
            for k in (1, 9, len(codes)):
                want, got = one.knn(q, k, allowed), index.knn(q, k, allowed)
                np.testing.assert_array_equal(want[0], got[0])
                np.testing.assert_array_equal(want[1], got[1])
                assert allowed[got[0]].all()
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        index.knn(codes[0], 3, np.ones(len(codes) - 1, bool))
    rows = rng.integers(0, len(codes), 50)
    np.testing.assert_array_equal(index.codes[rows], codes[rows])
    np.testing.assert_array_equal(index.codes[1:1702], codes[1:1702])
    np.testing.assert_array_equal(np.asarray(index.codes), codes)
    pos = np.flatnonzero(label == 2)[:4]
    for search_rows in (1 << 18, 256):  # the whole catalogue, then spread blocks
        want = neighbour_rows(codes, pos, 5, search_rows=search_rows, search_block=64)
        got = neighbour_rows(
            index.codes, pos, 5, search_rows=search_rows, search_block=64
        )
        np.testing.assert_array_equal(want, got)
    train, _ = refine_once(one, "ensemble", codes, label)
    model = make_model("ensemble", random_state=1).fit(
        train.X, train.y, train.sample_weight, subsets=one.subsets
    )
    for a, b in zip(one.query_boxes(model.boxes_), index.query_boxes(model.boxes_)):
        np.testing.assert_array_equal(a, b)


def test_shard_sizes():
    assert shard_sizes(10, 3) == [4, 3, 3]
    assert shard_sizes(10, [1, 9]) == [1, 9]
    for bad in (0, [5, 4], [0, 10], 11):
        with pytest.raises(ValueError):
            shard_sizes(10, bad)
    with pytest.raises(TypeError):
        shard_sizes(10, True)


def test_an_interrupted_build_leaves_nothing(tmp_path):
    codes, _ = catalogue(400)

    def failing(jobs, progress):
        from fiftyone_clipbranches.engine.shard_format import build_shard

        build_shard(jobs[0])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_sharded_index(codes, tmp_path / "ix", 3, builder=failing)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileExistsError):
        build_sharded_index(codes, tmp_path, 2)


def test_one_index_directories_still_open(tmp_path):
    codes, _ = catalogue(300)
    CodeIndex.build(codes, path=tmp_path / "one")
    assert isinstance(open_index(tmp_path / "one"), CodeIndex)


@pytest.mark.parametrize("damage", ["missing", "truncated", "manifest", "version"])
def test_a_damaged_shard_is_named(tmp_path, damage):
    codes, _ = catalogue(900)
    path = build_sharded_index(codes, tmp_path / "ix", [300, 300, 300])
    shard = path / "shard-0001"
    if damage == "missing":
        shutil.rmtree(shard)
    elif damage == "truncated":
        with open(shard / "ids.npy", "r+b") as f:
            f.truncate(100)
    elif damage == "manifest":
        m = json.loads((shard / "manifest.json").read_text())
        m["leaf_size"] = 7
        (shard / "manifest.json").write_text(json.dumps(m))
    else:
        top = json.loads((path / "manifest.json").read_text())
        top["format_version"] = 99
        (path / "manifest.json").write_text(json.dumps(top))
    match = "format version 99" if damage == "version" else "shard 1 of 3"
    with pytest.raises(IndexFormatError, match=match) as err:
        open_index(path)
    assert not isinstance(err.value, IndexAccessError)  # damage, not permissions


@pytest.mark.parametrize("local", [True, False], ids=["local reads", "remote"])
def test_a_training_set_reads_the_shards_once(data, tmp_path, local):
    """After the index's neighbour pool is gathered, the codes of a training set
    (labelled rows, random negatives, neighbour positives) cost one round trip to
    shards this process cannot read, none to shards it maps itself."""
    codes, label, one = data
    index = sharded(codes, tmp_path / "ix", [1, 1700, 299, 1000])
    if not local:
        index.executor.local_codes = dict
    calls = []
    real_map = index.executor.map

    def counting_map(method, *args, **kwargs):
        calls.append(method)
        return real_map(method, *args, **kwargs)

    index.executor.map = counting_map
    index.neighbour_pool()
    calls.clear()
    want, _ = refine_once(one, "branches", codes, label)
    got, _ = refine_once(index, "branches", codes, label)
    assert calls.count("rows") + calls.count("row_range") == (0 if local else 1)
    assert "knn_many" not in calls
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_array_equal(got.X, want.X)


def test_a_sharded_index_opened_as_one_index_says_how_to_open_it(data, tmp_path):
    codes, _, _ = data
    index = sharded(codes, tmp_path / "ix", 2)
    with pytest.raises(IndexFormatError, match=r"split into shards.*open_index"):
        CodeIndex.load(tmp_path / "ix")
    assert len(index) == len(codes)


@pytest.mark.parametrize("name", ["ensemble", "cascade"])
def test_a_broad_concept_answers_as_one_index(broad_concept, tmp_path, name):
    """A broad concept's rule (the arbiter's own boundary on any row a member holds)
    answers the same from shards as from one index."""
    codes, index, ts = broad_concept.codes, broad_concept.index, broad_concept.ts
    model = make_model(name, random_state=2).fit(
        ts.X, ts.y, ts.sample_weight, subsets=index.subsets,
        unlabelled=ts.unlabelled, neighbours=ts.neighbours, catalogue_sample=codes,
    )  # fmt: skip
    assert model.broad_
    shards = sharded(codes, tmp_path / "ix", [1, 2999, 1000, 2000])
    want = apply_model(model, index)
    assert len(want) > 2000
    assert_same_ranking(want, apply_model(model, shards))
