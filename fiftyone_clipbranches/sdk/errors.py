"""Errors raised by the FiftyOne glue; each message says what to do next."""

from __future__ import annotations

import contextlib


class ClipBranchesError(ValueError):
    """Base class of every user-facing error of the glue.

    ``in_app``: the message in the App's words (its forms' fields and operators
    instead of Python arguments and CLI flags), when they differ; None otherwise.
    """

    in_app: str | None = None


class IndexNotFoundError(ClipBranchesError):
    """No index is registered under the requested key."""


class IndexExistsError(ClipBranchesError):
    """A run already uses the requested index key."""


class IndexInUseError(ClipBranchesError):
    """The index answers a similarity brain run that the operation would break."""


class StaleIndexError(ClipBranchesError):
    """The index does not cover samples the request depends on (``ids``: those
    samples, where they are known)."""

    def __init__(self, message: str = "", ids=()):
        super().__init__(message)
        self.ids = list(ids)


class IndexFilesMissingError(StaleIndexError):
    """The index's directory or manifest is gone (moved, deleted, a disk not
    mounted): it cannot answer until the files are back or it is rebuilt."""


class NoPositivesError(ClipBranchesError):
    """Refinement was asked for without any positive sample."""


class ContradictoryLabelsError(ClipBranchesError):
    """Some samples are labelled both positive and negative (``ids``, when
    known)."""

    def __init__(self, message: str, ids: list[str] | None = None):
        super().__init__(message)
        self.ids = list(ids or [])


class MissingEmbeddingsError(ClipBranchesError):
    """Samples lack the embeddings an index build needs (``n_missing`` of them,
    when counted; ``ids``: the samples whose vectors cannot be used, when named)."""

    def __init__(
        self, message: str, n_missing: int | None = None, ids: list[str] | None = None
    ):
        super().__init__(message)
        self.n_missing = n_missing
        self.ids = list(ids or [])


class ResultTooLargeError(ClipBranchesError):
    """A result holds more samples than a view of their ids can select."""


class IndexCorruptedError(ClipBranchesError):
    """A file of an index directory does not match its checksum, size or format."""


class IndexPermissionError(ClipBranchesError):
    """A file of an index directory exists but cannot be read (not corruption)."""


class ShardsUnavailableError(ClipBranchesError):
    """The cluster workers serving a sharded index's shards are gone and cannot be
    started again (not corruption: the remedy is the cluster)."""


class RayUnavailableError(ShardsUnavailableError):
    """Ray is not installed, or the cluster asked for cannot be reached."""


class SampleIdsError(ClipBranchesError):
    """Sample ids given for an index are not samples of its dataset.

    ``ids``: the ids that are not (never were, or were deleted, or are no sample
    ids at all: the malformed ones as given), when that is the reason; empty for
    other reasons (an image that could not be read).
    """

    def __init__(self, message: str = "", ids=()):
        super().__init__(message)
        self.ids = list(ids)


class IndexBusyError(ClipBranchesError):
    """Another process builds or updates the same index key right now."""


class IndexBeingBuiltError(IndexNotFoundError, IndexBusyError):
    """The key names no index yet because another process builds it (or renames
    or deletes it) right now: caught as either, as a retry would want."""


class ViewNameTakenError(ClipBranchesError):
    """A saved-view name is taken (its slug by another view, or itself without
    overwrite)."""


class UnknownModelError(ClipBranchesError):
    """Text search was asked of an index whose CLIP model is not known."""


class CheckpointUnavailableError(UnknownModelError):
    """The local CLIP checkpoint file an index records is gone, or its contents
    changed since the build: the server's files, not the request, are at fault."""


class WeightsUnavailableError(ClipBranchesError, RuntimeError):
    """The CLIP weights asked for are neither a local file nor in this machine's
    cache, and cannot be downloaded (offline); the message names the ways to
    provide them. Raised in place of the embedding layer's
    ``embed.WeightsUnavailableError``, which it chains; a ``RuntimeError`` too, as
    that one is (code catching it as such still does)."""


class UnsupportedMediaError(ClipBranchesError):
    """The dataset holds no images of its own (videos, groups, point clouds), or
    the view's rows are not its samples (patches, frames, clips)."""


class IdentityConflictError(ClipBranchesError):
    """A declared CLIP model contradicts the one recorded for the field."""


#: How to add vectors to a field that records its model: with that model.
SAME_MODEL = (
    "embed with its model (leave out model= and pretrained=; CLI: --model and"
    " --pretrained)"
)
#: :data:`SAME_MODEL` in the App's words.
APP_SAME_MODEL = "embed with its model (enter it in CLIP model and Pretrained weights)"

#: The queries an index can take without embedding one (in the SDK's words; the
#: service's: ``messages.HTTP_PHRASES``).
BY_IDS_OR_VECTOR = "search by sample ids or a vector"

#: The build form's choice that builds an existing index again in its place.
APP_OVERWRITE = "Build it again in its place"

#: What the SDK's errors about a damaged index tell the user to do.
REBUILD = (
    "rebuild the index in its place (build_index(..., overwrite=True); CLI:"
    " clipbranches build-index ... --overwrite) or restore its directory from a"
    " backup"
)
#: :data:`REBUILD` in the App's words.
APP_REBUILD = (
    "rebuild the index in its place ('CLIP branches: build index' with its key"
    f" and '{APP_OVERWRITE}' checked) or restore its directory from a backup"
)


@contextlib.contextmanager
def engine_errors():
    """Context turning the engine's file errors (raised while an index is opened or
    queried, e.g. by a shard actor restarted over damaged files) into the SDK's,
    with the SDK's advice instead of the engine's."""
    from fiftyone_clipbranches.engine import errors, index_io

    try:
        yield
    except errors.RayUnavailableError as e:
        raise RayUnavailableError(str(e)) from None
    except errors.ShardsUnavailableError as e:
        raise ShardsUnavailableError(str(e)) from e
    except errors.IndexAccessError as e:
        raise IndexPermissionError(str(e)) from e
    except errors.IndexFormatError as e:
        raise IndexCorruptedError(str(e).replace(index_io.REBUILD, REBUILD)) from e
    except PermissionError as e:
        raise IndexPermissionError(
            f"cannot read {e.filename}: permission denied; fix its permissions"
        ) from e
