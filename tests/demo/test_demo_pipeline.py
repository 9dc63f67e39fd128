"""`clipbranches demo` end to end at a small size, as a user runs it: real images,
the shipped demo CLIP, a real FiftyOne dataset, the index, a text search and one
simulated round (training the demo model is tested in test_demo_checkpoint.py and
test_demo_model.py)."""

from __future__ import annotations

import re

import pytest
import torch

from fiftyone_clipbranches.demo.pipeline import (
    DEMO_VIEW,
    DemoReport,
    parse_colour_shape,
    run_demo,
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_parse_colour_shape():
    assert parse_colour_shape("a red circle") == ("red", "circle")
    assert parse_colour_shape("Blue crosses!") == ("blue", "cross")
    assert parse_colour_shape("a red or blue circle") is None
    assert parse_colour_shape("a striped background") is None


@pytest.mark.slow
def test_demo_runs_end_to_end_and_is_idempotent(tmp_path):
    import fiftyone as fo

    kwargs = dict(
        n_images=300,
        dataset_name="clipbranches-demo-test",
        data_dir=tmp_path,
        progress=False,
    )
    report = run_demo(**kwargs)
    dataset = fo.load_dataset("clipbranches-demo-test")
    assert report.n_samples == len(dataset) == 300
    # ground truth: images holding a red circle; chance level is their share
    chance = report.n_relevant / report.n_samples
    assert 0 < chance < 0.2
    assert report.precision_at_20 >= 2 * chance
    assert report.n_refined > 0 and report.model == "ball"
    # one round of feedback on the top 60 finds more of the class than the top 60
    assert report.refined_f1 > report.topk_f1
    assert dataset.has_saved_view(DEMO_VIEW)
    text = report.format()
    assert "precision@20" in text and f"F1 of the top {report.k} " in text
    # one column of values: every name is followed by the same padding
    assert (
        len({re.search(r"\S {2,}(?=\S)", line).end() for line in text.splitlines()})
        == 1
    )

    # a view an earlier version saved (no description) is the demo's own: replaced
    dataset._doc.reload("saved_views")
    view_doc = next(d for d in dataset._doc.get_saved_views() if d.name == DEMO_VIEW)
    view_doc._get_collection().update_one(
        {"_id": view_doc.id}, {"$set": {"description": None}}
    )
    # and so is the score field it made, unmarked: taken, not refused
    score = dataset.get_field("clipbranches_score")
    score.info = None
    score.save()
    again = run_demo(**kwargs)
    assert dataset.get_field("clipbranches_score").info == {"clipbranches": "scores"}
    assert dataset.get_saved_view_info(DEMO_VIEW)["description"].startswith("Saved by")
    assert "demo model" in again.timings and again.timings["demo model"] < 30
    assert again.timings["index"] < 30
    assert again.precision_at_20 == report.precision_at_20

    # other images: the dataset is made again, and its old index goes with it
    from pathlib import Path

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.demo.pipeline import DEMO_INDEX_KEY

    old_dir = sdk.index_info(dataset, DEMO_INDEX_KEY, check=False).index_dir
    smaller = run_demo(**{**kwargs, "n_images": 200})
    assert smaller.n_samples == 200 and not Path(old_dir).exists()
    fo.load_dataset("clipbranches-demo-test").delete()


def test_a_report_without_ground_truth_says_that_feedback_is_not_simulated():
    # what `clipbranches demo --images DIR` reports: no figure can be measured
    report = DemoReport(dataset="mine", n_samples=70, query="a cat", k=60, model="ball")
    text = report.format()
    assert "feedback" in text and "not simulated" in text and "Refine" in text
    assert "n/a" not in text and "None" not in text and "precision" not in text


def test_a_folder_per_class_of_the_users_images_simulates_the_feedback(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """``clipbranches demo --images DIR`` on a class tree (as FiftyOne's
    ImageClassificationDirectoryTree): a query naming one class is judged by the
    folder names; one naming none is not."""
    import fiftyone as fo
    from user_path import TINY_CLIP_NAME

    for name in ("cat", "dog", "ship"):
        (tmp_path / name).mkdir()
        for image in sorted((cifar_dir / name).iterdir())[:25]:
            (tmp_path / name / image.name).symlink_to(image)
    (tmp_path / "ship" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "cat" / "truncated.jpg").write_bytes(b"\xff\xd8\xff")
    for tool in (".thumbs", "__MACOSX"):  # no class of the user's
        (tmp_path / tool).mkdir()
        (tmp_path / tool / "._0001.jpg").symlink_to(
            sorted((cifar_dir / "cat").iterdir())[0]
        )
    kwargs = dict(
        images=tmp_path,
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        k=20,
        dataset_name="clipbranches-demo-tree-test",
        progress=False,
    )
    try:
        report = run_demo(**kwargs, query="a photo of a cat")
        dataset = fo.load_dataset("clipbranches-demo-tree-test")
        assert set(dataset.distinct("ground_truth.label")) == {"cat", "dog", "ship"}
        assert report.n_samples == 77 and report.n_relevant == 25
        assert report.topk_f1 is not None and "not simulated" not in report.format()
        assert "2 images could not be read and were left out" in report.format()
        # the unreadable cat is no relevant image a search could find
        assert "1 relevant image could not be read: not counted" in report.format()
        assert report.n_refined and report.refined_f1 is not None  # one round
        assert dataset.has_saved_view(report.saved_view)
        unjudged = run_demo(**kwargs, query="a photo of a horse")
        assert unjudged.n_relevant is None and "not simulated" in unjudged.format()
        # what it found, to look at: the nearest files' names
        assert len(unjudged.top_files) == 5
        (row,) = [r for r in unjudged.format().splitlines() if r.startswith("top 5")]
        assert row.endswith(", ".join(unjudged.top_files))
        for name in unjudged.top_files:  # a folder and a file: which image it is
            assert (tmp_path / name).is_file()
    finally:
        if fo.dataset_exists("clipbranches-demo-tree-test"):
            fo.load_dataset("clipbranches-demo-tree-test").delete()


@pytest.mark.filterwarnings("ignore:load_clip.*RANDOM weights:UserWarning")
def test_the_shipped_model_or_random_weights_run_on_the_users_images_offline(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """``clipbranches demo --images DIR --model demo`` (the small CLIP the package
    ships) and ``--pretrained none`` need no download."""
    import fiftyone as fo
    from user_path import TINY_CLIP_NAME

    from fiftyone_clipbranches.demo import DEMO_MODEL_NAME

    for name in ("cat", "ship"):
        (tmp_path / name).mkdir()
        for image in sorted((cifar_dir / name).iterdir())[:35]:
            (tmp_path / name / image.name).symlink_to(image)
    name = "clipbranches-demo-shipped-test"
    runs = [  # one folder, one dataset: the second model replaces the first's index
        (dict(model="demo"), DEMO_MODEL_NAME),
        (dict(model=TINY_CLIP_NAME, pretrained="none"), TINY_CLIP_NAME),
    ]
    try:
        for chosen, expected in runs:
            report = run_demo(
                images=tmp_path,
                query="a photo of a cat",
                k=10,
                dataset_name=name,
                progress=False,
                **chosen,
            )
            assert report.n_samples == 70 and report.n_relevant == 35
            knows_shapes = [n for n in report.notes if "not photos" in n]
            assert len(knows_shapes) == (chosen["model"] == "demo")
            random = [n for n in report.notes if "carry no meaning" in n]
            assert len(random) == ("pretrained" in chosen)
            used = report_model(name)
            assert used["name"] == expected
            assert (used["pretrained"] is None) == ("pretrained" in chosen)
        # a checkpoint path mistyped: refused before the last run's index and
        # vectors go (they were deleted first, a full embedding lost)
        with pytest.raises(Exception, match="neither an existing checkpoint file"):
            run_demo(
                images=tmp_path, dataset_name=name, progress=False,
                model=TINY_CLIP_NAME, pretrained=str(tmp_path / "tiny-usr.pt"),
            )  # fmt: skip
        assert report_model(name)["name"] == TINY_CLIP_NAME
        assert len(fo.load_dataset(name).exists("clip_embedding")) == 70
        # too few images for any index: said before any is made
        with pytest.raises(ValueError, match="needs at least 33 images"):
            run_demo(n_images=10, progress=False)
        # weights named for the shipped model (which has its own): refused, not
        # ignored, before anything is made
        for chosen in (dict(model="demo"), dict(images=None)):
            with pytest.raises(ValueError, match="leave the pretrained weights empty"):
                run_demo(**{"images": tmp_path, **chosen, "pretrained": "none"})
    finally:
        if fo.dataset_exists(name):
            fo.load_dataset(name).delete()


def report_model(dataset_name: str) -> dict:
    import fiftyone as fo

    from fiftyone_clipbranches import sdk

    ds = fo.load_dataset(dataset_name)
    (key,) = sdk.list_indexes(ds)
    return sdk.index_info(ds, key).clip_model


def test_the_demo_changes_no_dataset_it_did_not_make(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """``--dataset NAME`` of the user's own dataset, or of the demo's dataset of
    other images, is refused before anything is written; a run that fails leaves
    no half-made dataset."""
    import fiftyone as fo
    from user_path import TINY_CLIP_NAME

    cats = tmp_path / "cats"
    cats.mkdir()
    for image in sorted((cifar_dir / "cat").iterdir())[:70]:
        (cats / image.name).symlink_to(image)
    tiny = dict(model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint))
    mine = fo.Dataset("clipbranches-demo-users-own")
    mine.add_sample(fo.Sample(filepath="/photos/1.jpg", tags=["keep"]))
    mine.save_view("my view", mine.limit(1))
    try:
        for kwargs in (
            dict(images=cats, **tiny),
            dict(n_images=40, data_dir=tmp_path / "generated", **tiny),
        ):
            with pytest.raises(ValueError, match="the demo did not make it") as err:
                run_demo(dataset_name=mine.name, progress=False, **kwargs)
            assert f"fiftyone datasets delete {mine.name}" in str(err.value)
            assert len(mine) == 1 and mine.count_sample_tags() == {"keep": 1}
            assert mine.list_saved_views() == ["my view"]
        # the demo's dataset of one folder is not taken for another folder
        run_demo(images=cats, dataset_name="clipbranches-demo-cats", k=5,
                 progress=False, **tiny)  # fmt: skip
        few = tmp_path / "few"
        few.mkdir()
        for image in sorted((cifar_dir / "dog").iterdir())[:3]:
            (few / image.name).symlink_to(image)
        with pytest.raises(ValueError, match="the demo did not make it"):
            run_demo(images=few, dataset_name="clipbranches-demo-cats",
                     progress=False, **tiny)  # fmt: skip
        assert len(fo.load_dataset("clipbranches-demo-cats")) == 70
        # 3 images are too few to build an index: no dataset is left behind
        with pytest.raises(ValueError, match="needs at least"):
            run_demo(images=few, dataset_name="clipbranches-demo-few",
                     progress=False, **tiny)  # fmt: skip
        assert not fo.dataset_exists("clipbranches-demo-few")
        # what an earlier version made from the folder (no record) is the demo's
        legacy = fo.load_dataset("clipbranches-demo-cats")
        legacy.info.pop("clipbranches_demo")
        legacy.save()
        again = run_demo(images=cats, k=5, progress=False, **tiny)
        assert again.dataset == "clipbranches-demo-cats" and again.n_samples == 70
    finally:
        for name in (mine.name, "clipbranches-demo-cats", "clipbranches-demo-few"):
            if fo.dataset_exists(name):
                fo.load_dataset(name).delete()


def test_the_demo_without_the_app_links_the_plugin_for_later(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    """``clipbranches demo --no-app`` left the plugin unlinked: the App opened
    later had no panel, and ``clipbranches doctor`` failed right after the demo."""
    import fiftyone as fo

    from fiftyone_clipbranches.cli import main as cli_main
    from fiftyone_clipbranches.plugin_install import _plugin_link

    plugins = tmp_path / "plugins"
    monkeypatch.setattr(fo.config, "plugins_dir", str(plugins))
    cats = tmp_path / "cats"
    cats.mkdir()
    for image in sorted((cifar_dir / "cat").iterdir())[:70]:
        (cats / image.name).symlink_to(image)
    demo = ["demo", "--images", str(cats), "--model", "demo", "--k", "5", "--no-app"]
    try:
        assert cli_main([*demo, "--dataset", "clipbranches-demo-nolink"]) == 0
        assert _plugin_link(None).is_symlink()
        assert str(_plugin_link(None)).startswith(str(plugins))
    finally:
        if fo.dataset_exists("clipbranches-demo-nolink"):
            fo.delete_dataset("clipbranches-demo-nolink")


def test_unreadable_images_leaving_too_few_for_the_head_fall_back_to_pca(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """64 files, one unreadable: the head needs 64 vectors, and the demo said to
    pass a --code-method it does not have."""
    import fiftyone as fo
    from user_path import TINY_CLIP_NAME

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.demo.pipeline import DEMO_INDEX_KEY

    (tmp_path / "cat").mkdir()
    for image in sorted((cifar_dir / "cat").iterdir())[:63]:
        (tmp_path / "cat" / image.name).symlink_to(image)
    (tmp_path / "cat" / "zz_broken.png").write_text("not an image")
    name = "clipbranches-demo-unreadable-test"
    try:
        report = run_demo(
            images=tmp_path, model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint),
            query="a photo of a cat", k=10, dataset_name=name, progress=False,
        )  # fmt: skip
        assert report.n_samples == 64
        info = sdk.index_info(fo.load_dataset(name), DEMO_INDEX_KEY)
        assert (info.code_method, info.n_samples) == ("pca", 63)
    finally:
        if fo.dataset_exists(name):
            fo.load_dataset(name).delete()
