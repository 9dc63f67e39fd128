"""The CLIP a user names: ``model`` and ``pretrained`` as the SDK, CLI and forms
take them, resolved to what ``embed.load_clip`` loads."""

from __future__ import annotations

import os

from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
)


class _Unset:
    def __repr__(self) -> str:
        return "<not given>"


#: ``pretrained`` left out (None is meaningful: random weights).
UNSET = _Unset()


def given_weights(pretrained):
    """``pretrained`` as a user gave it, a checkpoint path made absolute (a leading
    ``~`` expanded): recorded so, every process of every user finds the file, and
    it compares equal with what a load records. Tags, None and UNSET as given."""
    if isinstance(pretrained, str | os.PathLike):
        text = os.fspath(pretrained)
        expanded = os.path.expanduser(text)
        if expanded != text or os.path.isfile(expanded):
            return os.path.abspath(expanded)
    return pretrained


#: ``model`` naming the small CLIP this package ships (the CLI's ``--model demo``,
#: the forms' "CLIP model"; ``demo.model`` makes it).
SHIPPED_MODEL = "demo"


def resolve_clip(model: str, pretrained=UNSET) -> tuple[str, object]:
    """``(model, pretrained)`` to load: ``"demo"`` is the small CLIP this package
    ships (its registered name and cached checkpoint; offline, it knows generated
    shapes, not photos); the default architecture without weights takes its
    default weights, and a FiftyOne zoo name without weights its open_clip model
    and weights (``identity.ZOO_CLIP_MODELS``); any other passes through.

    Raises:
        ValueError: another architecture without weights, or weights given with
            ``"demo"``.
    """
    from fiftyone_clipbranches.demo.model import clip_choice

    if model == SHIPPED_MODEL:
        return clip_choice(model, None if pretrained is UNSET else pretrained)
    from fiftyone_clipbranches.sdk.identity import ZOO_CLIP_MODELS

    if model in ZOO_CLIP_MODELS and pretrained is UNSET:  # FiftyOne's zoo name
        return ZOO_CLIP_MODELS[model]
    if pretrained is not UNSET:
        return model, given_weights(pretrained)
    if model == DEFAULT_CLIP_MODEL:
        return model, DEFAULT_CLIP_PRETRAINED
    _refuse_unknown_architecture(model)
    raise ValueError(
        f"pass pretrained= (CLI: --pretrained) for model {model!r}: its open_clip"
        f" tag (see open_clip.list_pretrained_tags_by_model({model!r})) or a local"
        f" checkpoint path; or model={SHIPPED_MODEL!r}, the small CLIP this package"
        " ships"
    )


def _refuse_unknown_architecture(model) -> None:
    """Raise ValueError naming the nearest names when ``model`` is no open_clip
    architecture (checked only where weights were not given: with a local
    checkpoint, its config beside it may register the name)."""
    import open_clip

    from fiftyone_clipbranches.embed.models import close_architectures

    if model in open_clip.list_models() or str(model).startswith("hf-hub:"):
        return
    near = close_architectures(model, also=(SHIPPED_MODEL,))
    hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
    raise ValueError(
        f"unknown CLIP model {model!r}: {hint}give an open_clip architecture"
        " (open_clip.list_models(), e.g. 'ViT-B-32') with its pretrained weights,"
        f" or {SHIPPED_MODEL!r}, the small CLIP this package ships"
    )
