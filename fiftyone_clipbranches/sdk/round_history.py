"""The searches and refinement rounds of the App's faces (the panel, the
operators), kept per dataset in FiftyOne's execution store; the panel shows them.

Several users (and processes) may work on one dataset: the history is theirs
together, each record naming the panel it came from, while the last ranking a panel
made (what its Save view and Show all take) and the text its query ball refines are
that panel's own."""

from __future__ import annotations

import datetime as dt
import logging

from fiftyone_clipbranches.sdk.claims import waiting_claim
from fiftyone_clipbranches.sdk.errors import IndexBusyError
from fiftyone_clipbranches.sdk.runs import root_dataset

logger = logging.getLogger(__name__)

#: ExecutionStore (per dataset) holding the round history.
STORE_NAME = "clipbranches_panel"
HISTORY_KEY = "rounds"
MAX_HISTORY = 50
#: Store key of a panel's last refinement's ranking (what "Save view" saves), the
#: panel's id after a slash.
RESULT_KEY = "last_result"
#: How long a panel's last ranking is kept after it was made.
RESULT_TTL_S = 7 * 24 * 3600
#: Claim (``sdk/claims.py``) one append to the history holds: two at once each
#: wrote the list it read, and one record was lost.
HISTORY_CLAIM = "history:" + HISTORY_KEY
HISTORY_WAIT_S = 5.0


class RoundHistory:
    """The searches and refinement rounds run on one dataset, oldest first.

    Each entry is a small JSON dict (``kind``, ``at``, ``panel`` when a panel ran
    it, and the round's parameters and stats); sample ids are never stored here.
    """

    def __init__(self, ctx):
        self._store = ctx.store(STORE_NAME)
        self._dataset = ctx.dataset
        self._panel = ctx.panel_id

    def list(self) -> list[dict]:
        return list(self._store.get(HISTORY_KEY) or [])

    def append(self, kind: str, **entry) -> dict:
        """Record a ``"search"`` or ``"refine"`` with its parameters and stats
        (floats rounded to 2 places), one append at a time across processes."""
        record = {
            "round": 0,
            "kind": kind,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **({"panel": self._panel} if self._panel else {}),
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in entry.items()},
        }
        busy = f"the history of dataset {self._dataset.name!r} is being written"
        try:
            with waiting_claim(
                root_dataset(self._dataset), HISTORY_CLAIM, "history",
                HISTORY_WAIT_S, busy,
            ):  # fmt: skip
                rounds = self.list()
                record["round"] = (rounds[-1]["round"] + 1) if rounds else 1
                rounds.append(record)
                self._store.set(HISTORY_KEY, rounds[-MAX_HISTORY:])
        except IndexBusyError as exc:  # the round itself is done: only its line goes
            logger.warning("round not recorded in the history: %s", exc)
        return record

    def last(self, kind: str | None = None) -> dict | None:
        for record in reversed(self.list()):
            if kind is None or record.get("kind") == kind:
                return record
        return None

    def last_text(self) -> str | None:
        """The last text this panel searched or refined (None outside a panel)."""
        for record in reversed(self.list()):
            if (
                self._panel
                and record.get("panel") == self._panel
                and record.get("text")
            ):
                return record["text"]
        return None

    def clear(self) -> None:
        self._store.delete(HISTORY_KEY)

    def set_result(self, ids: list[str], score_field: str | None) -> None:
        """Keep this panel's last refinement's ranking (one document: 24 characters
        a sample), what "Save view" saves."""
        value = {"ids": "".join(ids), "score_field": score_field}
        self._store.set(self._result_key(), value, ttl=RESULT_TTL_S)

    def result(self) -> tuple[list[str], str | None] | None:
        value = self._store.get(self._result_key())
        if not value:
            return None
        text = value["ids"]
        ids = [text[i : i + 24] for i in range(0, len(text), 24)]
        return ids, value.get("score_field")

    def _result_key(self) -> str:
        return f"{RESULT_KEY}/{self._panel}" if self._panel else RESULT_KEY
