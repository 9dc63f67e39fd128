"""Operator: compute CLIP embeddings into a VectorField."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import (
    RANDOM_WEIGHTS_NOTE,
    SHIPPED_MODEL_HINT,
    add_orchestrator_hint,
    form_weights,
    long_running_config,
    notify_error,
    run_with_progress,
)
from fiftyone_clipbranches.sdk import compute_embeddings
from fiftyone_clipbranches.sdk.clip_names import SHIPPED_MODEL
from fiftyone_clipbranches.sdk.errors import MissingEmbeddingsError
from fiftyone_clipbranches.sdk.identity import field_model_identity
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    DEFAULT_EMBEDDINGS_FIELD,
)


class ComputeEmbeddings(foo.Operator):
    @property
    def config(self):
        return long_running_config(
            "compute_embeddings",
            "CLIP branches: compute embeddings",
            "Embed the images of the dataset, the current view or the selection",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Embed")
        inputs.str(
            "field",
            label="Embeddings field",
            default=DEFAULT_EMBEDDINGS_FIELD,
            required=True,
            description="VectorField receiving one vector per sample (512-d for ViT-B-32)",
        )
        field = ctx.params.get("field") or DEFAULT_EMBEDDINGS_FIELD
        recorded = field_model_identity(ctx.dataset, field).identity
        records = (
            f" ('{field}' holds vectors of this model: another one is refused)"
            if recorded
            else ""
        )
        inputs.str(
            "model",
            label="CLIP model",
            default=recorded["name"] if recorded else DEFAULT_CLIP_MODEL,
            required=True,
            description=SHIPPED_MODEL_HINT + records,
        )
        inputs.str(
            "pretrained",
            label="Pretrained weights",
            default=(recorded.get("pretrained") or "")
            if recorded
            else DEFAULT_CLIP_PRETRAINED,
            description="open_clip tag or checkpoint path; empty: the shipped"
            f" weights of '{SHIPPED_MODEL}', random weights for any other model",
        )
        inputs.int("batch_size", label="Batch size", default=32, min=1)
        inputs.bool(
            "skip_existing", label="Skip samples that have a vector", default=True
        )
        add_orchestrator_hint(inputs)
        return types.Property(inputs, view=types.View(label="Compute CLIP embeddings"))

    def execute(self, ctx):
        p = ctx.params
        try:
            model = p.get("model") or DEFAULT_CLIP_MODEL
            pretrained = form_weights(p)
            result = yield from run_with_progress(
                ctx,
                compute_embeddings,
                ctx.target_view(),
                p.get("field", DEFAULT_EMBEDDINGS_FIELD),
                model=model,
                pretrained=pretrained,
                batch_size=int(p.get("batch_size", 32)),
                skip_existing=bool(p.get("skip_existing", True)),
            )
            if result["n_failed"] and not result["n_embedded"]:
                # nothing embedded is an error (a delegated run was marked done)
                example = next(iter(result["failed"].values()), "")
                raise MissingEmbeddingsError(
                    f"none of the {result['n_failed']} images to embed could be read"
                    + (f" (e.g. {example})" if example else "")
                    + ": check that their files are there and readable"
                )
        except Exception as exc:  # shown as a notification, never a traceback
            yield from notify_error(ctx, exc)
            return
        if not ctx.delegated:
            random = pretrained is None and model != SHIPPED_MODEL
            yield ctx.ops.notify(
                f"Embedded {result['n_embedded']} samples into '{result['field']}' "
                f"({result['n_failed']} failed, {result['n_skipped']} skipped)"
                + (RANDOM_WEIGHTS_NOTE if random and result["n_embedded"] else ""),
                variant="success" if not (result["n_failed"] or random) else "warning",
            )
            yield ctx.ops.reload_dataset()
