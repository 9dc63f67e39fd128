"""Row edits of an index by sample id: add or replace codes, drop rows.

What a similarity backend's ``add_to_index`` / ``remove_from_index`` need: the
caller holds the codes (or the embeddings, encoded with the index's encoder), not
the dataset's field. Like ``update_index``, each edit rebuilds the trees over all
rows into a new directory under this dataset's folder and releases the old one:
O(N log N) per call, so batch the edits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fiftyone_clipbranches.sdk import runs
from fiftyone_clipbranches.sdk.bundle import forget_bundle, load_bundle, write_bundle
from fiftyone_clipbranches.sdk.freshness import compare
from fiftyone_clipbranches.sdk.indexes import (
    _GENERATED_MANIFEST_KEYS,
    IndexInfo,
    _check_ids_in_dataset,
    _dataset_dir,
    _info,
    _now,
)
from fiftyone_clipbranches.sdk.rowmap import SampleRowMap, check_sample_ids


def edit_index_rows(
    dataset, index_key: str, *, add_ids=(), add_codes=None, remove_ids=()
) -> IndexInfo:
    """Drop the rows of ``remove_ids``, then set the codes of ``add_ids`` (rows
    of ids already indexed are replaced, others appended).

    Args:
        add_ids: sample ids of the root dataset.
        add_codes: uint8 ``(len(add_ids), D)`` codes of ``add_ids``.
        remove_ids: sample ids to drop (ids not in the index are ignored).

    Returns:
        the :class:`IndexInfo` after the edit (unchanged when nothing changes).
    """
    ds = runs.root_dataset(dataset)
    config = runs.get_index_config(ds, index_key)
    bundle = load_bundle(config.index_dir)
    add_ids = check_sample_ids(add_ids) if len(add_ids) else []
    n_dims = bundle.index.codes.shape[1]
    if add_codes is None:
        add_codes = np.zeros((0, n_dims), np.uint8)
    add_codes = np.asarray(add_codes)
    if add_codes.dtype != np.uint8 or add_codes.shape != (len(add_ids), n_dims):
        raise ValueError(
            f"add_codes must be uint8 of shape ({len(add_ids)}, {n_dims}); got "
            f"{add_codes.dtype} {add_codes.shape}"
        )
    if add_ids:
        _check_ids_in_dataset(ds, SampleRowMap(add_ids))
    drop = set(remove_ids) | set(add_ids)
    old_ids = bundle.rowmap.ids_of(np.arange(len(bundle.rowmap)))
    keep = np.array([sid not in drop for sid in old_ids], bool)
    if keep.all() and not add_ids:
        return _info(ds, index_key, config)

    codes = np.concatenate([np.asarray(bundle.index.codes)[keep], add_codes])
    ids = [sid for sid, k in zip(old_ids, keep) if k] + list(add_ids)
    rowmap = SampleRowMap(ids)
    index = _tree_builder(codes, bundle.index.subsets, bundle.manifest.get("leaf_size"))
    built_at = _now()
    meta = dict(bundle.manifest, built_at=built_at, dataset_id=str(ds._doc.id))
    for k in _GENERATED_MANIFEST_KEYS:
        meta.pop(k, None)
    unembeddable = {
        sid: entry for sid, entry in bundle.unembeddable.items() if sid not in drop
    }
    old_dir = config.index_dir
    parent = _dataset_dir(ds, Path(old_dir).parent.parent)
    path = write_bundle(parent, index, rowmap, bundle.encoder, meta, unembeddable)
    config.index_dir = str(path)
    config.n_samples = len(rowmap)
    config.built_at = built_at
    runs.update_index_config(ds, index_key, config)
    if runs.release_index_dir(old_dir):
        forget_bundle(old_dir)
    return _info(ds, index_key, config, compare(ds, rowmap, unembeddable))


def _tree_builder(codes, subsets, leaf_size):
    """``fn(path)`` building the trees of ``codes`` into the index directory."""
    from fiftyone_clipbranches.engine.index import CodeIndex

    kwargs = {"subsets": subsets}
    if leaf_size is not None:
        kwargs["leaf_size"] = leaf_size
    return lambda path: CodeIndex.build(
        np.ascontiguousarray(codes), path=path, **kwargs
    )
