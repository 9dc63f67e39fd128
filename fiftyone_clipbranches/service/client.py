"""The service's Python client, kept under its old name: it lives in
:mod:`fiftyone_clipbranches.sdk.remote` (below the faces, which use it too)."""

from fiftyone_clipbranches.sdk.remote import (
    TOKEN_ENV,
    URL_ENV,
    Client,
    RemoteRefineResult,
    RemoteServiceError,
    ServiceError,
    remote_refine,
    service_settings,
)

__all__ = [
    "TOKEN_ENV",
    "URL_ENV",
    "Client",
    "RemoteRefineResult",
    "RemoteServiceError",
    "ServiceError",
    "remote_refine",
    "service_settings",
]
