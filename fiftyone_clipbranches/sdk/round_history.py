"""The searches and refinement rounds of the App's faces (the panel, the
operators), kept per dataset in FiftyOne's execution store; the panel shows them."""

from __future__ import annotations

import datetime as dt

#: ExecutionStore (per dataset) holding the round history.
STORE_NAME = "clipbranches_panel"
HISTORY_KEY = "rounds"
MAX_HISTORY = 50
#: Store key of the panel's last refinement's ranking (what "Save view" saves).
RESULT_KEY = "last_result"


class RoundHistory:
    """The searches and refinement rounds run on one dataset, oldest first.

    Each entry is a small JSON dict (``kind``, ``at`` and the round's parameters
    and stats); sample ids are never stored here.
    """

    def __init__(self, ctx):
        self._store = ctx.store(STORE_NAME)

    def list(self) -> list[dict]:
        return list(self._store.get(HISTORY_KEY) or [])

    def append(self, kind: str, **entry) -> dict:
        """Record a ``"search"`` or ``"refine"`` with its parameters and stats
        (floats rounded to 2 places)."""
        record = {
            "round": 0,
            "kind": kind,
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in entry.items()},
        }
        rounds = self.list()
        record["round"] = (rounds[-1]["round"] + 1) if rounds else 1
        rounds.append(record)
        self._store.set(HISTORY_KEY, rounds[-MAX_HISTORY:])
        return record

    def last(self, kind: str | None = None) -> dict | None:
        for record in reversed(self.list()):
            if kind is None or record.get("kind") == kind:
                return record
        return None

    def clear(self) -> None:
        self._store.delete(HISTORY_KEY)

    def set_result(self, ids: list[str], score_field: str | None) -> None:
        """Keep the last refinement's ranking (one document: 24 characters a
        sample), what "Save view" saves."""
        self._store.set(RESULT_KEY, {"ids": "".join(ids), "score_field": score_field})

    def result(self) -> tuple[list[str], str | None] | None:
        value = self._store.get(RESULT_KEY)
        if not value:
            return None
        text = value["ids"]
        ids = [text[i : i + 24] for i in range(0, len(text), 24)]
        return ids, value.get("score_field")
