"""Per-batch checkpoints that make long embedding runs resumable."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.embed.atomic import write_json_atomic, write_npz_atomic

CHECKPOINT_VERSION = 1


def paths_digest(paths) -> str:
    """SHA-256 over the ordered list of input paths."""
    h = hashlib.sha256()
    for p in paths:
        h.update(os.fspath(p).encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


class BatchCheckpoints:
    """A folder of completed batches for one (model, inputs, batch size) run.

    Layout: ``run.json`` (what the run is) and ``batch_XXXXXXXX.npz`` per finished batch
    (``indices`` int64, ``vectors`` float32, ``failed`` int64, ``messages`` str). Each
    file is written atomically, so an interrupted run leaves only complete batches.
    """

    def __init__(self, directory, run_info: dict):
        self.directory = Path(directory)
        self.run_info = dict(run_info, version=CHECKPOINT_VERSION)
        manifest = self.directory / "run.json"
        if manifest.exists():
            existing = json.loads(manifest.read_text())
            if existing != self.run_info:
                raise ValueError(
                    f"checkpoint_dir {self.directory} holds a different run "
                    f"(model, inputs or batch size differ: {existing} vs {self.run_info}); "
                    "pass an empty folder or delete it to start over"
                )
        else:
            write_json_atomic(manifest, self.run_info)

    def _file(self, batch: int) -> Path:
        return self.directory / f"batch_{batch:08d}.npz"

    def done(self) -> set[int]:
        """Numbers of the batches already saved."""
        out = set()
        for f in self.directory.glob("batch_*.npz"):
            try:
                out.add(int(f.stem.split("_")[1]))
            except ValueError:
                continue
        return out

    def save(self, batch: int, indices, vectors, errors: dict[int, str]) -> None:
        failed = np.array(sorted(errors), dtype=np.int64)
        messages = np.array([errors[i] for i in failed.tolist()], dtype=str)
        write_npz_atomic(
            self._file(batch),
            indices=np.asarray(indices, dtype=np.int64),
            vectors=np.asarray(vectors, dtype=np.float32),
            failed=failed,
            messages=messages,
        )

    def load(self, batch: int):
        """Return ``(indices, vectors, errors)`` of a saved batch."""
        with np.load(self._file(batch), allow_pickle=False) as z:
            errors = {int(i): str(m) for i, m in zip(z["failed"], z["messages"])}
            return z["indices"], z["vectors"], errors
