"""What an index is: :class:`IndexInfo`, made from its run's config."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

from fiftyone_clipbranches.sdk.freshness import Freshness
from fiftyone_clipbranches.sdk.index_changes import IndexChanges


@dataclass(frozen=True)
class IndexInfo:
    """What an index is and how it relates to the dataset now.

    ``freshness`` is None when it was not checked; ``n_reembed_pending``: samples
    an interrupted update began to embed again (the next update finishes them);
    ``changes``: what the update that returned this changed (``update_index``;
    None otherwise).
    """

    key: str
    dataset: str
    index_dir: str
    n_samples: int
    code_dims: int | None
    code_method: str | None
    embeddings_field: str | None
    clip_model: dict | None
    built_at: str | None
    freshness: Freshness | None = None
    n_shards: int = 1
    n_reembed_pending: int = 0
    changes: IndexChanges | None = None

    def __repr__(self) -> str:  # what a notebook shows: no paths, no checksums
        model = self.clip_model or {}
        weights = model.get("pretrained") or "random weights"
        clip = f"{model.get('name')} ({weights})" if model else "unknown"
        fresh = self.freshness
        # the attributes' own names: what it shows can be read back
        stale = "" if fresh is None else f", freshness.is_stale: {fresh.is_stale}"
        shards = f" in {self.n_shards} shards" if self.n_shards > 1 else ""
        return (
            f"IndexInfo({self.key!r} of {self.dataset!r}: {self.n_samples} samples"
            f"{shards}, {self.codes_made_by} codes, CLIP {clip}{stale}; .to_dict()"
            " for all)"
        )

    @property
    def codes_made_by(self) -> str:
        """``code_method``, or ``"given"`` for an index built from codes."""
        return self.code_method or "given"

    @property
    def supports_text(self) -> bool:
        return self.clip_model is not None and self.code_method is not None

    def to_dict(self) -> dict:
        """JSON-ready dict of every attribute (nested values as plain types)."""
        return asdict(self)


def info_of(ds, key, config, fresh=None) -> IndexInfo:
    """The :class:`IndexInfo` of index ``key`` of ``ds`` from its run's ``config``
    (``fresh``: its :class:`Freshness`, when checked)."""
    from fiftyone_clipbranches.engine.index_io import shard_count
    from fiftyone_clipbranches.sdk.bundle import INDEX_DIR

    return IndexInfo(
        key=key,
        dataset=ds.name,
        index_dir=config.index_dir,
        n_samples=int(config.n_samples),
        code_dims=config.code_dims,
        code_method=config.code_method,
        embeddings_field=config.embeddings_field,
        clip_model=plain(config.clip_model),
        built_at=config.built_at,
        freshness=fresh,
        n_shards=shard_count(Path(config.index_dir) / INDEX_DIR),
        n_reembed_pending=len(getattr(config, "reembed_pending", None) or ()),
    )


def plain(value):
    """``value`` with the database's dict and list wrappers (mongoengine's
    ``BaseDict``/``BaseList``, which ``dataclasses.asdict`` cannot copy) turned
    into plain ones."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def now_iso() -> str:
    """This moment in UTC, ISO 8601 to the millisecond (an index's ``built_at``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
