"""HTTP service over the sdk: ``/v1`` JSON API, server, client.

Importing this package is cheap: Flask, waitress and FiftyOne load only when the
server is used. ``Client`` and ``remote_refine`` (from ``sdk.remote``) speak HTTP
with the standard library.
"""

from __future__ import annotations

from fiftyone_clipbranches.service.client import (
    Client,
    RemoteRefineResult,
    RemoteServiceError,
    ServiceError,
    remote_refine,
    service_settings,
)

__all__ = [
    "Client",
    "RemoteRefineResult",
    "RemoteServiceError",
    "ServiceError",
    "remote_refine",
    "serve",
    "service_settings",
    "start_server",
]


def __getattr__(name):
    if name in ("serve", "start_server"):
        from fiftyone_clipbranches.service import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
