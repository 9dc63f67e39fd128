"""Row edits of an index by sample id: add or replace codes, drop rows.

What a similarity backend's ``add_to_index`` / ``remove_from_index`` need: the
caller holds the codes (or the embeddings, encoded with the index's encoder), not
the dataset's field. Like ``update_index``, each edit rebuilds the trees over all
rows into a new directory under this dataset's folder and releases the old one:
O(N log N) per call, so batch the edits.
"""

from __future__ import annotations

import numpy as np

from fiftyone_clipbranches.sdk import runs
from fiftyone_clipbranches.sdk.bundle import load_bundle
from fiftyone_clipbranches.sdk.claims import holding_key
from fiftyone_clipbranches.sdk.index_info import IndexInfo
from fiftyone_clipbranches.sdk.indexes import check_ids_in_dataset, index_info
from fiftyone_clipbranches.sdk.rowmap import SampleRowMap, check_sample_ids
from fiftyone_clipbranches.sdk.update import replace_index_rows


@holding_key("update")
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
        check_ids_in_dataset(ds, SampleRowMap(add_ids))
    drop = set(remove_ids) | set(add_ids)
    drop_rows, found = bundle.rowmap.rows_of(sorted(drop))
    keep = np.ones(len(bundle.rowmap), bool)
    keep[drop_rows[found]] = False
    if keep.all() and not add_ids:
        return index_info(ds, index_key, check=False)

    codes = np.concatenate([np.asarray(bundle.index.codes)[keep], add_codes])
    ids = bundle.rowmap.ids_of(np.flatnonzero(keep)) + list(add_ids)
    unembeddable = {
        sid: entry for sid, entry in bundle.unembeddable.items() if sid not in drop
    }
    return replace_index_rows(
        ds, index_key, config, bundle, codes, ids, unembeddable,
        kept_rows=np.flatnonzero(keep),
    )  # fmt: skip
