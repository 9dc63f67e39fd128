"""Nearest-neighbour search over an index's codes: by text, by samples, by vector,
by an image file."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.sdk.embedding_reader import float32_rows
from fiftyone_clipbranches.sdk.embeddings import (
    get_clip_model,
)
from fiftyone_clipbranches.sdk.errors import (
    BY_IDS_OR_VECTOR,
    CheckpointUnavailableError,
    UnknownModelError,
    WeightsUnavailableError,
)
from fiftyone_clipbranches.sdk.freshness import (
    alive_rows,
    searchable_rows,
    unindexed_count,
)
from fiftyone_clipbranches.sdk.identity import (
    REBUILD_ELSEWHERE,
    checkpoint_changed,
    missing_checkpoint,
    same_identity,
    text_search_refusal,
)
from fiftyone_clipbranches.sdk.image_urls import download
from fiftyone_clipbranches.sdk.indexes import load_index
from fiftyone_clipbranches.sdk.labelled_rows import index_rows
from fiftyone_clipbranches.sdk.media import require_image_samples
from fiftyone_clipbranches.sdk.messages import short, weights_message
from fiftyone_clipbranches.sdk.rowmap import as_sample_ids
from fiftyone_clipbranches.sdk.runs import (
    chosen_index_key,
    list_index_keys,
    root_dataset,
)
from fiftyone_clipbranches.sdk.settings import DEFAULT_K, default_index_key
from fiftyone_clipbranches.sdk.views import result_view
from fiftyone_clipbranches.sdk.warm import warm_refinement

logger = logging.getLogger(__name__)


def search(
    dataset,
    text: str | None = None,
    sample_ids=None,
    vector=None,
    k: int = DEFAULT_K,
    index_key: str | None = None,
    image=None,
):
    """The ``k`` samples nearest to the query, as an ordered view (nearest first).

    Give exactly one query:

    - ``text``: embedded with the index's CLIP model, then encoded;
    - ``sample_ids``: the mean of those samples' codes (ids, samples, or a view);
    - ``vector``: a float embedding ``(d,)`` (encoded with the index's encoder) or
      a uint8 code ``(D,)``;
    - ``image``: an image file path, ``file://`` URL or ``http(s)://`` URL (fetched),
      in the dataset or not, embedded with the index's CLIP model.

    Deleted samples never appear; samples added after the build are not searched.
    Given a view, only its samples are searched, and the result is a view of it.
    """
    ids, _ = search_ids(dataset, text, sample_ids, vector, k, index_key, image)
    return result_view(dataset, ids)


def search_ids(
    dataset,
    text: str | None = None,
    sample_ids=None,
    vector=None,
    k: int = DEFAULT_K,
    index_key: str | None = None,
    image=None,
) -> tuple[list[str], np.ndarray]:
    """Like :func:`search`, returning ``(sample ids, int64 squared code distances)``."""
    given = [q is not None for q in (text, sample_ids, vector, image)]
    if sum(given) != 1:
        raise ValueError(
            "give exactly one query: text=, sample_ids=, vector= or image="
        )
    ds, index_key, config, bundle = opened_for_search(dataset, k, index_key)
    if image is not None:
        vector = image_embedding(config, bundle, index_key, image, ds.name)
    query = query_code(config, bundle, index_key, text, sample_ids, vector, ds=ds)
    allowed = searchable_rows(dataset, ds, bundle)
    rows, dists = bundle.index.knn(query, int(k), allowed)
    return bundle.rowmap.ids_of(rows), np.asarray(dists, dtype=np.int64)


def opened_for_search(dataset, k, index_key: str | None):
    """``(root dataset, index key, config, bundle)`` of a search of ``k`` samples
    of ``dataset`` (an image dataset or a view of one), ``k`` checked."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    ds = root_dataset(dataset)
    require_image_samples(dataset, ds)
    index_key = chosen_index_key(ds, index_key)
    return (ds, index_key, *load_index(ds, index_key))


def unsearched_count(dataset, index_key: str | None = None) -> int:
    """How many samples of ``dataset``'s root dataset a search of index
    ``index_key`` cannot return yet: those added since the build (``update_index``
    adds them), and those the build or an update left out for lack of a vector
    that the index's embeddings field holds now. Not counted: samples left out
    because their image could not be read, or that still have no vector
    (``index_info(...).freshness.n_unreadable``; retried with
    ``update_index(retry_failed=True)``)."""
    ds = root_dataset(dataset)
    config, bundle = load_index(ds, chosen_index_key(ds, index_key))
    alive = alive_rows(ds, bundle.rowmap, str(bundle.path))
    return unindexed_count(ds, bundle, alive, config.embeddings_field)


def query_code(
    config,
    bundle,
    index_key: str,
    text=None,
    sample_ids=None,
    vector=None,
    *,
    ds=None,
    what: str = "query",
) -> np.ndarray:
    """The uint8 ``(D,)`` code of one query (see :func:`search`) in a loaded index.
    Query samples need the index's root dataset ``ds``: those the index lacks are
    named for why, as ``what`` samples (``labelled_rows.index_rows``)."""
    if text is not None:
        return _text_code(text, config, bundle, index_key, _name(ds))
    if sample_ids is not None:
        return _samples_code(sample_ids, bundle, index_key, ds, what)
    return _vector_code(vector, bundle, index_key)


def _dim(bundle) -> int | None:
    """The length of the vectors ``bundle``'s encoder takes (None without one)."""
    return None if bundle.encoder is None else int(bundle.encoder.in_dim)


def text_embeddings(
    config, bundle, index_key: str, texts, dataset_name: str | None = None
) -> np.ndarray:
    """float32 ``(m, d)`` CLIP embeddings of ``texts`` by the index's own model
    (``dataset_name``: the index's dataset, named in the words of errors).

    Raises:
        UnknownModelError: the index records no CLIP model (its embeddings came
            from a field nothing identifies), or it has no encoder.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("text query must be a non-empty string")
    if not config.clip_model or bundle.encoder is None:
        raise text_search_refusal(index_key, config.embeddings_field, dim=_dim(bundle))
    clip = _query_model(config, bundle, index_key, dataset_name)
    return np.asarray(clip.embed_texts([t.strip() for t in texts]), np.float32)


def index_clip_model(config, index_key: str, dataset_name: str | None = None):
    """The CLIP model index ``index_key`` recorded (``config.clip_model``), loaded
    once per process.

    Raises:
        CheckpointUnavailableError: its local checkpoint file is gone, or its
            contents changed since the build (its vectors would not match the
            index's).
    """
    recorded = config.clip_model
    gone = missing_checkpoint(recorded, index_key, "embed queries", dataset_name)
    if gone:
        raise CheckpointUnavailableError(gone)
    try:
        clip = get_clip_model(recorded["name"], recorded.get("pretrained"))
    except WeightsUnavailableError as e:
        raise _weights_refusal(e, index_key) from e
    if not same_identity(recorded, clip.identity):
        raise CheckpointUnavailableError(
            f"index {index_key!r} cannot embed queries: "
            f"{checkpoint_changed(recorded, clip.identity)}, so its vectors would not"
            " match the index's; restore the file, or build another index from the"
            f" new checkpoint ({REBUILD_ELSEWHERE})"
        )
    return clip


def _weights_refusal(exc, index_key: str) -> CheckpointUnavailableError:
    """The error of a query that index ``index_key`` cannot embed: its CLIP weights
    (``exc``: ``WeightsUnavailableError``) are not on this machine. A search takes
    no weights argument, so only the cache or the network brings them."""
    how = (
        "Put the open_clip / Hugging Face cache that holds them on this machine"
        " (HF_HOME or HF_HUB_CACHE), or run once with network access; meanwhile"
    )
    refused = f"index {index_key!r} cannot embed queries: "
    error = CheckpointUnavailableError(
        refused + weights_message(exc, f"{how} {BY_IDS_OR_VECTOR}")
    )
    error.in_app = refused + weights_message(
        exc, f"{how} search by similarity to selected samples"
    )
    return error


def _query_model(config, bundle, index_key: str, dataset_name: str | None = None):
    """:func:`index_clip_model`, refused when its vectors are not as long as those
    the index was built from (a field of another model's vectors declared as this
    model's)."""
    clip = index_clip_model(config, index_key, dataset_name)
    width = bundle.encoder.in_dim
    if clip.embedding_dim != width:
        field = config.embeddings_field
        source = f" in field {field!r}" if field else ""
        raise UnknownModelError(
            f"index {index_key!r} records CLIP {config.clip_model['name']!r}, which"
            f" gives {clip.embedding_dim}-dim vectors, but it was built from"
            f" {width}-dim vectors{source}: they are not that model's, so it cannot"
            f" embed queries in their space; {BY_IDS_OR_VECTOR}, or"
            f" build an index declaring the model that made them ({REBUILD_ELSEWHERE})"
        )
    return clip


def preload_index(dataset, index_key: str | None = None):
    """Load index ``index_key`` and its CLIP model in a background thread, so that
    the first search does not wait for them (a CLIP model takes seconds to load),
    then the refinement's kernels (``warm.warm_refinement``), so that the first
    refinement does not; a search meanwhile waits for the same load rather than
    starting another.
    Returns the thread, or None when there is no such index. Failures are left
    for the search to report."""
    ds = root_dataset(dataset)
    keys = list_index_keys(ds)
    index_key = default_index_key(keys) if index_key is None else index_key
    if index_key not in keys:
        return None

    def load():
        try:
            config, _ = load_index(ds, index_key)
            if config.clip_model:
                index_clip_model(config, index_key, ds.name)
            warm_refinement()
        except Exception:  # noqa: BLE001 - the search says what is wrong
            logger.debug("preloading index %r failed", index_key, exc_info=True)

    thread = threading.Thread(target=load, name="clipbranches-preload", daemon=True)
    thread.start()
    return thread


#: File name endings of images (a typed query ending so names a file, not text).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


#: How a URL of an image begins (a typed query beginning so names an image).
IMAGE_URL_SCHEMES = ("file://", "http://", "https://")


def looks_like_image_path(query: str) -> bool:
    """Whether a typed query reads as a file path to an image (whether or not the
    file is there): it starts like a path and ends like an image file, or names a
    folder."""
    query = query.strip()
    return _path_like(query) and (is_folder(query) or _image_suffix(query))


def reads_as_image(query: str) -> bool:
    """Whether a typed query reads as an image's URL or file path, told from its
    words alone (no file is looked at)."""
    query = query.strip()
    if query.lower().startswith(IMAGE_URL_SCHEMES):
        return True
    return _path_like(query) and _image_suffix(query)


def _path_like(query: str) -> bool:
    return query.startswith(("/", "~", "./", "../")) or "\\" in query


def _image_suffix(query: str) -> bool:
    return Path(query).suffix.lower() in IMAGE_EXTENSIONS


def is_folder(query: str) -> bool:
    """Whether a typed query names an existing folder (``~`` expanded)."""
    try:
        return Path(query.strip()).expanduser().is_dir()
    except (OSError, ValueError, RuntimeError):  # "~nosuchuser": no home to expand
        return False


def is_image_reference(query: str) -> bool:
    """Whether a typed query names an image (an existing file, a ``file://`` or an
    ``http(s)://`` URL) rather than text to search by."""
    query = query.strip()
    if query.lower().startswith(IMAGE_URL_SCHEMES):
        return True
    try:
        return Path(query).expanduser().is_file()
    except (OSError, ValueError, RuntimeError):  # "~nosuchuser": no home to expand
        return False


def image_embedding(
    config, bundle, index_key: str, image, dataset_name: str | None = None
) -> np.ndarray:
    """float32 ``(d,)`` CLIP embedding of the image ``image`` (see :func:`search`)
    by the index's own model.

    Raises:
        UnknownModelError: the index records no CLIP model, or has no encoder.
        ValueError: no image there, an unreadable one, or a URL that cannot be
            fetched.
    """
    if not config.clip_model or bundle.encoder is None:
        raise text_search_refusal(
            index_key, config.embeddings_field, query="an image", dim=_dim(bundle)
        )
    clip = _query_model(config, bundle, index_key, dataset_name)
    reference = os.fspath(image).strip() if isinstance(image, str | os.PathLike) else ""
    if not reference:
        raise ValueError(f"image must be a file path or URL; got {short(image)}")
    if reference.lower().startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory(prefix="clipbranches-query-") as tmp:
            path = Path(tmp) / "image"
            path.write_bytes(download(reference))
            return _embed_file(clip, path, reference)
    if reference.lower().startswith("file://"):
        parsed = urllib.parse.urlparse(reference)
        reference = urllib.request.url2pathname(parsed.path)
    path = Path(reference).expanduser()
    if not path.is_file():
        raise ValueError(f"no image file at {reference}")
    return _embed_file(clip, path, reference)


def _embed_file(clip, path: Path, reference: str) -> np.ndarray:
    result = clip.embed_images([path], num_workers=0, progress=False)
    if not result.ok[0]:
        # a downloaded image's error names its temporary file: the URL instead
        error = str(result.errors.get(0)).replace(str(path), reference)
        raise ValueError(f"cannot read the image {reference}: {error}")
    return np.asarray(result.vectors[0], np.float32)


def _name(ds) -> str | None:
    return None if ds is None else ds.name


def _text_code(text, config, bundle, index_key, dataset_name=None) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError("text query must be a non-empty string")
    vec = text_embeddings(config, bundle, index_key, [text], dataset_name)
    return np.asarray(bundle.encoder.encode(vec)[0], dtype=np.uint8)


def _samples_code(sample_ids, bundle, index_key, ds, what: str) -> np.ndarray:
    sample_ids = as_sample_ids(sample_ids, "sample_ids")
    if not sample_ids:
        raise ValueError("sample_ids is empty: select at least one sample")
    if ds is None:
        raise TypeError("query_code(sample_ids=...) needs ds=, the index's dataset")
    alive = alive_rows(ds, bundle.rowmap, str(bundle.path))
    rows = index_rows(ds, bundle, sample_ids, what, index_key, alive=alive)
    codes = np.asarray(bundle.index.codes[np.sort(rows)], dtype=np.float64)
    return np.clip(np.rint(codes.mean(axis=0)), 0, 255).astype(np.uint8)


def _vector_code(vector, bundle, index_key) -> np.ndarray:
    vec = np.asarray(vector)
    n_dims = bundle.index.codes.shape[1]
    if vec.ndim != 1:
        raise ValueError(f"vector must be 1-d; got shape {vec.shape}")
    if vec.dtype == np.uint8:
        if vec.shape[0] != n_dims:
            raise ValueError(
                f"a uint8 code must have {n_dims} bytes; got {vec.shape[0]}"
            )
        return vec
    if bundle.encoder is None:
        raise ValueError(
            f"index {index_key!r} was built from codes and has no encoder: pass a "
            f"uint8 code of {n_dims} bytes"
        )
    width = bundle.encoder.in_dim
    if vec.shape[0] != width:
        raise ValueError(
            f"the query vector has {vec.shape[0]} values; index {index_key!r} was"
            f" built from {width}-dim embeddings (or pass a uint8 code of {n_dims}"
            " bytes)"
        )
    if not np.all(np.isfinite(vec)):
        raise ValueError("the query vector holds NaN or infinite values")
    if not np.any(vec):
        raise ValueError("the query vector is all zeros: it points nowhere")
    vec = float32_rows(vec[None], "the query vector")
    return np.asarray(bundle.encoder.encode(vec)[0], np.uint8)
