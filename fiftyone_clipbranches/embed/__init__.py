"""CLIP embeddings and their compression to 32-byte codes (torch + open_clip)."""

from fiftyone_clipbranches.embed.encoder import CodeEncoder, fit_code_encoder
from fiftyone_clipbranches.embed.head import CodeHead, train_head
from fiftyone_clipbranches.embed.models import (
    ClipModel,
    EmbeddingResult,
    WeightsUnavailableError,
    load_clip,
)
from fiftyone_clipbranches.embed.pca import PCAProjection
from fiftyone_clipbranches.embed.quantizer import (
    FixedQuantizer,
    PCACodes,
    Quantizer,
    quantizer_from_dict,
)

__all__ = [
    "ClipModel",
    "CodeEncoder",
    "CodeHead",
    "EmbeddingResult",
    "FixedQuantizer",
    "PCACodes",
    "PCAProjection",
    "Quantizer",
    "WeightsUnavailableError",
    "fit_code_encoder",
    "load_clip",
    "quantizer_from_dict",
    "train_head",
]
