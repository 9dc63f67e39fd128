"""The file each embedding was computed from, kept beside the vectors.

A sample whose ``filepath`` changed after its vector was computed kept that vector:
an index built again from the field (``build_index(..., overwrite=True)``, a second
key, ``build_index`` after ``compute_embeddings``) indexed the old image under the
new path, and nothing said so. So the embedding writes the filepath of each vector
into a string field beside it (``<field>_filepath``, marked as clipbranches' own in
its ``info``); a vector whose recorded path is not the sample's ``filepath`` now is
stale and is computed again. A vector without a record (stored by the user, or by
an older version) is taken as it is.
"""

from __future__ import annotations

import fiftyone as fo
from fiftyone import ViewField as F

#: Key of the ``info`` of a field that records the files of a vector field.
SOURCE_MARK = "clipbranches"
SOURCE_SUFFIX = "_filepath"


def source_field(root, field: str) -> str | None:
    """The name of the field recording the files of ``field``'s vectors, or None
    when a field of that name is the user's (then nothing is recorded)."""
    name = f"{field}{SOURCE_SUFFIX}"
    existing = root.get_field(name)
    if existing is None:
        return name
    ours = (existing.info or {}).get(SOURCE_MARK) == "vector sources"
    return name if ours and isinstance(existing, fo.StringField) else None


def recording_field(root, field: str) -> str | None:
    """The field recording the files of ``field``'s vectors, when there is one."""
    name = source_field(root, field)
    return name if name is not None and root.get_field(name) is not None else None


def to_embed(samples, field: str):
    """The samples of ``samples`` whose ``field`` needs a vector: none yet, or one
    computed from another file than their ``filepath`` now."""
    name = recording_field(samples._root_dataset, field)
    missing = ~F(field).exists()
    if name is None:
        return samples.match(missing)
    moved = F(name).exists() & (F(name) != F("filepath"))
    return samples.match(missing | moved)


def record_sources(root, field: str, paths_by_id: dict, create: bool = True) -> None:
    """Record ``{sample id: filepath}`` as the files ``field``'s vectors of those
    samples were computed from (after the vectors are written: a run stopped
    between the two leaves a new vector with its old record, computed again);
    without ``create``, only where ``field``'s vectors are recorded already."""
    name = source_field(root, field)
    if name is None or not paths_by_id or not (create or recording_field(root, field)):
        return
    if root.get_field(name) is None:
        root.add_sample_field(
            name,
            fo.StringField,
            description=f"clipbranches: the file each {field!r} vector was computed"
            " from (a vector of another file than the sample's is computed again)",
            info={SOURCE_MARK: "vector sources"},
        )
    root.set_values(name, paths_by_id, key_field="id")
