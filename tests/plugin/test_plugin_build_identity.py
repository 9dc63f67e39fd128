"""The build operator on an existing embeddings field declares no model by default."""

from __future__ import annotations

import numpy as np
from plugin_helpers import notifications, run_op

import fiftyone_clipbranches as cb


def _with_vectors(ds):
    rng = np.random.default_rng(0)
    ds.set_values("vec", list(rng.normal(size=(len(ds), 64)).astype(np.float32)))
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
