"""Logging of the service and its workers: the package's own INFO lines, and only
warnings from the libraries it loads (open_clip logs every model load at INFO)."""

from __future__ import annotations

import logging

PACKAGE_LOGGER = "fiftyone_clipbranches"


def configure_logging(fmt: str, package_level: int = logging.INFO) -> None:
    """Send log records to stderr in ``fmt``: ``package_level`` and above from
    this package, WARNING and above from everything else."""
    logging.basicConfig(level=logging.WARNING, format=fmt)
    logging.getLogger(PACKAGE_LOGGER).setLevel(package_level)
    # "Task queue depth is N": requests waiting for a thread in a burst, which the
    # service's own admission (503 busy) and its threads answer: nothing to do
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def package_log_level() -> int:
    """The level from which this process shows the package's records: its
    logger's where a handler takes them (``clipbranches serve``, an application
    that configured logging), else WARNING (Python's last resort): compute
    workers show no more than the process that started them."""
    package = logging.getLogger(PACKAGE_LOGGER)
    if package.hasHandlers():
        return package.getEffectiveLevel()
    return max(package.getEffectiveLevel(), logging.WARNING)
