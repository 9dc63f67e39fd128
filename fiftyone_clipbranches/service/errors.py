"""Errors of the HTTP service: each carries an HTTP status and a stable error code.

Clients branch on ``code`` (documented in ``docs/service.md``), never on the message,
which is written for people and may change.
"""

from __future__ import annotations

import re


class ApiError(Exception):
    """An error answered as ``{"error": {"code": ..., "message": ...}}``.

    Args:
        status: HTTP status code.
        code: stable machine-readable code, e.g. ``"invalid_request"``.
        message: what went wrong and what to do about it.
        details: optional JSON-serialisable extra data (e.g. the unknown ids).
        retry_after_s: seconds after which the same request may succeed (sent as
            the ``Retry-After`` header), for a refusal that is only for now.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details=None,
        retry_after_s: int | None = None,
    ):
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s

    def to_json(self) -> dict:
        body = {"code": self.code, "message": without_paths(self.message)}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


#: An absolute path of two parts or more; the API's own ``/v1/...`` routes excepted.
_PATH = re.compile(r"(?<![\w.~:/-])/(?!v1/)(?:[^\s'\"/]+/)+[^\s'\"/]+")
_TRAILING = ".,;:)]"


def without_paths(message: str) -> str:
    """``message`` with each absolute path of the server cut to ``.../`` and its last
    two parts: answers do not tell clients where the service keeps its files (the
    server log has the whole message)."""

    def short(match: re.Match) -> str:
        path = match.group(0)
        kept = path.rstrip(_TRAILING)
        parts = kept.split("/")
        return ".../" + "/".join(parts[-2:]) + path[len(kept) :]

    return _PATH.sub(short, message)


class ValidationError(ApiError):
    """A request field has the wrong type, range or name (HTTP 400)."""

    def __init__(self, path: str, message: str):
        where = path or "body"
        super().__init__(400, "invalid_request", f"{where}: {message}")
        self.path = path


def not_found(code: str, message: str, details=None) -> ApiError:
    return ApiError(404, code, message, details)


def unprocessable(code: str, message: str, details=None) -> ApiError:
    return ApiError(422, code, message, details)


def timeout_error(what: str, timeout_s: float) -> ApiError:
    """HTTP 504 ``timeout``: ``what`` (e.g. "the computation did not finish") within
    the service's time limit, with what makes a request take longer."""
    return ApiError(
        504,
        "timeout",
        f"{what} within {timeout_s:g} s (the service's --timeout); the request was"
        " abandoned. A search takes well under a second on a running service; a"
        " refinement takes longer with more labelled samples or random negatives,"
        " or with a heavier model",
    )
