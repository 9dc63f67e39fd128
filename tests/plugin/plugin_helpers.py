"""Helpers to run the plugin's operators headlessly and read their App requests."""

from __future__ import annotations

PLUGIN = "@clipbranches/clipbranches"


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
