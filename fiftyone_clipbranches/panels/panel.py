"""The relevance-feedback panel: search, mark, refine, save; round history."""

from __future__ import annotations

import contextlib
import logging
import threading

import fiftyone.operators as foo
import fiftyone.operators.types as types

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.panels import actions
from fiftyone_clipbranches.panels.constants import (
    DEFAULTS,
    MAX_RANDOM_NEGATIVES,
    PANEL_LABEL,
    PANEL_NAME,
    PREVIEW_RESULTS,
    SELECTION_STYLE,
)
from fiftyone_clipbranches.sdk.errors import ContradictoryLabelsError
from fiftyone_clipbranches.sdk.media import media_refusal
from fiftyone_clipbranches.sdk.messages import (
    counted,
    round_summary,
    shortened,
    unreadable_note,
    unsearched_note,
    user_message,
    weight_description,
)
from fiftyone_clipbranches.sdk.models import (
    DEFAULT_MODEL,
    get_model,
    panel_models,
    random_negatives_description,
)
from fiftyone_clipbranches.sdk.round_history import RoundHistory
from fiftyone_clipbranches.sdk.scope import (
    IN_VIEW,
    WITHIN_VIEW,
    fold_sidebar_filters,
    left_view_note,
)
from fiftyone_clipbranches.sdk.search import preload_index
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_INDEX_KEY,
    MAX_K,
    MAX_SELECTED_SAMPLES,
)
from fiftyone_clipbranches.sdk.views import replaced_view_size

logger = logging.getLogger(__name__)

HELP = """Search by text, by an image (a file path or URL) or by example. Select
results with the checkbox in a tile's top-left corner (alt-click the checkbox to
select it as negative), then **Mark positive** or **Mark negative**; turn on
**sample tags** in the sidebar to see the labels on the tiles. Then **Refine**: a
model trained on your labels returns *every* matching sample of the dataset,
scored. The *query ball* model refines the text query itself: your labels move the
query towards the matches (Rocchio) and tell how far from it the matches go."""


class RelevancePanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name=PANEL_NAME,
            label=PANEL_LABEL,
            icon="image_search",
            surfaces="grid",
            allow_multiple=False,
            help_markdown=HELP,
        )

    # ------------------------------------------------------------ lifecycle
    def on_load(self, ctx):
        state = ctx.panel.state
        init = {k: v for k, v in DEFAULTS.items() if state.get(k) is None}
        keys = sdk.list_indexes(ctx.dataset) if ctx.dataset is not None else []
        current = init.get("index_key", state.get("index_key"))
        if keys and current not in keys:
            init["index_key"] = keys[0]
        # a question or error of before (another tab, a reload) is not this one's
        init.update({k: None for k in ("confirm", "last_error") if state.get(k)})
        if state.get("showing") == "all" and actions.score_field_overwritten(ctx):
            init["showing"] = "refine"  # Show all offered again: it shows its own
            ctx.ops.notify(
                "The grid's view sorts by a score field that another round (another"
                " user's or process's) has written since: Show all shows your last"
                " result",
                variant="warning",
            )
        state.set(init)
        ctx.ops.set_sample_selection_style(**SELECTION_STYLE)
        if keys:  # the first search need not wait for the CLIP model to load
            preload_index(ctx.dataset, init.get("index_key", state.get("index_key")))

    def on_unload(self, ctx):
        ctx.ops.clear_sample_selection_style()

    def on_change_selected(self, ctx):
        # the render after this event counts the selection; the state changes only
        # when it must: the App (1.22) drops the grid's sidebar filters whenever a
        # panel's state changes, so selecting samples to search by kept none
        state = ctx.panel.state
        if state.get("error_shown_in_grid"):
            # the failed action put its samples in the grid, which cleared the
            # selection: the error it explains stays
            state.set("error_shown_in_grid", None)
        elif not ctx.selected and state.get("last_error") is not None:
            # an action that clears the selection (Mark) makes the App call this
            # with the state from before the action, its old error included
            state.set("last_error", None)

    def on_change_dataset(self, ctx):
        # a question, an error and a result of the other dataset
        ctx.panel.state.set(
            dict.fromkeys(
                ("confirm", "last_error", "showing", "last_stats", "further_shown")
            )
        )
        self.on_load(ctx)

    # -------------------------------------------------------------- actions
    def search(self, ctx):
        self._run(ctx, lambda opts: actions.run_search(ctx, opts))

    def mark_positive(self, ctx):
        self._run(ctx, lambda opts: actions.mark(ctx, opts, "positive"))

    def mark_negative(self, ctx):
        self._run(ctx, lambda opts: actions.mark(ctx, opts, "negative"))

    def reset_labels(self, ctx):
        """Asks first, naming how many labels of which tags go (render offers the
        choice)."""

        def ask(opts):
            self._ask_about(ctx, "reset_labels")
            ctx.panel.state.set("reset_counts", _label_counts(ctx, opts))

        self._run(ctx, ask)

    def _ask_about(self, ctx, action: str) -> None:
        """Put the question about ``action`` in the state; the App drops the
        sidebar's filters as the state changes, so they become view stages
        first."""
        fold_sidebar_filters(ctx)
        ctx.panel.state.set("confirm", action)

    def confirm(self, ctx):
        """The action :meth:`reset_labels` or :meth:`clear_history` asked about."""
        asked = ctx.panel.state.get("confirm")
        ctx.panel.state.set("confirm", None)
        if asked == "reset_labels":
            self._run(ctx, lambda opts: self._reset_as_asked(ctx, opts))
        elif asked == "replace_view":
            # the question named a view: a name typed since is asked about anew
            self.save_view(ctx, confirmed=ctx.panel.state.get("replace_name"))
        elif asked == "clear_history":
            self._run(ctx, lambda opts: RoundHistory(ctx).clear() or "history cleared")

    def _reset_as_asked(self, ctx, opts) -> str | None:
        """Remove the labels the question counted; asks again when another user
        (or process) labelled or unlabelled samples since it was asked."""
        now = _label_counts(ctx, opts)
        if now != ctx.panel.state.get("reset_counts"):
            self._ask_about(ctx, "reset_labels")
            ctx.panel.state.set("reset_counts", now)
            ctx.ops.notify(
                f"The labels are not those the question counted: there are now"
                f" {counted(now[1], 'positive')} and {counted(now[3], 'negative')}"
                f" (tags {now[0]}, {now[2]}); confirm again to remove them",
                variant="warning",
            )
            return None
        return actions.reset_labels(ctx, opts)

    def cancel(self, ctx):
        ctx.panel.state.set("confirm", None)

    def refine(self, ctx):
        def work(opts):
            stats = actions.run_refine(ctx, opts)
            ctx.panel.state.set("last_stats", stats)
            if "n_unindexed" in stats:  # counted by the round
                actions.keep_unsearched(ctx, opts["index_key"], stats["n_unindexed"])
            return round_summary(stats) + left_view_note(ctx.view)

        with _one_at_a_time(ctx) as first:
            if not first:  # a double click: the round running answers it
                ctx.ops.notify("A refinement of this panel is running", variant="info")
                return
            self._run(ctx, work)

    def show_all(self, ctx):
        self._run(ctx, lambda opts: actions.show_all(ctx, opts))

    def look_further(self, ctx):
        self._run(ctx, lambda opts: actions.look_further(ctx, opts))

    def save_view(self, ctx, confirmed: str | None = None):
        """Asks first when it would replace a saved view other than ``confirmed``
        (render offers the choice, naming the view and its size)."""

        def work(opts):
            name = (opts.get("view_name") or "").strip()
            size = replaced_view_size(ctx.dataset, opts.get("view_name") or "")
            if size is None or name == confirmed:
                return actions.save_results(ctx, opts)
            actions.view_to_save(ctx)  # a result too large is said before asking
            self._ask_about(ctx, "replace_view")
            ctx.panel.state.set("replace_name", name)
            ctx.panel.state.set("replace_size", size)
            return None

        self._run(ctx, work)

    def check_again(self, ctx):
        """Re-read the dataset's indexes (built, renamed or deleted by operators,
        which do not reach the panel); an error about the old ones is stale, and
        so is the line of a round on an index since rebuilt."""
        ctx.panel.state.set("last_error", None)
        ctx.panel.state.set("showing", None)
        self.on_load(ctx)
        key = ctx.panel.state.get("index_key")  # on_load chose one, if any
        if ctx.dataset is not None and key:
            try:
                actions.count_unsearched(ctx, key)  # samples added since: said
            except Exception as exc:  # no index, or unreadable: said at use
                logger.debug("clipbranches: not counted: %s", exc)

    def open_build_index(self, ctx):
        """The build operator's form (proposing a key no index has); the panel
        shows the index once it is built."""
        keys = set(sdk.list_indexes(ctx.dataset)) if ctx.dataset is not None else set()
        candidates = (
            DEFAULT_INDEX_KEY,
            *(f"{DEFAULT_INDEX_KEY}_{i}" for i in range(2, len(keys) + 3)),
        )
        ctx.prompt(
            f"{self.plugin_name}/build_index",
            params={"index_key": next(k for k in candidates if k not in keys)},
            on_success=self.check_again,
        )

    def open_update_index(self, ctx):
        """The update operator's form on the panel's index (it says how many
        samples are not searched yet); the panel reads the indexes again after."""
        ctx.prompt(
            f"{self.plugin_name}/update_index",
            params={"index_key": ctx.panel.state.get("index_key")},
            on_success=self.check_again,
        )

    def clear_history(self, ctx):
        """Asks first (render offers the choice)."""
        self._ask_about(ctx, "clear_history")

    def redraw(self, ctx):
        """Nothing but the render that follows (a setting the render shows)."""

    def _run(self, ctx, work) -> None:
        if ctx.panel.state.get("last_error"):
            # cleared before the work: its operations (a cleared selection) make
            # the App call the panel again, which must not see the old error
            ctx.panel.state.set("last_error", None)
            ctx.panel.state.set("error_shown_in_grid", None)
        try:
            message = work(actions.settings(ctx))
        except Exception as exc:  # never a traceback in the App
            error = user_message(exc, logger, in_app=True)
            # the state changes: the App would drop the sidebar's filters, and the
            # next search would look past them
            try:
                fold_sidebar_filters(ctx)
            except Exception:  # the error is what the user must see
                logger.debug("clipbranches: filters not kept", exc_info=True)
            ctx.panel.state.set("last_error", error)  # stays after the toast
            if isinstance(exc, ContradictoryLabelsError) and exc.ids:
                ctx.panel.state.set("error_shown_in_grid", True)
            ctx.ops.notify(error, variant="error")
            return
        if message:
            ctx.ops.notify(message[:1].upper() + message[1:], variant="success")

    def _ask(self, panel, question: str, yes: str) -> None:
        """``question`` with a button ``yes`` (:meth:`confirm`) and Cancel."""
        panel.view("confirm_question", types.Warning(label=question))
        choice = panel.h_stack("confirm_choice", align_x="left", gap=1)
        choice.btn("confirm", label=yes, on_click=self.confirm, variant="contained")
        choice.btn("cancel", label="Cancel", on_click=self.cancel)

    # --------------------------------------------------------------- render
    def render(self, ctx):
        opts = actions.settings(ctx)
        panel = types.Object()
        keys = sdk.list_indexes(ctx.dataset) if ctx.dataset is not None else []
        refused = media_refusal(ctx.dataset) if ctx.dataset is not None else None
        if refused:
            panel.view(
                "media", types.Error(label="Cannot be indexed", description=refused)
            )
            return types.Property(panel, view=types.GridView(orientation="vertical"))
        if not keys:
            panel.md(
                "No clipbranches index on this dataset yet: **Build index** opens the"
                " **CLIP branches: build index** operator, and the panel shows the"
                " index when it is built (a build scheduled for later: press **Check"
                " again** once it has run).",
                name="no_index",
            )
            panel.btn(
                "open_build_index", label="Build index", on_click=self.open_build_index
            )
            panel.btn("check_again", label="Check again", on_click=self.check_again)
            return types.Property(panel, view=types.GridView(orientation="vertical"))

        error = ctx.panel.state.get("last_error")
        if error:
            panel.view(
                "last_error", types.Error(label="Last action failed", description=error)
            )

        choices = types.DropdownView()
        for key in keys:
            choices.add_choice(key, label=key)
        # no default= on inputs: the state holds their values (on_load), and a
        # default would replace them when the page is reloaded
        panel.enum("index_key", keys, label="Index", view=choices)
        chosen_key = ctx.panel.state.get("index_key")
        if chosen_key is not None and chosen_key not in keys:
            panel.view(
                "index_gone",
                types.Warning(
                    label=f"Index '{chosen_key}' is no longer on this dataset (renamed"
                    " or deleted elsewhere): pick one, or press Check again"
                ),
            )
        index_actions = panel.h_stack("index_actions", align_x="left", gap=1)
        index_actions.btn(
            "update_index", label="Update index", on_click=self.open_update_index
        )
        index_actions.btn(
            "build_another", label="Build another index", on_click=self.open_build_index
        )
        # operators run from the App's browser (build, rename, delete) do not
        # reach the panel
        index_actions.btn("check_again", label="Check again", on_click=self.check_again)
        unsearched = ctx.panel.state.get("unsearched") or {}
        if unsearched.get("index_key") == chosen_key and unsearched.get("n"):
            panel.view(
                "unsearched",
                types.Notice(
                    label=f"{counted(unsearched['n'], 'sample')} not searched yet"
                    " (added since the index was built or updated, or given a"
                    " vector since): Update index adds them"
                ),
            )

        panel.str(
            "query",
            label="Text, or an image path or URL (empty: search by the selection)",
        )
        panel.int("k", label=f"Results (k, 1 to {MAX_K})", min=1, max=MAX_K)
        panel.btn("search", label="Search", on_click=self.search, variant="contained")
        if actions.search_scope(ctx) is not ctx.dataset:
            panel.md(
                f"*Searches and refinements look {WITHIN_VIEW} (a saved view, or"
                " the view bar's stages; the App drops the sidebar's filters when"
                " a field of this panel changes).*",
                name="scope",
            )

        n_pos, n_neg = actions.tag_counts(ctx, opts)
        n_alt = len(actions.alt_clicked(ctx))
        n_sel = len(ctx.selected)
        chosen = f"{n_sel} selected" + (f" ({n_alt} alt-clicked)" if n_alt else "")
        panel.md(
            f"**{n_pos}** positive (`{opts['positive_tag']}`), **{n_neg}** negative "
            f"(`{opts['negative_tag']}`), {chosen}; alt-click marks a negative",
            name="labels",
        )
        if opts["positive_tag"] == opts["negative_tag"]:
            panel.view(
                "same_tags",
                types.Warning(
                    label="The positive and negative tags must differ: change one"
                    " under Settings"
                ),
            )
        marks = panel.h_stack("marks", align_x="left", gap=1)
        marks.btn("mark_positive", label="Mark positive", on_click=self.mark_positive)
        marks.btn("mark_negative", label="Mark negative", on_click=self.mark_negative)
        marks.btn("reset_labels", label="Reset labels", on_click=self.reset_labels)
        asked = ctx.panel.state.get("confirm")
        if asked == "reset_labels":
            pos_tag, n_asked_pos, neg_tag, n_asked_neg = ctx.panel.state.get(
                "reset_counts"
            ) or [opts["positive_tag"], n_pos, opts["negative_tag"], n_neg]
            self._ask(
                panel,
                f"Remove the {n_asked_pos} positive and {n_asked_neg} negative labels"
                f" (tags `{pos_tag}`, `{neg_tag}`) from every sample of the dataset?",
                "Remove labels",
            )

        models = types.DropdownView()
        offered = panel_models()
        for spec in offered.values():
            label = spec.label + (" (default)" if spec.name == DEFAULT_MODEL else "")
            models.add_choice(spec.name, label=label, description=spec.purpose)
        panel.enum("model", list(offered), label="Model", view=models)
        panel.btn("refine", label="Refine", on_click=self.refine, variant="contained")

        stats = ctx.panel.state.get("last_stats")
        showing = ctx.panel.state.get("showing")
        if stats and showing in ("refine", "all"):  # not under a later search
            every = showing == "all"
            panel.md(_stats_markdown(stats, every), name="last_round")
            if stats["n_results"] > PREVIEW_RESULTS and not every:
                panel.btn(
                    "show_all",
                    label=f"Show all {stats['n_results']} matches",
                    on_click=self.show_all,
                )
        if stats and showing in ("refine", "all", "further"):
            panel.btn(
                "look_further",
                label="Look further",
                description="the samples nearest the positives that are neither"
                " labelled nor in the result: mark them, then Refine",
                on_click=self.look_further,
            )

        panel.str("view_name", label="Saved view name")
        panel.btn("save_view", label="Save view", on_click=self.save_view)
        if asked == "replace_view":
            name = ctx.panel.state.get("replace_name")
            size = ctx.panel.state.get("replace_size") or 0
            self._ask(
                panel,
                f"Replace the saved view '{name}' ({counted(size, 'sample')}) with"
                " what is shown?",
                "Replace view",
            )

        history = RoundHistory(ctx).list()
        if history:
            panel.md(_history_markdown(history), name="history")
            panel.btn(
                "clear_history", label="Clear history", on_click=self.clear_history
            )
            if asked == "clear_history":
                self._ask(
                    panel,
                    f"Clear the history of {counted(len(history), 'round')} (every"
                    " user's on this dataset)? Each panel's last result stays.",
                    "Clear history",
                )

        panel.md("**Settings**", name="settings")
        panel.int(
            "random_negatives",
            label="Random negatives",
            description=random_negatives_description(),
            min=0,
            max=MAX_RANDOM_NEGATIVES,
        )
        panel.float(
            "negative_weight",
            min=1.0,
            max=100.0,
            description=weight_description(opts.get("negative_weight")),
            view=weight_slider(),
        )
        panel.str("positive_tag", label="Positive tag", on_change=self.redraw)
        panel.str("negative_tag", label="Negative tag", on_change=self.redraw)
        panel.str(
            "score_field",
            label="Score field",
            description="empty: write no score (Show all then selects the matches"
            f" by id, up to {MAX_SELECTED_SAMPLES:,})",
        )
        return types.Property(panel, view=types.GridView(orientation="vertical"))


def _label_counts(ctx, opts) -> list:
    """``[positive tag, its samples, negative tag, its samples]``: what Reset
    labels asks about, and checks again before it removes them."""
    n_pos, n_neg = actions.tag_counts(ctx, opts)
    return [opts["positive_tag"], n_pos, opts["negative_tag"], n_neg]


_RUNNING: set[tuple[str, str]] = set()
_RUNNING_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_at_a_time(ctx):
    """True for the first call of a panel (its dataset and panel id) while no other
    runs; False for one that comes while it does (the App runs each click)."""
    key = (str(ctx.dataset._doc.id), str(ctx.params.get("panel_id")))
    with _RUNNING_LOCK:
        first = key not in _RUNNING
        _RUNNING.add(key)
    try:
        yield first
    finally:
        if first:
            with _RUNNING_LOCK:
                _RUNNING.discard(key)


def weight_slider():
    """The negative-weight slider: its label above it (beside it, the App cuts it
    to 100 px), its value to one decimal (the App's default shows six) and in a
    bubble only while it is moved (always shown, it covered the label)."""
    return types.SliderView(
        label="Negative weight",
        label_position="top",
        value_precision=1,
        view_multiple_of=0.5,
        value_label_display="auto",
    )


def _stats_markdown(stats: dict, every_shown: bool = False) -> str:
    return (
        f"**Last round**: {counted(stats['n_results'], 'match')} of"
        f" {stats['n_index']} indexed samples"
        + (f" {IN_VIEW}" if stats.get("in_view") else "")
        + f"; {counted(stats['n_pos'], 'positive')}"
        + (
            f" (+{stats['n_neighbour_pos']} of their nearest neighbours, taken as"
            " positives)"
            if stats.get("n_neighbour_pos")
            else ""
        )
        + f", {counted(stats['n_neg'], 'negative')}{unreadable_note(stats)}, "
        f"{counted(stats['n_random_neg'], 'random negative')};"
        f" {get_model(stats['model']).label}; "
        f"train {stats['train_ms']:.0f} ms, query {stats['query_ms']:.0f} ms"
        + (
            f"; showing the best {PREVIEW_RESULTS}"
            if stats["n_results"] > PREVIEW_RESULTS and not every_shown
            else ""
        )
        + unsearched_note(stats.get("n_unindexed") or 0)
        + (
            f"; computed by the service at {stats['service_url']}"
            if stats.get("service_url")
            else ""
        )
    )


#: Rounds the panel's history table shows, the newest first.
HISTORY_SHOWN = 10


def _history_markdown(history: list[dict]) -> str:
    lines = ["| # | kind | details |", "|---|---|---|"]
    for rec in reversed(history[-HISTORY_SHOWN:]):
        if rec["kind"] == "refine":
            searched = f" '{shortened(rec['text'])}'" if rec.get("text") else ""
            detail = (
                f"{rec['model']}{searched}: {rec['n_pos']}+ / {rec['n_neg']}- →"
                f" {counted(rec['n_results'], 'match')}"
                + (f" {IN_VIEW}" if rec.get("in_view") else "")
                + f" ({rec['total_ms']:.0f} ms)"
            )
        else:
            detail = f"{rec.get('query')} (k={rec.get('k')})"
        lines.append(f"| {rec['round']} | {rec['kind']} | {detail} |")
    if len(history) > HISTORY_SHOWN:
        lines.append(f"\n*The last {HISTORY_SHOWN} of {len(history)} rounds.*")
    return "\n".join(lines)
