"""CLIP image embeddings as a FiftyOne ``VectorField``: computing and reading them."""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable

import fiftyone as fo
import numpy as np

from fiftyone_clipbranches.sdk.clip_names import UNSET, given_weights, resolve_clip
from fiftyone_clipbranches.sdk.errors import WeightsUnavailableError
from fiftyone_clipbranches.sdk.identity import (
    check_field_identity,
    field_model_identity,
    record_field_identity,
)
from fiftyone_clipbranches.sdk.media import require_image_samples
from fiftyone_clipbranches.sdk.progress import as_progress, closes_its_bars
from fiftyone_clipbranches.sdk.runs import root_dataset
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_EMBEDDINGS_FIELD,
)
from fiftyone_clipbranches.sdk.vector_sources import (
    record_sources,
    recording_field,
    to_embed,
)

_CHUNK = 256
#: Loaded CLIP models a process keeps (each holds its weights in memory).
CLIP_MODEL_CACHE_SIZE = 2
_models: OrderedDict[tuple, object] = OrderedDict()
_models_lock = threading.Lock()
#: One lock per model being loaded, so that concurrent first uses load it once.
_loading: dict[tuple, threading.Lock] = {}


def get_clip_model(name: str, pretrained):
    """The CLIP model ``(name, pretrained)``, loaded once per process; the
    ``CLIP_MODEL_CACHE_SIZE`` most recently used stay loaded. Random weights
    (``pretrained=None``) are warned about where they are chosen, not here.

    Raises:
        WeightsUnavailableError: the weights cannot be had (offline, no cached
            copy).
    """
    key = (name, pretrained)
    model = _cached_model(key)
    if model is not None:
        return model
    _refuse_config_elsewhere(name, pretrained)
    with _models_lock:
        load_lock = _loading.setdefault(key, threading.Lock())
    try:
        with load_lock:
            model = _cached_model(key)
            if model is None:
                model = _load(name, pretrained)
                with _models_lock:
                    _models[key] = model
                    while len(_models) > CLIP_MODEL_CACHE_SIZE:
                        _models.popitem(last=False)
    finally:  # a failed load too: the next use tries again with a lock of its own
        with _models_lock:
            _loading.pop(key, None)
    return model


def _load(name: str, pretrained):
    from fiftyone_clipbranches.embed import models

    try:
        return models.load_clip(name, pretrained=pretrained, warn_random=False)
    except models.WeightsUnavailableError as e:  # the package's own error
        raise WeightsUnavailableError(str(e)) from e


def _refuse_config_elsewhere(name: str, pretrained) -> None:
    """Refuse a checkpoint of an architecture that is not open_clip's own when its
    config is not beside it: this process may know the architecture (registered
    by hand), but the App, the service and the CLI load it from beside the
    checkpoint, and would fail on what is built or recorded here."""
    from fiftyone_clipbranches.demo.model import DEMO_MODEL_NAME
    from fiftyone_clipbranches.embed.models import (
        close_architectures,
        expand_checkpoint,
        missing_config_beside,
    )

    path = expand_checkpoint(pretrained)
    if name == DEMO_MODEL_NAME or not isinstance(path, str | os.PathLike):
        return
    if not os.path.isfile(path):
        return
    config = missing_config_beside(name, path)
    if config is not None:
        near = close_architectures(name)
        typo = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
        raise ValueError(
            f"architecture {name!r} is not open_clip's own{typo}, and its config is"
            f" not beside the checkpoint ({config}): put it there (open_clip's JSON"
            " of the architecture). Every process that loads the model (the App,"
            " the service, the CLI) reads it from beside the checkpoint"
        )


def _random_before(root, field: str, model: str, existing) -> bool:
    """Whether ``field`` records ``model`` with random weights already (chosen at
    its first embedding, and warned about then)."""
    if existing is None:
        return False
    recorded = field_model_identity(root, field).identity or {}
    return recorded.get("name") == model and recorded.get("pretrained") is None


def _cached_model(key: tuple):
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            _models.move_to_end(key)
        return model


#: Images per CLIP batch and image-loading worker processes of an embedding.
BATCH_SIZE, NUM_WORKERS = 32, 0


@closes_its_bars
def compute_embeddings(
    samples,
    field: str = DEFAULT_EMBEDDINGS_FIELD,
    *,
    model: str | None = None,
    pretrained=UNSET,
    batch_size: int = BATCH_SIZE,
    num_workers: int = NUM_WORKERS,
    skip_existing: bool = True,
    progress: bool | Callable = True,
) -> dict:
    """Embed the images of ``samples`` with CLIP into the ``VectorField`` ``field``.

    Args:
        samples: a FiftyOne dataset or view of images.
        field: name of the float32 ``VectorField`` receiving ``(d,)`` vectors, d
            set by the model (512 for ViT-B-32, 128 for ``"demo"``).
        model, pretrained: the CLIP (:func:`~.clip_names.resolve_clip`): an
            open_clip architecture and its tag or checkpoint path (ViT-B-32 has
            default weights; another ``model`` needs its ``pretrained``), or
            ``"demo"``, the small CLIP this package ships. Both left out: the model ``field`` records (an earlier
            ``compute_embeddings`` or ``build_index`` into it), else ViT-B-32
            with its default weights.
        skip_existing: leave samples that already have a vector untouched.
        progress: True for a console bar, False for none, or a callable
            ``fn(fraction, label)``.

    Returns:
        dict with ``n_embedded``, ``n_skipped``, ``n_failed``, ``failed`` (up to 20
        ``{sample id: error}``), ``clip_model`` (identity; with nothing to embed,
        the field's recorded one or None: no model is loaded) and ``field``.
    """
    model, pretrained = clip_to_compute(
        samples, field, model, given_weights(pretrained)
    )
    summary, _ = _embed(
        samples, field, model, pretrained, skip_existing, progress,
        batch_size=batch_size, num_workers=num_workers,
    )  # fmt: skip
    return summary


def clip_to_compute(samples, field: str, model, pretrained) -> tuple[str, object]:
    """The CLIP model and weights to compute ``field``'s embeddings with: the given
    ones, else those ``field`` records (computed into before), else the
    defaults."""
    if model is None and pretrained is UNSET:
        recorded = field_model_identity(samples, field).identity
        if recorded is not None:
            return recorded["name"], recorded["pretrained"]
    return resolve_clip(DEFAULT_CLIP_MODEL if model is None else model, pretrained)


def embed_again(samples, field: str, *, model: str, pretrained, progress) -> dict:
    """Embed the images of ``samples`` again into ``field``, replacing the vectors
    there; a sample whose image cannot be read now keeps none (its old vector
    belongs to an image that is gone). Returns :func:`compute_embeddings`'
    report."""
    summary, failed = _embed(samples, field, model, pretrained, False, progress)
    if failed:
        samples._root_dataset.select(list(failed)).set_field(field, None).save()
    return summary


def _embed(
    samples,
    field,
    model,
    pretrained,
    skip_existing,
    progress,
    batch_size=BATCH_SIZE,
    num_workers=NUM_WORKERS,
) -> tuple[dict, dict]:
    """:func:`compute_embeddings`' work: its report, and every sample that failed
    (``{sample id: error}``; the report names 20)."""
    _check_field_name(field)
    report = as_progress(progress)
    root = root_dataset(samples)
    require_image_samples(samples, root)
    existing = root.get_field(field)
    if existing is not None and not isinstance(existing, fo.VectorField):
        raise ValueError(
            f"field {field!r} exists with type {type(existing).__name__}, not a "
            "VectorField: choose another embeddings field name"
        )
    todo = to_embed(samples, field) if skip_existing and existing else samples
    ids, paths = todo.values(["id", "filepath"])
    # vectors of another file than the sample's now: computed again, or dropped
    stale = (
        set(ids) - set(todo.exists(field, False).values("id"))
        if skip_existing and existing and recording_field(root, field)
        else set()
    )
    if existing is not None:  # a conflict is refused before seconds of loading
        check_field_identity(root, field, {"name": model, "pretrained": pretrained})
    if not ids:  # nothing to embed: no model to load (it may not be had offline)
        recorded = field_model_identity(root, field).identity if existing else None
        report(1.0, f"every sample has a {field!r} embedding")
        return _report(field, 0, samples.count(), {}, recorded), {}
    weights = "random weights" if pretrained is None else pretrained
    report(0.0, f"loading CLIP {model} ({weights})")  # tens of seconds, the first time
    clip = get_clip_model(model, pretrained)  # an unknown model is refused here
    if pretrained is None and not _random_before(root, field, model, existing):
        from fiftyone_clipbranches.embed.models import warn_random_weights

        warn_random_weights(model)  # chosen now: said once, here
    identity = dict(clip.identity)
    if existing is not None:
        refuse_another_length(root, field, clip.embedding_dim, model, ids)
    # vectors already there of an unknown model: fill the rest, record nothing
    unknown = existing is not None and check_field_identity(root, field, identity)

    failed: dict[str, str] = {}
    n_done = 0
    for start in range(0, len(ids), _CHUNK):
        chunk_ids = ids[start : start + _CHUNK]
        result = clip.embed_images(
            paths[start : start + _CHUNK],
            batch_size=batch_size,
            num_workers=num_workers,
            progress=False,
        )
        ok = np.asarray(result.ok, dtype=bool)
        values = {
            sid: np.asarray(vec, dtype=np.float32)
            for sid, vec, good in zip(chunk_ids, result.vectors, ok)
            if good
        }
        if values:
            if existing is None:  # made with its first vector: a failed run adds none
                root.add_sample_field(field, fo.VectorField)
                existing = root.get_field(field)
                # recorded at once: a run stopped midway leaves a field that says
                # which model to resume with, and refuses another
                record_field_identity(root, field, identity)
            root.set_values(field, values, key_field="id")
            chunk_paths = paths[start : start + _CHUNK]
            record_sources(
                root,
                field,
                {sid: chunk_paths[j] for j, sid in enumerate(chunk_ids) if ok[j]},
            )
        for j in np.flatnonzero(~ok):
            failed[chunk_ids[j]] = str(result.errors.get(int(j), "unreadable image"))
        n_done += len(chunk_ids)
        unread = f", {len(failed)} unreadable" if failed else ""
        report(
            n_done / max(len(ids), 1),
            f"embedded {n_done - len(failed)}/{len(ids)}{unread}",
        )
    if not unknown and existing is not None:
        record_field_identity(root, field, identity)
    if stale & failed.keys():  # their old vector is of a file they no longer name
        root.select(list(stale & failed.keys())).set_field(field, None).save()
    summary = _report(
        field, len(ids) - len(failed), samples.count() - len(ids), failed, identity
    )
    return summary, failed


#: Vectors of a field whose lengths tell which model filled it, read in at most
#: ``MAX_LENGTH_PAGES`` pages; up to ``FEW_REPLACED`` ids about to be embedded
#: again are left out by the query itself.
LENGTH_SAMPLE = 256
MAX_LENGTH_PAGES = 16
FEW_REPLACED = 10_000


def refuse_another_length(
    root, field: str, dim: int | None, model: str, replaced=()
) -> None:
    """Refuse CLIP ``model``, whose vectors are ``dim`` long, for ``field`` when
    the field's vectors have another length (another model's vectors): when the
    commonest length of the first :data:`LENGTH_SAMPLE` vectors kept (those of
    samples not in ``replaced``, the ids about to be embedded again) is not
    ``dim``. A stray vector among the model's own is left to the build, which
    names its sample; nothing when either length is unknown."""
    if dim is None:
        return
    replaced = set(replaced)
    held = root.exists(field)
    if len(replaced) <= FEW_REPLACED:  # one query for the vectors kept
        held = held.exclude(list(replaced))
    lengths = Counter()
    for page in range(MAX_LENGTH_PAGES):  # many replaced: those kept, page by page
        ids, vectors = (
            held.skip(page * LENGTH_SAMPLE).limit(LENGTH_SAMPLE).values(["id", field])
        )
        lengths.update(
            int(np.asarray(v).size)
            for sid, v in zip(ids, vectors)
            if v is not None and sid not in replaced
        )
        if len(ids) < LENGTH_SAMPLE or sum(lengths.values()) >= LENGTH_SAMPLE:
            break
    if not lengths:
        return
    length = lengths.most_common(1)[0][0]
    if length != dim:
        raise ValueError(
            f"field {field!r} holds vectors of length {length} and CLIP {model!r}"
            f" gives {dim}: they are not this model's vectors; embed into another"
            " field (field=... / embeddings_field=...; CLI: --embeddings-field),"
            " or give the model that made them"
        )


def _report(field, n_embedded, n_skipped, failed, identity) -> dict:
    return {
        "field": field,
        "n_embedded": n_embedded,
        "n_skipped": n_skipped,
        "n_failed": len(failed),
        "failed": dict(list(failed.items())[:20]),
        "clip_model": identity,
    }


def _check_field_name(field) -> None:
    if not isinstance(field, str) or not field.isidentifier():
        raise ValueError(f"embeddings field name {field!r} must be an identifier")
