"""Operator: save the current view (e.g. refinement results) as a saved view."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import ICON, error_result
from fiftyone_clipbranches.sdk import save_view
from fiftyone_clipbranches.sdk.views import (
    check_view_name,
    refuse_every_sample,
    saved_view_owner,
)


class SaveResultsView(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="save_results_view",
            label="CLIP branches: save results as view",
            description="Save the results shown in the grid (the current view), in"
            " their order, as a saved view",
            icon=ICON,
            dynamic=True,
            risk_level=types.RiskLevel.LOW,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        prop = inputs.str("name", label="View name", required=True)
        inputs.bool("overwrite", label="Overwrite an existing view", default=False)
        name = (ctx.params.get("name") or "").strip()
        try:
            owner = saved_view_owner(ctx.dataset, name) if name else None
        except ValueError as e:  # a clashing slug, or a name of no letter or digit
            prop.invalid, prop.error_message = True, str(e)
            owner = None
        overwrite = bool(ctx.params.get("overwrite", False))
        if owner is not None and not overwrite:
            prop.invalid = True
            prop.error_message = (
                f"A saved view named '{name}' exists"
                + (", saved by you, not by clipbranches" if owner == "user" else "")
                + ": tick Overwrite to replace it"
            )
        elif owner == "user":
            inputs.view(
                "replaces_yours",
                types.Warning(
                    label=f"This replaces your saved view '{name}' (not saved by"
                    " clipbranches): its stages and description are lost"
                ),
            )
        return types.Property(inputs, view=types.View(label="Save results as a view"))

    def execute(self, ctx):
        p = ctx.params
        try:
            refuse_every_sample(ctx.view, ctx.dataset)
            check_view_name(p.get("name") or "")
            replaced = saved_view_owner(ctx.dataset, p["name"]) is not None
            name = save_view(
                ctx.dataset,
                p.get("name") or "",
                ctx.view,
                overwrite=bool(p.get("overwrite", False)),
            )
        except Exception as exc:  # shown as a notification, never a traceback
            return error_result(ctx, exc)
        # by name the App would look the view up in its stale list of saved views
        ctx.ops.reload_dataset()
        ctx.ops.set_view(view=ctx.dataset.load_saved_view(name))
        saved = "Replaced saved view" if replaced else "Saved view"
        ctx.ops.notify(f"{saved} '{name}' ({len(ctx.view)} samples)", variant="success")
        return {"name": name}
