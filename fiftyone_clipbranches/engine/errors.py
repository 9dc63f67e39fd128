"""Exceptions raised by the engine."""

from __future__ import annotations


class IndexFormatError(ValueError):
    """An index directory on disk is missing, truncated, corrupted or of another version.

    The message names the offending file; the remedy is to rebuild the index.
    """


class CodesError(ValueError):
    """A codes array has the wrong dtype, shape or contents."""
