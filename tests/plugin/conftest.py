"""Datasets with an index, and helpers to run the plugin's operators headlessly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk"))

from sdk_testdata import index_dataset, make_cifar_dataset  # noqa: E402

PLUGIN = "@clipbranches/clipbranches"


@pytest.fixture
def indexed_dataset(cifar_dir):
    """200 CIFAR images with cluster codes indexed under key ``cb``."""
    ds = make_cifar_dataset(cifar_dir, 20)
    index_dataset(ds, "cb")
    yield ds
    if not ds.deleted:
        ds.delete()


def run_op(name: str, ctx: dict):
    """Execute ``@clipbranches/clipbranches/<name>``; returns ``(result, requests)``
    where requests are ``(operator uri, params)`` of the App-side effects."""
    import fiftyone.operators as foo

    out = foo.execute_operator(f"{PLUGIN}/{name}", ctx=ctx)
    requests = [
        (r["operator_uri"], r.get("params") or {})
        for r in out.executor.to_json()["requests"]
    ]
    return out.result, requests


def uris(requests) -> list[str]:
    return [uri for uri, _ in requests]


def notifications(requests, variant=None) -> list[str]:
    return [
        p["message"]
        for uri, p in requests
        if uri == "notify" and (variant is None or p.get("variant") == variant)
    ]


@pytest.fixture
def make_dataset_no_index(cifar_dir):
    ds = make_cifar_dataset(cifar_dir, 1)
    yield ds
    if not ds.deleted:
        ds.delete()
