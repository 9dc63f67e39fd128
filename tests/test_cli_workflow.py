"""The CLI's workflow on the user's path: images on disk -> ``clipbranches
build-index`` (tiny random-weight open_clip) -> ``indexes`` -> ``search`` ->
``refine``, on a real dataset on its real database."""

from __future__ import annotations

import io
import json

import pytest
from user_path import TINY_CLIP_NAME, build_user_index, images_dataset

from fiftyone_clipbranches.cli import main as cli_main


def _json(capsys):
    return json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout


@pytest.fixture
def images(cifar_dir):
    ds = images_dataset(cifar_dir, 5)
    yield ds
    ds.delete()


def test_build_search_and_refine_from_the_shell(images, tiny_clip_checkpoint, capsys):
    ds = images
    build = ["build-index", ds.name, "--key", "clip", "--model", TINY_CLIP_NAME]
    build += ["--pretrained", str(tiny_clip_checkpoint), "--code-method", "pca"]
    assert cli_main([*build, "--json"]) == 0
    info = _json(capsys)
    assert info["n_samples"] == 50 and info["clip_model"]["name"] == TINY_CLIP_NAME

    assert cli_main(["indexes", ds.name]) == 0
    assert "clip: 50 samples, pca codes" in capsys.readouterr().out

    search = ["search", ds.name, "--key", "clip", "--text", "a cat", "--k", "10"]
    assert cli_main([*search, "--json", "--tag", "cb_positive"]) == 0
    rows = _json(capsys)["results"]
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == 10
    assert [r["sq_distance"] for r in rows] == sorted(r["sq_distance"] for r in rows)
    assert sorted(ds.match_tags("cb_positive").values("id")) == sorted(ids)
    assert all(r["tagged"] for r in rows)
    # again: the rows say that this run tagged none of them, and so do the words
    assert cli_main([*search, "--json", "--tag", "cb_positive"]) == 0
    assert not any(r["tagged"] for r in _json(capsys)["results"])
    assert cli_main([*search, "--tag", "cb_positive", "--limit", "1"]) == 0
    assert "tagged 0 samples 'cb_positive', 10 already had it" in (
        capsys.readouterr().out
    )
    assert cli_main([*search, "--json"]) == 0
    assert "tagged" not in _json(capsys)["results"][0]  # without --tag, nothing to say
    paths = dict(zip(*ds.values(["id", "filepath"])))
    assert [r["filepath"] for r in rows] == [paths[i] for i in ids]  # as the table

    # --json prints every row (scripts read them all); --limit still cuts it
    many = ["search", ds.name, "--key", "clip", "--text", "a cat", "--k", "30"]
    assert cli_main([*many, "--json"]) == 0
    assert len(_json(capsys)["results"]) == 30
    assert cli_main([*many, "--json", "--limit", "4"]) == 0
    assert len(_json(capsys)["results"]) == 4

    assert cli_main([*search, "--limit", "2"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.split() == ["rank", "sample", "id", "sq.", "distance", "filepath"]

    # a result the user labelled negative keeps its label (never both tags)
    ds.select(ids[9]).untag_samples("cb_positive")
    ds.select(ids[9]).tag_samples("cb_negative")
    assert cli_main([*search, "--tag", "cb_positive", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert (
        "tagged 0 samples 'cb_positive', 9 already had it; 1 sample already tagged"
        " 'cb_negative'" in out
    )
    assert not len(ds.match_tags(["cb_positive", "cb_negative"], all=True))
    # so does one labelled with the user's own tags
    ds.select(ids[8]).tag_samples("no")
    mine = ["--positive-tag", "yes", "--negative-tag", "no"]
    assert cli_main([*search, "--tag", "yes", *mine, "--limit", "1"]) == 0
    assert "tagged 9 samples 'yes'; 1 sample already tagged 'no'" in (
        capsys.readouterr().out
    )
    assert not len(ds.match_tags(["yes", "no"], all=True))
    ds.untag_samples(["yes", "no"])

    assert cli_main(["refine", ds.name, "--key", "clip", "--json"]) == 0
    by_tags = _json(capsys)
    assert by_tags["stats"]["n_pos"] == 9 and by_tags["stats"]["n_neg"] == 1
    assert len(by_tags["results"]) == by_tags["n_results"] >= 9
    assert all(r["filepath"] == paths[r["id"]] for r in by_tags["results"])
    # the training set's options reach the SDK
    own = ["--random-negatives", "3", "--neighbours-per-positive", "0"]
    assert cli_main(["refine", ds.name, "--key", "clip", "--json", *own]) == 0
    stats = _json(capsys)["stats"]
    assert stats["n_random_neg"] == 3 and stats["n_neighbour_pos"] == 0
    near = ["refine", ds.name, "--key", "clip", "--positive", ids[0]]
    near += ["--json", "--neighbours-per-positive"]
    assert cli_main([*near, "3"]) == 0
    assert _json(capsys)["stats"]["n_neighbour_pos"] == 3
    assert cli_main([*near, "auto"]) == 0
    assert _json(capsys)["stats"]["n_neighbour_pos"] > 3  # round(32 / 1) of them
    with pytest.raises(SystemExit):
        cli_main([*near, "some"])
    assert (
        "--neighbours-per-positive: 'some' is neither 'auto' nor a whole number"
        in capsys.readouterr().err
    )
    # a mistyped option: the command's own usage, and the option meant
    with pytest.raises(SystemExit):
        cli_main(["refine", ds.name, "--key", "clip", "--randm-negatives", "5"])
    said = capsys.readouterr().err
    assert said.startswith("usage: clipbranches refine")
    assert "(did you mean --random-negatives?)" in said
    # two ids after one flag: told to repeat it (options may come before DATASET)
    with pytest.raises(SystemExit):
        cli_main(["refine", "--positive", ids[0], ids[1], ds.name, "--key", "clip"])
    assert "take one id each: repeat the flag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["refine", ds.name, "--key", "clip", "--positive", ids[0], ids[1]])
    assert f"unrecognized arguments: {ids[1]}; --positive" in capsys.readouterr().err
    order = ["refine", "--key", "clip", "--positive", ids[0], ds.name, "--json"]
    assert cli_main(order) == 0 and _json(capsys)["stats"]["n_pos"] == 1
    # with --json, what argparse refuses is JSON on stdout too (it was usage only)
    for wrong in (["--model", "cascde"], ["--randm-negatives", "5"]):
        with pytest.raises(SystemExit) as exit:
            cli_main(["refine", ds.name, "--key", "clip", "--json", *wrong])
        out, err = capsys.readouterr()
        assert exit.value.code == 2 and err.startswith("usage: clipbranches refine")
        refused = json.loads(out)["error"]
        assert refused["type"] == "UsageError" and wrong[0] in refused["message"]
    with pytest.raises(SystemExit):  # no --json: no JSON
        cli_main(["refine", ds.name, "--model", "cascde"])
    assert capsys.readouterr().out == ""
    # verify speaks JSON too
    assert cli_main(["verify", ds.name, "--key", "clip", "--json"]) == 0
    checked = _json(capsys)
    assert (checked["n_ok"], checked["n_failed"]) == (1, 0)
    assert (
        checked["indexes"][0]["ok"]
        and "encoder/encoder.json" in checked["indexes"][0]["files"]
    )
    assert cli_main(["verify", ds.name, "--key", "nope", "--json"]) == 1
    assert "has no clipbranches index 'nope'" in _json(capsys)["error"]["message"]
    # ids and tags at once: the tags were dropped without a word
    both = ["refine", ds.name, "--key", "clip", "--positive", ids[0]]
    assert cli_main([*both, "--positive-tag", "yes"]) == 2  # a usage error
    assert "not both: ids replace the tags" in capsys.readouterr().err

    refine = ["refine", ds.name, "--key", "clip", "--model", "linear", "--json"]
    refine += ["--positive", ids[0], "--positive", ids[1], "--negative", ids[9]]
    assert cli_main([*refine, "--saved-view", "cli-round", "--limit", "100"]) == 0
    result = _json(capsys)
    found = [r["id"] for r in result["results"]]
    assert result["stats"]["n_pos"] == 2 and result["stats"]["n_neg"] == 1
    assert {ids[0], ids[1]} <= set(found) and ids[9] not in found
    assert len(found) == result["n_results"]
    assert "cli-round" in ds.list_saved_views()
    scored = ds.exists("clipbranches_score")
    assert sorted(scored.values("id")) == sorted(found)
    # the name taken: refused before any work, replaced with --overwrite
    assert cli_main([*refine, "--saved-view", "cli-round", "--negative", ids[8]]) == 1
    assert "pass --overwrite to replace it" in _json(capsys)["error"]["message"]
    assert ds.exists("clipbranches_score").count() == len(found)  # nothing written
    again = [*refine, "--saved-view", "cli-round", "--overwrite", "--limit", "100"]
    assert cli_main(again) == 0
    assert sorted(ds.load_saved_view("cli-round").values("id")) == sorted(
        r["id"] for r in _json(capsys)["results"]
    )
    # a view the user saved: refused in words that name no flag that would fail
    ds.save_view("mine", ds.limit(2))
    assert cli_main([*refine, "--saved-view", "mine", "--overwrite"]) == 1
    said = _json(capsys)["error"]["message"]
    assert "clipbranches did not save" in said and "--overwrite" not in said
    assert cli_main([*refine, "--saved-view", "mine"]) == 1
    assert "--overwrite" not in _json(capsys)["error"]["message"]
    assert cli_main([*refine, "--overwrite"]) == 2
    assert "--overwrite replaces a --saved-view" in capsys.readouterr().err
    ds.delete_saved_view("mine")

    assert cli_main(["refine", ds.name, "--key", "clip", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cascade: ") and "more (--limit)" in lines[-1]
    assert lines[1].split() == ["rank", "sample", "id", "score", "filepath"]
    assert [line.split()[0] for line in lines[2:5]] == ["1", "2", "3"]

    # errors name the CLI's own flags
    assert cli_main(["refine", ds.name, "--key", "clip", "--negative", ids[9]]) == 1
    assert "--positive in the CLI" in capsys.readouterr().err
    assert cli_main(["refine", ds.name, "--key", "clip", "--model", "ball"]) == 1
    assert "--query in the CLI" in capsys.readouterr().err
    # with --json, stdout stays JSON on an error too
    ball = ["refine", ds.name, "--key", "clip", "--model", "ball", "--json"]
    assert cli_main(ball) == 1
    assert "--query in the CLI" in _json(capsys)["error"]["message"]

    # a sample added since the build: the refinement says it was not searched
    import fiftyone as fo

    ds.add_sample(fo.Sample(filepath=ds.first().filepath))
    # without a dataset: every dataset that has indexes, with their keys
    assert cli_main(["indexes", "--json"]) == 0
    assert {"dataset": ds.name, "keys": ["clip"]} in _json(capsys)
    assert cli_main(["indexes"]) == 0
    assert f"\n{ds.name}: clip\n" in "\n" + capsys.readouterr().out
    # the listing's hint is a command that runs as printed
    assert cli_main(["indexes", ds.name]) == 0
    assert (
        "stale: 1 sample added, 0 deleted since it was built or updated"
        f" (`clipbranches update-index {ds.name} --key clip` brings it up to date)"
    ) in capsys.readouterr().out
    assert cli_main(["refine", ds.name, "--key", "clip", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert (
        f"note: 1 sample added since the index was built was not searched: "
        f"clipbranches update-index {ds.name} --key clip" in out
    )
    # and so does a search
    assert cli_main(["search", ds.name, "--key", "clip", "--sample-id", ids[0]]) == 0
    assert "1 sample added since the index was built was not searched" in (
        capsys.readouterr().out
    )
    # with --json too, on stderr: stdout holds the JSON alone
    search = ["search", ds.name, "--key", "clip", "--sample-id", ids[0], "--json"]
    assert cli_main([*search, "--k", "7"]) == 0
    out, err = capsys.readouterr()
    found = json.loads(out)
    assert len(found["results"]) == found["n_results"] == 7
    assert found["stats"] == {"query": "samples", "index_key": "clip", "n_unindexed": 1}
    assert err.startswith("note: 1 sample added since the index was built was not")
    # a key a build on a dead machine holds: refused with the way out, released
    import time

    from fiftyone.core.odm import get_db_conn

    from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION

    claim = {"_id": f"{ds._doc.id}:clip", "host": "a-machine-that-died", "pid": 7,
             "pid_started": 0.0, "work": "update", "since": time.time()}  # fmt: skip
    get_db_conn()[CLAIMS_COLLECTION].insert_one(claim)
    assert cli_main(["update-index", ds.name, "--key", "clip", "--quiet"]) == 75
    assert f"clipbranches unlock-index {ds.name} --key clip" in capsys.readouterr().err
    assert cli_main(["unlock-index", ds.name, "--key", "clip"]) == 0
    assert "from update by process 7 on a-machine-that-died" in capsys.readouterr().out
    ds.delete_samples(ds.values("id")[:2])
    assert cli_main(["update-index", ds.name, "--key", "clip", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "index 'clip': 1 sample added, 2 dropped (deleted from the dataset)" in out
    assert cli_main(["update-index", ds.name, "--key", "clip", "--quiet"]) == 0
    assert "index 'clip' was up to date" in capsys.readouterr().out
    # renamed from the shell
    rename = ["rename-index", ds.name, "--key", "clip", "--new-key", "clip2"]
    assert cli_main(rename) == 0
    assert "renamed index 'clip'" in capsys.readouterr().out
    assert cli_main(["indexes", ds.name]) == 0
    assert capsys.readouterr().out.startswith("clip2: ")
    assert cli_main(rename) == 1  # 'clip' is gone
    assert "no clipbranches index 'clip'" in capsys.readouterr().err


def test_delete_index_needs_its_key_and_removes_only_that_index(
    images, tiny_clip_checkpoint, capsys
):
    from fiftyone_clipbranches import sdk

    for key in ("keep", "drop"):
        build_user_index(images, tiny_clip_checkpoint, key)
    with pytest.raises(SystemExit):
        cli_main(["delete-index", images.name])  # no default key to delete
    # a damaged index is listed as such, and does not hide the others
    from pathlib import Path

    from fiftyone_clipbranches.sdk.bundle import forget_bundle

    drop_dir = sdk.index_info(images, "drop", check=False).index_dir
    codes = next(Path(drop_dir).rglob("codes.npy"))
    codes.write_bytes(codes.read_bytes()[:-1] + b"\x7f")
    forget_bundle(drop_dir)
    assert cli_main(["indexes", images.name]) == 1
    out = capsys.readouterr().out
    assert "keep: 50 samples" in out and "drop: cannot be read" in out
    assert cli_main(["indexes", images.name, "--json"]) == 1
    listed = {i["key"]: i for i in _json(capsys)}
    assert listed["keep"]["n_samples"] == 50 and "error" in listed["drop"]
    assert cli_main(["delete-index", images.name, "--key", "drop"]) == 0
    assert "deleted index 'drop'" in capsys.readouterr().out
    assert sdk.list_indexes(images) == ["keep"]
    assert cli_main(["delete-index", images.name, "--key", "drop"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no clipbranches index 'drop'" in err and "its indexes: keep" in err
    assert "--key keep" not in err  # a deletion names no other index to delete
    # a cleanup script's second run: nothing to delete is no failure when asked
    gone = ["delete-index", images.name, "--key", "drop", "--missing-ok"]
    assert cli_main(gone) == 0
    assert "has no index 'drop': nothing to delete" in capsys.readouterr().out
    assert cli_main([*gone, "--json"]) == 0
    assert _json(capsys)["deleted"] is None
    assert sdk.list_indexes(images) == ["keep"]


def test_cli_errors_are_one_line(images, cifar_dir, capsys):
    for command in ("refine", "verify", "update-index"):
        assert cli_main([command, "no-such-dataset"]) == 1
        err = capsys.readouterr().err
        assert f"{command}: error: dataset 'no-such-dataset' does not exist" in err
    assert cli_main(["indexes", images.name + "x"]) == 1  # a typo
    assert f"did you mean {images.name!r}?" in capsys.readouterr().err
    assert cli_main(["search", images.name, "--key", "nope", "--text", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("clipbranches search: error:") and "nope" in err
    assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        cli_main(["search", images.name])  # a query is required
    with pytest.raises(SystemExit):
        cli_main(["refine", images.name, "--no-scores", "--score-field", "s"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # it wrote no score without a word
        cli_main(["refine", images.name, "--score-field", " "])
    assert "give a field name (--no-scores writes none)" in capsys.readouterr().err
    # weights this machine lacks: told with the CLI's flags, not load_clip(...)
    capsys.readouterr()
    build = ["build-index", images.name, "--model", "ViT-B-32", "--quiet"]
    build += ["--code-method", "pca"]
    assert cli_main([*build, "--pretrained", "laion2b_s34b_b79k"]) == 1
    err = capsys.readouterr().err
    assert "are not available" in err and "--pretrained with a local checkpoint" in err
    assert "load_clip(" not in err and len(err.strip().splitlines()) == 1
    assert "--model demo" in err
    # an error after a bar started is printed on a line of its own
    # an error after an SDK call's bar started is printed on a line of its own
    demo = ["demo", "--images", str(cifar_dir / "cat"), "--model", "ViT-B-32"]
    assert cli_main([*demo, "--pretrained", "laion2b_s34b_b79k", "--no-app"]) == 1
    last = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert last.startswith("clipbranches demo: error:")


def test_model_demo_builds_offline_and_other_processes_search_it(images, capsys):
    """``--model demo`` was known to ``clipbranches demo`` only (build-index asked
    for its pretrained tag); the index it builds answers text in a new process
    (the architecture's config lies beside the checkpoint it records)."""
    import subprocess
    import sys

    build = ["build-index", images.name, "--model", "demo", "--code-method", "pca"]
    for weights in ("x", "none"):  # random weights are not the shipped ones either
        assert cli_main([*build, "--pretrained", weights, "--quiet"]) == 1
        assert "leave the pretrained weights empty" in capsys.readouterr().err
    assert cli_main([*build, "--quiet", "--json"]) == 0
    info = _json(capsys)
    assert info["clip_model"]["name"] == "clipbranches-demo-rn16"
    search = [sys.executable, "-m", "fiftyone_clipbranches.cli", "search"]
    search += [images.name, "--text", "a red circle", "--k", "3", "--json"]
    done = subprocess.run(search, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["results"]) == 3


def test_pretrained_none_means_random_weights_and_absent_means_not_given():
    from fiftyone_clipbranches.cli_workflow import _pretrained
    from fiftyone_clipbranches.sdk.clip_names import UNSET

    assert _pretrained(None) is UNSET
    assert _pretrained("None") is None and _pretrained("none") is None
    assert _pretrained("laion2b_s34b_b79k") == "laion2b_s34b_b79k"


def test_unreadable_and_added_images_from_the_shell(
    images, tiny_clip_checkpoint, tmp_path, capsys
):
    import fiftyone as fo

    ds = images
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    (broken_id,) = ds.add_samples([fo.Sample(filepath=str(broken))], progress=False)
    model = ["--model", TINY_CLIP_NAME, "--pretrained", str(tiny_clip_checkpoint)]
    # a new embeddings field is computed into with the model given
    build = ["build-index", ds.name, "--key", "a", "--code-method", "pca"]
    assert cli_main([*build, "--embeddings-field", "tiny", *model, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "a: 50 samples" in out and "1 sample left out" in out
    assert f"`clipbranches update-index {ds.name} --key a --retry-failed`" in out
    # that field now exists and lacks one vector: refused unless told to skip it
    build = ["build-index", ds.name, "--key", "b", "--code-method", "pca"]
    assert cli_main([*build, "--embeddings-field", "tiny", "--quiet"]) == 1
    assert "--skip-missing" in capsys.readouterr().err
    assert cli_main([*build, "--embeddings-field", "tiny", "--skip-missing"]) == 0
    capsys.readouterr()
    # vectors stored by hand (no model recorded): a sample without one is said to
    # have none, not an image that could not be read (the build said so)
    ds.set_values("hand", ds.values("tiny"))
    build = ["build-index", ds.name, "--key", "c", "--code-method", "pca"]
    assert cli_main([*build, "--embeddings-field", "hand", "--skip-missing"]) == 0
    out = capsys.readouterr().out
    assert "1 sample left out: no vector in 'hand'" in out
    assert "could not be read" not in out
    refine = ["refine", ds.name, "--key", "a", "--json"]
    first = ds.first().id
    assert cli_main([*refine, "--positive", first, "--positive", broken_id]) == 1
    assert "could not be read" in capsys.readouterr().err
    # as a negative it is left out, and said so
    labels = ["--positive", first, "--negative", broken_id, "--limit", "1"]
    assert cli_main(["refine", ds.name, "--key", "a", *labels, "--no-scores"]) == 0
    assert "0 negatives labelled (1 unreadable negative left out)" in (
        capsys.readouterr().out
    )
    # added after the build: the error names the command that adds it
    (added,) = ds.add_samples([fo.Sample(filepath=ds.first().filepath)], progress=False)
    assert cli_main([*refine, "--positive", first, "--positive", added]) == 1
    assert f"clipbranches update-index {ds.name} --key a" in capsys.readouterr().err
    assert cli_main(["update-index", ds.name, "--key", "a", "--quiet", "--json"]) == 0
    out = _json(capsys)
    assert out["n_samples"] == 51
    assert out["changes"] == {
        "added": 1, "dropped": 0, "replaced": 0, "lost": 0, "left_out": 0,
        "moved_kept": 0, "no_vector": 0, "unreadable_again": 0,
    }  # fmt: skip
    assert cli_main([*refine, "--positive", first, "--positive", added]) == 0
    assert {first, added} <= {r["id"] for r in _json(capsys)["results"]}
    # new samples whose images cannot be read: counted as left out, not silently
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    ds.add_samples(
        [fo.Sample(filepath=ds.first().filepath), fo.Sample(filepath=str(empty)),
         fo.Sample(filepath=str(broken))], progress=False,
    )  # fmt: skip
    assert cli_main(["update-index", ds.name, "--key", "a", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "1 sample added, 0 dropped (deleted from the dataset), 2 more left out" in (
        said
    )
    assert cli_main(["refine", ds.name, "--key", "a", "--positive", first]) == 0
    assert "samples of 52 indexed" in capsys.readouterr().out


def test_labels_are_set_and_removed_from_the_shell(make_user_index, capsys):
    """The shell could add labels (search --tag) but not change or remove them."""
    ds = make_user_index(n_per_class=5, name="cli-labels")
    ids = ds.values("id")
    label = ["label", ds.name]
    assert cli_main([*label, "--positive", ids[0], "--positive", ids[1],
                     "--negative", ids[2]]) == 0  # fmt: skip
    assert capsys.readouterr().out == (
        f"2 labelled positive, 1 negative; dataset {ds.name!r} holds 2 positive"
        " ('cb_positive') and 1 negative ('cb_negative') labels\n"
    )
    # a positive marked negative moves, as in the App's panel
    assert cli_main([*label, "--negative", ids[1], "--json"]) == 0
    out = _json(capsys)
    assert (out["positives"], out["negatives"]) == (1, 2)
    assert ds[ids[1]].tags == ["cb_negative"]
    # the tags are the refinement's labels
    assert cli_main(["refine", ds.name, "--key", "clip", "--json", "--no-scores"]) == 0
    stats = _json(capsys)["stats"]
    assert (stats["n_pos"], stats["n_neg"]) == (1, 2)
    # errors say what is wrong and change nothing
    assert cli_main([*label, "--positive", ids[3], "--negative", ids[3]]) == 1
    assert "both positive and negative" in capsys.readouterr().err
    assert cli_main([*label, "--positive", "0123456789abcdef01234567"]) == 1
    assert f"1 of 1 sample ids is not a sample of dataset {ds.name!r}" in (
        capsys.readouterr().err
    )
    assert cli_main(label) == 1
    assert "say what to label" in capsys.readouterr().err
    assert ds.count_sample_tags() == {"cb_positive": 1, "cb_negative": 2}
    # removed: from some samples, then from all
    assert cli_main([*label, "--clear", ids[2]]) == 0
    assert capsys.readouterr().out.startswith("1 label removed; dataset")
    assert cli_main([*label, "--clear-all", "--json"]) == 0
    assert _json(capsys)["removed"] == 2
    assert ds.count_sample_tags() == {}


def test_ids_from_files_label_and_refine_and_mend_contradictions(
    make_user_index, tmp_path, monkeypatch, capsys
):
    """Thousands of ids did not fit on a command line (one flag each), and the
    contradictory labels a refinement named could be mended a few at a time."""
    ds = make_user_index(n_per_class=5, name="cli-id-files")
    ids = ds.values("id")
    pos_file = tmp_path / "positives.txt"
    pos_file.write_text("\n".join(ids[:6]) + "\n\n")
    label = ["label", ds.name]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{ids[6]} {ids[7]}\t{ids[8]}"))
    assert cli_main([*label, "--positives-from", str(pos_file),
                     "--negatives-from", "-", "--json"]) == 0  # fmt: skip
    assert (_json(capsys)["positives"], len(ds.match_tags("cb_negative"))) == (6, 3)
    # both labels on four samples: the refinement names them; its ids, written one
    # per line as `jq -r '.error.ids[]'` does, give each one label
    ds.select(ids[:4]).tag_samples("cb_negative")
    assert cli_main(["refine", ds.name, "--key", "clip"]) == 1
    err = capsys.readouterr().err
    assert "--json lists all 4 ids under error.ids" in err
    assert f"`clipbranches label {ds.name} --positives-from FILE` (or" in err
    # the tags in use are in the way out; ids given twice, or label itself, have
    # no such way out: not offered
    ds.select(ids[:4]).tag_samples(["p 1", "n"])
    assert cli_main(["refine", ds.name, "--key", "clip", "--positive-tag", "p 1",
                     "--negative-tag", "n"]) == 1  # fmt: skip
    assert "label cli-id-files --positive-tag 'p 1' --negative-tag n --pos" in (
        capsys.readouterr().err
    )
    ds.untag_samples(["p 1", "n"])
    assert cli_main(["refine", ds.name, "--key", "clip", "--positive", ids[0],
                     "--negative", ids[0]]) == 1  # fmt: skip
    assert cli_main([*label, "--positive", ids[0], "--negative", ids[0]]) == 1
    assert "`clipbranches label" not in capsys.readouterr().err
    assert cli_main(["refine", ds.name, "--key", "clip", "--json"]) == 1
    both = tmp_path / "both.txt"
    both.write_text("\n".join(_json(capsys)["error"]["ids"]))
    assert cli_main([*label, "--positives-from", str(both)]) == 0
    capsys.readouterr()
    assert sorted(ds.match_tags("cb_negative").values("id")) == sorted(ids[6:9])
    # the ids of a file replace the tags, as --positive does
    assert cli_main(["refine", ds.name, "--key", "clip", "--no-scores", "--json",
                     "--positives-from", str(pos_file), "--negative", ids[6]]) == 0  # fmt: skip
    out = _json(capsys)
    assert (out["stats"]["n_pos"], out["stats"]["n_neg"]) == (6, 1)
    assert set(ids[:6]) <= {row["id"] for row in out["results"]}
    assert ids[6] not in {row["id"] for row in out["results"]}
    # a file that cannot be read, or holds nothing, is said with its option
    (tmp_path / "empty.txt").write_text("\n ")
    for bad, words in (
        (tmp_path / "missing.txt", "cannot read"), (tmp_path / "empty.txt", "holds no sample ids"),
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            cli_main([*label, "--clear-from", str(bad)])
        err = capsys.readouterr().err
        assert "--clear-from" in err and words in err
    assert cli_main([*label, "--clear-all", "--clear-from", str(both)]) == 1
    assert "not both" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(ids[9]))
    assert cli_main([*label, "--positives-from", "-", "--negatives-from", "-"]) == 1
    assert "standard input (-) can feed only one" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(" \n"))
    assert cli_main([*label, "--positives-from", "-"]) == 1
    assert "standard input holds no sample ids" in capsys.readouterr().err
    assert len(ds.match_tags("cb_positive")) == 6  # nothing changed by the errors


def test_a_refinement_stopped_while_writing_scores_says_what_is_left(
    make_user_index, capsys, monkeypatch
):
    """Ctrl-C while the score field was written: "interrupted" only, while the
    field held part of the round beside the last one; it says so, and that the
    next refinement finishes it."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk import views

    ds = make_user_index(n_per_class=5, name="cli-stopped-scores")
    ids = ds.values("id")
    refine = ["refine", ds.name, "--key", "clip", "--positive", ids[0],
              "--negative", ids[1], "--saved-view", "mine"]  # fmt: skip

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(views, "_apply_round", stopped)
    assert cli_main(refine) == 130
    said = capsys.readouterr().err
    assert "interrupted; the field 'clipbranches_score' was being written" in said
    assert "finishes writing this round and its saved view first" in said
    monkeypatch.undo()
    assert cli_main([*refine[:4], "--positive", ids[0], "--no-scores"]) == 0
    assert ds.has_saved_view("mine")  # the stopped round, finished
    # a script's traceback says it too (an attribute alone was never shown)
    monkeypatch.setattr(views, "_apply_round", stopped)
    with pytest.raises(KeyboardInterrupt) as stop:
        sdk.refine(ds, positives=ids[:1], index_key="clip")
    assert stop.value.__notes__ == [f"clipbranches: {stop.value.built}"]
    assert "was being written" in stop.value.built


def test_missing_vectors_of_a_field_that_records_its_model_name_the_flags(
    make_user_index, tiny_clip_checkpoint, capsys
):
    """The App's form embeds a field's missing vectors with the model it records;
    the shell said only compute_embeddings(...) (Python) or --skip-missing."""
    ds = make_user_index(n_per_class=4, name="cli-gaps")
    ds.take(3, seed=0).set_field("clip_embedding", None).save()
    build = ["build-index", ds.name, "--key", "b", "--embeddings-field"]
    build += ["clip_embedding", "--code-method", "pca", "--quiet"]
    assert cli_main(build) == 1
    err = capsys.readouterr().err
    assert "3 samples have no 'clip_embedding' embedding" in err
    flags = f"--model {TINY_CLIP_NAME} --pretrained {tiny_clip_checkpoint}"
    assert f"CLI: {flags})" in err
    assert cli_main([*build, *flags.split()]) == 0
    capsys.readouterr()
    assert len(ds.exists("clip_embedding")) == len(ds)
    assert cli_main(["indexes", ds.name, "--json"]) == 0
    (entry,) = [i for i in _json(capsys) if i["key"] == "b"]
    assert entry["n_samples"] == len(ds)


def test_build_index_again_in_its_place_from_the_shell(
    images, tiny_clip_checkpoint, capsys
):
    ds = images
    build = ["build-index", ds.name, "--key", "clip", "--model", TINY_CLIP_NAME]
    build += ["--pretrained", str(tiny_clip_checkpoint), "--code-method", "pca"]
    assert cli_main([*build, "--json", "--quiet"]) == 0
    first = _json(capsys)["index_dir"]
    assert cli_main([*build, "--quiet"]) == 1
    said = capsys.readouterr().err
    assert "already exists" in said and "--overwrite" in said
    assert cli_main([*build, "--json", "--quiet", "--overwrite"]) == 0
    info = _json(capsys)
    assert info["n_samples"] == 50 and info["index_dir"] != first
    search = ["search", ds.name, "--key", "clip", "--text", "a cat", "--k", "3"]
    assert cli_main([*search, "--json"]) == 0
    assert len(_json(capsys)) == 3


def test_indexes_of_a_dataset_made_grouped_say_why_rather_than_update(
    make_user_index, capsys
):
    """A dataset given a group field after its build listed its index as 100
    samples deleted, to be brought up to date by a command that is refused."""
    ds = make_user_index(n_per_class=4, name="cli-made-grouped")
    ds.add_group_field("group", default="left")
    assert cli_main(["indexes", ds.name]) == 0
    out = capsys.readouterr().out
    assert out.startswith("clip: 40 samples") and "stale" not in out
    assert f"note: dataset {ds.name!r} is a grouped dataset" in out


def _exit_status(argv) -> int:
    try:
        return cli_main(argv)
    except SystemExit as stop:  # argparse's refusals
        return stop.code


def test_scripts_tell_usage_errors_from_failures_and_always_get_json(
    make_user_index, capsys
):
    """Values argparse let through were refused later, exit 1 (a script could not
    tell a wrong command line from a failed one); CLIPBRANCHES_DEBUG=1 printed no
    JSON error; a full stdout gave two tracebacks; unlocking a mistyped key
    "succeeded"; a second --text replaced the first; a blank label tag passed."""
    import os
    import subprocess
    import sys
    import time

    ds = make_user_index(n_per_class=4)
    for bad in (
        ["search", ds.name, "--key", "clip", "--text", "a cat", "--k", "0"],
        ["search", ds.name, "--key", "clip", "--text", "  "],
        ["search", ds.name, "--key", "clip", "--text", "a cat", "--tag", ""],
        ["search", ds.name, "--key", "clip", "--text", "a cat", "--text", "a dog"],
        ["search", ds.name, "--key", "clip", "--image", "a.png", "--image", "b.png"],
        ["refine", ds.name, "--key", "clip", "--positive-tag", ""],
        ["label", ds.name, "--negative-tag", ""],
        ["refine", ds.name, "--key", "clip", "--negative-weight", "-1"],
        ["refine", ds.name, "--key", "clip", "--seed", "-1"],
        ["build-index", ds.name, "--key", "x", "--shards", "0"],
    ):
        assert _exit_status([*bad, "--json"]) == 2, bad
        assert _json(capsys)["error"]["type"] == "UsageError"
    assert _exit_status(["unlock-index", ds.name, "--key", "clp", "--json"]) == 1
    error = _json(capsys)["error"]
    assert (
        error["type"] == "IndexNotFoundError"
        and "its indexes: clip" in error["message"]
    )
    assert _exit_status(["unlock-index", ds.name, "--key", "clip"]) == 0
    assert "was not held: nothing to do" in capsys.readouterr().out

    # another process updating the index: a refusal for now, told apart (75)
    import psutil
    from fiftyone.core.odm import get_db_conn

    from fiftyone_clipbranches.cli import EXIT_BUSY
    from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION
    from fiftyone_clipbranches.sdk.processes import this_process

    parent = psutil.Process(os.getppid())  # alive while this test runs
    claim = {
        "_id": f"{ds._doc.id}:clip", **this_process(), "pid": parent.pid,
        "pid_started": parent.create_time(), "work": "update", "since": time.time(),
    }  # fmt: skip
    claims = get_db_conn()[CLAIMS_COLLECTION]
    claims.insert_one(claim)
    try:
        update = ["update-index", ds.name, "--key", "clip", "--quiet"]
        assert _exit_status([*update, "--json"]) == EXIT_BUSY == 75
        assert _json(capsys)["error"]["type"] == "IndexBusyError"
        assert _exit_status(update) == EXIT_BUSY
        assert "update by process" in capsys.readouterr().err
    finally:
        claims.delete_one({"_id": claim["_id"]})
    assert _exit_status(update) == 0

    search = [sys.executable, "-m", "fiftyone_clipbranches.cli", "search", ds.name]
    search += ["--key", "nope", "--text", "a cat", "--json"]
    debug = {**os.environ, "CLIPBRANCHES_DEBUG": "1"}
    done = subprocess.run(
        search, capture_output=True, text=True, env=debug, timeout=300
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["type"] == "IndexNotFoundError"
    assert "Traceback" in done.stderr  # what the variable is for
    with open("/dev/full", "w") as full:  # a disk that is full
        search[search.index("nope")] = "clip"
        done = subprocess.run(
            search, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "No space left on device" in done.stderr
    with open("/dev/full", "w") as full:  # a usage error's JSON goes there too
        done = subprocess.run(
            [*search, "--k", "0"], stdout=full, stderr=subprocess.PIPE, text=True,
            timeout=300,
        )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_next_to_label_after_a_refine(make_user_index, capsys, tmp_path):
    """refine, then next-to-label: the samples nearest the positives that are
    neither labelled nor in the result (the samples the refine scored)."""
    from fiftyone_clipbranches import sdk

    ds = make_user_index(n_per_class=6)
    cats = ds.match({"ground_truth.label": "cat"}).values("id")
    dogs = ds.match({"ground_truth.label": "dog"}).values("id")
    status = _exit_status(["next-to-label", ds.name, "--json"])
    said = _json(capsys)["error"]["message"]
    assert status == 1 and "refine first" in said and "--no-result" in said
    label = ["label", ds.name, "--positive", cats[0], "--positive", cats[1]]
    assert cli_main([*label, "--negative", dogs[0]]) == 0
    capsys.readouterr()
    # before any refine (or after refine --no-scores): no result to leave out
    assert cli_main(["next-to-label", ds.name, "--k", "5", "--no-result"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = sdk.next_to_label_ids(ds, k=5, index_key="clip")
    assert [line.split()[1] for line in lines[1:]] == first[0]
    assert [int(line.split()[2]) for line in lines[1:]] == first[1].tolist()
    assert cli_main(["refine", ds.name, "--random-negatives", "10", "--json"]) == 0
    result = {r["id"] for r in _json(capsys)["results"]}
    assert cli_main(["next-to-label", ds.name, "--k", "7", "--json"]) == 0
    out = _json(capsys)
    shown = [r["id"] for r in out["results"]]
    assert out["n_results"] == 7 and all(r["filepath"] for r in out["results"])
    # the shape of a search's answer
    assert out["stats"] == {"query": "positives", "index_key": "clip",
                            "n_unindexed": 0}  # fmt: skip
    assert [r["sq_distance"] for r in out["results"]] == sorted(
        r["sq_distance"] for r in out["results"]
    )
    assert not set(shown) & (result | {cats[0], cats[1], dogs[0]})
    expected = sdk.next_to_label(ds, exclude=list(result), k=7, index_key="clip")
    assert shown == expected.values("id")
    assert cli_main(["next-to-label", ds.name, "--k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "sample", "id", "sq.", "distance", "filepath"]
    assert [line.split()[1] for line in lines[1:]] == shown[:3]
    both = ["next-to-label", ds.name, "--no-result", "--score-field", "x"]
    assert _exit_status(both) == 2 and "not allowed with" in capsys.readouterr().err
    # the next page: past the ids shown so far, from a file (empty: none yet)
    seen = tmp_path / "seen.txt"
    seen.touch()
    assert (
        cli_main(
            [
                "next-to-label",
                ds.name,
                "--k",
                "7",
                "--exclude-from",
                str(seen),
                "--json",
            ]
        )
        == 0
    )
    assert [r["id"] for r in _json(capsys)["results"]] == shown
    seen.write_text("\n".join(shown) + "\n")
    page = ["next-to-label", ds.name, "--k", "7", "--exclude-from", str(seen)]
    assert cli_main([*page, "--json"]) == 0
    second = [r["id"] for r in _json(capsys)["results"]]
    expected = sdk.next_to_label(
        ds, exclude=[*result, *shown], k=7, index_key="clip"
    ).values("id")
    assert second == expected and second and not set(second) & set(shown)
    # a field no refinement wrote is no result
    status = _exit_status(["next-to-label", ds.name, "--score-field", "filepath"])
    assert status == 1 and "holds no refinement's scores" in capsys.readouterr().err


def test_a_build_stopped_says_what_it_kept(images, capsys, monkeypatch):
    """Ctrl-C said "the images embedded so far are kept" even when it came after
    every image was embedded: what is true wherever it comes."""
    from fiftyone_clipbranches import sdk

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sdk, "build_index", stopped)
    assert cli_main(["build-index", images.name, "--quiet"]) == 130
    said = capsys.readouterr().err.strip()
    assert said == (
        "clipbranches build-index: interrupted before the index was written; every"
        " image embedded by then is kept: the same command goes on from there"
    )
