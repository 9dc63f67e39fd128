"""The quality benchmark harness on a tiny synthetic, perfectly separable dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import quality  # noqa: E402
from quality_protocols import scores  # noqa: E402
from quality_report import crossover  # noqa: E402

CLASS_SIZES = (12, 14, 16, 18, 20, 22)


def _clusters(rng, centres, sizes, noise=0.01):
    dim = centres.shape[1]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[labels] + noise * rng.normal(size=(labels.shape[0], dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float16), labels.astype(np.int16)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy-clip")
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(512, len(CLASS_SIZES))))[0].T
    for split, sizes in (("test", CLASS_SIZES), ("val", (8,) * len(CLASS_SIZES))):
        x, y = _clusters(rng, centres, sizes)
        np.save(d / f"toy_{split}_img_emb.npy", x)
        np.save(d / f"toy_{split}_labels.npy", y)
    return d


@pytest.fixture(scope="module")
def toy_report(toy_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("quality-out")
    report = quality.main(
        [
            "--data-dir", str(toy_dir), "--datasets", "toy_test", "--codes", "pca",
            "--seeds", "1", "--positives", "1,4,30", "--jobs", "1", "--rounds", "2",
            "--params", '{"training": {"n_random_negatives": 20}}',
            "--out", str(out), "--quiet",
        ]
    )  # fmt: skip
    return report, out


@pytest.mark.slow
def test_outputs_are_written_with_the_documented_structure(toy_report):
    report, out = toy_report
    for ext in ("md", "json", "png"):
        assert (out / f"quality_pca.{ext}").stat().st_size > 0
    on_disk = json.loads((out / "quality_pca.json").read_text())
    assert set(on_disk) == {"meta", "aggregate", "targets", "per_class_paper_f1"}
    paper = on_disk["aggregate"]["paper"]["toy_test"]
    assert paper["positives"] == [1, 4, 30]
    assert paper["n_classes"] == len(CLASS_SIZES)
    assert {"nn", "rocchio", "tree", "forest"} <= set(paper["f1"])
    for vals in paper["f1"].values():
        assert len(vals) == 3
    inter = on_disk["aggregate"]["interactive"]["toy_test"]
    assert inter["rounds"] == [0, 1, 2]
    md = (out / "quality_pca.md").read_text()
    assert "## Paper protocol: toy_test" in md and "## Targets" in md
    assert (out / "quality_pca.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_report_has_the_best_alternative_ratios_and_the_user_pipeline(toy_report):
    report, out = toy_report
    agg = report["aggregate"]
    paper = agg["paper"]["toy_test"]
    best = paper["best_alternative"]
    assert set(best["model"]) <= {"forest", "rocchio", "nn"}
    for i, b in enumerate(best["f1"]):
        assert b == max(paper["f1"][m][i] for m in ("forest", "rocchio", "nn"))
    for m, vals in paper["ratio"].items():
        assert vals == pytest.approx(
            [f / b for f, b in zip(paper["f1"][m], best["f1"])]
        )
    # P = 30 labels every class whole: nothing is left to find among the rest
    assert all(v[-1] is None for v in paper["f1_unlabelled"].values())
    assert all(v[0] is not None for v in paper["f1_unlabelled"].values())
    assert all(
        paper["train_s"][m] >= 0 and paper["apply_s"][m] > 0 for m in paper["f1"]
    )
    # the query ball needs a query: interactive protocol only
    assert "ball" not in paper["f1"] and "ball" in agg["interactive"]["toy_test"]["f1"]
    # every labelled class found exactly once it is labelled whole
    assert agg["whole"]["toy_test"]["f1"]["forest"] > 0.99
    law = agg["law"]["toy_test"]
    assert sum(c["violations"] for c in law.values()) == 0
    assert all(c["labelled_pos"] > 0 for c in law.values())
    targets = {(r["dataset"], r["target"]) for r in report["targets"]}
    assert any(t.startswith("whole class labelled") for _, t in targets)
    assert any("interactive: ball round-2" in t for _, t in targets)
    assert report["meta"]["fit split"] == "self"


@pytest.mark.slow
def test_separable_classes_are_found_exactly(toy_report):
    report, _ = toy_report
    f1 = report["aggregate"]["paper"]["toy_test"]["f1"]
    # k = class size around any member of an isolated cluster is exactly the cluster
    assert min(f1["nn"]) > 0.99
    assert min(f1["rocchio"]) > 0.99
    # P = 30 exceeds every class: all members are positives, other clusters are far
    for model in ("tree", "forest", "ensemble"):
        if model in f1:
            assert f1[model][-1] > 0.99, model
    # the six clusters differ in ~5 of the 32 PCA dims; a single model's boxes live
    # in 6-dim subsets, some of which hold none of them, so one class may leak a point
    assert f1["branches"][-1] > 0.95
    inter = report["aggregate"]["interactive"]["toy_test"]["f1"]
    # each class fits in the example query's first 60 results, so all get labelled
    for model, vals in inter.items():
        assert vals[-1] > 0.99, model


def test_scores_and_crossover():
    truth = np.array([1, 1, 0, 0], bool)
    s = scores(np.array([1, 0, 1, 0], bool), truth)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert scores(np.zeros(4, bool), truth)["f1"] == 0.0
    assert crossover([1, 2, 4], [0.1, 0.2, 0.6], [0.3, 0.3, 0.3]) == (
        4.0,
        pytest.approx(2**1.25),
    )
    assert crossover([1, 2], [0.5, 0.6], [0.1, 0.1]) == (1.0, 1.0)
    assert crossover([1, 2], [0.1, 0.1], [0.5, 0.5]) == (None, None)


def test_bad_arguments_are_refused(toy_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        quality.main(["--data-dir", str(tmp_path), "--datasets", "toy_test", "--quiet"])
    cats = quality.load_catalogues(toy_dir, ["toy_test"], "float")
    with pytest.raises(ValueError, match="unknown model"):
        quality.evaluate(cats, models=["svm"])
    with pytest.raises(ValueError, match="seeds"):
        quality.evaluate(cats, seeds=0)
    with pytest.raises(SystemExit):
        quality.main(["--codes", "bogus"])


def test_float_space_skips_code_only_models(toy_dir):
    cats = quality.load_catalogues(toy_dir, ["toy_test"], "float")
    res = quality.evaluate(
        cats, models=["branches", "nn"], protocols=["paper"], seeds=1, positives=[2]
    )
    assert "branches" in res["skipped"]["toy_test"]
    assert {r["model"] for r in res["records"]} == {"nn"}
    assert len(res["records"]) == len(CLASS_SIZES)


def test_auto_random_negatives_scale_with_positives_and_are_clipped():
    from quality_models import merge_params, random_negatives_for

    cfg = merge_params({"training": {"n_random_negatives": "auto"}})["training"]
    assert [random_negatives_for(cfg, p) for p in (1, 8, 100)] == [100, 200, 500]
    fixed = merge_params(None)["training"]
    assert random_negatives_for(fixed, 3) == 500
    with pytest.raises(ValueError, match="unknown params section"):
        merge_params({"branch": {}})


def test_codes_cache_gives_back_the_same_codes(toy_dir, tmp_path):
    first = quality.load_catalogues(
        toy_dir, ["toy_test"], "pca", cache_dir=tmp_path / "cache"
    )
    assert len(list((tmp_path / "cache").glob("codes_*.npz"))) == 1
    again = quality.load_catalogues(
        toy_dir, ["toy_test"], "pca", cache_dir=tmp_path / "cache"
    )
    assert again[0].codes_origin.endswith("(cached)")
    np.testing.assert_array_equal(again[0].features, first[0].features)
    np.testing.assert_array_equal(again[0].labels, first[0].labels)
    other = quality.load_catalogues(
        toy_dir, ["toy_test"], "pca", "val", cache_dir=tmp_path / "cache"
    )
    assert not other[0].codes_origin.endswith("(cached)")
    assert len(list((tmp_path / "cache").glob("codes_*.npz"))) == 2


def test_runs_merge_into_one_report(toy_dir, tmp_path):
    common = [
        "--data-dir", str(toy_dir), "--datasets", "toy_test", "--codes", "pca",
        "--seeds", "1", "--positives", "1,4", "--jobs", "1",
        "--protocols", "paper,whole", "--out", str(tmp_path), "--quiet",
        "--params", '{"training": {"n_random_negatives": 20}}',
    ]  # fmt: skip
    first = quality.main(
        [*common, "--models", "forest,nn,ensemble", "--tag", "a",
         "--save-records", str(tmp_path / "a.json.gz")]
    )  # fmt: skip
    second = quality.main(
        [*common, "--models", "ensemble,rocchio", "--tag", "b",
         "--merge", str(tmp_path / "a.json.gz")]
    )  # fmt: skip
    paper_a = first["aggregate"]["paper"]["toy_test"]
    paper = second["aggregate"]["paper"]["toy_test"]
    assert list(paper["f1"]) == ["forest", "nn", "ensemble", "rocchio"]
    # the same tasks give the same records: the merged forest equals the first run's
    assert paper["f1"]["forest"] == paper_a["f1"]["forest"]
    assert paper["f1"]["ensemble"] == paper_a["f1"]["ensemble"]
    best = paper["best_alternative"]["f1"]
    assert best == [
        max(paper["f1"][m][i] for m in ("forest", "nn", "rocchio")) for i in range(2)
    ]
    earlier, wall_s = quality.load_records(tmp_path / "a.json.gz")
    assert wall_s > 0 and len(earlier) == len(CLASS_SIZES) * (2 * 3 + 3)
    # a later record replaces the earlier one of the same task, it is not doubled
    later = [{**r, "f1": -1.0} for r in earlier if r["model"] == "ensemble"]
    merged = quality.merge_records(earlier, later)
    assert len(merged) == len(earlier)
    assert [r["f1"] for r in merged if r["model"] == "ensemble"] == [-1.0] * len(later)
    assert "merged runs" in second["meta"]["runtime"]
    # a merge keeps only the tasks of this run (here: 2 of the 6 classes)
    third = quality.main(
        [*common, "--models", "rocchio", "--tag", "c", "--max-classes", "2",
         "--merge", str(tmp_path / "a.json.gz")]
    )  # fmt: skip
    assert third["aggregate"]["paper"]["toy_test"]["n_classes"] == 2
    assert len(third["per_class_paper_f1"]["toy_test"]["forest"]["1"]) == 2


def test_broad_concepts_are_reported_per_catalogue_and_mixed(toy_dir, capsys):
    import quality_broad

    common = ["--data-dir", str(toy_dir), "--seeds", "1", "--models", "cascade,linear"]
    quality_broad.main(
        [*common, "--datasets", "toy_test", "--shares", "0.3", "--positives", "8"]
    )
    out = capsys.readouterr().out
    assert "### toy_test (102 rows)" in out and "### Mean over the catalogues" in out
    row = next(line for line in out.splitlines() if line.startswith("| 30% of"))
    # separable classes, 8 of their rows labelled (a tiny catalogue: few random rows)
    assert float(row.split("|")[2].split()[0]) > 0.6
    quality_broad.main(
        [
            *common,
            "--datasets",
            "toy_test,toy_test",
            "--mixed",
            "300",
            "--positives",
            "8",
        ]
    )
    out = capsys.readouterr().out
    assert "in one dataset of 300 rows" in out
    assert sum(line.startswith("| toy_test (") for line in out.splitlines()) == 2


@pytest.mark.slow
def test_interactive_rounds_show_what_the_panel_shows(toy_dir, tmp_path):
    """A refined round showed the model's top 60 over the whole catalogue, rows
    outside its result included (a scan the index-answered models do not make,
    and more than the panel shows): by default it shows what the panel offers,
    the result best first, then its Look further page."""
    shown = {}
    for display in ("result", "catalogue", "result+further"):
        saved = tmp_path / f"{display}.json.gz"
        quality.main(
            [
                "--data-dir", str(toy_dir), "--datasets", "toy_test", "--codes", "pca",
                "--seeds", "1", "--jobs", "1", "--rounds", "1",
                "--protocols", "interactive", "--models", "forest",
                "--interactive-models", "forest", "--display", display,
                "--out", str(tmp_path / display), "--save-records", str(saved),
                "--quiet",
            ]
        )  # fmt: skip
        records, _ = quality.load_records(saved)
        refined = [r for r in records if r["round"] == 1]
        assert len(refined) == len(CLASS_SIZES)
        shown[display] = refined
    # each class is found whole, so the result holds it alone (12-22 rows)
    assert all(r["shown_outside_result"] == 0 for r in shown["result"])
    assert all(r["shown"] <= max(CLASS_SIZES) for r in shown["result"])
    assert all(r["shown_outside_result"] > 0 for r in shown["catalogue"])
    # the default: the result, then the panel's Look further page (60 rows nearest
    # the positives that are neither labelled nor in it)
    for r in shown["result+further"]:
        assert r["shown_outside_result"] == 0 and r["shown"] > r["n_pred"]
    with pytest.raises(SystemExit):
        quality.main(["--display", "everything", "--data-dir", str(toy_dir)])
