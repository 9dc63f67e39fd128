"""A build compiles what the first refinement needs: in a new process, a refinement
after ``build_index`` compiles no numba kernel of its own, and one on a large
catalogue (the kernels' parallel twins) compiles no kernel the build did not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, json, pkgutil, sys
sys.path.insert(0, {tests!r})
import numba
from user_path import build_user_index, images_dataset
from fiftyone_clipbranches import sdk
from fiftyone_clipbranches import engine


def compiled():
    counts = {{}}
    for info in pkgutil.iter_modules(engine.__path__):
        module = importlib.import_module(f"{{engine.__name__}}.{{info.name}}")
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher):
                counts[f"{{module.__name__}}.{{name}}"] = len(obj.signatures)
    return counts


ds = images_dataset({images!r}, 5)
try:
    build_user_index(ds, {checkpoint!r})
    before = compiled()
    ids = ds.values("id")
    for positives in (ids[:3], ids[:12]):
        sdk.refine(ds, positives=positives, negatives=ids[-2:], index_key="clip")
    after = compiled()
finally:
    ds.delete()

# a large catalogue and class, on an index read from disk, as refine does
import tempfile
from pathlib import Path
import numpy as np
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.search import apply_model
from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL, fit_on_index, get_model

rng = np.random.default_rng(7)
label = rng.integers(0, 4, 1 << 19)
centres = rng.integers(40, 216, (4, 32))
codes = np.clip(centres[label] + rng.normal(0, 20, (label.size, 32)), 0, 255)
spec = get_model(DEFAULT_MODEL)
with tempfile.TemporaryDirectory() as folder:
    index = CodeIndex.build(codes.astype(np.uint8), path=Path(folder) / "index")
    for n_pos in (8, 40):
        model = spec.make()
        positives = np.flatnonzero(label == 0)[:n_pos]
        fit_on_index(
            model, index, positives, (),
            n_random_negatives=spec.random_negatives_for(n_pos),
            max_random_fraction=spec.max_random_fraction,
            neighbours_per_positive=spec.neighbours_per_positive,
        )
        apply_model(model, index)
    del index
large = compiled()
print(json.dumps({{
    "warmed": sum(before.values()),
    "new": {{k: [before.get(k, 0), n] for k, n in after.items() if n != before.get(k, 0)}},
    "never_compiled": sorted(k for k, n in large.items() if n and not before.get(k)),
}}))
"""


def test_first_refinement_after_a_build_compiles_nothing(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    import os

    script = SCRIPT.format(
        tests=str(TESTS), images=str(cifar_dir), checkpoint=str(tiny_clip_checkpoint)
    )
    # an empty cache of its own: a kernel loaded from a cache that earlier tests
    # filled brings its callees compiled in, uncounted, and whether a later kernel
    # was cached by them decided the answer (as on a fresh installation, then)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["warmed"] > 20  # the build compiled (or loaded) the kernels
    assert not report["new"], json.dumps(report["new"], indent=0)
    assert not report["never_compiled"], report["never_compiled"]


def test_a_warm_up_that_fails_is_a_warning_not_an_error(monkeypatch, tmp_path, caplog):
    import tempfile

    from fiftyone_clipbranches.sdk import warm

    monkeypatch.setattr(warm, "_warmed", False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    assert warm.warm_refinement_or_warn() is None
    assert "the refinement's kernels were not compiled ahead" in caplog.text
    assert "FileNotFoundError" in caplog.text
    assert not warm.refinement_is_warm()  # a later call tries again


def test_a_build_frees_its_key_before_warming_the_kernels(monkeypatch, make_user_index):
    """The warm-up (40 s on a fresh installation) runs once the index is built and
    its key free: another process may then rename or delete it, or refine."""
    import fiftyone as fo
    from fiftyone.core.odm import get_db_conn

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk import indexes
    from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION

    name = "clipbranches-test-warm-after-claim"
    seen = []

    def warm_up():
        claims = get_db_conn()[CLAIMS_COLLECTION]
        seen.append(
            (claims.count_documents({}), sdk.list_indexes(fo.load_dataset(name)))
        )

    monkeypatch.setattr(indexes, "refinement_is_warm", lambda: False)
    monkeypatch.setattr(indexes, "warm_refinement_or_warn", warm_up)
    make_user_index(n_per_class=4, name=name)
    assert seen == [(0, ["clip"])]


def test_a_warm_up_folder_left_by_a_killed_process_is_removed_later(
    tmp_path, monkeypatch
):
    """A service stopped while it warmed up left its folder in the temp dir."""
    import os
    import tempfile
    import time

    from fiftyone_clipbranches.sdk import warm

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale, fresh = (
        tmp_path / "clipbranches-warm-old",
        tmp_path / "clipbranches-warm-new",
    )
    for folder in (stale, fresh):
        (folder / "index").mkdir(parents=True)
    old = time.time() - 2 * warm.STALE_AFTER_S
    os.utime(stale, (old, old))
    other = tmp_path / "someone-elses"
    other.mkdir()
    os.utime(other, (old, old))
    warm._remove_stale_folders()
    assert not stale.exists() and fresh.is_dir() and other.is_dir()
