"""Request schemas and limits of the ``/v1`` API: the single source of validation.

The OpenAPI document (:mod:`fiftyone_clipbranches.service.openapi`) is generated
from these definitions, so what is documented is what is enforced.
"""

from __future__ import annotations

from dataclasses import replace

from fiftyone_clipbranches.sdk.models import (
    DEFAULT_MODEL,
    MODELS,
    defaults_description,
)
from fiftyone_clipbranches.sdk.settings import DEFAULT_INDEX_KEY, DEFAULT_K, MAX_K
from fiftyone_clipbranches.service.schema import (
    Array,
    Bool,
    Int,
    Num,
    Object,
    Prop,
    Str,
)

#: Largest accepted request body.
MAX_BODY_BYTES = 1 << 20
#: Most result items returned in one page.
MAX_PAGE_SIZE = 10_000
DEFAULT_PAGE_SIZE = 100
#: Most sample ids in one list of a request.
MAX_IDS = 10_000
#: Most random negatives a refinement may draw.
MAX_RANDOM_NEGATIVES = 100_000
MAX_NEGATIVE_WEIGHT = 1000.0
#: Most neighbour positives per positive a refinement may add.
MAX_NEIGHBOURS_PER_POSITIVE = 64
MAX_TEXT_LENGTH = 300
MAX_SEED = 2**31 - 1
QUERY_MODELS = tuple(name for name, spec in MODELS.items() if spec.needs_query)

SAMPLE_ID = Str(
    min_length=24,
    max_length=24,
    pattern="[0-9a-f]{24}",
    description="FiftyOne sample id (24 lowercase hex characters)",
)
#: Longest dataset name, index key, tag or view name a request may hold: above
#: FiftyOne's longest name (1551 characters), so every name it makes is served
MAX_NAME_LENGTH = 2000
DATASET_NAME = Str(
    min_length=1,
    max_length=MAX_NAME_LENGTH,
    description="name of a FiftyOne dataset served",
)
INDEX_KEY = Str(
    min_length=1,
    max_length=MAX_NAME_LENGTH,
    identifier=True,
    description="key of a clipbranches index of the dataset (letters, digits and"
    f" underscores, not starting with a digit; letters of any script); left out:"
    f" {DEFAULT_INDEX_KEY!r}, or the dataset's only index",
)
RESULT_ID = Str(min_length=32, max_length=32, pattern="[0-9a-f]{32}")


#: The way to give more labels than a request's lists hold.
BY_TAGS_INSTEAD = (
    "tag the samples (cb_positive / cb_negative, or tags of your own) and send"
    " positive_tag / negative_tag instead of ids"
)


def _ids(
    description: str, too_many: str = BY_TAGS_INSTEAD, unique: bool = True
) -> Array:
    return Array(
        items=SAMPLE_ID,
        max_items=MAX_IDS,
        unique=unique,
        nullable=True,
        description=description,
        too_many=too_many,
    )


def _label_props() -> dict[str, Prop]:
    """The labels of a request (/v1/refine's, /v1/next_to_label's): ids, or tags."""
    return {
        "positives": Prop(_ids("positive sample ids"), default=None),
        "negatives": Prop(_ids("negative sample ids"), default=None),
        "positive_tag": Prop(
            _tag("samples with this tag are positives"),
            default=None,
        ),
        "negative_tag": Prop(
            _tag("samples with this tag are negatives"),
            default=None,
        ),
    }


#: Labels come as ids or as tags, not both.
LABELS_BY_IDS_OR_TAGS = (("positives", "negatives"), ("positive_tag", "negative_tag"))


def _tag(description: str) -> Str:
    return Str(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        nullable=True,
        blank=False,
        description=description,
    )


def _page_size() -> Prop:
    return Prop(
        Int(
            minimum=1,
            maximum=MAX_PAGE_SIZE,
            description="number of ranked items returned in the first page",
        ),
        default=DEFAULT_PAGE_SIZE,
    )


SEARCH = Object(
    description="Nearest neighbours of a text query or of example samples.",
    props={
        "dataset": Prop(DATASET_NAME, required=True),
        "index_key": Prop(INDEX_KEY, default=None),
        "text": Prop(
            Str(
                min_length=1,
                max_length=MAX_TEXT_LENGTH,
                description="text query (needs an index built with a CLIP model)",
                blank=False,
            ),
            default=None,
        ),
        "sample_ids": Prop(
            Array(
                items=SAMPLE_ID,
                min_items=1,
                max_items=MAX_IDS,
                unique=True,
                description="example samples: neighbours of their mean code",
            ),
            default=None,
        ),
        "k": Prop(
            Int(minimum=1, maximum=MAX_K, description="number of neighbours"),
            default=DEFAULT_K,
        ),
        "page_size": _page_size(),
    },
    exactly_one_of=(("text", "sample_ids"),),
)

REFINE = Object(
    description=(
        "Train a model on positive and negative samples and apply it to the whole "
        "index: every sample it classifies positive, ranked. Labels come from "
        "sample ids (positives/negatives) or from sample tags (positive_tag/"
        "negative_tag, defaults cb_positive/cb_negative), not both."
    ),
    props={
        "dataset": Prop(DATASET_NAME, required=True),
        "index_key": Prop(INDEX_KEY, default=None),
        **_label_props(),
        "model": Prop(
            Str(enum=tuple(MODELS), description="model to train"), default=DEFAULT_MODEL
        ),
        "query": Prop(
            Str(
                min_length=1,
                max_length=MAX_TEXT_LENGTH,
                blank=False,
                description="the text search the labels refine; needed by the"
                f" models {', '.join(QUERY_MODELS)} (with an index built with a"
                " CLIP model), ignored by the others",
            ),
            default=None,
        ),
        "random_negatives": Prop(
            Int(
                minimum=0,
                maximum=MAX_RANDOM_NEGATIVES,
                description="unlabelled samples drawn as extra negatives (seeded). "
                + defaults_description("random_negatives", "Omitted"),
            ),
            default=None,
        ),
        "negative_weight": Prop(
            Num(
                minimum=0.001,
                maximum=MAX_NEGATIVE_WEIGHT,
                description="sample weight of each explicit negative",
            ),
            default=1.0,
        ),
        "neighbours_per_positive": Prop(
            Int(
                minimum=0,
                maximum=MAX_NEIGHBOURS_PER_POSITIVE,
                words=("auto",),
                description="neighbours per positive (rows of the dense group the"
                ' positives lie in) that train as positives ("auto": up to'
                " round(32 / P) below 64 positives, round(48 / P) where the group"
                " shows no boundary; from 32 positives only for a class estimated"
                " to hold 2.5 times them). "
                + defaults_description("neighbours_per_positive", "Omitted"),
            ),
            default=None,
        ),
        "seed": Prop(
            Int(
                minimum=0,
                maximum=MAX_SEED,
                description="seed of the model and of the random negatives",
            ),
            default=0,
        ),
        "page_size": _page_size(),
    },
    exclusive_sets=LABELS_BY_IDS_OR_TAGS,
)

NEXT_TO_LABEL = Object(
    description=(
        "The samples to label next beside a refinement's result: the k samples"
        " nearest the labelled positives' mean code that are neither labelled nor"
        " excluded (the SDK's next_to_label; the panel's Look further). Labels come"
        " as for /v1/refine; exclude and exclude_result name the samples the user"
        " has seen."
    ),
    props={
        "dataset": Prop(DATASET_NAME, required=True),
        "index_key": Prop(INDEX_KEY, default=None),
        **_label_props(),
        "exclude": Prop(
            _ids(
                "sample ids not to return (repeats allowed: the pages seen so far)",
                too_many="send the result they belong to as exclude_result",
                unique=False,
            ),
            default=None,
        ),
        "exclude_result": Prop(
            replace(
                RESULT_ID,
                nullable=True,
                description="a stored result of the same dataset (the result_id of"
                " a /v1/refine) whose samples are not returned",
            ),
            default=None,
        ),
        "k": Prop(
            Int(minimum=1, maximum=MAX_K, description="number of samples"),
            default=DEFAULT_K,
        ),
        "page_size": _page_size(),
    },
    exclusive_sets=LABELS_BY_IDS_OR_TAGS,
)

PAGE_QUERY = Object(
    description="Query string of GET /v1/results/{result_id}.",
    props={
        "offset": Prop(Int(minimum=0, description="rank of the first item"), default=0),
        "limit": Prop(
            Int(minimum=1, maximum=MAX_PAGE_SIZE, description="items in the page"),
            default=DEFAULT_PAGE_SIZE,
        ),
    },
)

SAVE_VIEW = Object(
    description="Save a result as a FiftyOne saved view of its dataset.",
    props={
        "name": Prop(
            Str(
                min_length=1,
                max_length=MAX_NAME_LENGTH,
                blank=False,
                description="saved view name (any name the sdk saves; one whose"
                " URL slug is empty is refused)",
            ),
            required=True,
        ),
        "overwrite": Prop(
            Bool(description="replace a saved view of that name"),
            default=False,
        ),
    },
)
