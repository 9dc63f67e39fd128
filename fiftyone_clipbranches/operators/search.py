"""Operator: nearest-neighbour search by text or by the selected samples, within
the App's view (``sdk.scope.ctx_scope``, as the panel's)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import (
    ICON,
    add_index_choice,
    add_k_input,
    error_result,
)
from fiftyone_clipbranches.sdk import search, unsearched_count
from fiftyone_clipbranches.sdk.messages import counted, shortened, unsearched_note
from fiftyone_clipbranches.sdk.request import shown_k
from fiftyone_clipbranches.sdk.round_history import RoundHistory
from fiftyone_clipbranches.sdk.scope import (
    IN_VIEW,
    WITHIN_VIEW,
    ctx_scope,
    left_view_note,
    samples_behind,
    show_result,
)
from fiftyone_clipbranches.sdk.settings import DEFAULT_K


class SearchIndex(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="search",
            label="CLIP branches: search",
            description="Show the k samples nearest to a text or to the selected samples",
            icon=ICON,
            dynamic=True,
            risk_level=types.RiskLevel.LOW,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if add_index_choice(ctx, inputs) is None:
            return types.Property(inputs)
        default = "selection" if ctx.selected else "text"
        kind = types.RadioGroup()
        kind.add_choice("text", label="Text")
        kind.add_choice("selection", label=f"Selected samples ({len(ctx.selected)})")
        inputs.enum("query_type", ["text", "selection"], default=default, view=kind)
        if ctx.params.get("query_type", default) == "text":
            inputs.str("text", label="Query", required=True)
        add_k_input(inputs, "Results (k)")
        if ctx_scope(ctx) is not ctx.dataset:
            inputs.view(
                "scope",
                types.Notice(label=f"Searches {WITHIN_VIEW}"),
            )
        return types.Property(inputs, view=types.View(label="Search"))

    def execute(self, ctx):
        p = ctx.params
        query_type = p.get("query_type") or ("selection" if ctx.selected else "text")
        try:
            if query_type == "selection":
                query = {"sample_ids": samples_behind(ctx.view, ctx.selected) or None}
                if query["sample_ids"] is None:
                    raise ValueError("select samples in the grid to search by example")
                what = counted(len(query["sample_ids"]), "selected sample")
            else:
                query = {"text": p.get("text")}
                what = f"'{shortened(str(query['text']))}'"
            scope = ctx_scope(ctx)
            k = shown_k(p.get("k", DEFAULT_K))
            view = search(
                scope,
                k=k,
                index_key=p.get("index_key"),
                **query,
            )
            unsearched = unsearched_count(ctx.dataset, p.get("index_key"))
        except Exception as exc:  # shown as a notification, never a traceback
            return error_result(ctx, exc)
        show_result(ctx, view, scope)
        where = f" {IN_VIEW}" if scope is not ctx.dataset else ""
        RoundHistory(ctx).append(
            "search",
            query=f"{what}{where}",
            k=k,
            index_key=p.get("index_key"),
        )
        ctx.ops.notify(
            f"{len(view)} nearest samples to {what}{where}"
            + left_view_note(ctx.view)
            + unsearched_note(unsearched),
            variant="success",
        )
        return {"n_results": len(view)}
