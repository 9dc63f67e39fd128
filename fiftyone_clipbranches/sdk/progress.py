"""Progress reporting shared by the long SDK calls."""

from __future__ import annotations

import sys
from collections.abc import Callable

ProgressFn = Callable[[float, str], None]


def as_progress(progress) -> ProgressFn:
    """Normalise a ``progress`` argument into ``fn(fraction, label)``.

    True prints one line per update to stderr, False/None does nothing and a
    callable is used as is.
    """
    if callable(progress):
        return progress
    if progress:
        return _print_progress
    return _no_progress


def _print_progress(fraction: float, label: str) -> None:
    print(f"[clipbranches] {100 * fraction:5.1f}% {label}", file=sys.stderr)


def _no_progress(fraction: float, label: str) -> None:
    return None
