"""Telling an index where its CLIP checkpoint file lives now.

An index built from a local checkpoint file records the file's path and sha256
(``clip_model["pretrained"]``, ``["checkpoint_sha256"]``), and so does the
embeddings field it was built on. Moved, the file cannot embed queries or added
samples; the same bytes at a new path can, once the records say where.
"""

from __future__ import annotations

import contextlib
import os

from fiftyone_clipbranches.sdk import runs
from fiftyone_clipbranches.sdk.claims import holding_key, key_claim
from fiftyone_clipbranches.sdk.errors import IdentityConflictError
from fiftyone_clipbranches.sdk.identity import field_identity, record_field_identity


@holding_key("relocate")
def relocate_checkpoint(dataset, path, index_key: str | None = None) -> list[str]:
    """Record that the checkpoint file of index ``index_key`` is now at ``path``.

    The file at ``path`` must hold the same bytes (sha256) as the one the index
    was built with. Every index of the dataset and every embeddings field that
    record the old file (same path, same sha256) are pointed to the new one; the
    indexes' keys are held meanwhile (a key another process holds, for a build or
    an update, is refused before anything is changed).

    Returns:
        The keys of the indexes and the names of the fields updated (``index:KEY``,
        ``field:NAME``).

    Raises:
        IndexNotFoundError: no index ``index_key``.
        ValueError: the index embeds with an open_clip tag, random weights or no
            recorded model (there is no file to relocate), or ``path`` is no file.
        IdentityConflictError: the file at ``path`` holds other bytes.
        IndexBusyError: another process holds the key of one of those indexes.
    """
    from fiftyone_clipbranches.embed.weights import file_sha256

    ds = runs.root_dataset(dataset)
    config = runs.get_index_config(ds, index_key)
    recorded = dict(config.clip_model or {})
    sha = recorded.get("checkpoint_sha256")
    if not sha:
        weights = recorded.get("pretrained") if recorded else None
        raise ValueError(
            f"index {index_key!r} records no checkpoint file to relocate (its"
            f" weights: {weights!r})"
        )
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint file at {path!r}")
    found = file_sha256(path)
    if found != sha:
        raise IdentityConflictError(
            f"{path!r} is not the checkpoint index {index_key!r} was built with"
            f" (sha256 {found[:12]}... here, {sha[:12]}... recorded): its vectors"
            " would not match the index's; find the original file"
        )
    old = recorded.get("pretrained")
    from fiftyone_clipbranches.embed.models import missing_config_beside

    config = missing_config_beside(recorded["name"], path)
    if config is not None:
        raise ValueError(
            f"{path!r} is the checkpoint, but architecture {recorded['name']!r} is"
            f" not open_clip's own and its config is not beside it ({config}): copy"
            f" {os.path.basename(config)} from beside the old file ({old!r}) there"
            " too, then relocate again"
        )
    updated = []

    def moved(identity) -> bool:
        return bool(identity) and (
            identity.get("checkpoint_sha256") == sha
            and identity.get("pretrained") == old
        )

    keys = [
        key
        for key in runs.list_index_keys(ds)
        if moved(runs.get_index_config(ds, key).clip_model)
    ]
    with contextlib.ExitStack() as held:
        for key in keys:
            if key != index_key:  # held by the decorator
                held.enter_context(key_claim(ds, key, "relocate"))
        ds._doc.reload("runs")
        for key in keys:
            other = runs.get_index_config(ds, key)
            if moved(other.clip_model):
                other.clip_model = dict(other.clip_model, pretrained=path)
                runs.update_index_config(ds, key, other)
                updated.append(f"index:{key}")
    for name in ds.get_field_schema():
        identity = field_identity(ds, name)
        if moved(identity):
            record_field_identity(ds, name, dict(identity, pretrained=path))
            updated.append(f"field:{name}")
    return updated
