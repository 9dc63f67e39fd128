"""Operator: one refinement round from the positive/negative sample tags."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import (
    ICON,
    add_index_choice,
    notify_error,
)
from fiftyone_clipbranches.sdk import refine
from fiftyone_clipbranches.sdk.models import MODEL_LABELS
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_NEGATIVE_TAG,
    DEFAULT_POSITIVE_TAG,
    DEFAULT_SCORE_FIELD,
    MODEL_NAMES,
)


def add_model_inputs(inputs) -> None:
    """Model choice and training knobs (shared with the panel's defaults)."""
    models = types.DropdownView()
    for name in MODEL_NAMES:
        models.add_choice(name, label=MODEL_LABELS[name])
    inputs.enum(
        "model", list(MODEL_NAMES), label="Model", default="branches", view=models
    )
    inputs.int(
        "random_negatives",
        label="Random negatives",
        default=500,
        min=0,
        max=1000,
        view=types.SliderView(),
    )
    inputs.float(
        "negative_weight",
        label="Negative weight",
        default=1.0,
        min=1.0,
        max=100.0,
        view=types.SliderView(),
    )


def summary(stats: dict) -> str:
    return (
        f"{stats['n_results']} matches from {stats['n_pos']} positives / "
        f"{stats['n_neg']} negatives ({stats['model']}, train {stats['train_ms']:.0f} ms,"
        f" query {stats['query_ms']:.0f} ms)"
    )


class RefineOperator(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="refine",
            label="CLIP branches: refine",
            description="Train on the tagged samples and show every match",
            icon=ICON,
            dynamic=True,
            risk_level=types.RiskLevel.LOW,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if add_index_choice(ctx, inputs) is None:
            return types.Property(inputs)
        inputs.str("positive_tag", label="Positive tag", default=DEFAULT_POSITIVE_TAG)
        inputs.str("negative_tag", label="Negative tag", default=DEFAULT_NEGATIVE_TAG)
        pos = ctx.params.get("positive_tag") or DEFAULT_POSITIVE_TAG
        neg = ctx.params.get("negative_tag") or DEFAULT_NEGATIVE_TAG
        counts = ctx.dataset.count_sample_tags()
        inputs.view(
            "counts",
            types.Notice(
                label=f"{counts.get(pos, 0)} positives, {counts.get(neg, 0)} negatives"
            ),
        )
        add_model_inputs(inputs)
        inputs.str("score_field", label="Score field", default=DEFAULT_SCORE_FIELD)
        inputs.str("saved_view", label="Also save as view (optional)")
        return types.Property(inputs, view=types.View(label="Refine"))

    def execute(self, ctx):
        p = ctx.params
        try:
            result = refine(
                ctx.dataset,
                tags=(
                    p.get("positive_tag") or DEFAULT_POSITIVE_TAG,
                    p.get("negative_tag") or DEFAULT_NEGATIVE_TAG,
                ),
                model=p.get("model", "branches"),
                random_negatives=int(p.get("random_negatives", 500)),
                negative_weight=float(p.get("negative_weight", 1.0)),
                score_field=p.get("score_field") or DEFAULT_SCORE_FIELD,
                saved_view=p.get("saved_view") or None,
                index_key=p.get("index_key"),
            )
        except Exception as exc:  # shown as a notification, never a traceback
            notify_error(ctx, exc)
            return {"error": str(exc)}
        ctx.ops.set_view(view=result.view)
        ctx.ops.notify(summary(result.stats), variant="success")
        return result.stats
