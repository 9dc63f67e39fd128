"""The searches and refinement rounds of the App's faces (the panel, the
operators), kept per dataset in FiftyOne's execution store; the panel shows them.

Several users (and processes) may work on one dataset: the history is theirs
together, each record of a panel naming it, while the last ranking a panel made
(what its Save view and Show all take) and the text its query ball refines are
that panel's own: keyed by the App's panel id and the App server's process (users
who load one saved workspace share its panel id; each runs an App of their own)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import numpy as np

from fiftyone_clipbranches.sdk.claims import waiting_claim
from fiftyone_clipbranches.sdk.errors import IndexBusyError
from fiftyone_clipbranches.sdk.runs import root_dataset

logger = logging.getLogger(__name__)

#: ExecutionStore (per dataset) holding the round history.
STORE_NAME = "clipbranches_panel"
HISTORY_KEY = "rounds"
MAX_HISTORY = 50
#: Store key of a panel's last refinement's ranking (what "Save view" saves), the
#: panel's :func:`panel_instance` after a slash; the text its query ball takes,
#: under ``TEXT_KEY``.
RESULT_KEY = "last_result"
TEXT_KEY = "last_text"
#: How long a panel's last ranking and text are kept after they were made.
RESULT_TTL_S = 7 * 24 * 3600
#: Samples of a ranking whose scores are kept with it: a score field that gives
#: them other scores holds another round.
PROBE_SAMPLES = 16
#: Claim (``sdk/claims.py``) one change of the history holds: two appends at once
#: each wrote the list it read, and one record was lost. Held for milliseconds: one
#: older than ``HISTORY_STALE_S`` is taken over, whatever host holds it.
HISTORY_CLAIM = "history:" + HISTORY_KEY
HISTORY_WAIT_S = 5.0
HISTORY_STALE_S = 30.0


#: This process, as an App server running panels: two Apps on one dataset keep
#: their panels' results apart even where a saved workspace gave them one panel id.
APP_PROCESS = uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class LastResult:
    """A panel's last refinement: ``ids`` its ranking (best first), ``score_field``
    the field its round wrote (None: none), ``probe`` the scores of a few of its
    samples (sample id -> score)."""

    ids: list[str]
    score_field: str | None
    probe: dict


class RoundHistory:
    """The searches and refinement rounds run on one dataset, oldest first.

    Each entry is a small JSON dict (``kind``, ``at``, ``panel`` when a panel ran
    it, and the round's parameters and stats); sample ids are never stored here.
    """

    def __init__(self, ctx):
        self._store = ctx.store(STORE_NAME)
        self._dataset = ctx.dataset
        self._panel = panel_instance(ctx)

    def list(self) -> list[dict]:
        return list(self._store.get(HISTORY_KEY) or [])

    def append(self, kind: str, **entry) -> dict:
        """Record a ``"search"`` or ``"refine"`` with its parameters and stats
        (floats rounded to 2 places), one change at a time across processes; a
        panel's text (``text=``) is also kept as its own."""
        record = {
            "round": 0,
            "kind": kind,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **({"panel": self._panel} if self._panel else {}),
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in entry.items()},
        }
        if self._panel and record.get("text"):
            self._store.set(self._key(TEXT_KEY), record["text"], ttl=RESULT_TTL_S)
        try:
            with self._held():
                rounds = self.list()
                record["round"] = (rounds[-1]["round"] + 1) if rounds else 1
                rounds.append(record)
                self._store.set(HISTORY_KEY, rounds[-MAX_HISTORY:])
        except IndexBusyError as exc:  # the round itself is done: only its line goes
            logger.warning("round not recorded in the history: %s", exc)
        return record

    def last_text(self) -> str | None:
        """The last text this panel searched or refined (None outside a panel)."""
        return self._store.get(self._key(TEXT_KEY)) if self._panel else None

    def clear(self) -> None:
        """Forget every round of the dataset (every user's); each panel's last
        result and text stay."""
        with self._held():
            self._store.delete(HISTORY_KEY)

    def set_result(self, ids: list[str], score_field: str | None, scores=None) -> None:
        """Keep this panel's last refinement's ranking (one document: 24 characters
        a sample), what "Save view" saves, with the ``scores`` (float ``(len(ids),)``,
        descending) of a few of its samples when it wrote ``score_field``."""
        probe = {}
        if score_field and scores is not None and len(ids):
            at = np.unique(np.linspace(0, len(ids) - 1, PROBE_SAMPLES).astype(int))
            probe = {ids[i]: float(scores[i]) for i in at}
        value = {"ids": "".join(ids), "score_field": score_field, "probe": probe}
        self._store.set(self._key(RESULT_KEY), value, ttl=RESULT_TTL_S)
        if self._panel:
            self._store.delete(RESULT_KEY)  # the one key all panels shared before

    def result(self) -> LastResult | None:
        value = self._store.get(self._key(RESULT_KEY))
        if not value:
            return None
        text = value["ids"]
        ids = [text[i : i + 24] for i in range(0, len(text), 24)]
        return LastResult(ids, value.get("score_field"), value.get("probe") or {})

    def _key(self, key: str) -> str:
        return f"{key}/{self._panel}" if self._panel else key

    def _held(self):
        busy = f"the history of dataset {self._dataset.name!r} is being written"
        return waiting_claim(
            root_dataset(self._dataset), HISTORY_CLAIM, "history", HISTORY_WAIT_S,
            busy, stale_s=HISTORY_STALE_S,
        )  # fmt: skip


def panel_instance(ctx) -> str | None:
    """The panel ``ctx`` comes from, in this App server (``<panel id>@<process>``),
    or None outside a panel."""
    return f"{ctx.panel_id}@{APP_PROCESS}" if ctx.panel_id else None
