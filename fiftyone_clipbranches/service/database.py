"""The FiftyOne database as the service meets it: a bounded wait, then a 503.

Without a bound, a request waits for pymongo's server selection (30 s) when the
database does not answer, holding the lock its dataset's other requests wait on:
every request hung for 30 s or more, one after the other, then answered a bare 500.
"""

from __future__ import annotations

import contextlib
import threading
import time

from fiftyone_clipbranches.service.errors import ApiError

#: Longest the service's own reads (a dataset's state, the readiness ping) wait
#: for the database.
DATABASE_TIMEOUT_S = 5.0
#: After such a read failed, requests answer 503 at once for this long (the
#: ``Retry-After`` they send); then one read tries the database again.
RETRY_AFTER_S = 2
#: MongoDB's error code for a full disk (``OutOfDiskSpace``); a write may also
#: fail with the system's "No space left on device" under another code.
OUT_OF_DISK_SPACE = 14031


@contextlib.contextmanager
def database_errors():
    """Database failures in the block as API errors (:func:`database_error`);
    every other error goes on as it is."""
    try:
        yield
    except Exception as err:
        failure = database_error(err)
        if failure is None:
            raise
        raise failure from None


def database_error(err: BaseException) -> ApiError | None:
    """The API error of a database failure ``err`` (a pymongo error), or None for
    any other error: 503 ``database_unavailable`` when the database does not
    answer, 507 ``database_full`` when its disk is full."""
    from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

    if not isinstance(err, PyMongoError):
        return None
    if isinstance(err, ConnectionFailure) or getattr(err, "timeout", False):
        return ApiError(
            503,
            "database_unavailable",
            f"the FiftyOne database does not answer ({_first_line(err)}): retry once"
            " it is back (the service reconnects by itself); if it saved a view,"
            " the view may or may not have been written",
            retry_after_s=RETRY_AFTER_S,
        )
    text = str(getattr(err, "details", None) or err)
    if isinstance(err, OperationFailure) and (
        err.code == OUT_OF_DISK_SPACE or "No space left on device" in text
    ):
        return ApiError(
            507,
            "database_full",
            "the FiftyOne database's disk is full: nothing was saved; free space on"
            " the database's disk, then retry",
        )
    return None


class DatabaseWatch:
    """Bounds the service's own database reads to :data:`DATABASE_TIMEOUT_S` and,
    once one failed, answers the requests of the next :data:`RETRY_AFTER_S`
    seconds at once (503) instead of letting each wait again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self._failure: ApiError | None = None

    def check(self) -> None:
        """Raise (a copy of) the last failure while it is recent."""
        with self._lock:
            failed_at, failure = self._failed_at, self._failure
        if failure is not None and time.monotonic() - failed_at < RETRY_AFTER_S:
            # a fresh error each time: one shared by every request's thread would
            # gather their tracebacks
            raise ApiError(
                failure.status,
                failure.code,
                failure.message,
                retry_after_s=failure.retry_after_s,
            )

    @contextlib.contextmanager
    def bounded(self):
        """A block of short reads: 503 ``database_unavailable`` (an ApiError) when
        the database does not answer within :data:`DATABASE_TIMEOUT_S`."""
        import pymongo

        self.check()
        try:
            with pymongo.timeout(DATABASE_TIMEOUT_S), database_errors():
                yield
        except ApiError as failure:
            if failure.code == "database_unavailable":
                with self._lock:
                    self._failed_at, self._failure = time.monotonic(), failure
            raise
        with self._lock:
            self._failed_at = self._failure = None

    def problem(self) -> str | None:
        """Why the database cannot serve now (a ping), or None when it answers."""
        from fiftyone.core.odm import get_db_conn

        try:
            with self.bounded():
                get_db_conn().command("ping")
        except ApiError as err:
            return err.message
        return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
