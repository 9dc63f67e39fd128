"""Saved views and score writes: names never clobber another view, overwrites and
score rounds survive a writer that dies; refine's inputs refused by name."""

import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sdk_testdata import index_dataset

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.cli import main as cli_main
from fiftyone_clipbranches.sdk.messages import round_summary
from fiftyone_clipbranches.sdk.views import JOURNAL_COLLECTION


@pytest.fixture
def indexed(make_dataset):
    ds = make_dataset(10)
    index_dataset(ds, "cb")
    return ds


def _tag(ds, n_pos=6, n_neg=12):
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    ds.select(ids[labels == "airplane"][:n_pos].tolist()).tag_samples("cb_positive")
    ds.select(ids[labels != "airplane"][::3][:n_neg].tolist()).tag_samples(
        "cb_negative"
    )


def test_a_name_with_the_slug_of_another_view_never_replaces_it(indexed):
    ds = indexed
    ids = ds.values("id")
    ds.save_view("My Dogs", ds.select(ids[:3]))
    _tag(ds)
    with pytest.raises(
        sdk.ViewNameTakenError, match="collides with saved view 'My Dogs'"
    ):
        sdk.refine(ds, index_key="cb", saved_view="my-dogs", random_negatives=20)
    assert ds.list_saved_views() == ["My Dogs"]
    assert ds.load_saved_view("My Dogs").values("id") == ids[:3]
    # refused before anything was written
    assert ds.get_field("clipbranches_score") is None or not len(
        ds.exists("clipbranches_score")
    )
    with pytest.raises(sdk.ViewNameTakenError):
        sdk.save_view(ds, "my dogs", ds.limit(2))


def test_a_view_of_another_dataset_is_refused_naming_both(indexed, make_dataset):
    other = make_dataset(2)
    with pytest.raises(ValueError) as refused:
        sdk.save_view(indexed, "theirs", other.limit(1))
    assert f"the view is of dataset {other.name!r}, not of {indexed.name!r}" in str(
        refused.value
    )
    assert "theirs" not in indexed.list_saved_views()


def test_overwriting_a_view_rewrites_its_document_in_place(indexed):
    ds = indexed
    ids = ds.values("id")
    sdk.save_view(ds, "round", ds.select(ids[:3], ordered=True))
    view_id = ds._doc.saved_views[0].id
    sdk.save_view(ds, "round", ds.select(ids[5:9], ordered=True))  # ours: replaced
    assert ds.list_saved_views() == ["round"]
    assert ds._doc.saved_views[0].id == view_id  # never deleted, so never missing
    assert ds.load_saved_view("round").values("id") == ids[5:9]
    assert ds.get_saved_view_info("round")["description"].startswith("Saved by clip")


def test_one_save_of_a_name_at_a_time_and_the_name_it_writes_is_the_one_checked(
    indexed,
):
    """Two processes saving one new name at once both succeeded and left two views
    of that name; a name with a trailing space was checked as given, then saved
    stripped over the existing view."""
    import threading

    from fiftyone_clipbranches.sdk import claims, views

    ds = indexed
    ids = ds.values("id")
    other = claims.key_claim(ds, views.VIEW_CLAIM_PREFIX + "race", "view")
    other.__enter__()  # another process checking the name, about to save it
    outcome = {}

    def save():
        try:
            sdk.save_view(ds, "race", ds.select(ids[:4]), replace_own=False)
            outcome["saved"] = True
        except sdk.ViewNameTakenError as exc:
            outcome["refused"] = str(exc)

    saver = threading.Thread(target=save)
    saver.start()
    saver.join(1.0)
    assert saver.is_alive() and not outcome  # it waits for the other save
    ds.save_view("race", ds.select(ids[4:6]), description=views.VIEW_MARK)
    other.__exit__(None, None, None)
    saver.join(30)
    assert "pass overwrite=True" in outcome["refused"]
    # the other save was clipbranches': a client whose save's answer was lost
    # is told that it may be its own
    assert "(clipbranches saved it at 20" in outcome["refused"]
    assert "a save whose answer never came may have saved it" in outcome["refused"]
    ds.reload()
    assert ds.list_saved_views() == ["race"]
    assert ds.load_saved_view("race").values("id") == ids[4:6]
    # without replace_own a view of the name is refused, its name given with spaces
    with pytest.raises(sdk.ViewNameTakenError, match="already has a saved view"):
        sdk.save_view(ds, " race ", ds.limit(1), replace_own=False)
    ds.save_view("theirs", ds.limit(2))  # not clipbranches': no such words
    with pytest.raises(sdk.ViewNameTakenError) as err:
        sdk.save_view(ds, "theirs", ds.limit(1), replace_own=False)
    assert "clipbranches saved it" not in str(err.value)
    ds.delete_saved_view("theirs")
    assert sdk.save_view(ds, " race ", ds.limit(1)) == "race"  # ours: replaced
    assert ds.load_saved_view("race").values("id") == ids[:1]
    # a claim of this process it no longer holds (its removal failed, the database
    # gone meanwhile) is taken over, not waited for until the process ends
    from fiftyone.core.odm import get_db_conn

    from fiftyone_clipbranches.sdk.processes import this_process

    stale = {
        "_id": claims._claim_id(ds, views.VIEW_CLAIM_PREFIX + "race"),
        **this_process(),
        "work": "view",
        "since": 1.0,
    }
    get_db_conn()[claims.CLAIMS_COLLECTION].insert_one(stale)
    sdk.save_view(ds, "race", ds.limit(2), wait_s=0.5)
    assert ds.load_saved_view("race").values("id") == ids[:2]


def test_a_view_the_user_saved_is_replaced_only_when_asked(indexed):
    ds = indexed
    ids = ds.values("id")
    ds.save_view("mine", ds.select(ids[:2]), description="hand curated")
    with pytest.raises(sdk.ViewNameTakenError, match="clipbranches did not save"):
        sdk.save_view(ds, "mine", ds.limit(1))
    _tag(ds)
    with pytest.raises(sdk.ViewNameTakenError, match="'mine'"):
        sdk.refine(ds, index_key="cb", saved_view="mine", random_negatives=20)
    ds.reload()
    assert ds.load_saved_view("mine").values("id") == ids[:2]
    assert ds.get_saved_view_info("mine")["description"] == "hand curated"
    assert ds.get_field("clipbranches_score") is None  # refused before any write
    # a refinement's own view is replaced by the next refinement
    first = sdk.refine(ds, index_key="cb", saved_view="dogs", random_negatives=20)
    second = sdk.refine(
        ds, index_key="cb", saved_view="dogs", random_negatives=20, model="linear"
    )
    assert list(first.ids) != list(second.ids)
    assert ds.load_saved_view("dogs").values("id") == list(second.ids)
    # overwrite=True replaces the user's view, which is then clipbranches'
    sdk.save_view(ds, "mine", ds.select(ids[4:6], ordered=True), overwrite=True)
    assert ds.load_saved_view("mine").values("id") == ids[4:6]
    sdk.save_view(ds, "mine", ds.select(ids[7:8]))
    assert ds.load_saved_view("mine").values("id") == ids[7:8]


def test_a_float_field_the_user_made_is_never_written(indexed, monkeypatch):
    ds = indexed
    ds.set_values("uniqueness", [0.5] * len(ds))
    _tag(ds)
    import importlib

    refine_module = importlib.import_module("fiftyone_clipbranches.sdk.refine")

    def no_work(*args, **kwargs):
        raise AssertionError("the refinement ran before the refusal")

    with monkeypatch.context() as m:  # refused before any work: nothing computed
        m.setattr(refine_module, "refine_ranking", no_work)
        with pytest.raises(ValueError, match="clipbranches did not make it"):
            sdk.refine(ds, index_key="cb", score_field="uniqueness")
        ds.save_view("mine", ds.limit(2))
        with pytest.raises(sdk.ViewNameTakenError, match="did not save"):
            sdk.refine(ds, index_key="cb", saved_view="mine")
    assert ds.values("uniqueness") == [0.5] * len(ds)
    # a user's own field of the default name is refused too, its values kept
    ds.set_values("clipbranches_score", [float(i) for i in range(len(ds))])
    with pytest.raises(ValueError, match="clipbranches did not make it") as err:
        sdk.refine(ds, index_key="cb", random_negatives=20)
    assert err.value.in_app.endswith("enter another name in Score field")
    assert "(CLI: --score-field NAME;" in str(err.value)
    assert ds.values("clipbranches_score") == [float(i) for i in range(len(ds))]
    # marked as the message says (an earlier version's field), it is written
    field = ds.get_field("clipbranches_score")
    field.info = {"clipbranches": "scores"}
    field.save()
    result = sdk.refine(ds, index_key="cb", random_negatives=20)
    assert len(ds.exists("clipbranches_score")) == len(result.ids)
    # a field the refinement made is rewritten by the next one
    sdk.refine(ds, index_key="cb", score_field="round_scores", random_negatives=20)
    again = sdk.refine(ds, index_key="cb", score_field="round_scores", model="linear")
    assert len(ds.exists("round_scores")) == len(again.ids)


def test_refine_arguments_of_the_wrong_type_are_refused_by_name(indexed):
    ds = indexed
    _tag(ds)
    cases = [
        ({"negative_weight": "1"}, "negative_weight must be a finite number"),
        ({"negative_weight": float("nan")}, "negative_weight"),
        ({"negative_weight": -2}, "negative_weight"),
        ({"random_negatives": "10"}, "random_negatives must be an int"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"neighbours_per_positive": "many"}, "neighbours_per_positive"),
        ({"model_params": [1]}, "model_params must be a dict"),
        ({"model": 3}, "model must be"),
        ({"score_field": ""}, "score field name '' must be an identifier"),
        ({"model": "ball", "query": 3}, "query must be the searched text or its"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            sdk.refine(ds, index_key="cb", **kwargs)


def test_ids_not_in_the_dataset_are_told_apart_from_unindexed_ones(indexed):
    ds = indexed
    ids = ds.values("id")
    foreign = ["0" * 23 + str(i) for i in range(5)]
    with pytest.raises(sdk.SampleIdsError, match="5 positive ids are not samples of"):
        sdk.refine(ds, positives=ids[:2] + foreign, index_key="cb")
    with pytest.raises(sdk.SampleIdsError, match="24 hexadecimal digits"):
        sdk.refine(ds, positives=[ids[0] + "x"], index_key="cb")
    with pytest.raises(sdk.SampleIdsError, match="24 hexadecimal digits"):
        sdk.refine(ds, positives=["é" * 24], index_key="cb")


def test_every_sample_positive_returns_the_positives_with_a_note(indexed, capsys):
    ds = indexed
    ds.tag_samples("cb_positive")
    result = sdk.refine(ds, model="ensemble", index_key="cb")
    assert sorted(result.ids) == sorted(ds.values("id"))
    assert "nothing left to classify" in result.stats["note"]
    # the App's and the CLI's summaries say it too (they said only the counts)
    from fiftyone_clipbranches.cli import main as cli_main
    from fiftyone_clipbranches.sdk.messages import round_summary

    assert round_summary(result.stats).endswith("the result is your positives)")
    assert cli_main(["refine", ds.name, "--key", "cb", "--model", "ensemble"]) == 0
    assert "note: every sample is labelled positive" in capsys.readouterr().out
    assert len(ds.exists("clipbranches_score")) == len(ds)
    assert result.stats["n_random_neg_requested"] == 500  # the ensemble's default


def test_a_view_whose_every_sample_is_labelled_says_so_not_label_more(indexed):
    """It said "the model found no sample beyond the labelled positives: label
    more positives", where the view holds nothing else to find."""
    ds = indexed
    ids = ds.values("id")
    view = ds.select(ids[:6])
    for refine in (sdk.refine, sdk.refine_pages):
        result = refine(
            view, positives=ids[:3], negatives=ids[3:6], index_key="cb", seed=1
        )
        assert "every sample of the view is labelled" in result.stats["note"]
    wider = sdk.refine(ds.select(ids[:40]), positives=ids[:3], index_key="cb")
    assert "of the view is labelled" not in (wider.stats.get("note") or "")


_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import fiftyone as fo
    from pymongo.collection import Collection
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk import views

    name, stop, key = sys.argv[1], sys.argv[2], sys.argv[3]

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    if stop == "after_journal":
        views._apply_round = die
    elif stop == "between_set_and_clear":
        bulk_write = Collection.bulk_write
        def set_then_die(self, *a, **k):
            bulk_write(self, *a, **k)
            die()
        Collection.bulk_write = set_then_die
    elif stop == "before_view_save":
        views.save_view = die
    ds = fo.load_dataset(name)
    sdk.refine(ds, index_key=key, saved_view="round", random_negatives=20, seed=7)
    """
)


@pytest.mark.parametrize(
    "stop", ["after_journal", "between_set_and_clear", "before_view_save"]
)
def test_a_writer_killed_mid_round_leaves_the_old_or_new_state(indexed, stop, capsys):
    ds = indexed
    ds.persistent = True
    ids = ds.values("id")
    old = sdk.refine(ds, positives=ids[-3:], index_key="cb", saved_view="round")
    _tag(ds)
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, ds.name, stop, "cb"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ds.reload()
    saved_before_repair = ds.load_saved_view("round").values("id")
    # the next refinement finishes the dead round first, and says so
    said = "first finished the writes of an interrupted refinement (score field"
    if stop == "before_view_save":  # through the CLI, which writes no scores here
        args = ["refine", ds.name, "--key", "cb", "--random-negatives", "20"]
        assert cli_main([*args, "--seed", "7", "--no-scores"]) == 0
        assert f"note: {said} 'clipbranches_score')" in capsys.readouterr().out
    else:
        first = sdk.refine(
            ds, index_key="cb", random_negatives=20, seed=7, score_field=None
        )
        assert first.stats["recovered_fields"] == ["clipbranches_score"]
        assert f"{said} 'clipbranches_score')" in round_summary(first.stats)
    new = sdk.refine(ds, index_key="cb", random_negatives=20, seed=7, score_field=None)
    assert new.stats["recovered_fields"] == []
    assert set(new.ids) != set(old.ids)
    assert saved_before_repair in (old.ids, new.ids)
    assert ds.load_saved_view("round").values("id") == new.ids
    scored = dict(
        zip(*ds.exists("clipbranches_score").values(["id", "clipbranches_score"]))
    )
    assert scored == dict(zip(new.ids, new.scores.tolist()))
    from fiftyone.core.odm import get_db_conn

    assert (
        get_db_conn()[JOURNAL_COLLECTION].count_documents({"dataset_id": ds._doc.id})
        == 0
    )
    assert sdk.recover_unfinished_writes(ds) == []


def test_the_refine_after_a_dead_round_says_it_finished_it_on_a_user_index(
    make_user_index, capsys
):
    """Images -> tiny CLIP -> build_index; a refinement killed after journaling
    its round; the next one, from the shell, finishes it first and says so."""
    ds = make_user_index(n_per_class=5, name="views-dead-round")
    ds.persistent = True
    ids = ds.values("id")
    sdk.refine(ds, positives=ids[-3:], index_key="clip")  # the score field is there
    sdk.label_samples(ds, ids[:4], ids[-12:])
    writer = [sys.executable, "-c", _WRITER, ds.name, "after_journal", "clip"]
    proc = subprocess.run(writer, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert cli_main(["refine", ds.name, "--key", "clip", "--no-scores"]) == 0
    said = capsys.readouterr().out
    assert (
        "note: first finished the writes of an interrupted refinement (score field"
        " 'clipbranches_score')" in said
    )
    assert ds.load_saved_view("round").values("id")  # the dead round's view


def test_a_live_writers_round_is_left_alone(indexed):
    """Another process's journal is replayed only once that process is gone."""
    from fiftyone.core.odm import get_db_conn

    ds = indexed
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import psutil

        journal = get_db_conn()[JOURNAL_COLLECTION]
        head = {
            "dataset_id": ds._doc.id,
            "field": "clipbranches_score",
            "state": "writing",
            "host": socket.gethostname(),
            "pid": sleeper.pid,
            "pid_started": psutil.Process(sleeper.pid).create_time(),
            "n": 0,
        }
        journal.insert_one(head)
        assert sdk.recover_unfinished_writes(ds) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sdk.recover_unfinished_writes(ds) == []  # an empty round: nothing to set
    assert journal.count_documents({"dataset_id": ds._doc.id}) == 0


def _scored(ds, field="clipbranches_score"):
    return dict(zip(*ds.exists(field).values(["id", field])))


def test_background_writes_end_in_the_latest_rounds_state(indexed):
    ds = indexed
    ids = ds.values("id")
    first = sdk.refine(ds, positives=ids[:3], index_key="cb", k_preview=5)
    assert first.view.values("id") == first.ids[:5]
    rounds = [
        sdk.refine(
            ds,
            positives=ids[i : i + 4],
            index_key="cb",
            k_preview=5,
            write_in_background=True,
            saved_view="latest",
        )
        for i in (10, 40, 70)
    ]
    # the view needs no written score: the best results in order at once
    assert rounds[-1].view.values("id") == rounds[-1].ids[:5]
    sdk.wait_for_writes(ds)
    last = rounds[-1]
    assert _scored(ds) == dict(zip(last.ids, last.scores.tolist()))
    assert ds.load_saved_view("latest").values("id") == last.ids[:5]
    assert "clipbranches_score" in {
        k for spec in ds.get_index_information().values() for k, _ in spec["key"]
    }
    from fiftyone.core.odm import get_db_conn

    journal = get_db_conn()[JOURNAL_COLLECTION]
    assert journal.count_documents({"dataset_id": ds._doc.id}) == 0


def test_a_failed_background_write_is_reported_and_replayed(indexed, monkeypatch):
    from fiftyone_clipbranches.sdk import views

    ds = indexed
    ids = ds.values("id")
    apply_round = views._apply_round

    def fail_once(*args, **kwargs):
        monkeypatch.setattr(views, "_apply_round", apply_round)
        raise RuntimeError("database went away")

    monkeypatch.setattr(views, "_apply_round", fail_once)
    result = sdk.refine(ds, positives=ids[:4], index_key="cb", write_in_background=True)
    with pytest.raises(RuntimeError, match="went away"):
        sdk.wait_for_writes(ds, "clipbranches_score")
    sdk.wait_for_writes(ds)  # reported once
    # this process is not writing the round any more: the next refine replays it
    assert sdk.recover_unfinished_writes(ds) == ["clipbranches_score"]
    assert _scored(ds) == dict(zip(result.ids, result.scores.tolist()))


def test_unchanged_scores_are_not_rewritten(indexed):
    ds = indexed
    ids = ds.values("id")
    sdk.refine(ds, positives=ids[:4], index_key="cb")
    before = dict(zip(*ds.values(["id", "last_modified_at"])))
    again = sdk.refine(ds, positives=ids[:4], index_key="cb")
    assert dict(zip(*ds.values(["id", "last_modified_at"]))) == before
    assert _scored(ds) == dict(zip(again.ids, again.scores.tolist()))


def test_one_round_at_a_time_writes_a_score_field(indexed):
    import threading

    from fiftyone_clipbranches.sdk import views

    ds = indexed
    ids = ds.values("id")
    views.write_result(ds, "clipbranches_score", ids[5:10], np.ones(5))
    held = views._hold_score_field(ds, "clipbranches_score")
    held.__enter__()  # a round mid-write
    done = threading.Event()

    def write():
        views.write_result(ds, "clipbranches_score", ids[:5], np.arange(5.0))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not done.wait(1.0)  # it waits for the round in progress
    assert _scored(ds) == dict(zip(ids[5:10], [1.0] * 5))
    held.__exit__(None, None, None)
    assert done.wait(30)
    writer.join()
    assert _scored(ds) == dict(zip(ids[:5], np.arange(5.0).tolist()))


def test_a_result_too_large_to_save_is_kept_the_way_its_error_says(
    make_user_index, monkeypatch
):
    """A result above the ids a saved view can select (a broad concept in a large
    dataset): the error's way out, followed as written, keeps it as a view in
    rank order."""
    import importlib

    from fiftyone_clipbranches.sdk.messages import too_large_to_save

    refine_module = importlib.import_module("fiftyone_clipbranches.sdk.refine")

    ds = make_user_index(4)
    ids = ds.values("id")
    result = sdk.refine(
        ds, positives=ids[:6], negatives=ids[-4:], index_key="clip",
        score_field="clipbranches_score",
    )  # fmt: skip
    n = len(result.ids)
    assert n > 2
    monkeypatch.setattr(refine_module, "MAX_SELECTED_SAMPLES", n - 1)
    with pytest.raises(sdk.ResultTooLargeError) as refused:
        sdk.refine(
            ds, positives=ids[:6], negatives=ids[-4:], index_key="clip",
            score_field="clipbranches_score", saved_view="big",
        )  # fmt: skip
    words = str(refused.value)
    assert words.startswith(too_large_to_save(n, n - 1, "clipbranches_score"))
    assert f"holds {n:,} samples" in words and "refine further" in words
    ds.clone_sample_field("clipbranches_score", "my_result")
    assert "dataset.clone_sample_field('clipbranches_score', 'my_result')" in words
    view = ds.exists("my_result").sort_by("my_result", reverse=True)
    assert (
        "save dataset.exists('my_result').sort_by('my_result', reverse=True)" in words
    )
    sdk.save_view(ds, "big", view)
    assert ds.load_saved_view("big").values("id") == list(result.ids)
    sdk.refine(ds, positives=ids[:2], index_key="clip")  # the next round
    assert ds.load_saved_view("big").values("id") == list(result.ids)  # kept


def test_apply_refine_result_refuses_ids_and_scores_that_are_no_ranking(indexed):
    """Ids not hex reached bson's InvalidId, ids of no sample cleared the score
    field of every other sample, NaN scores were written."""
    ds = indexed
    ids = ds.values("id")[:3]
    sdk.apply_refine_result(ds, ids, [0.9, 0.5, 0.1])
    before = _scored(ds)
    with pytest.raises(sdk.SampleIdsError, match="^ids must be FiftyOne sample ids"):
        sdk.apply_refine_result(ds, ["z" * 24], [1.0])
    with pytest.raises(sdk.SampleIdsError, match="is not a sample of dataset") as err:
        sdk.apply_refine_result(ds, ["0" * 24], [1.0])
    assert "of a patches view, view.values('sample_id')" in str(err.value)
    with pytest.raises(sdk.SampleIdsError, match="^ids must be distinct"):
        sdk.apply_refine_result(ds, [ids[0], ids[0]], [1.0, 0.5])
    with pytest.raises(
        ValueError, match="scores must be finite numbers, as a ranking's are; got 1 NaN"
    ):
        sdk.apply_refine_result(ds, ids, [0.9, float("nan"), 0.1])
    with pytest.raises(sdk.SampleIdsError, match="^ids must be sample ids"):
        sdk.apply_refine_result(ds, 5, [1.0])
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\)"):
        sdk.apply_refine_result(ds, ids, None)
    with pytest.raises(ValueError, match="score field name '' must be an identifier"):
        sdk.apply_refine_result(ds, ids, [0.9, 0.5, 0.1], score_field="")
    assert _scored(ds) == before  # nothing written
    view = sdk.apply_refine_result(ds, ids[0], [1.0])  # one id
    assert view.values("id") == ids[:1] and _scored(ds) == {ids[0]: 1.0}
