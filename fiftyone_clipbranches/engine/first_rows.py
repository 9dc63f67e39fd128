"""The first rows of a single decision-branches ranking, without scoring every row
it accepts.

One member's score of a row it accepts is ``max_b (purity_b + MARGIN_EPS *
depth_b(x))`` over its boxes holding ``x`` (``branch_model``; ``depth_b`` in
``(0, 1]``, the smallest relative distance to a face). So the rows scoring at least
``tau`` are exactly the rows of the boxes shrunk to depth
``(tau - purity_b) / MARGIN_EPS`` (a box that needs more than depth 1 holds none).
A box query over the shrunk boxes, widened to whole codes, returns a superset of
them; their exact scores pick them out; once there are ``n`` of them, they hold the
first ``n`` rows of the ranking, since every other row scores below ``tau``.
"""

from __future__ import annotations

import numpy as np

from .boxes import Boxes
from .branch_model import MARGIN_EPS
from .branches import DecisionBranches
from .codes import take_rows
from .search import first_positions

#: Depths tried at each purity level of the boxes, deepest (fewest rows) first.
DEPTHS = (0.5, 0.25, 0.1, 0.0)
#: Purity levels tried, purest first, before every accepted row is scored.
LEVELS = 4
#: Slack that keeps the widened boxes a superset despite rounding of the depths.
SLACK = 1e-6


def answers_by_depth(model) -> bool:
    """Whether ``model`` is a single decision-branches model (not a subclass, nor
    an ensemble of one: their acceptance and scores are other rules) with boxes."""
    return type(model) is DecisionBranches and len(model.boxes_) > 0


def shrunk_boxes(boxes: Boxes, lengths: np.ndarray, depth: np.ndarray) -> Boxes:
    """The integer boxes holding every code of depth >= ``depth[b]`` in box ``b``
    (float64 ``(B,)``; a box with depth > 1 is left out). ``lengths``: int ``(B,)``
    dims of each box's subset."""
    keep = depth <= 1.0 + SLACK
    lo = boxes.lo[keep].astype(np.float64)
    hi = boxes.hi[keep].astype(np.float64)
    d = np.clip(depth[keep] - SLACK, 0.0, None)[:, None]
    half = (hi - lo) / 2.0 + 1.0
    # depth >= d  <=>  min(x - lo, hi - x) + 1 >= d * half in every dim
    new_lo = np.maximum(lo, np.ceil(lo + d * half - 1.0 - SLACK))
    new_hi = np.minimum(hi, np.floor(hi - d * half + 1.0 + SLACK))
    used = np.arange(lo.shape[1])[None, :] < lengths[keep][:, None]
    new_lo = np.where(used, new_lo, lo)
    new_hi = np.where(used, new_hi, hi)
    return Boxes(
        boxes.subset_ids[keep],
        new_lo.astype(np.int16),
        new_hi.astype(np.int16),
        boxes.member[keep],
    )


def first_rows(model, index, n: int):
    """``(ids int64, scores float64)`` of the first ``n`` rows of ``model``'s ranking
    over ``index`` (a ``CodeIndex``), or None when they need every accepted row
    scored (a model :func:`answers_by_depth` does not cover, or fewer than ``n`` rows
    at depth 0 of the boxes of the :data:`LEVELS` highest purities)."""
    if not answers_by_depth(model):
        return None
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    boxes = model.boxes_
    purity = np.asarray(model.box_purity_, np.float64)
    lengths = model.subsets_.lengths[boxes.subset_ids]
    levels = np.unique(purity)[::-1][:LEVELS]
    for tau in [float(p) + MARGIN_EPS * d for p in levels for d in DEPTHS]:
        ids, _ = index.query_boxes(
            shrunk_boxes(boxes, lengths, (tau - purity) / MARGIN_EPS)
        )
        if ids.shape[0] < n:
            continue
        scores = model.decision_function(take_rows(index.codes, ids))
        good = scores >= tau
        if np.count_nonzero(good) >= n:
            ids, scores = ids[good], scores[good]
            at = first_positions(ids, scores, n)
            return ids[at], scores[at]
    return None
