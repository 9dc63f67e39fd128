"""``backend="clipbranches"``: FiftyOne brain similarity over a clipbranches index.

``fob.compute_similarity(dataset, backend="clipbranches", embeddings=<field>,
brain_key=K)`` (after :func:`register_similarity_backend`, or with
``backend=ClipBranchesSimilarityConfig``) builds the clipbranches index ``K``;
``dataset.sort_by_similarity(...)``, the App's similarity and text search and
``cb.refine(dataset, index_key=K)`` all use it.
"""

from fiftyone_clipbranches.similarity.config import (
    BACKEND_NAME,
    ClipBranchesSimilarity,
    ClipBranchesSimilarityConfig,
)
from fiftyone_clipbranches.similarity.registration import register_similarity_backend

__all__ = [
    "BACKEND_NAME",
    "ClipBranchesSimilarity",
    "ClipBranchesSimilarityConfig",
    "register_similarity_backend",
]
