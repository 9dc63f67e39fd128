"""The alive-rows mask reads the dataset's ids as raw BSON: same ids as FiftyOne's."""

import numpy as np
from sdk_testdata import index_dataset

from fiftyone_clipbranches.sdk.freshness import alive_rows, sample_id_array
from fiftyone_clipbranches.sdk.indexes import load_index


def test_raw_id_reading_equals_values_and_masks_deleted_rows(make_dataset):
    ds = make_dataset(10)
    index_dataset(ds, "cb")
    ids = ds.values("id")
    assert np.char.decode(sample_id_array(ds), "ascii").tolist() == ids
    _, bundle = load_index(ds, "cb")
    gone = ids[3:9]
    ds.delete_samples(gone)
    mask = alive_rows(ds, bundle.rowmap, str(bundle.path))
    dead = set(np.flatnonzero(~mask).tolist())
    assert dead == set(bundle.rowmap.rows_of(gone)[0].tolist())
