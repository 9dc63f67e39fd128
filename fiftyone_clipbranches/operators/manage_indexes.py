"""Operators: inspect, rename and delete indexes."""

from __future__ import annotations

from pathlib import Path

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches.operators.common import (
    ICON,
    add_index_choice,
    add_new_key_input,
    error_result,
)
from fiftyone_clipbranches.sdk import delete_index, index_info, rename_index


def info_dict(info) -> dict:
    fresh = info.freshness
    return {
        "key": info.key,
        "n_samples": info.n_samples,
        "code_dims": info.code_dims,
        "code_method": info.code_method or "precomputed codes",
        "embeddings_field": info.embeddings_field or "",
        "clip_model": _clip_model_text(info.clip_model),
        "built_at": info.built_at or "",
        "n_added": fresh.n_added if fresh else None,
        "n_deleted": fresh.n_deleted if fresh else None,
        "n_moved": fresh.n_moved if fresh else None,
        "unreadable": _unreadable_text(fresh),
        "n_shards": info.n_shards,
        "index_dir": info.index_dir,
    }


def _unreadable_text(fresh) -> str:
    """``"2 (a.jpg: cannot identify image file, ...)"``: samples left out of the
    index because their image could not be read, with a few of them."""
    if not fresh or not fresh.n_unreadable:
        return "0"
    shown = [f"{sid}: {why}" for sid, why in list((fresh.unreadable or {}).items())[:3]]
    more = ", ..." if fresh.n_unreadable > len(shown) else ""
    return f"{fresh.n_unreadable} ({'; '.join(shown)}{more})"


def _clip_model_text(clip_model: dict | None) -> str:
    """``"ViT-B-32 / laion2b_s34b_b79k"`` (a checkpoint by its file name)."""
    if not clip_model:
        return "unknown (no text search)"
    weights = clip_model.get("pretrained")
    if isinstance(weights, str):
        weights = Path(weights).name
    return f"{clip_model.get('name')} / {weights or 'random weights'}"


class IndexInfoOperator(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="index_info",
            label="CLIP branches: index info",
            description="Samples, codes, CLIP model and freshness of an index",
            icon=ICON,
            dynamic=True,
            risk_level=types.RiskLevel.LOW,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        add_index_choice(ctx, inputs)
        return types.Property(inputs, view=types.View(label="Index info"))

    def execute(self, ctx):
        try:
            return info_dict(index_info(ctx.dataset, ctx.params.get("index_key")))
        except Exception as exc:  # shown as a notification, never a traceback
            return error_result(ctx, exc, keep=False)  # resolve_output shows it

    def resolve_output(self, ctx):
        outputs = types.Object()
        if "error" in (ctx.results or {}):
            outputs.str("error", label="Error")
            return types.Property(outputs)
        labels = {
            "key": "Key",
            "n_samples": "Samples",
            "code_dims": "Bytes per code",
            "code_method": "Code method",
            "embeddings_field": "Embeddings field",
            "clip_model": "CLIP model",
            "built_at": "Built or updated at (UTC)",
            "n_added": "Samples added since (not searched)",
            "n_deleted": "Samples deleted since",
            "n_moved": "Filepath changed since (searched as the old image until"
            " you update the index)",
            "unreadable": "Left out: image unreadable (update index, retrying"
            " them), or no vector (compute it, then update index)",
            "n_shards": "Shards",
            "index_dir": "Files",
        }
        for name, label in labels.items():
            outputs.str(name, label=label)
        return types.Property(outputs, view=types.View(label="Index info"))


class RenameIndex(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="rename_index",
            label="CLIP branches: rename index",
            description="Give an index another key (its files stay)",
            icon=ICON,
            dynamic=True,
            risk_level=types.RiskLevel.MEDIUM,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if add_index_choice(ctx, inputs) is not None:
            add_new_key_input(ctx, inputs, name="new_key", default="", label="New key")
        return types.Property(inputs, view=types.View(label="Rename index"))

    def execute(self, ctx):
        key, new_key = ctx.params.get("index_key"), ctx.params.get("new_key")
        try:
            rename_index(ctx.dataset, key, new_key)
        except Exception as exc:  # shown as a notification, never a traceback
            return error_result(ctx, exc)
        ctx.ops.notify(f"Index '{key}' renamed to '{new_key}'", variant="success")
        return {"index_key": new_key}


class DeleteIndex(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="delete_index",
            label="CLIP branches: delete index",
            description="Delete an index: its run and its files",
            icon=ICON,
            dynamic=True,
            risk_level=types.RiskLevel.HIGH,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        key = add_index_choice(ctx, inputs, preselect=False)  # chosen, never assumed
        if key is not None:
            inputs.view(
                "warning",
                types.Warning(label=f"Index '{key}' and its files will be deleted"),
            )
        return types.Property(inputs, view=types.View(label="Delete index"))

    def execute(self, ctx):
        key = ctx.params.get("index_key")
        try:
            delete_index(ctx.dataset, key)
        except Exception as exc:  # shown as a notification, never a traceback
            return error_result(ctx, exc)
        ctx.ops.notify(f"Index '{key}' deleted", variant="success")
        return {"deleted": key}
