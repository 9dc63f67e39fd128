"""Nearest-neighbour search over an index's codes: by text, by samples, by vector."""

from __future__ import annotations

import numpy as np

from fiftyone_clipbranches.sdk.embeddings import get_clip_model
from fiftyone_clipbranches.sdk.errors import StaleIndexError, UnknownModelError
from fiftyone_clipbranches.sdk.freshness import alive_rows
from fiftyone_clipbranches.sdk.identity import text_search_refusal
from fiftyone_clipbranches.sdk.indexes import load_index
from fiftyone_clipbranches.sdk.runs import root_dataset
from fiftyone_clipbranches.sdk.settings import DEFAULT_INDEX_KEY, DEFAULT_K


def search(
    dataset,
    text: str | None = None,
    sample_ids=None,
    vector=None,
    k: int = DEFAULT_K,
    index_key: str = DEFAULT_INDEX_KEY,
):
    """The ``k`` samples nearest to the query, as an ordered view (nearest first).

    Give exactly one query:

    - ``text``: embedded with the index's CLIP model, then encoded;
    - ``sample_ids``: the mean of those samples' codes;
    - ``vector``: a float embedding ``(d,)`` (encoded with the index's encoder) or
      a uint8 code ``(D,)``.

    Deleted samples never appear; samples added after the build are not searched.
    """
    ids, _ = search_ids(dataset, text, sample_ids, vector, k, index_key)
    return root_dataset(dataset).select(ids, ordered=True)


def search_ids(
    dataset,
    text: str | None = None,
    sample_ids=None,
    vector=None,
    k: int = DEFAULT_K,
    index_key: str = DEFAULT_INDEX_KEY,
) -> tuple[list[str], np.ndarray]:
    """Like :func:`search`, returning ``(sample ids, int64 squared code distances)``."""
    given = [q is not None for q in (text, sample_ids, vector)]
    if sum(given) != 1:
        raise ValueError("give exactly one query: text=, sample_ids= or vector=")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    ds = root_dataset(dataset)
    config, bundle = load_index(ds, index_key)
    query = query_code(config, bundle, index_key, text, sample_ids, vector)

    alive = alive_rows(ds, bundle.rowmap, str(bundle.path))
    n_dead = 0 if alive is None else int((~alive).sum())
    k_ask = min(int(k) + n_dead, len(bundle.index))
    rows, dists = bundle.index.knn(query, k_ask)
    if alive is not None:
        keep = alive[rows]
        rows, dists = rows[keep], dists[keep]
    rows, dists = rows[:k], dists[:k]
    return bundle.rowmap.ids_of(rows), np.asarray(dists, dtype=np.int64)


def query_code(
    config, bundle, index_key: str, text=None, sample_ids=None, vector=None
) -> np.ndarray:
    """The uint8 ``(D,)`` code of one query (see :func:`search`) in a loaded index."""
    if text is not None:
        return _text_code(text, config, bundle, index_key)
    if sample_ids is not None:
        return _samples_code(sample_ids, bundle, index_key)
    return _vector_code(vector, bundle, index_key)


def text_embeddings(config, bundle, index_key: str, texts) -> np.ndarray:
    """float32 ``(m, d)`` CLIP embeddings of ``texts`` by the index's own model.

    Raises:
        UnknownModelError: the index records no CLIP model (its embeddings came
            from a field nothing identifies), or it has no encoder.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("text query must be a non-empty string")
    if not config.clip_model or bundle.encoder is None:
        raise UnknownModelError(text_search_refusal(index_key, config.embeddings_field))
    clip = get_clip_model(
        config.clip_model["name"], config.clip_model.get("pretrained")
    )
    return np.asarray(clip.embed_texts([t.strip() for t in texts]), np.float32)


def _text_code(text, config, bundle, index_key) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError("text query must be a non-empty string")
    vec = text_embeddings(config, bundle, index_key, [text])
    return np.asarray(bundle.encoder.encode(vec)[0], dtype=np.uint8)


def _samples_code(sample_ids, bundle, index_key) -> np.ndarray:
    sample_ids = [sample_ids] if isinstance(sample_ids, str) else list(sample_ids)
    if not sample_ids:
        raise ValueError("sample_ids is empty: select at least one sample")
    rows, found = bundle.rowmap.rows_of(sample_ids)
    if not found.all():
        raise StaleIndexError(
            f"{int((~found).sum())} query samples are not in index {index_key!r} "
            "(added after it was built); run update_index first"
        )
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
    return np.asarray(bundle.encoder.encode(vec[None].astype(np.float32))[0], np.uint8)
