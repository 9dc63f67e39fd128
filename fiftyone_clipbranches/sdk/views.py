"""Results written back to FiftyOne: score fields and saved views."""

from __future__ import annotations

import fiftyone as fo


def save_view(dataset, name: str, view, *, overwrite: bool = True, description=None):
    """Save ``view`` on ``dataset``'s root dataset as ``name``; returns the name."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a saved view needs a non-empty name")
    root = dataset._root_dataset
    if view._root_dataset is not root:
        raise ValueError("the view does not belong to this dataset")
    name = name.strip()
    root.save_view(name, view, description=description, overwrite=overwrite)
    return name


def write_scores(dataset, score_field: str, ids: list[str], scores) -> None:
    """Set ``score_field`` (a FloatField) to ``scores`` on ``ids``; clear it on every
    other sample that still holds a score from an earlier round."""
    root = dataset._root_dataset
    ensure_score_field(root, score_field)
    scored = set(root.exists(score_field).values("id"))
    stale = scored.difference(ids)
    if stale:
        root.select(list(stale)).clear_sample_field(score_field)
    if ids:
        values = dict(zip(ids, (float(s) for s in scores)))
        root.set_values(score_field, values, key_field="id")


def ensure_score_field(root, score_field: str) -> None:
    if not isinstance(score_field, str) or not score_field.isidentifier():
        raise ValueError(f"score field name {score_field!r} must be an identifier")
    field = root.get_field(score_field)
    if field is None:
        root.add_sample_field(score_field, fo.FloatField)
    elif not isinstance(field, fo.FloatField):
        raise ValueError(
            f"field {score_field!r} exists and is a {type(field).__name__}, not a "
            "FloatField: choose another score_field"
        )
