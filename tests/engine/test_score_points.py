"""The scoring kernel (branches_kernels.score_points) against its definition,
written out in numpy: votes, depth inside boxes, distance outside, empty boxes and
members without boxes."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_clipbranches.engine import branches_kernels
from fiftyone_clipbranches.engine.subsets import make_subsets

MARGIN = 0.01


def member_score(x, dims, lo, hi, purity):
    """One member's score of the point ``x`` (int64 ``(D,)``) by the docstring."""
    inside, dists = [], []
    for d, a, z, p in zip(dims, lo, hi, purity, strict=True):
        if np.any(a > z):
            continue
        v = x[d]
        if np.all((v >= a) & (v <= z)):
            depth = np.min((np.minimum(v - a, z - v) + 1.0) / ((z - a) / 2.0 + 1.0))
            inside.append(p + MARGIN * min(depth, 1.0))
        else:
            gap = np.maximum(np.maximum(a - v, v - z), 0)
            dists.append(np.sqrt(float(np.sum(gap * gap))))
    if inside:
        return True, max(inside)
    return False, (-min(dists) / 255.0 if dists else -np.inf)


@pytest.mark.parametrize("squash", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_points_follows_its_definition(seed, squash):
    rng = np.random.default_rng(seed)
    subsets = make_subsets(32, seed=seed)
    # squashed, a member without boxes scores 0; unsquashed -inf, and so would all
    per_member = [3, 0 if squash else 2, 1, 4, 2]
    n_members = len(per_member)
    starts = np.concatenate([[0], np.cumsum(per_member)]).astype(np.int64)
    B = int(starts[-1])
    width = subsets.dims.shape[1]
    subset_ids = rng.integers(0, len(subsets), B).astype(np.int32)
    centre = rng.integers(0, 256, (B, width))
    half = rng.integers(0, 60, (B, width))
    lo = (centre - half).astype(np.int16)  # may reach past 0 and 255
    hi = (centre + half).astype(np.int16)
    lo[B - 1, 0] = hi[B - 1, 0] + 1  # an empty box
    purity = rng.uniform(0.3, 1.0, B)
    X = rng.integers(0, 256, (400, 32)).astype(np.uint8)
    for i in range(100):  # a quarter of the points inside some box
        b = rng.integers(B - 1)
        s = subset_ids[b]
        d = subsets.dims[s, : subsets.lengths[s]]
        X[i, d] = np.clip(rng.integers(lo[b, : len(d)], hi[b, : len(d)] + 1), 0, 255)

    votes, score = branches_kernels.score_points(
        X, subsets.dims, subsets.lengths, subset_ids, lo, hi, starts, purity,
        MARGIN, squash,
    )  # fmt: skip

    for i, x in enumerate(X.astype(np.int64)):
        n_in, total = 0, 0.0
        for e in range(n_members):
            own = range(starts[e], starts[e + 1])
            dims = [
                subsets.dims[subset_ids[b], : subsets.lengths[subset_ids[b]]]
                for b in own
            ]
            bounds = [
                (lo[b, : len(d)], hi[b, : len(d)])
                for b, d in zip(own, dims, strict=True)
            ]
            held, ms = member_score(
                x,
                dims,
                [a for a, _ in bounds],
                [z for _, z in bounds],
                purity[list(own)],
            )
            n_in += held
            total += 1.0 / (1.0 + np.exp(-4.0 * ms)) if squash else ms
        assert votes[i] == n_in
        assert score[i] == pytest.approx(total / n_members, rel=1e-12, abs=1e-12)
    assert np.any(votes > 0) and np.any(votes == 0)
