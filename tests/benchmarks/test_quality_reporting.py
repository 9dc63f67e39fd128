"""The quality report's rules: the winner rule, the best alternative and each model's
ratio to it, F1 over the rows the user did not label, labels-are-law counts, the
whole-class protocol and the per-catalogue target table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

from quality_models import (  # noqa: E402
    ModelContext,
    Prediction,
    merge_params,
    random_negatives_for,
)
from quality_protocols import user_result, whole_class_protocol  # noqa: E402
from quality_report import (  # noqa: E402
    aggregate,
    best_alternative,
    check_targets,
    crossover,
    markdown,
    ratios,
)

PS = [1, 2, 4, 8, 16, 32]


def test_a_lead_lost_again_at_a_larger_p_is_no_win():
    # ahead at P = 1, behind at 2 and 4, ahead from 8 on: the win starts at 8
    model = [0.52, 0.40, 0.50, 0.70, 0.80, 0.90]
    base = [0.50, 0.45, 0.55, 0.60, 0.60, 0.60]
    grid, interp = crossover(PS, model, base)
    assert grid == 8.0
    # the difference goes from -0.05 at P = 4 to +0.10 at P = 8: a third of the way
    assert interp == pytest.approx(2 ** (2 + 1 / 3))
    # ahead only at the small P: never a winner
    assert crossover(PS, [0.6, 0.6, 0.5, 0.5, 0.5, 0.5], [0.5] * 6) == (None, None)
    # ahead everywhere: from the first P
    assert crossover(PS, [0.6] * 6, [0.5] * 6) == (1.0, 1.0)
    # a tie at the largest P is not a lead
    assert crossover(PS, [0.6] * 5 + [0.5], [0.5] * 6) == (None, None)


def test_best_alternative_is_the_best_of_forest_rocchio_and_nn_at_each_p():
    table = {
        "ensemble": [0.30, 0.40, 0.90],
        "forest": [0.10, 0.50, 0.95],
        "rocchio": [0.50, 0.60, 0.70],
        "nn": [0.55, 0.45, 0.20],
        "linear": [0.99, 0.99, 0.99],  # not an alternative
    }
    best, which = best_alternative(table, 3)
    assert best == [0.55, 0.60, 0.95]
    assert which == ["nn", "rocchio", "forest"]
    r = ratios(table, best)
    assert r["ensemble"] == pytest.approx([0.30 / 0.55, 0.40 / 0.60, 0.90 / 0.95])
    assert r["forest"][2] == pytest.approx(1.0)
    assert best_alternative({"ensemble": [0.5]}, 1) == ([], [])
    assert ratios({"m": [0.2]}, [0.0]) == {"m": [None]}


def _prediction(mask):
    return Prediction(np.asarray(mask, bool), None, fit_s=0.3, train_s=0.2)


def test_user_result_enforces_labels_and_scores_the_unlabelled_rows_apart():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    positives = np.array([0, 1], np.int64)
    negatives = np.array([4], np.int64)
    # the model rejects labelled positive 1, accepts labelled negative 4, finds
    # unlabelled member 2 and unlabelled non-member 5
    res = user_result(
        _prediction([1, 0, 1, 0, 1, 1, 0, 0]), truth, positives, negatives
    )
    assert res["mask"].tolist() == [1, 1, 1, 0, 0, 1, 0, 0]
    assert res["missed_pos"] == 1 and res["returned_neg"] == 1 and res["law_ok"]
    # whole catalogue: tp 3 of 4 returned, 4 members -> F1 = 6 / 8
    assert res["f1"] == pytest.approx(0.75)
    # unlabelled rows 2, 3, 5, 6, 7: members 2, 3; returned 2, 5 -> F1 = 2 / 4
    assert res["f1_unlabelled"] == pytest.approx(0.5)
    assert res["train_s"] == pytest.approx(0.2)
    assert res["apply_s"] == pytest.approx(0.1)
    # the whole class labelled: nothing left to find, F1 over the rest undefined
    everyone = user_result(
        _prediction(np.zeros(8)), truth, np.arange(4, dtype=np.int64), negatives
    )
    assert everyone["f1"] == 1.0 and everyone["f1_unlabelled"] is None


def _paper(ds, model, cls, p, f1, f1_free):
    return {
        "protocol": "paper",
        "dataset": ds,
        "class": cls,
        "seed": 0,
        "positives": p,
        "model": model,
        "f1": f1,
        "f1_unlabelled": f1_free,
        "fit_s": 0.01,
        "train_s": 0.008,
        "apply_s": 0.002,
        "missed_pos": 0,
        "returned_neg": 0,
        "n_labelled_pos": p,
        "n_labelled_neg": 0,
        "law_ok": True,
    }


def _records():
    recs = []
    f1 = {
        "ensemble": {1: 0.5, 2: 0.5},
        "forest": {1: 0.2, 2: 0.5},
        "rocchio": {1: 0.5, 2: 0.4},
        "nn": {1: 0.4, 2: 0.3},
    }
    for model, by_p in f1.items():
        for cls in (0, 1):
            for p, v in by_p.items():
                # class 1 is labelled whole at P = 2: its unlabelled F1 is undefined
                free = None if (cls, p) == (1, 2) else v - 0.1
                recs.append(_paper("toy", model, cls, p, v, free))
    for model, f1_whole, n_pred in (("ensemble", 0.9, 12), ("forest", 1.0, 10)):
        recs.append(
            {
                **_paper("toy", model, 0, 10, f1_whole, None),
                "protocol": "whole",
                "class_size": 10,
                "precision": 10 / n_pred,
                "n_pred": n_pred,
            }
        )
    for model, r2 in (("ensemble", 0.45), ("linear", 0.28)):
        for rnd, f in ((0, 0.2), (1, 0.3), (2, r2)):
            recs.append(
                {
                    **_paper("toy", model, 0, 0, f, f),
                    "protocol": "interactive",
                    "round": rnd,
                    "p_at_60": 0.1,
                    "law_ok": rnd == 0 or model != "linear",
                }
            )
    return recs


def test_aggregate_and_targets_per_catalogue():
    agg = aggregate(_records())
    t = agg["paper"]["toy"]
    assert t["best_alternative"] == {"f1": [0.5, 0.5], "model": ["rocchio", "forest"]}
    assert t["ratio"]["ensemble"] == pytest.approx([1.0, 1.0])
    assert t["ratio"]["nn"] == pytest.approx([0.8, 0.6])
    # P = 2: only class 0 has unlabelled members left
    assert t["f1_unlabelled"]["ensemble"] == pytest.approx([0.4, 0.4])
    assert t["train_s"]["ensemble"] == pytest.approx(0.008)
    assert t["apply_s"]["ensemble"] == pytest.approx(0.002)
    assert agg["whole"]["toy"]["extra_rows"]["ensemble"] == pytest.approx(2.0)
    assert agg["law"]["toy"]["linear"]["violations"] == 2

    rows = check_targets(
        agg,
        1000.0,
        default_model="ensemble",
        panel_models=["ensemble", "linear", "ball"],
        load="1.00",
    )
    by = {r["target"]: r for r in rows if r["dataset"] == "toy"}
    ratio = next(r for k, r in by.items() if k.startswith("default (ensemble) F1"))
    # 1.0x at both P run, but P 4-32 were not run: not a pass
    assert not ratio["ok"] and "not run" in ratio["measured"]
    whole = next(r for k, r in by.items() if k.startswith("whole class"))
    assert not whole["ok"] and whole["measured"].startswith("0.900")
    law = next(r for k, r in by.items() if k.startswith("every labelled"))
    assert not law["ok"] and law["measured"].startswith("2 of")
    gains = {k.split(": ")[1].split()[0]: r for k, r in by.items() if "round-2" in k}
    assert gains["ensemble"]["ok"] and gains["ensemble"]["measured"] == "2.25x"
    assert not gains["linear"]["ok"] and gains["linear"]["measured"] == "1.40x"
    assert gains["ball"]["ok"] is None and gains["ball"]["measured"] == "not run"
    run = next(r for r in rows if r["group"] == "run")
    # the wall clock as measured: 1000 s is over 15 minutes, whatever the CPU time
    assert run["ok"] is False and run["measured"].startswith("16.7 min wall")
    part = check_targets(agg, 10.0, default_model="ensemble", full_run=False)
    run = next(r for r in part if r["group"] == "run")
    assert run["ok"] is None and run["measured"].endswith("(not the full run)")

    md = markdown(agg, rows, {"codes": "toy"}, brief=True)
    assert "| target | toy |" in md
    assert "best alternative F1 (which) | 0.500 (rocchio) | 0.500 (forest)" in md
    assert "## Paper protocol" not in md
    full = markdown(agg, rows, {"codes": "toy"})
    assert "F1 over the rows the user did not label" in full
    assert "## Whole class labelled" in full and "## Labels are law" in full


def test_ratio_target_passes_only_at_every_p():
    recs = []
    baselines = (("rocchio", [1.0] * 6), ("forest", [0.5] * 6), ("nn", [0.7] * 6))
    for model, vals in (("ensemble", [0.96] * 6), *baselines):
        for p, v in zip(PS, vals):
            recs.append(_paper("toy", model, 0, p, v, v))
    rows = check_targets(aggregate(recs), 10.0, default_model="ensemble")
    ratio = next(r for r in rows if r["target"].startswith("default"))
    assert ratio["ok"] and ratio["measured"] == "worst 0.96x at P = 1"
    # a best alternative of fewer baselines than the three: not measured (it was
    # a PASS against NN alone)
    few = [r for r in recs if r["model"] in ("ensemble", "nn")]
    rows = check_targets(aggregate(few), 10.0, default_model="ensemble")
    ratio = next(r for r in rows if r["target"].startswith("default"))
    assert (
        ratio["ok"] is None
        and "not measured: forest, rocchio not run" in ratio["measured"]
    )
    md = markdown(aggregate(few), rows, {"codes": "toy"}, brief=True)
    assert "n/a not measured" in md and "PASS worst" not in md
    low = {**recs[3], "f1": 0.9}
    assert low["model"] == "ensemble" and low["positives"] == 8
    recs[3] = low
    rows = check_targets(aggregate(recs), 10.0, default_model="ensemble")
    ratio = next(r for r in rows if r["target"].startswith("default"))
    assert not ratio["ok"] and ratio["measured"] == "worst 0.90x at P = 8"


def test_whole_class_protocol_labels_every_member():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 8)) * 40
    labels = np.repeat(np.arange(3), (9, 11, 30))
    x = centres[labels] + rng.normal(size=(labels.shape[0], 8))
    ctx = ModelContext(
        np.ascontiguousarray(x, dtype=np.float32),
        merge_params({"training": {"n_random_negatives": 20}}),
    )
    recs = whole_class_protocol(ctx, labels, "toy", 1, 0, ["forest", "nn"])
    assert [r["model"] for r in recs] == ["forest", "nn"]
    for r in recs:
        assert r["protocol"] == "whole" and r["positives"] == 11
        assert r["n_labelled_pos"] == 11 and r["law_ok"]
        assert r["f1_unlabelled"] is None
    forest = recs[0]
    assert forest["recall"] == 1.0 and forest["f1"] > 0.95


def test_registered_models_train_with_the_registry_defaults():
    from fiftyone_clipbranches.sdk.models import MODELS

    codes = np.zeros((4, 8), np.uint8)
    ctx = ModelContext(codes, merge_params(None))
    for name, spec in MODELS.items():
        cfg = ctx.training_config(name, as_panel=True)
        for n_pos in (1, 33, 100):  # as refine draws them for n_pos positives
            drawn = random_negatives_for(cfg, n_pos)
            assert drawn == spec.random_negatives_for(n_pos), (name, n_pos)
        assert cfg["neighbours_per_positive"] == spec.neighbours_per_positive, name
    # the forest baseline of the paper protocol trains on the labelled positives alone
    assert ctx.training_config("forest")["neighbours_per_positive"] == 0
    # an override replaces one key and keeps the registry's others
    ctx = ModelContext(
        codes,
        merge_params({"training_by_model": {"ensemble": {"n_random_negatives": 7}}}),
    )
    cfg = ctx.training_config("ensemble")
    assert cfg["n_random_negatives"] == 7
    assert cfg["neighbours_per_positive"] == MODELS["ensemble"].neighbours_per_positive

    # a sweep of the training section reaches the registered models too
    ctx = ModelContext(codes, merge_params({"training": {"n_random_negatives": 9}}))
    assert ctx.training_config("ensemble")["n_random_negatives"] == 9
    assert ctx.training_config("linear")["neighbours_per_positive"] == 0
