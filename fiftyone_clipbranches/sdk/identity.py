"""Which CLIP model made an embeddings field: read from records, never guessed.

Text queries are embedded by the model recorded as an index's identity, so a
wrong identity gives wrong results without any error. An identity is taken only
from a record or a declaration, in this order:

1. the user's explicit ``model=`` (and ``pretrained=``) at build time;
2. the field's ``info["clipbranches_clip_model"]``, written by
   ``sdk.compute_embeddings`` (or set by the user);
3. the ``model`` recorded by FiftyOne brain runs (``compute_similarity``,
   ``compute_visualization``) over the field, mapped from FiftyOne's zoo names to
   open_clip's with :data:`ZOO_CLIP_MODELS`.

``dataset.compute_embeddings(zoo_model, embeddings_field=...)`` records nothing
about the model (FiftyOne 1.22 adds a bare ``VectorField``), so such a field has
an identity only once a brain run over it, or the user, says which model it was.
When none does, the index is built without one: search by samples and vectors
works, text search is refused with :func:`text_search_refusal`'s error.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from fiftyone_clipbranches.sdk.errors import (
    APP_OVERWRITE,
    BY_IDS_OR_VECTOR,
    SAME_MODEL,
    IdentityConflictError,
    UnknownModelError,
)
from fiftyone_clipbranches.sdk.runs import brain_configs, root_dataset

#: FiftyOne zoo model name -> open_clip ``(architecture, pretrained tag)`` of the
#: same weights (FiftyOne 1.22's ``manifest-torch.json``).
ZOO_CLIP_MODELS = {
    "clip-vit-base32-torch": ("ViT-B-32", "openai"),
}
#: The zoo's open_clip wrapper: its ``model_kwargs`` name the open_clip model, with
#: the defaults of ``fiftyone.utils.open_clip.TorchOpenClipModelConfig``.
OPEN_CLIP_ZOO_MODEL = "open-clip-torch"
OPEN_CLIP_ZOO_DEFAULTS = ("ViT-B-32", "openai")


@dataclass(frozen=True)
class FieldIdentity:
    """The identity of a field (None when unknown), where it was read, and why it
    is unknown when it is."""

    identity: dict | None
    source: str | None
    reason: str | None = None


def zoo_identity(model, model_kwargs=None) -> dict | None:
    """open_clip identity ``{"name", "pretrained"}`` of a FiftyOne zoo model name
    (with its ``model_kwargs``), or None for a model that is not a known CLIP."""
    if not isinstance(model, str):
        return None
    if model in ZOO_CLIP_MODELS:
        name, pretrained = ZOO_CLIP_MODELS[model]
        return {"name": name, "pretrained": pretrained}
    if model == OPEN_CLIP_ZOO_MODEL:
        kwargs = dict(model_kwargs or {})
        name = kwargs.get("clip_model") or OPEN_CLIP_ZOO_DEFAULTS[0]
        pretrained = kwargs.get("pretrained") or OPEN_CLIP_ZOO_DEFAULTS[1]
        return {"name": str(name), "pretrained": str(pretrained)}
    return None


#: Key of the field ``info`` dict holding the CLIP identity of stored embeddings.
FIELD_INFO_KEY = "clipbranches_clip_model"


def field_identity(samples, field: str) -> dict | None:
    """CLIP identity recorded on ``field``'s info (by ``compute_embeddings`` or the
    user), or None."""
    fld = root_dataset(samples).get_field(field)
    info = (fld.info or {}) if fld is not None else {}
    identity = info.get(FIELD_INFO_KEY)
    return dict(identity) if identity else None


def record_field_identity(samples, field: str, identity: dict) -> None:
    """Record ``identity`` as the model of ``field``'s vectors (in its info)."""
    fld = root_dataset(samples).get_field(field)
    info = dict(fld.info or {})
    info[FIELD_INFO_KEY] = identity
    fld.info = info
    fld.save()


#: How to embed into another field, in each face's words.
ANOTHER_FIELD = (
    "build_index(..., embeddings_field='NEW_FIELD', model=..., pretrained=...) or"
    " compute_embeddings(dataset, 'NEW_FIELD', model=..., pretrained=...); CLI:"
    " --embeddings-field NEW_FIELD"
)


#: How to build an index of a new checkpoint beside the old one, in each face's words.
REBUILD_ELSEWHERE = (
    "build_index(dataset, 'NEW_KEY', embeddings_field='NEW_FIELD', model=...,"
    " pretrained=NEW_PATH); CLI: clipbranches build-index DATASET --key NEW_KEY"
    " --embeddings-field NEW_FIELD --model ... --pretrained NEW_PATH"
)


def check_field_identity(samples, field: str, identity: dict) -> bool:
    """Whether ``field`` already holds vectors of an unknown model, before
    vectors of ``identity`` are added to it.

    Raises:
        IdentityConflictError: the field's vectors are known to come from another
            model (its record or a brain run over it): mixing models in one field
            makes its vectors incomparable.
    """
    known = field_model_identity(samples, field).identity
    if known is not None:
        if _identity_key(known) == _identity_key(identity) and not same_identity(
            known, identity
        ):
            raise IdentityConflictError(
                f"field {field!r} holds embeddings of {_describe(known)}, but "
                f"{checkpoint_changed(known, identity)}; mixing the two in one field "
                "makes them incomparable: restore the checkpoint file, or embed "
                f"into another field ({ANOTHER_FIELD})"
            )
        if not same_identity(known, identity):
            raise IdentityConflictError(
                f"field {field!r} holds embeddings of {_describe(known)}, not of "
                f"{_describe(identity)}: mixing models in one field makes them "
                f"incomparable; {SAME_MODEL}, or into another field ({ANOTHER_FIELD})"
            )
        return False
    root = root_dataset(samples)
    return root.get_field(field) is not None and len(root.exists(field).limit(1)) > 0


def field_model_identity(samples, field: str) -> FieldIdentity:
    """The CLIP identity recorded for ``field`` of ``samples``' root dataset."""
    ds = root_dataset(samples)
    recorded = field_identity(ds, field)
    if recorded is not None:
        return FieldIdentity(recorded, f"info of field {field!r}")
    found, unmapped = {}, []
    for key, config in brain_configs(ds):
        if getattr(config, "embeddings_field", None) != field:
            continue
        model = getattr(config, "model", None)
        if not isinstance(model, str):
            continue
        identity = zoo_identity(model, getattr(config, "model_kwargs", None))
        if identity is None:
            unmapped.append(f"{model!r} (brain run {key!r})")
        else:
            found.setdefault(_identity_key(identity), (identity, key))
    if len(found) == 1:
        identity, key = next(iter(found.values()))
        return FieldIdentity(identity, f"brain run {key!r}")
    if len(found) > 1:
        runs = ", ".join(repr(key) for _, key in found.values())
        return FieldIdentity(None, None, f"brain runs {runs} record different models")
    if unmapped:
        return FieldIdentity(
            None, None, f"{', '.join(unmapped)} is not a CLIP model open_clip knows"
        )
    return FieldIdentity(None, None, "nothing records which model computed it")


def build_identity(samples, field: str, model=None, pretrained=None) -> dict | None:
    """The identity an index built on ``field`` records: the user's ``model`` /
    ``pretrained`` when ``model`` is given (checked against the field's record),
    else the field's record, else None (text search will be refused)."""
    recorded = field_model_identity(samples, field).identity
    if model is None:
        return recorded
    declared = {"name": model, "pretrained": pretrained}
    if recorded is not None and not same_identity(recorded, declared):
        raise IdentityConflictError(
            f"field {field!r} holds embeddings of {_describe(recorded)}, but "
            f"model={model!r}, pretrained={pretrained!r} was given: leave model= "
            "out to use the recorded model, or embed into another field"
        )
    return recorded or declared


def same_identity(a: dict, b: dict) -> bool:
    """Whether two identities name the same architecture and weights (a checkpoint
    file's contents too, where both record its ``checkpoint_sha256``)."""
    sha_a, sha_b = a.get("checkpoint_sha256"), b.get("checkpoint_sha256")
    if sha_a and sha_b and sha_a != sha_b:
        return False
    return _identity_key(a) == _identity_key(b)


def checkpoint_changed(recorded: dict, loaded: dict) -> str:
    """Words for a checkpoint file whose contents differ from those ``recorded``
    (both identities record a ``checkpoint_sha256``)."""
    return (
        f"the checkpoint file {recorded.get('pretrained')!r} has changed since "
        f"(sha256 {str(recorded.get('checkpoint_sha256'))[:12]}... then, "
        f"{str(loaded.get('checkpoint_sha256'))[:12]}... now)"
    )


def missing_checkpoint(
    recorded: dict, index_key: str, work: str, dataset_name: str | None = None
) -> str | None:
    """Why index ``index_key`` (of dataset ``dataset_name``, when known) cannot
    ``work`` ("embed queries", "embed added samples"): the local checkpoint file
    its ``recorded`` identity names is gone; None when it is there (or the weights
    are an open_clip tag)."""
    pretrained = recorded.get("pretrained")
    if not recorded.get("checkpoint_sha256") or os.path.isfile(str(pretrained)):
        return None
    dataset = "DATASET" if dataset_name is None else shlex.quote(dataset_name)
    return (
        f"index {index_key!r} cannot {work}: it embeds with the checkpoint file"
        f" {pretrained!r}, which is not there any more; put it back at that path,"
        f" or, moved, say where it is now (relocate_checkpoint(dataset, NEW_PATH,"
        f" index_key={index_key!r}); CLI: clipbranches relocate-checkpoint {dataset}"
        f" --key {index_key} --pretrained NEW_PATH), or build another index from"
        f" another file ({REBUILD_ELSEWHERE.replace(' DATASET ', f' {dataset} ')})"
    )


def text_search_refusal(
    index_key: str,
    field: str | None,
    reason=None,
    query: str = "text",
    dim: int | None = None,
) -> UnknownModelError:
    """The error refusing to embed a ``query`` ("text" or "an image") in the space
    of index ``index_key``, whose CLIP model is not known: why, and how to declare
    the model (in the SDK's words and, as ``in_app``, in the App's). ``dim``: the
    length of its vectors (ViT-B-32 is the example only where they are 512 long)."""
    why = f" ({reason})" if reason else ""
    source = f"the embeddings in field {field!r}" if field else "its embeddings"
    field_arg = f"embeddings_field={field!r}, " if field else ""
    info = (
        f" or record it on the field (dataset.get_field({field!r}).info = "
        f'{{"{FIELD_INFO_KEY}": {{"name": ..., "pretrained": ...}}}}, then '
        "field.save()) and rebuild"
        if field
        else ""
    )
    refused = (
        f"index {index_key!r} does not know the CLIP model of {source}{why}, so it "
        f"cannot embed {query} in their space; "
    )
    if dim in (None, 512):
        sdk_args = "model='ViT-B-32', pretrained='openai'"
        cli_args = "--model ViT-B-32 --pretrained openai"
        zoo = " (FiftyOne's clip-vit-base32-torch is open_clip ViT-B-32 / openai)"
    else:  # the example would be refused: its vectors are 512 long
        sdk_args = "model=MODEL, pretrained=WEIGHTS"
        cli_args = "--model MODEL --pretrained WEIGHTS"
        zoo = f" (MODEL, WEIGHTS: the open_clip CLIP that made its {dim}-d vectors)"
    error = UnknownModelError(
        f"{refused}{BY_IDS_OR_VECTOR}, or declare the model that made the vectors:"
        f" build it again in its place (e.g. build_index(dataset, {index_key!r},"
        f" {field_arg}{sdk_args},"
        " overwrite=True); CLI: clipbranches build-index DATASET"
        f" --key {index_key}"
        + (f" --embeddings-field {field}" if field else "")
        + f" {cli_args} --overwrite){zoo}{info}"
    )
    from_field = f" from field {field!r}" if field else ""
    app_zoo = (
        "FiftyOne's clip-vit-base32-torch is ViT-B-32 / openai"
        if dim in (None, 512)
        else f"the CLIP that made its {dim}-d vectors"
    )
    error.in_app = (
        f"{refused}search by selected samples, or declare the model: build it again"
        f"{from_field} ('CLIP branches: build index' with its key, '{APP_OVERWRITE}'"
        f" checked, and the field's CLIP model and Pretrained weights set; {app_zoo})"
    )
    return error


def _identity_key(identity: dict) -> tuple:
    pretrained = identity.get("pretrained")
    if isinstance(pretrained, str | os.PathLike) and os.path.isfile(pretrained):
        pretrained = os.path.realpath(pretrained)
    return (identity.get("name"), pretrained)


def _describe(identity: dict) -> str:
    weights = identity.get("pretrained")
    return f"{identity.get('name')!r} / " + (
        repr(weights) if weights is not None else "random weights"
    )
