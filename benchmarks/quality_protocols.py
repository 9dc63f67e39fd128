"""Simulated users: the paper protocol (Figure 3) and the interactive protocol.

Both evaluate one class of one catalogue for one seed and return flat records (dicts)
that :mod:`quality_report` aggregates. F1 is always computed over the whole catalogue
against the true class.
"""

from __future__ import annotations

import zlib

import numpy as np
from quality_models import ModelContext, run_model

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
                        positives, np.zeros(0, np.int64), neg_seed, name
                    )
                train = sets[key]
                pred = run_model(name, ctx, train, members.shape[0], model_seed)
                results[name] = {**scores(pred.mask, truth), "fit_s": pred.fit_s}
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
) -> list[dict]:
    """Start from one random example image of the class (a prototype/example query),
    show its top 60, label with the ground truth, refine; then show the refined top 60
    plus up to 60 results the user has not seen yet, label, refine again.

    Round 0 is the example query's top 60 (as a result set of 60); round ``r >= 1`` is
    the model trained after ``r`` labelling passes: F1 of its result set (the rows it
    classifies positive) and precision@60 of its top 60 by score over the whole
    catalogue (the display, which may include rows outside the result set). The extra
    display is the next <= 60 unseen rows of the result set in score order.
    """
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
                "fit_s": 0.0,
            }
        )
        for r in range(1, rounds + 1):
            labelled = np.flatnonzero(seen)
            positives = labelled[truth[labelled]]
            negatives = labelled[~truth[labelled]]
            train = ctx.training_rows(positives, negatives, neg_seed + r, name)
            pred = run_model(
                name, ctx, train, members.shape[0], model_seed + r, rank=True
            )
            top = pred.order[:SHOWN]
            records.append(
                {
                    **base,
                    "model": name,
                    "round": r,
                    **scores(pred.mask, truth),
                    "p_at_60": _p_at(top, truth),
                    "labelled": int(labelled.shape[0]),
                    "labelled_positive": int(positives.shape[0]),
                    "fit_s": pred.fit_s,
                }
            )
            rest = pred.order[SHOWN:]
            unseen = rest[pred.mask[rest] & ~seen[rest]][:SHOWN]
            seen[top] = True
            seen[unseen] = True
    return records
