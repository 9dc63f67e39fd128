"""Errors raised by the FiftyOne glue; each message says what to do next."""

from __future__ import annotations


class ClipBranchesError(ValueError):
    """Base class of every user-facing error of the glue."""


class IndexNotFoundError(ClipBranchesError):
    """No index is registered under the requested key."""


class IndexExistsError(ClipBranchesError):
    """A run already uses the requested index key."""


class StaleIndexError(ClipBranchesError):
    """The index does not cover samples the request depends on."""


class NoPositivesError(ClipBranchesError):
    """Refinement was asked for without any positive sample."""


class ContradictoryLabelsError(ClipBranchesError):
    """Some samples are labelled both positive and negative."""


class MissingEmbeddingsError(ClipBranchesError):
    """Samples lack the embeddings an index build needs."""


class ResultTooLargeError(ClipBranchesError):
    """A result holds more samples than a view of their ids can select."""


class IndexCorruptedError(ClipBranchesError):
    """A file of an index directory does not match its checksum, size or format."""


class IndexPermissionError(ClipBranchesError):
    """A file of an index directory exists but cannot be read (not corruption)."""


class SampleIdsError(ClipBranchesError):
    """Sample ids given for an index are not samples of its dataset."""


class ViewNameTakenError(ClipBranchesError):
    """A saved-view name is taken (its slug by another view, or itself without
    overwrite)."""


class UnknownModelError(ClipBranchesError):
    """Text search was asked of an index whose CLIP model is not known."""


class IdentityConflictError(ClipBranchesError):
    """A declared CLIP model contradicts the one recorded for the field."""
