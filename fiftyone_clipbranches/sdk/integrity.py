"""Checking an index's files against their checksums: :func:`verify_index`."""

from __future__ import annotations

from dataclasses import dataclass

from fiftyone_clipbranches.sdk import runs
from fiftyone_clipbranches.sdk.bundle import VerifyReport, verify_bundle


@dataclass
class IndexVerifyReport(VerifyReport):
    """A :class:`~.bundle.VerifyReport` of one index of one dataset.

    Attributes (beyond the bundle's):
        dataset: name of the dataset.
        key: the index key.
    """

    dataset: str = ""
    key: str = ""

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "key": self.key, **super().to_dict()}


def verify_index(
    dataset, index_key: str | None = None, *, level: str = "full"
) -> IndexVerifyReport:
    """Check every file of index ``index_key`` of ``dataset`` against its manifest.

    Args:
        dataset: a dataset or view (its root dataset's index is checked).
        level: ``"full"`` (re-hash every byte: about 1 s per GB), ``"fast"`` (sizes,
            headers and sampled hashes: milliseconds at any size) or ``"none"``.

    Returns:
        an :class:`IndexVerifyReport` listing the files checked and those that
        carry no checksum (indexes written by an older release).

    Raises:
        IndexNotFoundError: no such index.
        IndexCorruptedError: a file does not match its checksum (the message names
            it and says how to recover).
        IndexPermissionError: a file cannot be read.
        IndexFilesMissingError: the index directory is gone.
    """
    ds = runs.root_dataset(dataset)
    index_key = runs.chosen_index_key(ds, index_key)
    config = runs.get_index_config(ds, index_key)
    report = verify_bundle(config.index_dir, level)
    return IndexVerifyReport(**vars(report), dataset=ds.name, key=index_key)
