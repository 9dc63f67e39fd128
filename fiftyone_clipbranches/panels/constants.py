"""Names and defaults of the relevance-feedback panel."""

from __future__ import annotations

from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_INDEX_KEY,
    DEFAULT_K,
    DEFAULT_NEGATIVE_TAG,
    DEFAULT_POSITIVE_TAG,
    DEFAULT_SCORE_FIELD,
)

PANEL_NAME = "clipbranches_panel"
PANEL_LABEL = "CLIP branches"

#: Results a Refine shows at once, best first, as an ordered select (its cost grows
#: with the square of its length); "Show all matches" shows every one by score.
PREVIEW_RESULTS = 1000

#: Grid selection styles: a normal click marks positive, an alt-click negative.
SELECTION_STYLE = {"default": "green-checkmark", "alt": "red-checkmark"}

#: Most random negatives the panel's input offers.
MAX_RANDOM_NEGATIVES = 2000

#: Initial panel state (``random_negatives`` None: the selected model's default).
DEFAULTS = {
    "index_key": DEFAULT_INDEX_KEY,
    "query": "",
    "k": DEFAULT_K,
    "model": DEFAULT_MODEL,
    "random_negatives": None,
    "negative_weight": 1.0,
    "positive_tag": DEFAULT_POSITIVE_TAG,
    "negative_tag": DEFAULT_NEGATIVE_TAG,
    "score_field": DEFAULT_SCORE_FIELD,
    "view_name": "",
}

#: Settings a user may empty to turn off (no score field: nothing written); the
#: other text settings read empty as their default.
EMPTY_MEANS_NONE = frozenset({"score_field"})
