"""Operator: what to label next after a refinement (``sdk.next_to_label``, the
panel's Look further): the samples nearest the positives that are neither
labelled nor in the result, the samples holding the refinement's score field;
within the App's view (``sdk.scope.ctx_scope``)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import (
    ICON,
    add_index_choice,
    add_k_input,
    add_tag_inputs,
    error_result,
    form_tags,
)
from fiftyone_clipbranches.sdk.next_to_label import next_to_label, refined_ids
from fiftyone_clipbranches.sdk.request import shown_k
from fiftyone_clipbranches.sdk.scope import (
    IN_VIEW,
    WITHIN_VIEW,
    ctx_scope,
    grid_view,
    left_view_note,
    show_result,
    shown_now,
)
from fiftyone_clipbranches.sdk.settings import DEFAULT_K, DEFAULT_SCORE_FIELD

#: The record of a page this operator showed: the ids of the pages before it,
#: at most ``MAX_SEEN``.
SEEN = "next_to_label_seen"
MAX_SEEN = 10_000


class NextToLabel(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="next_to_label",
            label="CLIP branches: what to label next",
            description="Show the samples nearest the positives that are neither"
            " labelled nor in the last refinement's result",
            icon=ICON,
            dynamic=True,
            risk_level=types.RiskLevel.LOW,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if add_index_choice(ctx, inputs) is None:
            return types.Property(inputs)
        add_tag_inputs(inputs)
        inputs.str(
            "score_field",
            label="Score field",
            description="the refinement's: the samples holding it, its result, are"
            " left out",
            default=DEFAULT_SCORE_FIELD,
        )
        add_k_input(inputs, "Samples (k)")
        if ctx_scope(ctx) is not ctx.dataset:
            inputs.view("scope", types.Notice(label=f"Looks {WITHIN_VIEW}"))
        return types.Property(inputs, view=types.View(label="What to label next"))

    def execute(self, ctx):
        p = ctx.params
        try:
            scope = ctx_scope(ctx)
            # run again while its page is shown: the next page, past every one
            # shown (the oldest forgotten past MAX_SEEN)
            seen = shown_now(ctx).get(SEEN)
            if seen is not None:
                seen = [*seen, *grid_view(ctx).values("id")][-MAX_SEEN:]
            view = next_to_label(
                scope,
                exclude=[
                    *refined_ids(
                        ctx.dataset, p.get("score_field") or DEFAULT_SCORE_FIELD
                    ),
                    *(seen or ()),
                ],
                k=shown_k(p.get("k", DEFAULT_K)),
                tags=form_tags(p),
                index_key=p.get("index_key"),
            )
        except Exception as exc:  # shown as a notification, never a traceback
            return error_result(ctx, exc)
        where = f" {IN_VIEW}" if scope is not ctx.dataset else ""
        nearest = "further from" if seen else "nearest"
        if not len(view):
            shown = ", in the result or shown" if seen else " or in the result"
            ctx.ops.notify(
                f"every sample{where} is labelled{shown}: refine again",
                variant="warning",
            )
            return {"n_results": 0}
        show_result(ctx, view, scope, **{SEEN: seen or []})
        ctx.ops.notify(
            f"{len(view)} samples {nearest} the positives{where}, neither"
            " labelled nor in the result: mark them, then refine (run it again for"
            " the next ones)" + left_view_note(ctx.view),
            variant="success",
        )
        return {"n_results": len(view)}
