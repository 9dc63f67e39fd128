"""What a face (panel, operator, service) tells its user about an exception."""

from __future__ import annotations

import logging
import sys

from fiftyone_clipbranches.sdk.errors import (
    APP_REBUILD,
    APP_SAME_MODEL,
    BY_IDS_OR_VECTOR,
    REBUILD,
    SAME_MODEL,
    ClipBranchesError,
    WeightsUnavailableError,
)

#: Errors whose message is meant for the user: a wrong argument or a state the
#: user can change (and missing CLIP weights, :func:`_weights_missing`). Anything
#: else is a bug, logged with its traceback.
USER_ERRORS = (ClipBranchesError, ValueError)

#: What the App's forms call the ways to give CLIP weights.
APP_WEIGHTS_HINT = (
    "Run the form again with Pretrained weights set to a local checkpoint file, or"
    " with a model whose weights are in this machine's cache"
)


#: How to keep the rows of samples whose files only moved (``update_index``).
KEEP_MOVED = "update with keep_moved=True (CLI: --keep-moved)"

#: Ways out that SDK errors name in Python's words, in the App's.
APP_PHRASES = {
    SAME_MODEL: APP_SAME_MODEL,
    KEEP_MOVED: "update the index with 'Files moved, images unchanged' ticked",
    REBUILD: APP_REBUILD,
    "and leave them out (skip_missing)": "and build with 'Leave out samples without"
    " a vector'",
}

#: Ways out that SDK errors name in Python's words, in the HTTP API's.
HTTP_PHRASES = {
    BY_IDS_OR_VECTOR: "search by sample_ids",
    "pass overwrite=True": 'pass "overwrite": true',
    "positives= replaces the tags; pass negatives= too (CLI: --negative), or neither"
    " to read both tags": '"positives" replaces the tags; send "negatives" too, or'
    " neither to read both tags",
}


def http_message(exc: BaseException) -> str:
    """The message of a user error ``exc`` in the HTTP API's words."""
    return http_phrased(str(exc))


def http_phrased(words: str) -> str:
    """``words`` of the SDK in the HTTP API's (its ways out)."""
    for sdk_words, http_words in HTTP_PHRASES.items():
        words = words.replace(sdk_words, http_words)
    return words


CLI_WEIGHTS_HINT = (
    "Pass --pretrained with a local checkpoint file (open_clip_pytorch_model.bin),"
    " choose a --model whose weights are in this machine's cache, or try it offline"
    " with --model demo (the small CLIP this package ships; it knows generated"
    " shapes, not photos)"
)


def user_message(
    exc: BaseException, logger: logging.Logger | None = None, *, in_app: bool = False
) -> str:
    """The message to show for ``exc``: its own for a user error, else
    ``"Unexpected error: ..."`` after logging it with its traceback. ``in_app``:
    for the App's forms, whose fields are not Python arguments."""
    weights = weights_message(exc, APP_WEIGHTS_HINT) if in_app else None
    if weights is not None:
        return weights
    if _weights_missing(exc) or isinstance(exc, USER_ERRORS):
        if not in_app:
            return str(exc)
        message = getattr(exc, "in_app", None) or str(exc)
        for sdk_words, app_words in APP_PHRASES.items():
            message = message.replace(sdk_words, app_words)
        return message
    (logger or logging.getLogger(__name__)).error(
        "clipbranches: unexpected error", exc_info=exc
    )
    return f"Unexpected error: {exc}"


def weights_message(exc: BaseException, hint: str) -> str | None:
    """For missing CLIP weights, why, then ``hint`` (a face's own inputs) instead
    of the Python ways to provide them; None for any other error."""
    if not _weights_missing(exc):
        return None
    reason = str(exc).split(" Provide them in one of these ways", 1)[0]
    return f"{reason} {hint}."


def _weights_missing(exc: BaseException) -> bool:
    """Whether ``exc`` is the SDK's ``WeightsUnavailableError`` or the embedding
    layer's (its module, which loads open_clip and torch, is imported here only if
    already loaded: then it raised it)."""
    if isinstance(exc, WeightsUnavailableError):
        return True
    weights = sys.modules.get("fiftyone_clipbranches.embed.weights")
    return weights is not None and isinstance(exc, weights.WeightsUnavailableError)


def weight_description(weight) -> str:
    """The negative weight's description in a form: what it is, and its value (a
    slider shows it only while it is moved)."""
    value = 1.0 if weight is None else float(weight)
    return f"Each negative counts this many times a positive: now {value:.1f}"


#: Longest query the faces repeat in their messages and history (CLIP reads 77
#: tokens of it anyway).
SHOWN_QUERY_CHARS = 80


def shortened(text: str) -> str:
    """``text``, cut to :data:`SHOWN_QUERY_CHARS` with an ellipsis."""
    if len(text) <= SHOWN_QUERY_CHARS:
        return text
    return text[: SHOWN_QUERY_CHARS - 1].rstrip() + "\u2026"


def short(value, width: int = 80) -> str:
    """``repr(value)``, cut to ``width`` characters (an array or a long list in a
    message)."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def counted(n: int, noun: str) -> str:
    """``"1 match"``, ``"2 matches"``: ``n`` and ``noun`` in its number."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}es" if noun.endswith(("ch", "sh", "s", "x")) else f"{n} {noun}s"


def counted_are(n: int, noun: str) -> str:
    """``"1 id is"``, ``"2 ids are"``."""
    return f"{counted(n, noun)} {'is' if n == 1 else 'are'}"


def unsearched_note(n: int) -> str:
    """``"; 3 samples added since the last build or update not searched (update the index)"``, or
    ``""`` for 0: a clause for a result's summary in the App."""
    if not n:
        return ""
    return (
        f"; {counted(n, 'sample')} added since the last build or update not searched"
        " (update the index)"
    )


def round_summary(stats: dict) -> str:
    """``"66 matches from 6 positives / 1 negative"``: a refinement round's answer
    from its ``stats``."""
    note = f" ({stats['note']})" if stats.get("note") else ""
    return (
        f"{counted(stats['n_results'], 'match')} from"
        f" {counted(stats['n_pos'], 'positive')} /"
        f" {counted(stats['n_neg'], 'negative')}{unreadable_note(stats)}{note}"
        + (f"; {recovered}" if (recovered := recovered_note(stats)) else "")
    )


def recovered_note(stats: dict) -> str:
    """``"first finished the writes of an interrupted refinement (score field
    'x')"``, or ``""``: rounds whose writer died, finished before this one."""
    fields = stats.get("recovered_fields") or []
    if not fields:
        return ""
    names = ", ".join(repr(f) for f in fields)
    return (
        f"first finished the writes of an interrupted refinement (score"
        f" {'field' if len(fields) == 1 else 'fields'} {names})"
    )


def unreadable_note(stats: dict) -> str:
    """``" (1 unreadable negative left out)"``, or ``""``: labelled negatives the
    index has no row for (their image could not be read at the build, or they were
    added after it)."""
    parts = [
        counted(n, noun)
        for n, noun in (
            (stats.get("n_unreadable_neg") or 0, "unreadable negative"),
            (stats.get("n_unindexed_neg") or 0, "negative added since the build"),
        )
        if n
    ]
    return f" ({' and '.join(parts)} left out)" if parts else ""


def result_repr(result, n_results: int, scores, fields: str) -> str:
    """A refinement result in one line: its class, size, score range and model,
    and ``fields`` (where the rest is); never its ids (there may be millions)."""
    span = (
        f", scores {float(scores[0]):.4g} .. {float(scores[-1]):.4g}"
        if len(scores)
        else ""
    )
    model = result.stats.get("model")
    model = f", model {model!r}" if model else ""
    return (
        f"{type(result).__name__}({n_results} results{span}{model}; {fields}, .stats)"
    )


def too_large_to_save(n: int, limit: int, score_field: str | None) -> str:
    """Why a result of ``n`` samples is not saved as a view (a saved view selects
    at most ``limit`` by id), and the ways out: a narrower answer, or the scores
    of ``score_field`` (None: none written) kept in a field of their own."""
    copy = (
        f"dataset.clone_sample_field({score_field!r}, 'my_result')"
        if score_field
        else "refine with a score field, then dataset.clone_sample_field(that"
        " field, 'my_result')"
    )
    return (
        f"the result holds {n:,} samples, more than the {limit:,} a saved view can"
        " select by id: refine further (more negatives) where the answer should be"
        f" narrower; to keep an answer this large, copy its scores ({copy}) and"
        " save dataset.exists('my_result').sort_by('my_result', reverse=True) as"
        " a view"
    )
