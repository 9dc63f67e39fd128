"""What a face (panel, operator, service) tells its user about an exception."""

from __future__ import annotations

import logging

from fiftyone_clipbranches.sdk.errors import ClipBranchesError

#: Errors whose message is meant for the user: a wrong argument or a state the
#: user can change. Anything else is a bug, logged with its traceback.
USER_ERRORS = (ClipBranchesError, ValueError)


def user_message(exc: BaseException, logger: logging.Logger | None = None) -> str:
    """The message to show for ``exc``: its own for a user error, else
    ``"Unexpected error: ..."`` after logging it with its traceback."""
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    (logger or logging.getLogger(__name__)).error(
        "clipbranches: unexpected error", exc_info=exc
    )
    return f"Unexpected error: {exc}"
