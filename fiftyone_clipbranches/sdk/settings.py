"""Defaults of the FiftyOne glue and where index files live."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the directory holding index files.
INDEX_ROOT_ENV = "CLIPBRANCHES_INDEX_ROOT"

#: Run ``method`` of every index registered by this package.
RUN_METHOD = "clipbranches"

DEFAULT_INDEX_KEY = "clipbranches"
DEFAULT_EMBEDDINGS_FIELD = "clip_embedding"
DEFAULT_SCORE_FIELD = "clipbranches_score"
DEFAULT_POSITIVE_TAG = "cb_positive"
DEFAULT_NEGATIVE_TAG = "cb_negative"
DEFAULT_TAGS = (DEFAULT_POSITIVE_TAG, DEFAULT_NEGATIVE_TAG)
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_K = 60

#: Model names accepted by ``refine``.
MODEL_NAMES = ("branches", "ensemble", "tree", "forest")


def index_root() -> Path:
    """Directory under which every index directory is written.

    ``$CLIPBRANCHES_INDEX_ROOT`` when set, else ``clipbranches/indexes`` inside
    FiftyOne's config directory (``~/.fiftyone``).
    """
    env = os.environ.get(INDEX_ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    import fiftyone.constants as foc

    return Path(foc.FIFTYONE_CONFIG_DIR) / "clipbranches" / "indexes"
