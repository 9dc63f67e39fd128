"""The build operator on an existing embeddings field declares no model by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import notifications, run_op

import fiftyone_clipbranches as cb
from fiftyone_clipbranches.sdk.bundle import forget_bundle


def _with_vectors(ds):
    rng = np.random.default_rng(0)
    # ViT-B-32's length: the form's declaration below is of that model
    ds.set_values("vec", list(rng.normal(size=(len(ds), 512)).astype(np.float32)))
    return ds


def test_build_on_a_field_records_no_default_identity(indexed_dataset):
    ds = _with_vectors(indexed_dataset)
    params = {"index_key": "onfield", "embeddings": "vec", "code_method": "pca"}
    run_op("build_index", {"dataset": ds, "params": params})
    assert cb.index_info(ds, "onfield").clip_model is None

    half = {**params, "index_key": "half", "model": "ViT-B-32"}
    _, requests = run_op("build_index", {"dataset": ds, "params": half})
    assert "give both the model" in notifications(requests, "error")[0]

    full = {**params, "index_key": "full", "model": "ViT-B-32", "pretrained": "openai"}
    run_op("build_index", {"dataset": ds, "params": full})
    assert cb.index_info(ds, "full").clip_model == {
        "name": "ViT-B-32",
        "pretrained": "openai",
    }


def test_operators_say_the_way_out_in_the_apps_words(indexed_dataset):
    ds = _with_vectors(indexed_dataset)
    params = {"index_key": "onfield", "embeddings": "vec", "code_method": "pca"}
    run_op("build_index", {"dataset": ds, "params": params})

    search = {"index_key": "onfield", "query_type": "text", "text": "a cat"}
    _, requests = run_op("search", {"dataset": ds, "params": search})
    (message,) = notifications(requests, "error")
    assert "does not know the CLIP model of the embeddings in field 'vec'" in message
    assert "'Build it again in its place' checked" in message
    assert "'CLIP branches: build index'" in message
    assert "build_index(" not in message and "CLI:" not in message

    damaged = {**params, "index_key": "damaged"}
    run_op("build_index", {"dataset": ds, "params": damaged})
    index_dir = cb.index_info(ds, "damaged").index_dir
    (Path(index_dir) / "manifest.json").write_text("{ not json")
    forget_bundle(index_dir)  # as the App's server, a process that never loaded it
    by_id = {"index_key": "damaged", "query_type": "selection"}
    ctx = {"dataset": ds, "params": by_id, "selected": ds.values("id")[:1]}
    _, requests = run_op("search", ctx)
    (message,) = notifications(requests, "error")
    assert "garbled" in message and "'Build it again in its place' checked" in message
    assert "overwrite=True" not in message and "CLI:" not in message


def test_a_key_never_built_is_refused_naming_the_datasets_indexes(indexed_dataset):
    import fiftyone.operators as foo

    ctx = {"dataset": indexed_dataset, "params": {"index_key": "nope"}}
    with pytest.raises(foo.executor.ExecutionError) as err:
        foo.execute_operator("@clipbranches/clipbranches/delete_index", ctx=ctx)
    assert "index 'nope' is not on this dataset" in str(err.value)
    assert "or never built): its indexes are 'cb'" in str(err.value)
    assert cb.list_indexes(indexed_dataset) == ["cb"]
