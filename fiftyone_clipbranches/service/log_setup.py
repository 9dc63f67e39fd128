"""Logging of the service and its workers: the package's own INFO lines, and only
warnings from the libraries it loads (open_clip logs every model load at INFO)."""

from __future__ import annotations

import logging

PACKAGE_LOGGER = "fiftyone_clipbranches"


def configure_logging(fmt: str) -> None:
    """Send log records to stderr in ``fmt``: INFO and above from this package,
    WARNING and above from everything else."""
    logging.basicConfig(level=logging.WARNING, format=fmt)
    logging.getLogger(PACKAGE_LOGGER).setLevel(logging.INFO)
    # "Task queue depth is N": requests waiting for a thread in a burst, which the
    # service's own admission (503 busy) and its threads answer: nothing to do
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
