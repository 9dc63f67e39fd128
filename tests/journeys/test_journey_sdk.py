"""User journey (a) through the SDK, and (e) for refine-with-save.

(a) images on disk -> ``compute_embeddings`` (a tiny random-weight open_clip
checkpoint) -> ``build_index`` -> text search -> tags -> ``refine`` -> saved view.
(e) ``kill -9`` of a process refining into an existing saved view of the same name:
the view still loads (old or new) and the score field holds one round's scores.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import fiftyone as fo
import pytest
from fiftyone import ViewField as F
from user_path import TINY_CLIP_NAME, images_dataset

from fiftyone_clipbranches import sdk

SCORE = "clipbranches_score"


@pytest.fixture
def user_dataset(cifar_dir, tiny_clip_checkpoint):
    """A persistent dataset of image files from disk, embedded and indexed by the
    calls a user makes; deleted afterwards."""
    ds = images_dataset(cifar_dir, 8, name=f"journey-sdk-{time.time_ns()}")
    ds.persistent = True
    sdk.compute_embeddings(
        ds,
        "clip_embedding",
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        progress=False,
    )
    sdk.build_index(
        ds,
        "clip",
        embeddings_field="clip_embedding",
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        code_method="pca",
        progress=False,
    )
    yield ds
    if fo.dataset_exists(ds.name):
        sdk.delete_index(ds, "clip")
        fo.delete_dataset(ds.name)


def _tag_from_search(ds):
    """Search by text, then tag the hits as a user does in the App."""
    hits = sdk.search(ds, text="a photo of an airplane", k=40, index_key="clip")
    assert len(hits) == 40
    is_plane = F("ground_truth.label") == "airplane"
    hits.match(is_plane).tag_samples("cb_positive")
    hits.match(~is_plane).limit(15).tag_samples("cb_negative")
    positives = ds.match_tags("cb_positive").values("id")
    assert positives, "the search found no airplane to tag"
    return positives


def _scores(ds) -> dict[str, float]:
    return dict(zip(*ds.exists(SCORE).values(["id", SCORE])))


def test_journey_images_to_saved_view(user_dataset):
    ds = user_dataset
    assert len(ds.exists("clip_embedding")) == len(ds)
    positives = _tag_from_search(ds)
    result = sdk.refine(ds, index_key="clip", saved_view="airplanes")
    assert result.stats["label_source"] == "tags"
    assert result.stats["n_pos"] == len(positives)
    saved = fo.load_dataset(ds.name).load_saved_view("airplanes")
    assert saved.values("id") == result.ids
    assert _scores(ds) == dict(zip(result.ids, result.scores.tolist()))
    assert set(positives) <= set(result.ids)
    assert list(result.scores) == sorted(result.scores, reverse=True)

    # a second round replaces the view and the scores, never the other view
    ds.save_view("Airplanes 2", ds.limit(2))
    ds.match_tags("cb_positive").limit(1).untag_samples("cb_positive")
    second = sdk.refine(ds, index_key="clip", saved_view="airplanes")
    assert ds.load_saved_view("airplanes").values("id") == second.ids
    assert _scores(ds) == dict(zip(second.ids, second.scores.tolist()))
    with pytest.raises(sdk.ViewNameTakenError, match="Airplanes 2"):
        sdk.refine(ds, index_key="clip", saved_view="airplanes-2")
    assert sorted(ds.list_saved_views()) == ["Airplanes 2", "airplanes"]
    # a refinement of a view learns from the same labels and answers inside it
    half = ds.take(len(ds) // 2, seed=1)
    in_view = sdk.refine(half, index_key="clip", score_field=None)
    assert set(in_view.ids) == set(second.ids) & set(half.values("id"))


_REFINER = textwrap.dedent(
    """
    import sys, time
    import fiftyone as fo
    from fiftyone_clipbranches import sdk
    ds = fo.load_dataset(sys.argv[1])
    sdk.load_index(ds, "clip")
    print("go", flush=True)
    t0 = time.perf_counter()
    sdk.refine(ds, index_key="clip", saved_view="airplanes", seed=3)
    print(time.perf_counter() - t0, flush=True)
    """
)


def _start_refiner(ds):
    proc = subprocess.Popen(
        [sys.executable, "-c", _REFINER, ds.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "go", proc.stderr.read()[-2000:]
    return proc


@pytest.mark.slow
def test_journey_kill_during_refine_with_save(user_dataset):
    ds = user_dataset
    ids = ds.values("id")
    old = sdk.refine(ds, positives=ids[:4], index_key="clip", saved_view="airplanes")
    old_state = (old.ids, _scores(ds))
    _tag_from_search(ds)
    # the new round, computed without writing (the same seed gives the same answer)
    new = sdk.refine(ds, index_key="clip", seed=3, score_field=None)
    new_state = (new.ids, dict(zip(new.ids, new.scores.tolist())))
    assert new_state != old_state

    proc = _start_refiner(ds)  # a whole round, to time the kills
    duration = float(proc.stdout.readline())
    assert proc.wait(timeout=60) == 0
    sdk.save_view(ds, "airplanes", ds.select(old.ids, ordered=True))
    sdk.apply_refine_result(ds, old.ids, old.scores)
    for fraction in (0.1, 0.5, 0.9):
        proc = _start_refiner(ds)
        time.sleep(fraction * duration)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) in (-signal.SIGKILL, 0)
        ds.reload()
        assert ds.list_saved_views() == ["airplanes"]
        saved = ds.load_saved_view("airplanes").values("id")
        assert saved in (old.ids, new.ids)
        sdk.recover_unfinished_writes(ds)  # what the next refine does first
        state = (ds.load_saved_view("airplanes").values("id"), _scores(ds))
        assert state in (old_state, new_state), fraction
        # back to the old round for the next kill
        sdk.apply_refine_result(ds, old.ids, old.scores, saved_view="airplanes")
