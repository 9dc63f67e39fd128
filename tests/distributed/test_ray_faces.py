"""The faces on a sharded index built the user's way (images -> tiny CLIP ->
``build_index(shards=2)``): ``sdk.refine`` and ``sdk.search`` unchanged, in process
and through Ray actors, and ``clipbranches serve --ray-address`` over real HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from service_process import running_service
from shard_cases import processes_gone

from fiftyone_clipbranches import cli, sdk
from fiftyone_clipbranches.sdk.bundle import (
    cached_bundles,
    forget_bundle,
    pin_bundle,
    unpin_bundle,
)
from fiftyone_clipbranches.sdk.sharding import use_ray

ray_shards = pytest.importorskip("fiftyone_clipbranches.distributed.ray_shards")
TOKEN = "ray-faces-token-0123456789"
MODELS = ("branches", "ensemble", "linear")


@pytest.fixture
def two_indexes(make_user_index):
    """A dataset with index ``sharded`` (2 shards) and ``one`` (one index) over the
    same embeddings, hence the same codes."""
    ds = make_user_index(n_per_class=12, index_key="sharded", shards=2)
    sdk.build_index(
        ds, "one", embeddings_field="clip_embedding", code_method="pca", progress=False
    )
    labels = ds.values("ground_truth.label")
    ids = ds.values("id")
    pos = [i for i, lab in zip(ids, labels) if lab == labels[0]][:5]
    neg = [i for i, lab in zip(ids, labels) if lab != labels[0]][:5]
    return ds, pos, neg


def answers(ds, key, pos, neg):
    out = {}
    for model in MODELS:
        r = sdk.refine(ds, pos, neg, model=model, index_key=key, score_field=None)
        out[model] = (r.ids, np.asarray(r.scores))
    labels = dict(positives=pos, negatives=neg, model="branches", index_key=key)
    with sdk.refine_pages(ds, first=4, **labels) as p:
        head, rest = p.page(0, 4), p.page(4, p.count)
    out["pages"] = (head.ids + rest.ids, np.concatenate([head.scores, rest.scores]))
    out["search"] = sdk.search_ids(ds, text="a photo of a cat", k=20, index_key=key)
    out["by_samples"] = sdk.search_ids(ds, sample_ids=pos[:2], k=20, index_key=key)
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert list(a[name][0]) == list(b[name][0]), name
        np.testing.assert_array_equal(a[name][1], b[name][1], err_msg=name)


def test_refine_and_search_on_a_sharded_index(ray_cluster, two_indexes, capsys):
    ds, pos, neg = two_indexes
    config, bundle = sdk.load_index(ds, "sharded")
    assert bundle.index.n_shards == 2
    # a user sees it: in index_info and `clipbranches indexes`
    assert [sdk.index_info(ds, k).n_shards for k in ("sharded", "one")] == [2, 1]
    assert f"{len(ds)} samples in 2 shards," in repr(sdk.index_info(ds, "sharded"))
    assert cli.main(["indexes", ds.name]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert [line.startswith("sharded:") for line in shown if "2 shards" in line] == [
        True
    ]
    want = answers(ds, "one", pos, neg)
    assert len(want["branches"][0]) >= len(pos)
    assert want["pages"][0] == list(want["branches"][0])  # paged, the same answer
    assert_same(want, answers(ds, "sharded", pos, neg))  # shards in this process
    assert sdk.verify_index(ds, "sharded", level="full")

    # loaded in this process already: answered through the actors from now on;
    # pinned (as a service pins what it serves), loaded again and pinned still
    pinned = pin_bundle(config.index_dir)
    use_ray(ray_cluster)
    try:
        _, bundle = sdk.load_index(ds, "sharded")
        assert isinstance(bundle.index.executor.executor, ray_shards.RayShards)
        # other tests of this process may hold pins of their own
        assert bundle is not pinned
        assert str(Path(config.index_dir).resolve()) in cached_bundles()[0]
        assert_same(want, answers(ds, "sharded", pos, neg))  # one actor per shard
        use_ray(ray_cluster)  # the same cluster again: nothing loaded again
        assert sdk.load_index(ds, "sharded")[1] is bundle
    finally:
        use_ray(None)
        unpin_bundle(config.index_dir)
    _, here = sdk.load_index(ds, "sharded")  # and back in this process
    assert not isinstance(here.index.executor.executor, ray_shards.RayShards)

    ds.delete_samples(ds.exclude(pos + neg).take(1, seed=0))  # keep the labels
    sdk.update_index(ds, "sharded", progress=False)  # rebuilt with its shard count
    config, bundle = sdk.load_index(ds, "sharded")
    assert bundle.index.n_shards == 2 and len(bundle.index) == len(ds)

    forget_bundle(config.index_dir)
    use_ray(ray_cluster)
    try:
        _, bundle = sdk.load_index(ds, "sharded")
        shutil.rmtree(Path(config.index_dir) / "index" / "shard-0001")
        os.kill(bundle.index.executor.pids()[1], signal.SIGKILL)  # restarts, no files
        with pytest.raises(sdk.errors.IndexCorruptedError, match="shard 1 of 2") as e:
            sdk.refine(ds, pos, neg, index_key="sharded", score_field=None)
        assert "build_index(..., overwrite=True)" in str(e.value)  # the SDK's advice
    finally:
        use_ray(None)
        forget_bundle(config.index_dir)
        bundle.index.close()


def test_a_sharded_index_leaving_the_cache_stops_its_actors(
    ray_cluster, two_indexes, monkeypatch
):
    ds, pos, neg = two_indexes
    monkeypatch.setenv("CLIPBRANCHES_INDEX_CACHE_SIZE", "1")
    want = sdk.refine(ds, pos, neg, index_key="sharded", score_field=None).ids
    forget_bundle(sdk.load_index(ds, "sharded")[0].index_dir)
    use_ray(ray_cluster)
    try:
        pids = sdk.load_index(ds, "sharded")[1].index.executor.pids()
        sdk.load_index(ds, "one")  # the cache holds one: the sharded one leaves it
        assert processes_gone(pids)  # no actor left behind
        again = sdk.refine(ds, pos, neg, index_key="sharded", score_field=None)
        assert again.ids == want  # loaded again, on new actors
        pids = sdk.load_index(ds, "sharded")[1].index.executor.pids()
        sdk.delete_index(ds, "sharded")
        assert processes_gone(pids)  # they stop with their index
    finally:
        use_ray(None)


def test_serve_answers_a_sharded_index_through_actors(
    ray_cluster, two_indexes, monkeypatch
):
    ds, pos, neg = two_indexes
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)  # what "auto" finds first
    want = sdk.refine(ds, pos, neg, index_key="one", score_field=None)
    want_search = sdk.search_ids(ds, text="a photo of a cat", k=20, index_key="one")
    command = [sys.executable, "-m", "fiftyone_clipbranches.cli", "serve"]
    args = ["--dataset", ds.name, "--ray-address", "auto"]
    args += ["--compute-workers", "1", "--timeout", "120"]
    with running_service(args, TOKEN, command=command) as service:
        assert (
            f"answered by Ray actors at {ray_cluster} (what 'auto' found)"
            in service.output()
        )
        client = sdk.remote.Client(service.url, TOKEN)
        info = client.index(ds.name, "sharded")
        assert info["n_samples"] == len(ds)
        result = client.refine(
            ds.name, positives=pos, negatives=neg, index_key="sharded"
        )
        items = list(client.iter_items(result["result_id"]))
        assert [i["id"] for i in items] == list(want.ids)
        np.testing.assert_array_equal([i["score"] for i in items], want.scores)
        found = client.search(
            ds.name, text="a photo of a cat", k=20, index_key="sharded"
        )
        assert [i["id"] for i in found["items"]] == want_search[0]


@pytest.mark.parametrize("address", ["closed", "nonsense"])
def test_serve_refuses_a_ray_address_nothing_answers_at(address):
    """``ray.init`` retries an address without a cluster for minutes: the service
    says so at once instead."""
    import socket
    import subprocess

    from service_process import service_env

    if address == "closed":
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
    command = [sys.executable, "-m", "fiftyone_clipbranches.cli", "serve"]
    done = subprocess.run(
        [*command, "--port", "0", "--ray-address", address],
        env=service_env(TOKEN),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    message = done.stdout + done.stderr
    assert address in message and "Ray" in message, message
    assert "clipbranches serve: error: " in done.stderr
