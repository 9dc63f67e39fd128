"""A sharded index on a local Ray cluster: built by Ray tasks, answered by one actor
per shard, equal to one index for every model; a killed actor comes back with the
same answers; a damaged shard is a clear error naming it."""

from __future__ import annotations

import gc
import os
import signal
import threading

import numpy as np
import pytest
from shard_cases import (
    LEAF_SIZE,
    MODEL_NAMES,
    assert_same_ranking,
    assert_same_training_set,
    catalogue,
    fit_once,
    processes_gone,
    refine_once,
    single_index,
    uneven_sizes,
)

from fiftyone_clipbranches.engine.errors import IndexFormatError
from fiftyone_clipbranches.engine.pages import rank_pages
from fiftyone_clipbranches.engine.shard_format import build_sharded_index
from fiftyone_clipbranches.engine.shards import open_index
from fiftyone_clipbranches.engine.subsets import make_subsets

ray_shards = pytest.importorskip("fiftyone_clipbranches.distributed.ray_shards")


@pytest.fixture(scope="module")
def data():
    codes, label = catalogue()
    one = single_index(codes)
    expected = {name: refine_once(one, name, codes, label) for name in MODEL_NAMES}
    return codes, label, one, expected


def on_ray(codes, path, sizes, **options):
    build_sharded_index(
        codes,
        path,
        sizes,
        make_subsets(32),
        LEAF_SIZE,
        builder=ray_shards.ray_builder(),
    )
    return open_index(path, executor_factory=ray_shards.ray_executor_factory(**options))


@pytest.mark.parametrize("n_shards", [1, 2, 3, 4])
def test_actors_answer_every_model_as_one_index(ray_cluster, data, tmp_path, n_shards):
    codes, label, one, expected = data
    sizes = uneven_sizes(len(codes), n_shards, seed=n_shards)
    index = on_ray(codes, tmp_path / "ix", sizes)
    try:
        assert isinstance(index.executor, ray_shards.RayShards)
        assert len(set(index.executor.pids())) == n_shards  # one actor process each
        # every actor runs on this node: the driver reads their rows itself
        assert sorted(index.executor.local_codes()) == list(range(n_shards))
        for name in MODEL_NAMES:
            want_train, want = expected[name]
            got_train, got = refine_once(index, name, codes, label)
            assert_same_training_set(want_train, got_train)
            assert_same_ranking(want, got)
        q = codes[17]
        for a, b in zip(one.knn(q, 40), index.knn(q, 40)):
            np.testing.assert_array_equal(a, b)
        allowed = np.random.default_rng(n_shards).random(len(codes)) < 0.2
        for a, b in zip(one.knn(q, 40, allowed), index.knn(q, 40, allowed)):
            np.testing.assert_array_equal(a, b)
    finally:
        index.close()


def test_reads_through_the_actors_give_the_same_answers(ray_cluster, data, tmp_path):
    codes, label, _, expected = data
    index = on_ray(codes, tmp_path / "ix", [700, 1300, 1000], local_reads=False)
    try:
        assert index.executor.local_codes() == {}
        for name in ("branches", "cascade", "forest"):
            want_train, want = expected[name]
            got_train, got = refine_once(index, name, codes, label)
            assert_same_training_set(want_train, got_train)
            assert_same_ranking(want, got)
    finally:
        index.close()


def test_a_killed_actor_restarts_and_gives_the_same_answer(ray_cluster, data, tmp_path):
    codes, label, _, expected = data
    index = on_ray(codes, tmp_path / "ix", [900, 1500, 600])
    try:
        before = index.executor.pids()
        answers = {}

        def query():
            answers["forest"] = refine_once(index, "forest", codes, label)[1]

        worker = threading.Thread(target=query)
        worker.start()  # the query is under way while shard 1's process dies
        os.kill(before[1], signal.SIGKILL)
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert_same_ranking(expected["forest"][1], answers["forest"])
        assert_same_ranking(
            expected["branches"][1], refine_once(index, "branches", codes, label)[1]
        )
        after = index.executor.pids()
        assert after[1] != before[1] and after[0] == before[0]
    finally:
        index.close()


def test_a_released_index_stops_its_actors_and_answers_again(
    ray_cluster, data, tmp_path
):
    codes, label, _, expected = data
    index = on_ray(codes, tmp_path / "ix", [1500, 1500])
    try:
        before = index.executor.pids()
        index.release()  # what leaving the SDK's cache does
        assert processes_gone(before)  # their processes end
        assert_same_ranking(  # a holder may still query: new actors answer
            expected["branches"][1], refine_once(index, "branches", codes, label)[1]
        )
        after = index.executor.pids()
        assert not set(after) & set(before)
    finally:
        index.close()
    assert processes_gone(after)
    # an index nobody holds any more stops its actors when it is collected
    dropped = on_ray(codes, tmp_path / "ix2", [1500, 1500])
    pids = dropped.executor.pids()
    del dropped
    gc.collect()
    assert processes_gone(pids)


def test_pages_come_from_the_actors_and_survive_a_restart(ray_cluster, data, tmp_path):
    """The count and first page in one round trip, later pages from the answers the
    actors hold; a restarted actor computes its answer again for the next page."""
    codes, label, one, expected = data
    index = on_ray(codes, tmp_path / "ix", [1100, 400, 1500])
    try:
        for name in ("branches", "ensemble", "linear"):
            want = expected[name][1]
            model = fit_once(one, name, codes, label)[1]
            paged = rank_pages(model, index, first=10, count=name != "branches")
            assert_same_ranking(want.top(10), paged.page(0, 10))
            assert paged.count == len(want)
            if name == "ensemble":
                before = index.executor.pids()
                os.kill(before[2], signal.SIGKILL)
            rest = paged.page(10, len(want))
            np.testing.assert_array_equal(want.ids[10:], rest.ids)
            np.testing.assert_array_equal(want.scores[10:], rest.scores)
            paged.close()
        assert index.executor.pids()[2] != before[2]
        last = rank_pages(model, index, first=10)
    finally:
        index.close()
    last.close()  # after its index: nothing left to free, no error


def test_a_damaged_shard_is_named_and_the_others_keep_serving(
    ray_cluster, data, tmp_path
):
    codes, label, _, expected = data
    broken = tmp_path / "broken"
    build_sharded_index(codes, broken, [1000, 1000, 1000], make_subsets(32), LEAF_SIZE)
    with open(broken / "shard-0002" / "ids.npy", "r+b") as f:
        f.truncate(1000)
    factory = ray_shards.ray_executor_factory()
    with pytest.raises(IndexFormatError, match="shard 2 of 3"):
        open_index(broken, executor_factory=factory)

    good = on_ray(codes, tmp_path / "good", [1000, 1000, 1000])
    other = on_ray(codes, tmp_path / "other", [1500, 1500])
    try:
        shard = tmp_path / "good" / "shard-0001"
        shard.rename(tmp_path / "aside")
        os.kill(good.executor.pids()[1], signal.SIGKILL)  # restarts over no files
        with pytest.raises(IndexFormatError, match="shard 1 of 3"):
            refine_once(good, "branches", codes, label)
        assert_same_ranking(
            expected["branches"][1], refine_once(other, "branches", codes, label)[1]
        )
        (tmp_path / "aside").rename(shard)  # restored: answered again, no restart
        assert_same_ranking(
            expected["branches"][1], refine_once(good, "branches", codes, label)[1]
        )
        # a codes file cut short in place, mapped by this process too: an error
        # naming the shard, not a crash of the process reading it
        assert 0 in good.executor.local_codes()
        with open(tmp_path / "good" / "shard-0000" / "codes.npy", "r+b") as f:
            f.truncate(20_000)
        assert 0 not in good.executor.local_codes()
        os.kill(good.executor.pids()[0], signal.SIGKILL)
        with pytest.raises(IndexFormatError, match="shard 0 of 3"):
            refine_once(good, "branches", codes, label)
    finally:
        good.close()
        other.close()


def test_actor_threads_share_out_the_cores(ray_cluster, data, tmp_path):
    import ray

    codes = data[0]
    build_sharded_index(codes, tmp_path / "ix", 3, make_subsets(32), LEAF_SIZE)
    cpus = int(ray.cluster_resources()["CPU"])
    import numba

    most = numba.config.NUMBA_NUM_THREADS
    for threads, want in (
        (None, min(most, max(1, cpus // 3))),
        (1, 1),
        (2, min(2, most)),
    ):
        factory = ray_shards.ray_executor_factory(threads=threads)
        index = open_index(tmp_path / "ix", executor_factory=factory)
        try:
            assert index.executor.map("threads") == [want] * 3
        finally:
            index.close()
    with pytest.raises(ValueError, match="threads"):
        open_index(
            tmp_path / "ix", executor_factory=ray_shards.ray_executor_factory(threads=0)
        )
