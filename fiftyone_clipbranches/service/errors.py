"""Errors of the HTTP service: each carries an HTTP status and a stable error code.

Clients branch on ``code`` (documented in ``docs/service.md``), never on the message,
which is written for people and may change.
"""

from __future__ import annotations

import os
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
            body["details"] = without_paths(self.details)
        return {"error": body}


#: A quoted absolute path (spaces allowed), or an unquoted one of two parts or
#: more; the API's own ``/v1/...`` routes excepted.
_QUOTED_PATH = re.compile(r"""(['"])(/(?!v1/)[^'"\n]+/[^'"\n]+)\1""")
_PATH = re.compile(r"(?<![\w.~:/-])/(?!v1/)(?:[^\s'\"/]+/)+[^\s'\"/]+")
_TRAILING = ".,;:)]"


def _on_this_machine(path: str) -> bool:
    """Whether ``path`` is of this machine: its top folder exists here (a name a
    client sent, ``/my/dataset``, is left as it is)."""
    top = path.split("/", 2)[1]
    return bool(top) and os.path.isdir("/" + top)


def _shortened(path: str) -> str:
    """``.../`` and the last two parts of ``path``."""
    return ".../" + "/".join(path.split("/")[-2:])


def without_paths(message):
    """``message`` (a str, or JSON-like lists and dicts of them) with each absolute
    path of this machine cut to ``.../`` and its last two parts: answers do not
    tell clients where the service keeps its files (the server log has the whole
    message)."""
    if isinstance(message, dict):
        return {k: without_paths(v) for k, v in message.items()}
    if isinstance(message, list | tuple):
        return [without_paths(v) for v in message]
    if not isinstance(message, str):
        return message

    def quoted(match: re.Match) -> str:
        quote, path = match.group(1), match.group(2)
        if not _on_this_machine(path):
            return match.group(0)
        return quote + _shortened(path) + quote

    def bare(match: re.Match) -> str:
        path = match.group(0)
        kept = path.rstrip(_TRAILING)
        if not _on_this_machine(kept):
            return path
        return _shortened(kept) + path[len(kept) :]

    return _PATH.sub(bare, _QUOTED_PATH.sub(quoted, message))


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


def shutting_down_error(what: str = "") -> ApiError:
    """HTTP 503 ``shutting_down``: the service stops (``what`` it did about the
    request, e.g. "stopped this request's computation")."""
    did = f" and {what}" if what else ""
    return ApiError(
        503,
        "shutting_down",
        f"the service is shutting down{did}: retry on another instance, or once"
        " it is back",
    )
