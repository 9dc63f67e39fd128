"""Simulated users: the paper protocol (Figure 3), the whole-class protocol and the
interactive protocol.

Each evaluates one class of one catalogue for one seed and returns flat records
(dicts) that :mod:`quality_report` aggregates. Every model's result goes through the
SDK's ``labels_are_law`` (the user's labelled positives are added, labelled negatives
removed), as ``refine`` returns it to a user. Each record holds

- ``f1`` / ``precision`` / ``recall`` / ``n_pred``: the result against the true class
  over the whole catalogue (the paper's measure);
- ``f1_unlabelled``: the same over the rows the user did not label (what the model
  adds to the labels; random negatives are not user labels); None when the user
  labelled every member of the class (nothing left to find);
- ``missed_pos`` / ``returned_neg``: labelled positives the model itself rejected and
  labelled negatives it accepted (before the rule), ``law_ok``: whether the final
  result holds every labelled positive and no labelled negative;
- ``fit_s`` / ``train_s`` / ``apply_s``: wall seconds of fit + apply, fit, apply.
"""

from __future__ import annotations

import zlib

import numpy as np
from quality_models import ModelContext, needs_query, run_model

POSITIVE_COUNTS = (1, 2, 4, 8, 16, 32)
SHOWN = 60


def scores(mask: np.ndarray, truth: np.ndarray) -> dict:
    """Precision, recall and F1 of a predicted bool mask against a true bool mask."""
    tp = int(np.count_nonzero(mask & truth))
    n_pred = int(np.count_nonzero(mask))
    n_true = int(np.count_nonzero(truth))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2.0 * tp / (n_pred + n_true) if n_pred + n_true else 0.0
    return {"f1": f1, "precision": precision, "recall": recall, "n_pred": n_pred}


def _labels_are_law():
    from fiftyone_clipbranches.sdk.refine import labels_are_law

    return labels_are_law


def user_result(pred, truth, positives, negatives) -> dict:
    """Scores of a model's prediction once the user's labels are enforced.

    Args:
        pred: :class:`~quality_models.Prediction` over the whole catalogue.
        truth: bool ``(N,)``, the true class.
        positives, negatives: int64 row ids the user labelled.

    Returns:
        the record fields listed in the module docstring, plus ``mask`` (bool
        ``(N,)``, the enforced result).
    """
    rows = np.flatnonzero(pred.mask).astype(np.int64)
    rows, _, missed, returned = _labels_are_law()(
        rows, np.ones(rows.shape[0]), positives, negatives
    )
    mask = np.zeros(truth.shape[0], bool)
    mask[rows] = True
    labelled = np.zeros(truth.shape[0], bool)
    labelled[positives] = True
    labelled[negatives] = True
    free = ~labelled
    law_ok = bool(mask[positives].all() and not mask[negatives].any())
    return {
        **scores(mask, truth),
        "f1_unlabelled": (
            scores(mask[free], truth[free])["f1"] if truth[free].any() else None
        ),
        "missed_pos": int(missed),
        "returned_neg": int(returned),
        "n_labelled_pos": int(np.asarray(positives).shape[0]),
        "n_labelled_neg": int(np.asarray(negatives).shape[0]),
        "law_ok": law_ok,
        "refused": bool(pred.refused),
        "fit_s": pred.fit_s,
        "train_s": pred.train_s,
        "apply_s": pred.apply_s,
        "mask": mask,
    }


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "mask"}


def task_rng(dataset: str, cls: int, seed: int) -> np.random.Generator:
    """A generator that depends only on (dataset, class, seed): reproducible per task."""
    return np.random.default_rng([zlib.crc32(dataset.encode()), int(cls), int(seed)])


def _model_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def paper_protocol(
    ctx: ModelContext,
    labels: np.ndarray,
    dataset: str,
    cls: int,
    seed: int,
    models: list[str],
    positive_counts=POSITIVE_COUNTS,
) -> list[dict]:
    """P positives of the class (nested draws, P capped by the class size) plus random
    catalogue negatives; every model trained on the same rows; F1 over the catalogue."""
    truth = labels == cls
    members = np.flatnonzero(truth)
    rng = task_rng(dataset, cls, seed)
    order = rng.permutation(members)
    neg_seed = _model_seed(rng)
    model_seed = _model_seed(rng)
    models = [m for m in models if not needs_query(m)]
    no_negatives = np.zeros(0, np.int64)
    records: list[dict] = []
    last: tuple[int, dict] | None = None
    for p in positive_counts:
        p_eff = min(int(p), members.shape[0])
        if last is not None and last[0] == p_eff:
            results = last[1]
        else:
            positives = np.sort(order[:p_eff])
            sets: dict = {}
            results = {}
            for name in models:
                key = repr(sorted(ctx.training_config(name).items()))
                if key not in sets:
                    sets[key] = ctx.training_rows(
                        positives, no_negatives, neg_seed, name
                    )
                train = sets[key]
                pred = run_model(name, ctx, train, members.shape[0], model_seed)
                results[name] = _public(
                    user_result(pred, truth, positives, no_negatives)
                )
            last = (p_eff, results)
        for name in models:
            records.append(
                {
                    "protocol": "paper",
                    "dataset": dataset,
                    "class": int(cls),
                    "class_size": int(members.shape[0]),
                    "seed": int(seed),
                    "positives": int(p),
                    "positives_used": p_eff,
                    "model": name,
                    **results[name],
                }
            )
    return records


def whole_class_protocol(
    ctx: ModelContext,
    labels: np.ndarray,
    dataset: str,
    cls: int,
    seed: int,
    models: list[str],
) -> list[dict]:
    """Every member of the class labelled positive, plus the paper's random
    negatives: what is left to find is nothing, so F1 measures the false positives
    the model adds (target: F1 >= 0.95)."""
    truth = labels == cls
    members = np.flatnonzero(truth)
    rng = task_rng(dataset, cls, seed + 104729)
    neg_seed = _model_seed(rng)
    model_seed = _model_seed(rng)
    no_negatives = np.zeros(0, np.int64)
    records = []
    for name in models:
        if needs_query(name):
            continue
        train = ctx.training_rows(members, no_negatives, neg_seed, name)
        pred = run_model(name, ctx, train, members.shape[0], model_seed)
        records.append(
            {
                "protocol": "whole",
                "dataset": dataset,
                "class": int(cls),
                "class_size": int(members.shape[0]),
                "seed": int(seed),
                "positives": int(members.shape[0]),
                "model": name,
                **_public(user_result(pred, truth, members, no_negatives)),
            }
        )
    return records


#: What a refined round of the interactive protocol shows (``interactive_protocol``).
DISPLAYS = ("result+further", "result", "catalogue")


def _p_at(shown: np.ndarray, truth: np.ndarray, k: int = SHOWN) -> float:
    return float(np.count_nonzero(truth[shown[:k]])) / k


def interactive_protocol(
    ctx: ModelContext,
    labels: np.ndarray,
    dataset: str,
    cls: int,
    seed: int,
    models: list[str],
    rounds: int = 3,
    display: str = "result+further",
) -> list[dict]:
    """Start from one random example image of the class (a prototype/example query),
    show its top 60, label with the ground truth, refine; then show the refined top 60
    plus up to 60 results the user has not seen yet, label, refine again.

    Round 0 is the example query's top 60 (as a result set of 60); round ``r >= 1`` is
    the model trained after ``r`` labelling passes: F1 of its result set (the rows it
    classifies positive) and precision@60 of the top 60 it shows. ``display``:
    ``"result+further"`` (default) shows what the panel offers, the result set
    best first (fewer than 60 rows when the result is smaller), then its Look
    further page: the 60 rows nearest the labelled positives' mean code that are
    neither labelled nor in the result (``sdk.next_to_label``); ``"result"`` the
    result set alone; ``"catalogue"`` the top 60 by score over the whole
    catalogue, which may include rows outside the result set (a scan the
    index-answered models do not make). The extra display is the next <= 60
    unseen rows of the result set in score order.
    """
    if display not in DISPLAYS:
        raise ValueError(f"display must be one of {DISPLAYS}, not {display!r}")
    truth = labels == cls
    members = np.flatnonzero(truth)
    rng = task_rng(dataset, cls, seed + 7919)
    query = int(rng.choice(members))
    neg_seed = _model_seed(rng)
    model_seed = _model_seed(rng)
    by_query = ctx.space.ranked(ctx.space.row(query))
    first = by_query[:SHOWN]
    initial_mask = np.zeros(truth.shape[0], bool)
    initial_mask[first] = True
    base = {
        "protocol": "interactive",
        "dataset": dataset,
        "class": int(cls),
        "class_size": int(members.shape[0]),
        "seed": int(seed),
    }
    round0 = {**scores(initial_mask, truth), "p_at_60": _p_at(first, truth)}
    round0["f1_unlabelled"] = round0["f1"]
    records = []
    for name in models:
        seen = np.zeros(truth.shape[0], bool)
        seen[first] = True
        records.append(
            {
                **base,
                "model": name,
                "round": 0,
                **round0,
                "labelled": SHOWN,
                "labelled_positive": int(truth[first].sum()),
                "shown": SHOWN,
                "shown_outside_result": 0,
                "fit_s": 0.0,
                "train_s": 0.0,
                "apply_s": 0.0,
            }
        )
        for r in range(1, rounds + 1):
            labelled = np.flatnonzero(seen)
            positives = labelled[truth[labelled]]
            negatives = labelled[~truth[labelled]]
            train = ctx.training_rows(
                positives, negatives, neg_seed + r, name, as_panel=True
            )
            pred = run_model(
                name,
                ctx,
                train,
                members.shape[0],
                model_seed + r,
                rank=True,
                query_row=query,
            )
            result = user_result(pred, truth, positives, negatives)
            ranked = pred.order
            if display != "catalogue":  # the panel shows the result set
                ranked = ranked[result["mask"][ranked]]
            top = ranked[:SHOWN]
            rest = ranked[SHOWN:]
            unseen = rest[result["mask"][rest] & ~seen[rest]][:SHOWN]
            if display == "result+further" and positives.shape[0]:
                # the panel's Look further (sdk.next_to_label): nearest the
                # positives' mean code, neither labelled nor in the result
                centre = np.rint(ctx.space.values[positives].mean(axis=0))
                near = ctx.space.ranked(centre)
                near = near[~result["mask"][near] & ~seen[near]][:SHOWN]
                unseen = np.concatenate([unseen, near])
            records.append(
                {
                    **base,
                    "model": name,
                    "round": r,
                    **_public(result),
                    "p_at_60": _p_at(top, truth),
                    "labelled": int(labelled.shape[0]),
                    "labelled_positive": int(positives.shape[0]),
                    "shown": int(top.shape[0] + unseen.shape[0]),
                    "shown_outside_result": int(np.count_nonzero(~result["mask"][top])),
                }
            )
            seen[top] = True
            seen[unseen] = True
    return records
