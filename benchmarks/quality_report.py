"""Aggregation of quality records into tables, targets, JSON and a plot.

Every figure is a mean over classes of the per-class mean over seeds, per dataset.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from quality_models import ALTERNATIVES, MODEL_LABELS

TARGETS = {
    "branches_vs_nn": 12.0,
    "ensemble_vs_nn": 6.0,
    "ensemble_vs_rocchio": 16.0,
    "interactive_round2_gain": 1.5,
    "runtime_s": 15 * 60.0,
    "ratio_to_best_alternative": 0.95,
    "whole_class_f1": 0.95,
}
#: The P at which the default model must reach the ratio target.
TARGET_PS = (1, 2, 4, 8, 16, 32)


def _class_means(records, keys, value):
    """``{keys + (class,): mean over seeds of value}``; None values (undefined, e.g.
    F1 over the unlabelled rows of a fully labelled class) are left out."""
    acc = defaultdict(list)
    for r in records:
        if r[value] is not None:
            acc[tuple(r[k] for k in keys) + (r["class"],)].append(r[value])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def _over_classes(per_class, n_keys):
    acc = defaultdict(list)
    for k, v in per_class.items():
        acc[k[:n_keys]].append(v)
    return {k: float(np.mean(v)) for k, v in acc.items()}


def crossover(ps, model_f1, base_f1) -> tuple[float | None, float | None]:
    """Where the model beats the base for good: ``(grid P, interpolated P)``.

    "Beats from P" means the model's F1 exceeds the base's at P and at every larger
    grid P; a lead that is lost again at a larger P does not count. The grid P is
    the first point of that final run of leads; the interpolated P is where the
    difference crosses zero between it and the grid point before (log2 P, linear).
    ``(None, None)`` when the model is not ahead at the largest P.
    """
    diff = [m - b for m, b in zip(model_f1, base_f1)]
    i = len(diff)
    while i > 0 and diff[i - 1] > 0:
        i -= 1
    if i == len(diff):
        return None, None
    if i == 0:
        return float(ps[0]), float(ps[0])
    d0, d1 = diff[i - 1], diff[i]
    x0, x1 = math.log2(ps[i - 1]), math.log2(ps[i])
    x = x0 + (-d0) / (d1 - d0) * (x1 - x0)
    return float(ps[i]), float(2.0**x)


def best_alternative(table: dict, n: int) -> tuple[list, list]:
    """``(F1, model)`` per P: the best of :data:`ALTERNATIVES` present in ``table``
    (``{model: [class-mean F1 per P]}``); ``([], [])`` when none is."""
    present = [m for m in ALTERNATIVES if m in table]
    if not present:
        return [], []
    best, which = [], []
    for i in range(n):
        m = max(present, key=lambda a: table[a][i])
        best.append(table[m][i])
        which.append(m)
    return best, which


def ratios(table: dict, best: list) -> dict:
    """``{model: [F1 / best alternative per P]}`` (None where the best is 0)."""
    return {
        m: [v / b if b > 0 else None for v, b in zip(vals, best)]
        for m, vals in table.items()
    }


def _means(records, keys, value):
    return _over_classes(_class_means(records, keys, value), len(keys))


def aggregate(records: list[dict]) -> dict:
    """Per-dataset tables for every protocol, crossovers, the best alternative and
    each model's ratio to it, wall times and the labels-are-law counts."""
    paper = [r for r in records if r["protocol"] == "paper"]
    inter = [r for r in records if r["protocol"] == "interactive"]
    whole = [r for r in records if r["protocol"] == "whole"]
    out: dict = {
        "paper": {},
        "interactive": {},
        "crossover": {},
        "whole": {},
        "law": _law(records),
    }
    if paper:
        keys = ("dataset", "model", "positives")
        pc = _class_means(paper, keys, "f1")
        means = _over_classes(pc, 3)
        free = _means(paper, keys, "f1_unlabelled")
        fit = _means(paper, ("dataset", "model"), "fit_s")
        train = _means(paper, ("dataset", "model"), "train_s")
        apply_ = _means(paper, ("dataset", "model"), "apply_s")
        datasets = sorted({r["dataset"] for r in paper})
        models = list(dict.fromkeys(r["model"] for r in paper))
        ps = sorted({r["positives"] for r in paper})
        for ds in datasets:
            table = {m: [means[(ds, m, p)] for p in ps] for m in models}
            best, which = best_alternative(table, len(ps))
            out["paper"][ds] = {
                "positives": ps,
                "f1": table,
                "f1_unlabelled": {
                    m: [free.get((ds, m, p)) for p in ps] for m in models
                },
                "best_alternative": {"f1": best, "model": which},
                "ratio": ratios(table, best) if best else {},
                "fit_s": {m: fit[(ds, m)] for m in models},
                "train_s": {m: train[(ds, m)] for m in models},
                "apply_s": {m: apply_[(ds, m)] for m in models},
                "n_classes": len({r["class"] for r in paper if r["dataset"] == ds}),
            }
            cross = {}
            for base in ("nn", "rocchio"):
                if base not in table:
                    continue
                for m in models:
                    if m == base:
                        continue
                    grid, interp = crossover(ps, table[m], table[base])
                    per_class = _per_class_crossover(pc, ds, m, base, ps)
                    cross[f"{m}_vs_{base}"] = {
                        "grid": grid,
                        "interpolated": interp,
                        "median_per_class": per_class,
                    }
            out["crossover"][ds] = cross
    if whole:
        keys = ("dataset", "model")
        f1, prec = _means(whole, keys, "f1"), _means(whole, keys, "precision")
        n_pred = _means(whole, keys, "n_pred")
        size = _means(whole, keys, "class_size")
        for ds in sorted({r["dataset"] for r in whole}):
            models = list(
                dict.fromkeys(r["model"] for r in whole if r["dataset"] == ds)
            )
            out["whole"][ds] = {
                "f1": {m: f1[(ds, m)] for m in models},
                "precision": {m: prec[(ds, m)] for m in models},
                "extra_rows": {m: n_pred[(ds, m)] - size[(ds, m)] for m in models},
            }
    if inter:
        ic = _class_means(inter, ("dataset", "model", "round"), "f1")
        pc60 = _class_means(inter, ("dataset", "model", "round"), "p_at_60")
        fu = _class_means(inter, ("dataset", "model", "round"), "f1_unlabelled")
        f1m, p60m = _over_classes(ic, 3), _over_classes(pc60, 3)
        fum = _over_classes(fu, 3)
        rounds = sorted({r["round"] for r in inter})
        for ds in sorted({r["dataset"] for r in inter}):
            models = list(
                dict.fromkeys(r["model"] for r in inter if r["dataset"] == ds)
            )
            refused = {
                m: sum(
                    bool(r.get("refused"))
                    for r in inter
                    if r["dataset"] == ds and r["model"] == m
                )
                for m in models
            }
            out["interactive"][ds] = {
                "rounds": rounds,
                "f1": {m: [f1m[(ds, m, r)] for r in rounds] for m in models},
                "f1_unlabelled": {
                    m: [fum.get((ds, m, r)) for r in rounds] for m in models
                },
                "p_at_60": {m: [p60m[(ds, m, r)] for r in rounds] for m in models},
                "refused": {m: n for m, n in refused.items() if n},
            }
    return out


def _law(records: list[dict]) -> dict:
    """``{dataset: {model: counts}}`` over every record with user labels: results
    (``n``), labelled positives / negatives, those the model alone missed /
    returned, and results that break the rule after ``labels_are_law``."""
    out: dict = {}
    for r in records:
        if "law_ok" not in r:
            continue
        c = out.setdefault(r["dataset"], {}).setdefault(
            r["model"],
            {
                "n": 0,
                "labelled_pos": 0,
                "labelled_neg": 0,
                "missed_pos": 0,
                "returned_neg": 0,
                "violations": 0,
            },
        )
        c["n"] += 1
        c["labelled_pos"] += r["n_labelled_pos"]
        c["labelled_neg"] += r["n_labelled_neg"]
        c["missed_pos"] += r["missed_pos"]
        c["returned_neg"] += r["returned_neg"]
        c["violations"] += not r["law_ok"]
    return out


def _per_class_crossover(pc, ds, model, base, ps) -> float | None:
    """Median over classes of the grid P from which the model stays ahead (the
    rule of :func:`crossover`); None when that median is beyond the grid."""
    classes = sorted({k[3] for k in pc if k[0] == ds and k[1] == model})
    firsts = []
    for c in classes:
        m = [pc.get((ds, model, p, c), -1.0) for p in ps]
        b = [pc.get((ds, base, p, c), 2.0) for p in ps]
        grid, _ = crossover(ps, m, b)
        firsts.append(math.inf if grid is None else grid)
    if not firsts:
        return None
    med = float(np.median(firsts))
    return None if math.isinf(med) else med


def check_targets(
    agg: dict,
    runtime_s: float,
    *,
    default_model: str | None = None,
    panel_models=(),
    load: str | None = None,
    full_run: bool = True,
) -> list[dict]:
    """Pass/fail of the targets, one row per catalogue and target (``dataset``,
    ``target``, ``measured``, ``ok``, ``group``: ``"issue"`` for the targets of
    the default model and the panel, ``"paper"`` for the paper's crossovers,
    ``"run"`` for the run time).

    Args:
        agg: :func:`aggregate`'s output.
        runtime_s: wall seconds of the whole run, as measured.
        default_model: the model the faces default to (``sdk.models.DEFAULT_MODEL``).
        panel_models: the models the panel offers (interactive gain target each).
        load: the load average to print beside the run time.
        full_run: whether this run is the full one the run-time target is about.

    A row's ``ok`` is None where the target was not measured (its protocol,
    model or the baselines of its best alternative were not run): neither a pass
    nor a failure.
    """
    rows = []
    datasets = sorted(
        set(agg["paper"]) | set(agg["interactive"]) | set(agg.get("whole", {}))
    )
    for ds in datasets:
        if default_model is not None:
            rows += _default_rows(agg, ds, default_model)
        law = agg.get("law", {}).get(ds)
        if law:
            n = sum(c["n"] for c in law.values())
            bad = sum(c["violations"] for c in law.values())
            worst = max(
                law, key=lambda m: law[m]["missed_pos"] / max(law[m]["labelled_pos"], 1)
            )
            c = law[worst]
            rows.append(
                {
                    "dataset": ds,
                    "group": "issue",
                    "target": "every labelled positive returned, no labelled negative"
                    " (every model, every protocol)",
                    "measured": f"{bad} of {n} results break it (the models alone:"
                    f" up to {c['missed_pos'] / max(c['labelled_pos'], 1):.1%} of"
                    f" labelled positives missed, {worst})",
                    "ok": bad == 0,
                }
            )
        inter = agg["interactive"].get(ds)
        limit = TARGETS["interactive_round2_gain"]
        for m in panel_models if inter else ():
            row = {
                "dataset": ds,
                "group": "issue",
                "target": f"interactive: {m} round-2 F1 >= {limit:g}x round 0",
            }
            gain = _gain(inter, m)
            if gain is None:
                rows.append({**row, "measured": "not run", "ok": None})
            else:
                rows.append({**row, "measured": f"{gain:.2f}x", "ok": gain >= limit})
    for ds, cross in agg["crossover"].items():
        for key in ("branches_vs_nn", "ensemble_vs_nn", "ensemble_vs_rocchio"):
            if key not in cross:
                continue
            limit = TARGETS[key]
            p = cross[key]["interpolated"]
            rows.append(
                {
                    "dataset": ds,
                    "group": "paper",
                    "target": f"{key}: beats from <= {limit:g} positives",
                    "measured": "never (<= 32)" if p is None else f"P = {p:.1f}",
                    "ok": p is not None and p <= limit,
                }
            )
    rows.append(
        {
            "dataset": "all",
            "group": "run",
            "target": "full run <= 15 min wall on 2 cores",
            "measured": f"{runtime_s / 60:.1f} min wall"
            + ("" if load is None else f" (load average {load})")
            + ("" if full_run else " (not the full run)"),
            "ok": runtime_s <= TARGETS["runtime_s"] if full_run else None,
        }
    )
    return rows


def _gain(inter: dict | None, model: str) -> float | None:
    """Round-2 F1 / round-0 F1 of ``model`` in the interactive table, or None."""
    if not inter or model not in inter["f1"]:
        return None
    rounds = inter["rounds"]
    if 0 not in rounds or 2 not in rounds:
        return None
    f1 = inter["f1"][model]
    return f1[rounds.index(2)] / max(f1[rounds.index(0)], 1e-12)


def _default_rows(agg: dict, ds: str, model: str) -> list[dict]:
    rows = []
    limit = TARGETS["ratio_to_best_alternative"]
    t = agg["paper"].get(ds)
    if not agg["paper"]:
        pass  # the paper protocol was not run
    elif t is None or model not in t.get("ratio", {}):
        rows.append({**_ratio_row(ds, model, limit), "measured": "not run", "ok": None})
    else:
        rows.append(_ratio_check(_ratio_row(ds, model, limit), t, model, limit))
    limit = TARGETS["whole_class_f1"]
    w = agg.get("whole", {}).get(ds)
    row = {
        "dataset": ds,
        "group": "issue",
        "target": f"whole class labelled: default ({model}) F1 >= {limit:g}",
    }
    if not agg.get("whole"):
        pass  # the whole-class protocol was not run
    elif w is not None and model in w["f1"]:
        f1 = w["f1"][model]
        extra = w["extra_rows"][model]
        rows.append(
            {
                **row,
                "measured": f"{f1:.3f} ({extra:.1f} extra rows per class)",
                "ok": f1 >= limit,
            }
        )
    else:
        rows.append({**row, "measured": "not run", "ok": None})
    return rows


def _ratio_row(ds: str, model: str, limit: float) -> dict:
    return {
        "dataset": ds,
        "group": "issue",
        "target": f"default ({model}) F1 >= {limit:g}x best alternative at every P"
        f" in {', '.join(map(str, TARGET_PS))}",
    }


def _ratio_check(row: dict, t: dict, model: str, limit: float) -> dict:
    pairs = [
        (r, p)
        for r, p in zip(t["ratio"][model], t["positives"])
        if p in TARGET_PS and r is not None
    ]
    if not pairs:
        return {**row, "measured": "not run", "ok": None}
    absent = [a for a in ALTERNATIVES if a not in t["f1"]]
    if absent:  # a best of fewer baselines would pass too easily
        return {
            **row,
            "measured": f"not measured: {', '.join(absent)} not run (the best"
            " alternative is the best of " + ", ".join(ALTERNATIVES) + ")",
            "ok": None,
        }
    missing = [p for p in TARGET_PS if p not in t["positives"]]
    worst, at = min(pairs)
    note = f" (P {', '.join(map(str, missing))} not run)" if missing else ""
    return {
        **row,
        "measured": f"worst {worst:.2f}x at P = {at}{note}",
        "ok": None if missing else worst >= limit,
    }


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _fmt_p(x) -> str:
    return "never" if x is None else f"{x:.1f}"


def _summary_table(agg: dict) -> list[str]:
    """The P (log2-interpolated, class-mean F1) from which each model beats NN and
    Rocchio for good (see :func:`crossover`)."""
    cross = agg["crossover"]
    if not cross:
        return []
    datasets = list(cross)
    keys = list(dict.fromkeys(k for c in cross.values() for k in c))
    lines = [
        "## Summary: positives needed to beat the baselines",
        "",
        "The P from which the class-mean F1 of the model exceeds the baseline's at"
        " every larger grid P too (interpolated in log2 P between grid points;"
        " `never` = not ahead at the largest P).",
        "",
        "| comparison | " + " | ".join(datasets) + " |",
        "|---" * (len(datasets) + 1) + "|",
    ]
    for key in keys:
        if key.startswith(("nn_", "rocchio_vs_nn")):
            continue
        cells = [_fmt_p(cross[ds].get(key, {}).get("interpolated")) for ds in datasets]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _fmt_r(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _label(m: str) -> str:
    return MODEL_LABELS.get(m, m)


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _rule(n: int) -> str:
    return "|---" * n + "|"


def _verdict(ok: bool | None) -> str:
    """PASS, FAIL, or n/a for a target not measured (``ok`` None)."""
    return {True: "PASS", False: "**FAIL**"}.get(ok, "n/a")


def targets_table(targets: list[dict], group: str = "issue") -> list[str]:
    """The targets of ``group`` as one PASS/FAIL table: a row per target, a column
    per catalogue."""
    rows = [r for r in targets if r.get("group", "issue") == group]
    if not rows:
        return []
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    names = list(dict.fromkeys(r["target"] for r in rows))
    cell = {(r["target"], r["dataset"]): r for r in rows}
    lines = [_row(["target", *datasets]), _rule(len(datasets) + 1)]
    for name in names:
        cells = []
        for ds in datasets:
            r = cell.get((name, ds))
            if r is None:
                cells.append("")
            else:
                cells.append(f"{_verdict(r['ok'])} {r['measured']}")
        lines.append(_row([name, *cells]))
    return [*lines, ""]


def ratio_tables(agg: dict) -> list[str]:
    """Per catalogue: the best alternative's F1 at each P (and which it is), and
    every model's F1 as a multiple of it."""
    lines = []
    for ds, t in agg["paper"].items():
        best = t.get("best_alternative", {})
        if not best or not best["f1"]:
            continue
        ps = t["positives"]
        lines += [
            f"### {ds}: F1 / best alternative ({t['n_classes']} classes)",
            "",
            _row(["model", *(f"P={p}" for p in ps)]),
            _rule(len(ps) + 1),
            _row(
                [
                    "best alternative F1 (which)",
                    *(f"{f:.3f} ({m})" for f, m in zip(best["f1"], best["model"])),
                ]
            ),
        ]
        for m, vals in t["ratio"].items():
            cells = []
            for v in vals:
                cell = _fmt_r(v)
                if v is not None and v < TARGETS["ratio_to_best_alternative"]:
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append(_row([_label(m), *cells]))
        lines.append("")
    return lines


def markdown(agg: dict, targets: list[dict], meta: dict, brief: bool = False) -> str:
    """The report as GitHub markdown; ``brief``: the targets and the ratio tables
    only."""
    lines = [f"# Retrieval quality ({meta['codes']} space)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, dict)]
    lines.append("")
    if targets:
        lines += [
            "## Targets per catalogue",
            "",
            "Class means; ratios below 0.95 are bold in the tables further down.",
            "",
        ]
        lines += targets_table(targets, "issue")
        run = [r for r in targets if r.get("group") == "run"]
        for r in run:
            lines += [f"{r['target']}: {_verdict(r['ok'])} {r['measured']}", ""]
    ratio = ratio_tables(agg)
    if ratio:
        lines += [
            "## Ratio to the best alternative",
            "",
            "Best alternative at each P: the best class-mean F1 of the scanned random"
            " forest, Rocchio and NN (both with the oracle k = class size); each"
            " model's class-mean F1 divided by it.",
            "",
            *ratio,
        ]
    if brief:
        return "\n".join(lines)
    if any(r.get("group") == "paper" for r in targets):
        lines += ["## Paper targets", "", *targets_table(targets, "paper")]
    lines += _summary_table(agg)
    for ds, t in agg["paper"].items():
        ps = t["positives"]
        best = t.get("best_alternative", {})
        lines += [
            f"## Paper protocol: {ds} ({t['n_classes']} classes)",
            "",
            "Mean F1 over classes (seed-averaged) vs number of positives P, over the"
            " whole catalogue (the paper's measure), with the user's labels enforced;"
            " wall milliseconds per fit and per application to the catalogue (mean"
            " over P).",
            "",
            _row(["model", *(f"P={p}" for p in ps), "train ms", "apply ms"]),
            _rule(len(ps) + 3),
        ]
        for m, vals in t["f1"].items():
            lines.append(
                _row(
                    [
                        _label(m),
                        *(_fmt(v) for v in vals),
                        f"{1000 * t['train_s'][m]:.1f}",
                        f"{1000 * t['apply_s'][m]:.1f}",
                    ]
                )
            )
        if best and best["f1"]:
            lines.append(
                _row(["best alternative", *(_fmt(v) for v in best["f1"]), "", ""])
            )
        lines += [
            "",
            "F1 over the rows the user did not label (what the model adds to the"
            " labels; classes the user labelled whole at that P are left out):",
            "",
            _row(["model", *(f"P={p}" for p in ps)]),
            _rule(len(ps) + 1),
        ]
        for m, vals in t["f1_unlabelled"].items():
            lines.append(_row([_label(m), *(_fmt(v) for v in vals)]))
        lines.append("")
        cross = agg["crossover"].get(ds, {})
        if cross:
            lines += [
                "Beats the baseline from P on (ahead at that P and every larger one):",
                "",
                "| comparison | grid P | interpolated P | median per-class P |",
                "|---|---|---|---|",
            ]
            for key, c in cross.items():
                lines.append(
                    f"| {key} | {_fmt_p(c['grid'])} | {_fmt_p(c['interpolated'])}"
                    f" | {_fmt_p(c['median_per_class'])} |"
                )
            lines.append("")
    if agg.get("whole"):
        datasets = list(agg["whole"])
        models = list(dict.fromkeys(m for w in agg["whole"].values() for m in w["f1"]))
        lines += [
            "## Whole class labelled",
            "",
            "Every member of the class labelled positive (plus the random negatives):"
            " class-mean F1 (extra rows returned per class).",
            "",
            _row(["model", *datasets]),
            _rule(len(datasets) + 1),
        ]
        for m in models:
            cells = []
            for ds in datasets:
                w = agg["whole"][ds]
                cells.append(
                    f"{w['f1'][m]:.3f} ({w['extra_rows'][m]:.1f})"
                    if m in w["f1"]
                    else "-"
                )
            lines.append(_row([_label(m), *cells]))
        lines.append("")
    for ds, t in agg["interactive"].items():
        rounds = t["rounds"]
        lines += [
            f"## Interactive protocol: {ds}",
            "",
            "F1 over the catalogue / F1 over the unlabelled rows / precision@60 per"
            " round (round 0 = the example query's top 60).",
            "",
            _row(["model", *(f"round {r}" for r in rounds), "r2 / r0"]),
            _rule(len(rounds) + 2),
        ]
        for m in t["f1"]:
            cells = [
                f"{f:.3f} / {_fmt(u)} / {p:.3f}"
                for f, u, p in zip(t["f1"][m], t["f1_unlabelled"][m], t["p_at_60"][m])
            ]
            gain = _gain(t, m)
            lines.append(_row([_label(m), *cells, _fmt_r(gain) + "x"]))
        if t.get("refused"):
            lines.append("")
            lines.append(
                "Refused fits (empty result, the query's ranking shown): "
                + ", ".join(f"{m} {n}" for m, n in t["refused"].items())
            )
        lines.append("")
    law = agg.get("law", {})
    if law:
        lines += [
            "## Labels are law",
            "",
            "Over every result with user labels (all protocols): labelled positives"
            " the model alone rejected and labelled negatives it accepted, before"
            " `labels_are_law`; results that break the rule after it.",
            "",
            "| dataset | model | results | positives missed | negatives returned"
            " | broken after |",
            "|---|---|---|---|---|---|",
        ]
        for ds, d in law.items():
            for m, c in d.items():
                lp, ln = max(c["labelled_pos"], 1), max(c["labelled_neg"], 1)
                lines.append(
                    f"| {ds} | {_label(m)} | {c['n']} | {c['missed_pos'] / lp:.1%}"
                    f" | {c['returned_neg'] / ln:.1%} | {c['violations']} |"
                )
        lines.append("")
    return "\n".join(lines)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=False).encode())


def plot(agg: dict, path: Path, title: str) -> None:
    """F1 vs P per model, one panel per dataset (top row); interactive F1 per round
    (bottom row, when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {m: f"C{i}" for i, m in enumerate(MODEL_LABELS)}
    datasets = list(agg["paper"]) or list(agg["interactive"])
    n_rows = 1 + bool(agg["interactive"])
    fig, axes = plt.subplots(
        n_rows,
        max(len(datasets), 1),
        figsize=(4.2 * max(len(datasets), 1), 3.6 * n_rows),
        squeeze=False,
    )
    for j, ds in enumerate(datasets):
        ax = axes[0, j]
        t = agg["paper"].get(ds)
        if t:
            for m, vals in t["f1"].items():
                ax.plot(
                    t["positives"], vals, marker="o", color=colours.get(m),
                    label=MODEL_LABELS.get(m, m),
                )  # fmt: skip
            best = t.get("best_alternative", {}).get("f1")
            if best:
                ax.plot(
                    t["positives"], best, color="k", linestyle=":", linewidth=2,
                    label="best alternative",
                )  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xlabel("positives P")
            ax.set_ylabel("F1 (mean over classes)")
            ax.set_title(ds)
            ax.grid(alpha=0.3)
        if n_rows > 1 and ds in agg["interactive"]:
            ax = axes[1, j]
            ti = agg["interactive"][ds]
            for m, vals in ti["f1"].items():
                ax.plot(
                    ti["rounds"], vals, marker="o", color=colours.get(m),
                    label=MODEL_LABELS.get(m, m),
                )  # fmt: skip
            ax.set_xlabel("labelling round")
            ax.set_ylabel("F1 (interactive)")
            ax.set_xticks(ti["rounds"])
            ax.grid(alpha=0.3)
    labelled = [ax for ax in axes.flat if ax.get_legend_handles_labels()[0]]
    if labelled:  # the first panel with lines (no paper protocol: the bottom row)
        labelled[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
