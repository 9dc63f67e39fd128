"""FiftyOne operators over the SDK glue."""

from fiftyone_clipbranches.operators.build_index import BuildIndex, UpdateIndex
from fiftyone_clipbranches.operators.embeddings import ComputeEmbeddings
from fiftyone_clipbranches.operators.manage_indexes import (
    DeleteIndex,
    IndexInfoOperator,
    RenameIndex,
)
from fiftyone_clipbranches.operators.next_to_label import NextToLabel
from fiftyone_clipbranches.operators.refine import RefineOperator
from fiftyone_clipbranches.operators.search import SearchIndex
from fiftyone_clipbranches.operators.views import SaveResultsView

OPERATORS: list = [
    ComputeEmbeddings,
    BuildIndex,
    UpdateIndex,
    SearchIndex,
    RefineOperator,
    NextToLabel,
    SaveResultsView,
    IndexInfoOperator,
    RenameIndex,
    DeleteIndex,
]
