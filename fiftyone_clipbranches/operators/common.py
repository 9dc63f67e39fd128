"""Form pieces, error reporting and progress plumbing shared by the operators."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

import fiftyone.operators.types as types

from fiftyone_clipbranches.sdk import list_indexes
from fiftyone_clipbranches.sdk.clip_names import SHIPPED_MODEL, UNSET
from fiftyone_clipbranches.sdk.errors import APP_OVERWRITE
from fiftyone_clipbranches.sdk.messages import user_message
from fiftyone_clipbranches.sdk.runs import key_taken
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_INDEX_KEY,
    DEFAULT_K,
    DEFAULT_NEGATIVE_TAG,
    DEFAULT_POSITIVE_TAG,
    MAX_K,
    default_index_key,
)

#: The forms' words for the small CLIP this package ships (``resolve_clip``).
SHIPPED_MODEL_HINT = (
    f"open_clip model name; '{SHIPPED_MODEL}' for the small CLIP this package ships"
    " (offline, leave the weights empty; it knows generated shapes, not photos)"
)

logger = logging.getLogger(__name__)


#: Said after work done with random CLIP weights (an empty weights field).
RANDOM_WEIGHTS_NOTE = (
    " with random CLIP weights: it knows no images (for tests); give trained"
    " weights in Pretrained weights for a useful one"
)


def add_tag_inputs(inputs) -> None:
    """The tags that label samples positive and negative (the panel's Mark)."""
    inputs.str("positive_tag", label="Positive tag", default=DEFAULT_POSITIVE_TAG)
    inputs.str("negative_tag", label="Negative tag", default=DEFAULT_NEGATIVE_TAG)


def add_k_input(inputs, label: str) -> None:
    """How many samples to show (1 to ``MAX_K``, what the App's grid holds)."""
    inputs.int(
        "k", label=label, description=f"1 to {MAX_K}", default=DEFAULT_K, min=1,
        max=MAX_K,
    )  # fmt: skip


def form_tags(params: dict) -> tuple[str, str]:
    """``(positive tag, negative tag)`` of a form (:func:`add_tag_inputs`)."""
    return (
        params.get("positive_tag") or DEFAULT_POSITIVE_TAG,
        params.get("negative_tag") or DEFAULT_NEGATIVE_TAG,
    )


def form_weights(params: dict):
    """The CLIP weights a form gives: empty for random weights (as the form says);
    left out (a call from Python without them) the SDK's default for the model,
    as ``compute_embeddings`` and ``build_index`` take it."""
    if "pretrained" not in params:
        return UNSET
    return params["pretrained"] or None


_ICON_FILE = Path(__file__).resolve().parent.parent / "assets" / "icon.svg"
#: Operator icon: the plugin's SVG when it ships one.
ICON = "/assets/icon.svg" if _ICON_FILE.is_file() else None


def long_running_config(name: str, label: str, description: str):
    """Config of an operator that may take minutes: a generator reporting
    progress, runnable immediately or delegated (delegated by default)."""
    import fiftyone.operators as foo

    return foo.OperatorConfig(
        name=name,
        label=label,
        description=description,
        icon=ICON,
        dynamic=True,
        execute_as_generator=True,
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=True,
        risk_level=types.RiskLevel.MEDIUM,
    )


ORCHESTRATOR_HINT = (
    "Delegated runs wait for an orchestrator: run `fiftyone delegated launch` "
    "(FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true on FiftyOne 1.22)"
)


SCHEDULING_OFF_HINT = (
    "Execute runs it now, in the App's server. To schedule it instead (Schedule is"
    " not available until then), start FiftyOne with"
    " FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true and run `fiftyone delegated launch`"
)


def add_orchestrator_hint(inputs) -> None:
    """Notice that a scheduled (delegated) run needs an orchestrator to start;
    nothing in FiftyOne says so and the run otherwise sits queued. Where this
    FiftyOne cannot schedule at all, how to make it able to."""
    import fiftyone as fo

    scheduling = getattr(fo.config, "allow_legacy_orchestrators", True)
    hint = ORCHESTRATOR_HINT if scheduling else SCHEDULING_OFF_HINT
    inputs.view("orchestrator_hint", types.Notice(label=hint))


def index_keys(ctx) -> list[str]:
    if ctx.dataset is None:
        return []
    return list_indexes(ctx.dataset)


def add_index_choice(
    ctx, inputs, name: str = "index_key", label: str = "Index", preselect=True
):
    """Dropdown of the dataset's indexes; returns the chosen key or None (with a
    warning in the form) when the dataset has none, or none is chosen yet
    (``preselect=False``: the user picks, as for a deletion)."""
    keys = index_keys(ctx)
    chosen = ctx.params.get(name)
    if chosen and chosen not in keys:  # deleted or renamed since (or since queued)
        others = f": its indexes are {', '.join(repr(k) for k in keys)}" if keys else ""
        gone = inputs.view(
            f"{name}_gone",
            types.Warning(
                label=f"Index '{chosen}' is not on this dataset",
                description="It was deleted or renamed since it was chosen (or since"
                " this operation was queued), or never built: choose another.",
            ),
        )
        gone.invalid = True
        gone.error_message = (
            f"index '{chosen}' is not on this dataset (deleted or renamed since it"
            f" was chosen or this operation was queued, or never built){others}"
        )
        keys = [*keys, chosen]  # refused by the warning, not as an "enum value"
    if not keys:
        warning = inputs.view(
            "no_index",
            types.Warning(
                label="No clipbranches index",
                description="Build one first with 'CLIP branches: build index'.",
            ),
        )
        warning.invalid = True  # nothing to run: Execute stays disabled
        warning.error_message = "this dataset has no clipbranches index"
        return None
    choices = types.DropdownView()
    for key in keys:
        choices.add_choice(key, label=key)
    default = default_index_key(keys) or keys[0]  # a form: one is preselected
    if not preselect:
        default = None
    inputs.enum(name, keys, label=label, default=default, required=True, view=choices)
    return ctx.params.get(name) or default


def add_new_key_input(
    ctx,
    inputs,
    name: str = "index_key",
    default=DEFAULT_INDEX_KEY,
    label: str = "Index key",
    replaceable: bool = False,
):
    """Text input for a new run key, flagged invalid when taken or malformed.
    ``replaceable``: the key of an existing index is offered to be built again in
    its place (a checkbox ``overwrite`` under the key; invalid until checked).

    Returns the key when valid, else None."""
    prop = inputs.str(name, label=label, default=default, required=True)
    key = ctx.params.get(name, default)
    problem = None
    if not key or not str(key).isidentifier():
        problem = "Use letters, digits and underscores, not starting with a digit"
    elif ctx.dataset is not None:
        problem = key_taken(ctx.dataset, key)
        if problem and replaceable and key in list_indexes(ctx.dataset):
            inputs.bool(
                "overwrite",
                label=APP_OVERWRITE,
                description=f"Index '{key}' exists: it answers until the new one"
                " is built, which then takes its key (the vectors already embedded"
                " are kept)",
                default=False,
            )
            problem = None if ctx.params.get("overwrite") else problem
    if problem:
        prop.invalid = True
        prop.error_message = problem
        return None
    return key


def notify_error(ctx, exc: Exception, *, keep: bool = True) -> list:
    """Show ``exc`` (``sdk.messages.user_message``: the message of a user error,
    else "Unexpected error: ..." with the traceback logged) as a notification and,
    with ``keep``, in the output dialog too, which stays until it is closed (a
    notification goes in seconds, and the form is gone). Returns the App messages,
    which generator operators must yield. Delegated runs re-raise so the operation
    is marked failed with the message."""
    return _show_error(ctx, exc, keep)[1]


def error_result(ctx, exc: Exception, *, keep: bool = True) -> dict:
    """:func:`notify_error`, then the operator's result for it: ``{"error":
    message}``, in the same (the App's) words."""
    return {"error": _show_error(ctx, exc, keep)[0]}


def _show_error(ctx, exc: Exception, keep: bool) -> tuple[str, list]:
    """``(message, App messages)`` of :func:`notify_error`."""
    message = user_message(exc, logger, in_app=True)
    if ctx.delegated:  # the operation is marked failed with the App's words
        if message == str(exc):
            raise exc
        raise ValueError(message) from exc
    sent = [ctx.ops.notify(message, variant="error")]
    if keep:
        outputs = types.Object()
        outputs.view("error", types.Error(label="It did not work", description=message))
        sent.append(ctx.ops.show_output(types.Property(outputs).to_json(), {}))
    return message, sent


def run_with_progress(ctx, fn, *args, **kwargs):
    """Generator running ``fn(*args, progress=callback, **kwargs)`` in a thread and
    forwarding its progress: as ``set_progress`` messages yielded to the App in
    immediate runs, through ``ctx.set_progress`` in delegated ones.

    The value of ``fn`` is the generator's return value (``yield from``)."""
    updates: queue.Queue = queue.Queue()
    outcome: dict = {}

    def progress(fraction, label):
        updates.put((float(fraction), str(label)))

    def work():
        try:
            outcome["value"] = fn(*args, progress=progress, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            updates.put(None)

    thread = threading.Thread(target=work, name="clipbranches-operator", daemon=True)
    thread.start()
    while True:
        item = updates.get()
        if item is None:
            break
        fraction, label = item
        if ctx.delegated:
            ctx.set_progress(progress=fraction, label=label)
        else:
            yield ctx.ops.set_progress(progress=fraction, label=label)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def vector_fields(ctx) -> list[str]:
    """Names of the dataset's VectorFields (candidate embeddings)."""
    import fiftyone as fo

    if ctx.dataset is None:
        return []
    schema = ctx.dataset.get_field_schema(ftype=fo.VectorField)
    return sorted(schema)
