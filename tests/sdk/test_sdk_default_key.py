"""A call that names no index: ``"clipbranches"``, else the dataset's only index,
on every face (SDK, CLI; the service and the App's forms share the rule). The SDK
and the CLI required ``"clipbranches"`` where the service used the only index."""

from __future__ import annotations

import json

import pytest

import fiftyone_clipbranches as cb
from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.cli import main as cli_main
from fiftyone_clipbranches.sdk.settings import default_index_key


def test_the_rule():
    assert default_index_key([]) is None
    assert default_index_key(["clip"]) == "clip"
    assert default_index_key(["clip", "clipbranches"]) == "clipbranches"
    assert default_index_key(["a", "b"]) is None


def test_a_dataset_with_one_index_is_answered_from_it(make_user_index, capsys):
    ds = make_user_index(n_per_class=4, index_key="clip")
    first = ds.values("id")[:2]
    assert cb.search(ds, text="a cat", k=5).values("id") == cb.search(
        ds, text="a cat", k=5, index_key="clip"
    ).values("id")
    assert sdk.index_info(ds).key == "clip"
    assert sdk.unsearched_count(ds) == 0
    assert sdk.verify_index(ds).key == "clip"
    result = cb.refine(ds, positives=first, score_field=None)
    assert result.stats["index_key"] == "clip"
    assert list(result.ids) == list(
        cb.refine(ds, positives=first, score_field=None, index_key="clip").ids
    )
    ds.delete_samples(ds.values("id")[-2:])
    assert sdk.update_index(ds, progress=False).changes.dropped == 2

    assert cli_main(["search", ds.name, "--text", "a cat", "--k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stats"]["index_key"] == "clip" and len(out["results"]) == 3
    assert cli_main(["refine", ds.name, "--positive", first[0], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["index_key"] == "clip"


def test_several_indexes_without_the_default_are_asked_for(make_user_index, capsys):
    ds = make_user_index(n_per_class=4, index_key="clip")
    sdk.build_index(
        ds,
        "other",
        embeddings_field="clip_embedding",
        code_method="pca",
        progress=False,
    )
    with pytest.raises(sdk.IndexNotFoundError, match="say which to use"):
        cb.search(ds, text="a cat")
    with pytest.raises(sdk.IndexNotFoundError, match="say which to use"):
        sdk.update_index(ds, progress=False)
    assert cli_main(["search", ds.name, "--text", "a cat", "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert "--key clip" in error["message"]
    # the default among others is the one answered from
    sdk.build_index(
        ds, embeddings_field="clip_embedding", code_method="pca", progress=False
    )
    assert sdk.index_info(ds).key == "clipbranches"
    assert (
        cb.refine(ds, positives=ds.values("id")[:1], score_field=None).stats[
            "index_key"
        ]
        == "clipbranches"
    )
