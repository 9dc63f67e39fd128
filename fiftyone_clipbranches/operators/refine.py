"""Operator: one refinement round from the positive/negative sample tags of the
dataset, its matches within the App's view (``sdk.scope.ctx_scope``, as the
panel's), on the clipbranches service when the plugin secrets name one
(``sdk.remote``)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import (
    ICON,
    add_index_choice,
    add_tag_inputs,
    error_result,
    form_tags,
)
from fiftyone_clipbranches.sdk.labels import count_both, count_tagged
from fiftyone_clipbranches.sdk.messages import (
    counted,
    counted_are,
    round_summary,
    unsearched_note,
    weight_description,
)
from fiftyone_clipbranches.sdk.models import (
    DEFAULT_MODEL,
    MODELS,
    get_model,
    panel_models,
    random_negatives_description,
)
from fiftyone_clipbranches.sdk.remote import refine_here_or_remote
from fiftyone_clipbranches.sdk.request import RefineRequest
from fiftyone_clipbranches.sdk.round_history import RoundHistory
from fiftyone_clipbranches.sdk.scope import (
    WITHIN_VIEW,
    ctx_scope,
    left_view_note,
    show_result,
)
from fiftyone_clipbranches.sdk.settings import DEFAULT_SCORE_FIELD
from fiftyone_clipbranches.sdk.views import replaced_view_size


def add_model_inputs(ctx, inputs) -> None:
    """Model choice, its training knobs and the inputs the chosen model needs."""
    models = types.DropdownView()
    offered = panel_models()
    for spec in offered.values():
        models.add_choice(spec.name, label=spec.label, description=spec.purpose)
    inputs.enum(
        "model", list(offered), label="Model", default=DEFAULT_MODEL, view=models
    )
    inputs.int(
        "random_negatives",
        label="Random negatives",
        description=random_negatives_description(),
        min=0,
        max=100_000,
    )
    inputs.float(
        "negative_weight",
        default=1.0,
        min=1.0,
        max=100.0,
        description=weight_description(ctx.params.get("negative_weight")),
        view=types.SliderView(
            label="Negative weight",
            label_position="top",
            value_precision=1,
            view_multiple_of=0.5,
            value_label_display="auto",  # a bubble always shown covers the label
        ),
    )
    chosen = ctx.params.get("model")
    for extra in get_model(chosen if chosen in MODELS else DEFAULT_MODEL).inputs:
        inputs.str(
            extra.name,
            label=extra.label,
            description=extra.description,
            required=True,
        )


def summary(stats: dict) -> str:
    return (
        f"{round_summary(stats)} ({stats['model']}, train {stats['train_ms']:.0f} ms,"
        f" query {stats['query_ms']:.0f} ms)"
        + unsearched_note(int(stats.get("n_unindexed") or 0))
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
        add_tag_inputs(inputs)
        pos, neg = form_tags(ctx.params)
        counts = count_tagged(ctx.dataset, (pos, neg))
        scope = ctx_scope(ctx)
        where = f"; matches {WITHIN_VIEW}" if scope is not ctx.dataset else ""
        inputs.view(
            "counts",
            types.Notice(
                label=f"{counts[pos]} positives, {counts[neg]} negatives in the"
                f" dataset{where}"
            ),
        )
        both = count_both(ctx.dataset, (pos, neg)) if pos != neg else 0
        if pos == neg:
            inputs.view(
                "same_tags",
                types.Warning(label="The positive and negative tags must differ"),
            )
        if both:
            inputs.view(
                "conflicts",
                types.Warning(
                    label=f"{counted_are(both, 'sample')} tagged both '{pos}' and"
                    f" '{neg}': the refinement stops there; give each one label"
                    " first (the panel's Mark positive / Mark negative)"
                ),
            )
        add_model_inputs(ctx, inputs)
        inputs.str("score_field", label="Score field", default=DEFAULT_SCORE_FIELD)
        view_prop = inputs.str("saved_view", label="Also save as view (optional)")
        name = _view_name(ctx)
        try:
            size = replaced_view_size(ctx.dataset, name)
        except ValueError as e:  # the user's view, a clashing name, no letter
            size = None
            taken = f"'{name}' is a saved view of yours: enter another name"
            inputs.view(
                "view_taken",
                types.Warning(
                    label=taken if ctx.dataset.has_saved_view(name) else str(e)
                ),
            )
            view_prop.invalid, view_prop.error_message = True, "enter another name"
        if size is not None and not ctx.params.get("replace_view"):
            # Execute waits for a choice: tick Replace, or another name
            view_prop.invalid = True
            view_prop.error_message = f"'{name}' exists: tick Replace, or enter another"
        if size is not None:
            inputs.bool(
                "replace_view",
                label=f"Replace the saved view '{name}'",
                description=f"'{name}' holds {counted(size, 'sample')} now; unticked,"
                " enter another name",
                default=False,
            )
        return types.Property(inputs, view=types.View(label="Refine"))

    def execute(self, ctx):
        p = ctx.params
        name = _view_name(ctx)
        try:
            replaceable = replaced_view_size(ctx.dataset, name) is not None
        except ValueError:  # refused, in its words, by the save below
            replaceable = False
        if replaceable and not p.get("replace_view"):
            return error_result(
                ctx,
                ValueError(
                    f"the saved view '{name}' exists: tick Replace the saved view"
                    f" '{name}', or enter another name in Also save as view"
                ),
            )
        scope = ctx_scope(ctx)
        try:
            result = refine_here_or_remote(
                scope,
                RefineRequest.from_json(p),
                score_field=p.get("score_field") or DEFAULT_SCORE_FIELD,
                saved_view=name or None,
                secrets=ctx.secrets,
            )
        except Exception as exc:  # shown as a notification, never a traceback
            return error_result(ctx, exc)
        show_result(ctx, result.view, scope)
        RoundHistory(ctx).append(
            "refine", **result.stats, in_view=scope is not ctx.dataset
        )
        saved = f"; saved as view '{name}'" if name else ""
        ctx.ops.notify(
            summary(result.stats) + saved + left_view_note(ctx.view), variant="success"
        )
        return result.stats


def _view_name(ctx) -> str:
    """The name typed in "Also save as view" (stripped; empty: none)."""
    return str(ctx.params.get("saved_view") or "").strip()
