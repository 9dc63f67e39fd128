"""Operators: build an index, update it with samples added since."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import (
    RANDOM_WEIGHTS_NOTE,
    SHIPPED_MODEL_HINT,
    add_index_choice,
    add_new_key_input,
    add_orchestrator_hint,
    form_weights,
    long_running_config,
    notify_error,
    run_with_progress,
    vector_fields,
)
from fiftyone_clipbranches.sdk import build_index, unsearched_count, update_index
from fiftyone_clipbranches.sdk.clip_names import SHIPPED_MODEL
from fiftyone_clipbranches.sdk.errors import (
    IdentityConflictError,
    MissingEmbeddingsError,
)
from fiftyone_clipbranches.sdk.identity import ANOTHER_FIELD, field_model_identity
from fiftyone_clipbranches.sdk.media import media_refusal
from fiftyone_clipbranches.sdk.messages import counted
from fiftyone_clipbranches.sdk.scope import samples_behind
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
)
from fiftyone_clipbranches.sdk.stream_encode import fit_rows_needed

COMPUTE = "__compute__"


class BuildIndex(foo.Operator):
    @property
    def config(self):
        return long_running_config(
            "build_index",
            "CLIP branches: build index",
            "Encode embeddings into 32-byte codes and build the k-d trees",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        refused = media_refusal(ctx.dataset)
        if refused:  # before any field: no setting of the form could help
            inputs.view(
                "media", types.Error(label="Cannot be indexed", description=refused)
            )
            return types.Property(
                inputs, view=types.View(label="Build a clipbranches index")
            )
        add_new_key_input(ctx, inputs, replaceable=True)
        if ctx.view is not None and ctx.view.count() != ctx.dataset.count():
            inputs.view(
                "whole_dataset",
                types.Notice(
                    label=f"Indexes every sample of the dataset ({ctx.dataset.count()}),"
                    " not only the current view: searches and refinements from a"
                    " view answer within it"
                ),
            )
        fields = vector_fields(ctx)
        choices = types.DropdownView()
        for name in fields:
            choices.add_choice(name, label=name)
        choices.add_choice(COMPUTE, label="Compute CLIP embeddings now")
        default = fields[0] if fields else COMPUTE
        inputs.enum(
            "embeddings",
            [*fields, COMPUTE],
            label="Embeddings",
            default=default,
            view=choices,
        )
        if ctx.params.get("embeddings", default) == COMPUTE:
            inputs.str(
                "model",
                label="CLIP model",
                default=DEFAULT_CLIP_MODEL,
                required=True,
                description=SHIPPED_MODEL_HINT,
            )
            inputs.str(
                "pretrained",
                label="Pretrained weights",
                default=DEFAULT_CLIP_PRETRAINED,
                description="open_clip tag or checkpoint path; empty: the shipped"
                f" weights of '{SHIPPED_MODEL}', random weights for any other model"
                " (tests only: the index then means nothing)",
            )
        else:  # a default is not a declaration: left empty, the field's record rules
            inputs.str(
                "model",
                label="CLIP model of the field (if not recorded)",
                description="Text search needs it; e.g. ViT-B-32 with openai weights "
                "for FiftyOne's clip-vit-base32-torch",
            )
            inputs.str("pretrained", label="Pretrained weights of the field")
            inputs.bool(
                "skip_missing",
                label="Leave out samples without a vector",
                description="Index only the samples the field holds a vector for"
                " (left unchecked, they are embedded when clipbranches computed the"
                " field, which records its model; else they stop the build and are"
                " counted)",
                default=False,
            )
        method = types.RadioGroup()
        method.add_choice("head", label="Learned head")
        method.add_choice("pca", label="PCA")
        n = _samples_up_to_head(ctx)
        code, about = _code_choice(n)
        chosen = inputs.enum(
            "code_method", ["head", "pca"], label="Code", default=code, view=method,
            description=about,
        )  # fmt: skip
        too_few = _too_few_samples(n, ctx.params.get("code_method") or code)
        if too_few:  # Execute stays disabled: the build would fail once run
            chosen.invalid = True
            chosen.error_message = too_few
        add_orchestrator_hint(inputs)
        return types.Property(
            inputs, view=types.View(label="Build a clipbranches index")
        )

    def execute(self, ctx):
        p = ctx.params
        embeddings = p.get("embeddings", COMPUTE)
        if embeddings == COMPUTE:  # as the compute-embeddings form: empty is random
            declared = {
                "model": p.get("model") or DEFAULT_CLIP_MODEL,
                "pretrained": form_weights(p),
            }
        else:
            declared = {k: p[k] for k in ("model", "pretrained") if p.get(k)}
            if not declared and not p.get("skip_missing"):
                declared = _recorded_model(ctx.dataset, embeddings)
        try:
            if embeddings != COMPUTE and len(declared) == 1:
                raise ValueError(
                    "to declare the CLIP model of the field, give both the model "
                    "and its pretrained weights (e.g. ViT-B-32 and openai)"
                )
            info = yield from run_with_progress(
                ctx,
                build_index,
                ctx.dataset,
                p.get("index_key"),
                embeddings_field=None if embeddings == COMPUTE else embeddings,
                code_method=p.get("code_method", "head"),
                overwrite=bool(p.get("overwrite")),
                skip_missing=True
                if embeddings != COMPUTE and p.get("skip_missing")
                else None,
                **declared,
            )
        except Exception as exc:  # shown as a notification, never a traceback
            yield from notify_error(ctx, _in_form_words(exc, embeddings))
            return
        if not ctx.delegated:
            clip = info.clip_model or {}
            random = bool(clip) and not (
                clip.get("pretrained") or clip.get("checkpoint_sha256")
            )
            yield ctx.ops.notify(
                f"Index '{info.key}' built over {info.n_samples} samples"
                + (RANDOM_WEIGHTS_NOTE if random else ""),
                variant="warning" if random else "success",
            )


def _in_form_words(exc: Exception, field: str) -> Exception:
    """``exc``, with the form's own way out where the SDK names its arguments."""
    text = str(exc)
    if type(exc) is ValueError and "(CLI: --code-method pca)" in text:
        return ValueError(
            text.replace("code_method=", "Code ").replace(
                "use Code 'pca' (CLI: --code-method pca)", "choose 'pca' in Code"
            )
        )
    if isinstance(exc, IdentityConflictError) and ANOTHER_FIELD in text:
        return IdentityConflictError(
            text.replace(
                ANOTHER_FIELD,
                "run 'CLIP branches: compute embeddings' into a new field, then build"
                " from that field",
            )
        )
    if isinstance(exc, MissingEmbeddingsError) and exc.n_missing:
        return MissingEmbeddingsError(
            f"{counted(exc.n_missing, 'sample')} without a vector in {field!r}: check"
            " 'Leave out samples without a vector' to index the others, or compute"
            " them first ('CLIP branches: compute embeddings')",
            n_missing=exc.n_missing,
        )
    return exc


def _recorded_model(dataset, field: str) -> dict:
    """The CLIP model and weights ``field`` records, which embed its samples
    without a vector as the form says; nothing when it records none."""
    recorded = field_model_identity(dataset, field).identity
    if recorded is None:
        return {}
    return {"model": recorded["name"], "pretrained": recorded["pretrained"]}


def _say_unsearched(ctx, inputs, key: str) -> None:
    """A line saying how many samples index ``key`` does not search yet (added
    since its build: a count, no filepath is read)."""
    try:
        n = unsearched_count(ctx.dataset, key)
    except Exception:  # noqa: BLE001 - the form still opens; execute says why
        return
    label = (
        f"{counted(n, 'sample')} added since the last build or update"
        f" {'is' if n == 1 else 'are'} not searched yet"
        if n
        else "No sample was added since the last build or update (moved or changed"
        " files are not counted here: see index info)"
    )
    inputs.view("unsearched", types.Notice(label=label))


class UpdateIndex(foo.Operator):
    @property
    def config(self):
        return long_running_config(
            "update_index",
            "CLIP branches: update index",
            "Add samples created since the build; drop deleted ones",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        key = add_index_choice(ctx, inputs)
        if key is not None:
            _say_unsearched(ctx, inputs, key)
            inputs.bool(
                "retry_failed",
                label="Retry unreadable images",
                description="Embed again the samples left out because their image"
                " could not be read (fixed files)",
                default=False,
            )
            inputs.bool(
                "keep_moved",
                label="Files moved, images unchanged",
                description="Samples whose filepath changed keep their rows (their"
                " new paths are recorded); unticked, their images are embedded again",
                default=False,
            )
            if ctx.selected:
                inputs.bool(
                    "reembed_selected",
                    label=f"Embed again the {len(ctx.selected)} selected samples",
                    description="Their image files changed: their rows are replaced",
                    default=False,
                )
            add_orchestrator_hint(inputs)
        return types.Property(
            inputs, view=types.View(label="Update a clipbranches index")
        )

    def execute(self, ctx):
        try:
            if ctx.params.get("reembed_selected") and not ctx.selected:
                raise ValueError(
                    "Embed again the selected samples: no sample is selected; select"
                    " those whose images changed, then update"
                )
            info = yield from run_with_progress(
                ctx,
                update_index,
                ctx.dataset,
                ctx.params.get("index_key"),
                retry_failed=bool(ctx.params.get("retry_failed", False)),
                keep_moved=bool(ctx.params.get("keep_moved", False)),
                reembed=samples_behind(ctx.view, ctx.selected or ())
                if ctx.params.get("reembed_selected")
                else None,
            )
        except Exception as exc:  # shown as a notification, never a traceback
            yield from notify_error(ctx, exc)
            return
        if not ctx.delegated:
            fresh = info.freshness
            left = (
                f"; {fresh.n_unreadable} left out in all (see index info)"
                if fresh and fresh.n_unreadable
                else ""
            )
            read = "embedded again" if info.clip_model else "read again"
            said = info.changes.describe(read) or "it was up to date"
            yield ctx.ops.notify(
                f"Index '{info.key}' holds {counted(info.n_samples, 'sample')}:"
                f" {said}{left}",
                variant="success",
            )


def _samples_up_to_head(ctx) -> int | None:
    """The dataset's samples, counted up to the learned head's minimum (all the
    Code choice needs; the form is drawn again at every change), or None."""
    if ctx.dataset is None:
        return None
    return len(ctx.dataset.limit(fit_rows_needed("head")))


def _too_few_samples(n: int | None, code_method: str) -> str | None:
    """Why ``n`` samples (:func:`_samples_up_to_head`) are too few for
    ``code_method``, or None."""
    need = fit_rows_needed(code_method)
    if n is None or n >= need:
        return None
    return f"Code '{code_method}' needs at least {need} samples"


def _code_choice(n: int | None) -> tuple[str, str | None]:
    """The Code the form proposes for ``n`` samples (:func:`_samples_up_to_head`)
    and what it says: PCA where the dataset is too small for the learned head (the
    build failed only once run)."""
    head, pca = fit_rows_needed("head"), fit_rows_needed("pca")
    if n is None or n >= head:
        return "head", None
    if n >= pca:
        return "pca", (
            f"{counted(n, 'sample')}: the learned head needs at least {head}, PCA {pca}"
        )
    return "pca", (
        f"{counted(n, 'sample')}: an index needs at least {pca} (PCA; the learned"
        f" head {head}): add samples first"
    )
