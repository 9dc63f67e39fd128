"""Operator: one refinement round from the positive/negative sample tags.

:func:`refine_in_context` is the one place the plugin (this operator and the
panel) chooses where a refinement runs: on the clipbranches service when the plugin
secret ``CLIPBRANCHES_SERVICE_URL`` is set, else in this process.
"""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types
import numpy as np

from fiftyone_clipbranches.operators.common import (
    ICON,
    add_index_choice,
    notify_error,
)
from fiftyone_clipbranches.sdk import RefineResult, apply_refine_result, refine
from fiftyone_clipbranches.sdk.models import MODEL_LABELS
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_NEGATIVE_TAG,
    DEFAULT_POSITIVE_TAG,
    DEFAULT_RANDOM_NEGATIVES,
    DEFAULT_SCORE_FIELD,
    MODEL_NAMES,
    QUERY_MODELS,
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
        description="Unlabelled samples used as negatives (at most 90% of them)",
        default=DEFAULT_RANDOM_NEGATIVES["branches"],
        min=0,
        max=2000,
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


def refine_in_context(
    ctx,
    *,
    tags: tuple[str, str],
    model: str,
    random_negatives: int,
    negative_weight: float,
    score_field: str | None,
    index_key: str,
    saved_view: str | None = None,
    query: str | None = None,
) -> RefineResult:
    """Refine from the tags of ``ctx.dataset``, remotely when a service is set.

    With the secrets ``CLIPBRANCHES_SERVICE_URL`` (and ``..._TOKEN``) set, the
    service trains and queries and this process only writes the returned scores
    and views (:func:`sdk.apply_refine_result`); otherwise :func:`sdk.refine`.
    Both return the same ids, scores and stats keys. ``query`` is the text search
    the labels refine (the ``"ball"`` model needs it).
    """
    from fiftyone_clipbranches.service.client import service_settings

    if model in QUERY_MODELS and not query:
        raise ValueError(
            f"the {MODEL_LABELS[model]} model refines a text search: enter the text"
            " query that was searched"
        )
    remote = service_settings(ctx.secrets)
    if remote is None:
        return refine(
            ctx.dataset,
            tags=tags,
            model=model,
            random_negatives=random_negatives,
            negative_weight=negative_weight,
            score_field=score_field,
            saved_view=saved_view,
            index_key=index_key,
            query=query,
        )
    from fiftyone_clipbranches.service.client import remote_refine

    url, token = remote
    ds = ctx.dataset._root_dataset
    answer = remote_refine(
        ds.name,
        positive_tag=tags[0],
        negative_tag=tags[1],
        model=model,
        random_negatives=random_negatives,
        negative_weight=negative_weight,
        index_key=index_key,
        url=url,
        token=token,
        query=query,
    )
    scores = np.asarray(answer.scores, dtype=np.float64)
    view = apply_refine_result(ds, answer.ids, scores, score_field, saved_view)
    return RefineResult(view, answer.ids, scores, _remote_stats(answer, url))


def _remote_stats(answer, url: str) -> dict:
    """The service's stats under the names of ``sdk.refine``'s stats."""
    s, t = answer.stats, answer.timings

    def ms(key: str) -> float:
        return 1e3 * float(t.get(key) or 0.0)

    return {
        "model": s.get("model"),
        "label_source": s.get("label_source"),
        "n_pos": s.get("n_positives"),
        "n_neg": s.get("n_negatives"),
        "n_random_neg": s.get("n_random_negatives"),
        "n_neighbour_pos": s.get("n_neighbour_positives", 0),
        "n_results": answer.total,
        "n_index": s.get("n_index"),
        "n_unindexed": s.get("n_unindexed", 0),
        "train_ms": ms("train_s"),
        "query_ms": ms("query_s"),
        "total_ms": ms("total_s"),
        "service_url": url,
    }


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
        inputs.str(
            "query",
            label="Text query the labels refine",
            description="Needed by the query ball model: the text that was searched",
        )
        inputs.str("score_field", label="Score field", default=DEFAULT_SCORE_FIELD)
        inputs.str("saved_view", label="Also save as view (optional)")
        return types.Property(inputs, view=types.View(label="Refine"))

    def execute(self, ctx):
        p = ctx.params
        try:
            result = refine_in_context(
                ctx,
                tags=(
                    p.get("positive_tag") or DEFAULT_POSITIVE_TAG,
                    p.get("negative_tag") or DEFAULT_NEGATIVE_TAG,
                ),
                model=p.get("model", "branches"),
                random_negatives=int(
                    p.get("random_negatives", DEFAULT_RANDOM_NEGATIVES["branches"])
                ),
                negative_weight=float(p.get("negative_weight", 1.0)),
                score_field=p.get("score_field") or DEFAULT_SCORE_FIELD,
                saved_view=p.get("saved_view") or None,
                index_key=p.get("index_key"),
                query=(p.get("query") or "").strip() or None,
            )
        except Exception as exc:  # shown as a notification, never a traceback
            notify_error(ctx, exc)
            return {"error": str(exc)}
        ctx.ops.set_view(view=result.view)
        ctx.ops.notify(summary(result.stats), variant="success")
        return result.stats
