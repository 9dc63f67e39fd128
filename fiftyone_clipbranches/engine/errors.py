"""Exceptions raised by the engine."""

from __future__ import annotations


class IndexFormatError(ValueError):
    """An index directory on disk is missing, truncated, corrupted or of another version.

    The message names the offending file; the remedy is to rebuild the index.
    """


class CodesError(ValueError):
    """A codes array has the wrong dtype, shape or contents."""


class IndexAccessError(IndexFormatError):
    """A file of an index directory exists but cannot be read (permissions, I/O).

    Not corruption: the remedy is to fix the file's permissions, not to rebuild.
    """


class ShardsUnavailableError(RuntimeError):
    """The workers serving an index's shards cannot be reached or started again (a
    node or the whole cluster stopped). Not corruption: the files are as they were;
    the remedy is the cluster."""


class RayUnavailableError(ShardsUnavailableError):
    """Ray is not installed, or the cluster asked for cannot be reached."""
