"""FiftyOne glue: one implementation used by the operators, the panel, the service
and the CLI.

Indexes are FiftyOne runs on the root dataset (``method="clipbranches"``) whose
files live under :func:`settings.index_root`.
"""

from fiftyone_clipbranches.sdk.embedding_reader import read_embeddings
from fiftyone_clipbranches.sdk.embeddings import compute_embeddings
from fiftyone_clipbranches.sdk.errors import (
    ClipBranchesError,
    ContradictoryLabelsError,
    IdentityConflictError,
    IndexCorruptedError,
    IndexExistsError,
    IndexNotFoundError,
    IndexPermissionError,
    MissingEmbeddingsError,
    NoPositivesError,
    ResultTooLargeError,
    SampleIdsError,
    StaleIndexError,
    UnknownModelError,
    ViewNameTakenError,
)
from fiftyone_clipbranches.sdk.indexes import (
    IndexInfo,
    build_index,
    build_index_from_codes,
    delete_index,
    index_info,
    list_indexes,
    load_index,
    rename_index,
    update_index,
)
from fiftyone_clipbranches.sdk.integrity import IndexVerifyReport, verify_index
from fiftyone_clipbranches.sdk.labels import collect_labels
from fiftyone_clipbranches.sdk.refine import (
    RankedRows,
    RefineResult,
    apply_refine_result,
    refine,
    refine_ranking,
)
from fiftyone_clipbranches.sdk.refine_pages import (
    RefinedPage,
    RefinePages,
    refine_pages,
)
from fiftyone_clipbranches.sdk.remote import RemoteServiceError
from fiftyone_clipbranches.sdk.request import RefineRequest
from fiftyone_clipbranches.sdk.search import search, search_ids
from fiftyone_clipbranches.sdk.views import (
    recover_unfinished_writes,
    save_view,
    wait_for_writes,
)

__all__ = [
    "ClipBranchesError",
    "ContradictoryLabelsError",
    "IdentityConflictError",
    "IndexCorruptedError",
    "IndexExistsError",
    "IndexPermissionError",
    "IndexVerifyReport",
    "IndexInfo",
    "IndexNotFoundError",
    "MissingEmbeddingsError",
    "NoPositivesError",
    "ResultTooLargeError",
    "SampleIdsError",
    "RankedRows",
    "RefineRequest",
    "RefinePages",
    "RefineResult",
    "RefinedPage",
    "RemoteServiceError",
    "StaleIndexError",
    "UnknownModelError",
    "ViewNameTakenError",
    "apply_refine_result",
    "build_index",
    "build_index_from_codes",
    "collect_labels",
    "compute_embeddings",
    "delete_index",
    "index_info",
    "list_indexes",
    "load_index",
    "read_embeddings",
    "refine",
    "recover_unfinished_writes",
    "refine_pages",
    "refine_ranking",
    "rename_index",
    "save_view",
    "search",
    "search_ids",
    "update_index",
    "verify_index",
    "wait_for_writes",
]
