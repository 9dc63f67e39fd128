"""Compiling the refinement's kernels before a user's first refinement waits on them.

The engine's numba kernels compile on their first call (about 40 s on 2 cores for
every kernel of the default model's path) and are then cached on disk, so a later
process loads them in about 3 s. :func:`warm_refinement` makes that first call on
synthetic codes, so that a build pays it and the first Refine in the App does not.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL, get_model

#: ``(rows, clusters, positives)`` of the synthetic refinements: a small catalogue
#: and large ones, so that each kernel runs below and above the row count from
#: which its parallel twin runs (the candidates of a class of a quarter of 2^18
#: rows reach the forest's and the linear arbiter's); few positives (neighbour
#: positives and the class ball, as in a user's first rounds) and many.
WARM_ROUNDS = ((3000, 32, 8), (1 << 17, 32, 8), (1 << 17, 32, 40), (1 << 18, 4, 8))
#: Rows at least as many as any kernel's parallel threshold.
PARALLEL_PROBE_ROWS = 1 << 17

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_warmed = False


def refinement_is_warm() -> bool:
    """Whether :func:`warm_refinement` already ran in this process."""
    return _warmed


def warm_refinement() -> float:
    """Search and refine the default model on synthetic codes, through an index
    written to disk and memory-mapped, as ``search`` and ``refine`` do: numba
    compiles every kernel those paths need (or loads them from its disk cache).
    Runs once per process; later calls return at once.

    Returns:
        seconds spent (0.0 when it had already run).
    """
    global _warmed
    with _lock:
        if _warmed:
            return 0.0
        started = time.perf_counter()
        for n_rows, n_clusters, n_positives in WARM_ROUNDS:
            _refine_synthetic(n_rows, n_clusters, n_positives)
        _warmed = True
        return time.perf_counter() - started


def warm_refinement_or_warn() -> float | None:
    """:func:`warm_refinement`; a failure (no temporary folder to write to, say) is
    logged as a warning and returns None: the first refinement then compiles what
    it needs, as it would have without this call."""
    try:
        return warm_refinement()
    except Exception as e:  # noqa: BLE001 - nothing depends on it
        logger.warning(
            "the refinement's kernels were not compiled ahead (%s: %s); the first"
            " refinement compiles them",
            type(e).__name__,
            e,
        )
        return None


def _refine_synthetic(n_rows: int, n_clusters: int, n_positives: int) -> None:
    from fiftyone_clipbranches.engine.index import CodeIndex

    rng = np.random.default_rng(0)
    centres = rng.integers(40, 216, (n_clusters, 32))
    label = rng.integers(0, len(centres), n_rows)
    noise = rng.normal(0.0, 20.0, (n_rows, 32))
    codes = np.clip(centres[label] + noise, 0, 255).astype(np.uint8)
    _remove_stale_folders()
    # a thread still writing into it at the interpreter's exit (the panel warms in
    # the background) made its removal raise there, a traceback after the work
    with tempfile.TemporaryDirectory(
        prefix=WARM_PREFIX, ignore_cleanup_errors=True
    ) as folder:
        index = CodeIndex.build(codes, path=Path(folder) / "index")
        index.knn(codes[0], 10)
        model = _refine(index, np.flatnonzero(label == 0)[:n_positives])
        # the linear arbiter scores the rows it is asked about, few or many
        arbiter = getattr(model, "arbiter_", None)
        if arbiter is not None:
            arbiter.decision_function(np.array(index.codes[:PARALLEL_PROBE_ROWS]))
        # both merges of box hits, and the parallel fill from 2^22 hits on
        index.query_boxes(_whole_space(index.subsets, per_subset=2))
        index.query_boxes(_whole_space(index.subsets, per_subset=1, high=40))
        del index


#: Name prefix of the temporary folders of the warm-up's index.
WARM_PREFIX = "clipbranches-warm-"
#: Age after which a warm-up folder left behind (its process killed mid-way) is
#: removed by the next warm-up.
STALE_AFTER_S = 3600


def _remove_stale_folders() -> None:
    """Remove this user's warm-up folders older than :data:`STALE_AFTER_S`: a
    process stopped while it warmed (a service's SIGTERM) left its folder."""
    now = time.time()
    for folder in Path(tempfile.gettempdir()).glob(f"{WARM_PREFIX}*"):
        try:
            info = folder.lstat()
            if info.st_uid == os.getuid() and now - info.st_mtime > STALE_AFTER_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _whole_space(subsets, per_subset: int, high: int = 255):
    """``per_subset`` boxes per feature subset over the codes whose values all lie
    in ``[0, high]``, each box its own member."""
    from fiftyone_clipbranches.engine.boxes import Boxes

    n = len(subsets) * per_subset
    shape = (n, subsets.max_len)
    every = np.arange(n, dtype=np.int32)
    return Boxes(
        every % len(subsets),
        np.zeros(shape, np.int16),
        np.full(shape, high, np.int16),
        every,
    )


def _refine(index, positives):
    from fiftyone_clipbranches.engine.search import apply_model

    spec = get_model(DEFAULT_MODEL)
    model = spec.make()
    spec.fit_with_defaults(model, index, positives)
    apply_model(model, index)
    return model
