"""Numba kernels of decision branches: box growing, sequential covering, scoring.

Plain array signatures only; validation, dtypes and defaults belong to
:mod:`.branches` and :mod:`.ensemble`. Conventions:

- ``X`` uint8 ``(n, D)``, ``y`` int8 ``(n,)`` in {0, 1}, ``w`` float64 ``(n,)`` with
  ``w == 0`` meaning "not in the training set" (bootstrap members use this).
- subsets: ``dims`` int32 ``(S, L)`` padded with -1, ``lengths`` int32 ``(S,)``.
- boxes: inclusive int16 bounds ``lo``/``hi`` ``(B, L)`` and ``subset_ids`` ``(B,)``.
- randomness: a splitmix64 stream held in a uint64 ``(1,)`` array, so every call is
  deterministic given its seed and independent of thread scheduling.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .jit import parallel_kernel, serial_and_parallel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TOL = 1e-9


@njit(cache=True, inline="always")
def _next_u64(state):
    z = state[0] + _GOLDEN
    state[0] = z
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def rand_below(state, n):
    """Uniform int in ``[0, n)`` (``n >= 1``)."""
    return np.int64((_next_u64(state) >> np.uint64(11)) % np.uint64(n))


@njit(cache=True, inline="always")
def _gini(in_p, in_n, tot_p, tot_n):
    # Weighted Gini of the in/out split, times the total weight (a constant).
    out_p = tot_p - in_p
    out_n = tot_n - in_n
    s = 0.0
    w_in = in_p + in_n
    if w_in > 0.0:
        s += 2.0 * in_p * in_n / w_in
    w_out = out_p + out_n
    if w_out > 0.0:
        s += 2.0 * out_p * out_n / w_out
    return s


@njit(cache=True, nogil=True)
def _fill_slab_hist(xs, pos, wa, lo, hi, d, j, hist_p, hist_n):
    """Weighted histograms over dim ``j`` of the points inside the box on all other dims."""
    hist_p[:] = 0.0
    hist_n[:] = 0.0
    m = xs.shape[1]
    for i in range(m):
        inside = True
        for g in range(d):
            if g != j:
                v = xs[g, i]
                if v < lo[g] or v > hi[g]:
                    inside = False
                    break
        if inside:
            if pos[i]:
                hist_p[xs[j, i]] += wa[i]
            else:
                hist_n[xs[j, i]] += wa[i]


@njit(cache=True, nogil=True)
def grow_box(xs, pos, wa, seed, order, max_passes, lo, hi):
    """Grow one box around point ``seed`` in one feature subset (coordinate descent).

    Args:
        xs: uint8 ``(d, m)``, the active points restricted to the subset (column-major).
        pos: bool ``(m,)`` labels; wa: float64 ``(m,)`` weights (all > 0).
        seed: index of the seed positive in ``0..m-1``.
        order: int64 ``(d,)`` the walk order of the subset's dims.
        max_passes: walks over all dims (stops early when a walk changes nothing).
        lo, hi: int64 ``(d,)`` output, tight inclusive bounds (values of included points).

    Starting from the whole domain, each step re-chooses the interval of one dim, among
    intervals holding the seed, that minimises the weighted Gini of the split (inside /
    outside) of the active points, given the other dims' intervals: first the lower
    bound (upper fixed), then the upper bound, each by one sorted sweep over the 256
    possible values. Ties keep the tighter bound. Returns the final weighted Gini
    (times total weight) and the number of active points inside.
    """
    d = xs.shape[0]
    m = xs.shape[1]
    tot_p = 0.0
    tot_n = 0.0
    for i in range(m):
        if pos[i]:
            tot_p += wa[i]
        else:
            tot_n += wa[i]
    for g in range(d):
        lo[g] = 0
        hi[g] = 255
    hist_p = np.zeros(256)
    hist_n = np.zeros(256)
    for _ in range(max_passes):
        changed = False
        for k in range(d):
            j = order[k]
            _fill_slab_hist(xs, pos, wa, lo, hi, d, j, hist_p, hist_n)
            p = np.int64(xs[j, seed])
            cur_hi = hi[j]
            in_p = 0.0
            in_n = 0.0
            for v in range(p, cur_hi + 1):
                in_p += hist_p[v]
                in_n += hist_n[v]
            best = _gini(in_p, in_n, tot_p, tot_n)
            best_lo = p
            for v in range(p - 1, -1, -1):
                if hist_p[v] > 0.0 or hist_n[v] > 0.0:
                    in_p += hist_p[v]
                    in_n += hist_n[v]
                    s = _gini(in_p, in_n, tot_p, tot_n)
                    if s < best - _TOL:
                        best = s
                        best_lo = v
            in_p = 0.0
            in_n = 0.0
            for v in range(best_lo, p + 1):
                in_p += hist_p[v]
                in_n += hist_n[v]
            best = _gini(in_p, in_n, tot_p, tot_n)
            best_hi = p
            for v in range(p + 1, 256):
                if hist_p[v] > 0.0 or hist_n[v] > 0.0:
                    in_p += hist_p[v]
                    in_n += hist_n[v]
                    s = _gini(in_p, in_n, tot_p, tot_n)
                    if s < best - _TOL:
                        best = s
                        best_hi = v
            if best_lo != lo[j] or best_hi != hi[j]:
                changed = True
            lo[j] = best_lo
            hi[j] = best_hi
        if not changed:
            break
    in_p = 0.0
    in_n = 0.0
    count = 0
    for i in range(m):
        inside = True
        for g in range(d):
            v = xs[g, i]
            if v < lo[g] or v > hi[g]:
                inside = False
                break
        if inside:
            count += 1
            if pos[i]:
                in_p += wa[i]
            else:
                in_n += wa[i]
    return _gini(in_p, in_n, tot_p, tot_n), count


@njit(cache=True, nogil=True)
def loosen_bounds(xs, lo, hi, margin, end_ext):
    """Move tight bounds outwards without changing which points of ``xs`` are inside.

    For each dim ``j`` in turn, among the points inside the box on all other dims, the
    nearest value below ``lo[j]`` (above ``hi[j]``) is found and the bound moves
    ``floor(margin * gap)`` towards it (``margin`` in [0, 1): 0.5 is the midpoint,
    ties going inside). With no such point the bound moves out by
    ``ceil(end_ext * (hi[j] - lo[j]) / (n_inside - 1))``, ``end_ext`` times the mean
    spacing of the inside points (clipped to [0, 255]); ``end_ext < 0`` opens it to
    0 (255). Bounds are modified in place.
    """
    d = xs.shape[0]
    m = xs.shape[1]
    n_in = 0
    for i in range(m):
        inside = True
        for g in range(d):
            v = xs[g, i]
            if v < lo[g] or v > hi[g]:
                inside = False
                break
        if inside:
            n_in += 1
    for j in range(d):
        if end_ext < 0.0:
            ext = np.int64(255)
        else:
            ext = np.int64(np.ceil(end_ext * (hi[j] - lo[j]) / max(n_in - 1, 1)))
        below = -1
        above = 256
        for i in range(m):
            inside = True
            for g in range(d):
                if g != j:
                    v = xs[g, i]
                    if v < lo[g] or v > hi[g]:
                        inside = False
                        break
            if inside:
                v = np.int64(xs[j, i])
                if v < lo[j] and v > below:
                    below = v
                elif v > hi[j] and v < above:
                    above = v
        if below >= 0:
            lo[j] -= np.int64(np.floor(margin * (lo[j] - below)))
        else:
            lo[j] = max(lo[j] - ext, 0)
        if above <= 255:
            hi[j] += np.int64(np.floor(margin * (above - hi[j])))
        else:
            hi[j] = min(hi[j] + ext, 255)


@njit(cache=True, nogil=True)
def _gather(X, rows, dims, d):
    xs = np.empty((d, rows.shape[0]), dtype=np.uint8)
    for i in range(rows.shape[0]):
        r = rows[i]
        for g in range(d):
            xs[g, i] = X[r, dims[g]]
    return xs


@njit(cache=True, nogil=True)
def _eval_candidate(X, act, pos, wa, seed, dims, length, order, max_passes, lo, hi):
    xs = _gather(X, act, dims, length)
    return grow_box(xs, pos, wa, seed, order, max_passes, lo, hi)


@njit(cache=True, nogil=True)
def _start(n, w, y, max_boxes, L, seed):
    """Covering state: rng, active/seedable masks, outputs, subset permutation."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = seed
    active = w > 0.0
    seedable = active & (y == 1)
    out_sub = np.empty(max_boxes, dtype=np.int32)
    out_lo = np.zeros((max_boxes, L), dtype=np.int16)
    out_hi = np.full((max_boxes, L), -1, dtype=np.int16)
    out_seed = np.empty(max_boxes, dtype=np.int64)
    return state, active, seedable, out_sub, out_lo, out_hi, out_seed


@njit(cache=True, nogil=True)
def _begin_step(y, w, active, seedable, state, perm, n_cand, lengths, L):
    """Draw the seed, the candidate subsets and their walk orders for one box.

    Returns ``seed_row`` (-1 when no positive is left to seed), the active rows
    ``act``, their labels/weights, the seed's position in ``act``, the candidate
    subset ids and the walk orders ``(n_cand, L)``.
    """
    n = y.shape[0]
    n_seedable = 0
    for i in range(n):
        if seedable[i]:
            n_seedable += 1
    act = np.flatnonzero(active)
    m = act.shape[0]
    pos = np.empty(m, dtype=np.bool_)
    wa = np.empty(m)
    cands = np.empty(n_cand, dtype=np.int64)
    orders = np.empty((n_cand, L), dtype=np.int64)
    if n_seedable == 0:
        return -1, act, pos, wa, 0, cands, orders
    pick = rand_below(state, n_seedable)
    seed_row = -1
    for i in range(n):
        if seedable[i]:
            if pick == 0:
                seed_row = i
                break
            pick -= 1
    seed_idx = 0
    for i in range(m):
        pos[i] = y[act[i]] == 1
        wa[i] = w[act[i]]
        if act[i] == seed_row:
            seed_idx = i
    S = perm.shape[0]
    for c in range(n_cand):
        t = c + rand_below(state, S - c)
        tmp = perm[c]
        perm[c] = perm[t]
        perm[t] = tmp
        cands[c] = perm[c]
    for c in range(n_cand):
        k = lengths[cands[c]]
        for g in range(k):
            orders[c, g] = g
        for g in range(k - 1, 0, -1):
            t = rand_below(state, g + 1)
            tmp = orders[c, g]
            orders[c, g] = orders[c, t]
            orders[c, t] = tmp
    return seed_row, act, pos, wa, seed_idx, cands, orders


@njit(cache=True, nogil=True)
def _end_step(
    X, dims, lengths, act, cands, los, his, scores, counts, min_samples_box, margin,
    end_ext, seed_row, active, seedable, out_sub, out_lo, out_hi, out_seed, nb,
):  # fmt: skip
    """Keep the best candidate (lowest Gini; ties: fewer dims, first drawn), loosen
    its bounds, record it as box ``nb`` and deactivate the points it covers.

    Returns the new number of boxes.
    """
    best = -1
    for c in range(cands.shape[0]):
        if counts[c] < min_samples_box:
            continue
        if (
            best < 0
            or scores[c] < scores[best] - _TOL
            or (
                scores[c] <= scores[best] + _TOL
                and lengths[cands[c]] < lengths[cands[best]]
            )
        ):
            best = c
    if best < 0:
        seedable[seed_row] = False
        return nb
    s = cands[best]
    k = lengths[s]
    xs = _gather(X, act, dims[s], k)
    lo = los[best, :k]
    hi = his[best, :k]
    loosen_bounds(xs, lo, hi, margin, end_ext)
    out_sub[nb] = s
    out_seed[nb] = seed_row
    for g in range(k):
        out_lo[nb, g] = lo[g]
        out_hi[nb, g] = hi[g]
    for i in range(act.shape[0]):
        inside = True
        for g in range(k):
            v = xs[g, i]
            if v < lo[g] or v > hi[g]:
                inside = False
                break
        if inside:
            active[act[i]] = False
            seedable[act[i]] = False
    return nb + 1


_FIT_DOC = """Sequential covering: grow boxes around random uncovered positives.

    Each iteration draws one uncovered positive (the seed) and ``n_candidates``
    distinct subsets, grows a box around the seed in each (:func:`grow_box`, random
    walk order), keeps the lowest Gini (ties: fewer dims, then the first drawn),
    loosens its bounds (:func:`loosen_bounds`) and removes every active point it
    covers. A seed whose best box holds fewer than ``min_samples_box`` active points is
    not tried again. Stops at ``max_boxes`` boxes or when no positive is left to seed.
    Bounds are then placed by :func:`loosen_bounds` with ``margin``/``end_ext``.
    ``fit_branches_parallel`` evaluates the candidates on several threads;
    ``fit_branches``, the same body on one thread, runs inside :func:`fit_members`.

    Returns:
        (subset_ids int32 (B,), lo int16 (B, L), hi int16 (B, L), seed_rows int64 (B,))
    """


def _fit_branches(
    X, y, w, dims, lengths, max_boxes, n_candidates, min_samples_box, max_passes,
    margin, end_ext, seed,
):  # fmt: skip
    L = dims.shape[1]
    n_cand = min(n_candidates, dims.shape[0])
    perm = np.arange(dims.shape[0])
    state, active, seedable, o_sub, o_lo, o_hi, o_seed = _start(
        X.shape[0], w, y, max_boxes, L, seed
    )
    nb = 0
    while nb < max_boxes:
        seed_row, act, pos, wa, seed_idx, cands, orders = _begin_step(
            y, w, active, seedable, state, perm, n_cand, lengths, L
        )
        if seed_row < 0:
            break
        los = np.zeros((n_cand, L), dtype=np.int64)
        his = np.zeros((n_cand, L), dtype=np.int64)
        scores = np.empty(n_cand)
        counts = np.empty(n_cand, dtype=np.int64)
        for c in prange(n_cand):
            k = lengths[cands[c]]
            sc, cnt = _eval_candidate(
                X, act, pos, wa, seed_idx, dims[cands[c]], k, orders[c, :k],
                max_passes, los[c, :k], his[c, :k],
            )  # fmt: skip
            scores[c] = sc
            counts[c] = cnt
        nb = _end_step(
            X, dims, lengths, act, cands, los, his, scores, counts, min_samples_box,
            margin, end_ext, seed_row, active, seedable, o_sub, o_lo, o_hi, o_seed,
            nb,
        )  # fmt: skip
    return o_sub[:nb].copy(), o_lo[:nb].copy(), o_hi[:nb].copy(), o_seed[:nb].copy()


_fit_branches.__doc__ = _FIT_DOC
fit_branches, fit_branches_parallel = serial_and_parallel(_fit_branches)


@parallel_kernel
def fit_members(
    X, y, W, dims, lengths, max_boxes, n_candidates, min_samples_box, max_passes,
    margin, end_ext, seeds,
):  # fmt: skip
    """Fit one model per row of ``W`` (member weights) in parallel (prange over members).

    Member ``e`` is ``fit_branches(..., W[e], ..., seeds[e])``. Returns per-member
    padded arrays: subset_ids int32 (M, max_boxes), lo/hi int16 (M, max_boxes, L),
    seed_rows int64 (M, max_boxes) and n_boxes int64 (M,).
    """
    M = W.shape[0]
    L = dims.shape[1]
    subs = np.zeros((M, max_boxes), dtype=np.int32)
    los = np.zeros((M, max_boxes, L), dtype=np.int16)
    his = np.full((M, max_boxes, L), -1, dtype=np.int16)
    seed_rows = np.full((M, max_boxes), -1, dtype=np.int64)
    n_boxes = np.zeros(M, dtype=np.int64)
    for e in prange(M):
        sub, lo, hi, sr = fit_branches(
            X, y, W[e], dims, lengths, max_boxes, n_candidates, min_samples_box,
            max_passes, margin, end_ext, seeds[e],
        )  # fmt: skip
        nb = sub.shape[0]
        n_boxes[e] = nb
        subs[e, :nb] = sub
        los[e, :nb] = lo
        his[e, :nb] = hi
        seed_rows[e, :nb] = sr
    return subs, los, his, seed_rows, n_boxes


@njit(cache=True, nogil=True)
def _flat_boxes(dims, lengths, subset_ids, lo, hi):
    """Each box's dims, bounds (int64 ``(B, max_len)``) and number of dims (-1 for
    an empty box), read once for kernels that test many points against every box."""
    B, W = lo.shape
    dim = np.zeros((B, W), np.int64)
    box_lo = np.zeros((B, W), np.int64)
    box_hi = np.zeros((B, W), np.int64)
    size = np.zeros(B, np.int64)
    for b in range(B):
        s = subset_ids[b]
        size[b] = lengths[s]
        for j in range(lengths[s]):
            dim[b, j] = dims[s, j]
            box_lo[b, j] = lo[b, j]
            box_hi[b, j] = hi[b, j]
            if lo[b, j] > hi[b, j]:
                size[b] = -1
    return dim, box_lo, box_hi, size


@parallel_kernel
def score_points(
    X, dims, lengths, subset_ids, lo, hi, member_start, purity, margin_eps, squash
):
    """Per-point member votes and a ranking score.

    Boxes must be grouped by member: member ``e`` owns boxes
    ``member_start[e]:member_start[e+1]``. For each member, a point inside some of its
    boxes scores ``max_b (purity[b] + margin_eps * depth_b(x))``, with
    ``depth_b(x) = min_j (min(x_j - lo_j, hi_j - x_j) + 1) / ((hi_j - lo_j) / 2 + 1)``
    in ``(0, 1]``; outside all of them it scores ``-dist / 255``, ``dist`` the Euclidean
    distance from ``x`` to the nearest box (``-inf`` for a member without non-empty
    boxes).

    Returns:
        votes int32 ``(n,)``: members with a box holding the point;
        score float64 ``(n,)``: the mean over members of the member score, or with
        ``squash`` of ``1 / (1 + exp(-4 score))`` (in ``[0, 1)``).
    """
    n = X.shape[0]
    M = member_start.shape[0] - 1
    dim, box_lo, box_hi, size = _flat_boxes(dims, lengths, subset_ids, lo, hi)
    no_box = np.int64(1) << 62
    votes = np.zeros(n, dtype=np.int32)
    score = np.zeros(n)
    for i in prange(n):
        x = X[i]
        total = 0.0
        nv = 0
        for e in range(M):
            best_in = -1.0
            best_d2 = no_box
            for b in range(member_start[e], member_start[e + 1]):
                if size[b] < 0:
                    continue  # empty: holds nothing, is nearest to nothing
                # the full distance, branch-free: stopping at the first side
                # outside mispredicts more than it saves on 4-8 dims
                d2 = np.int64(0)
                for j in range(size[b]):
                    v = np.int64(x[dim[b, j]])
                    gap = max(box_lo[b, j] - v, v - box_hi[b, j], 0)
                    d2 += gap * gap
                if d2 == 0:
                    depth = 1.0
                    for j in range(size[b]):
                        v = np.int64(x[dim[b, j]])
                        a = box_lo[b, j]
                        z = box_hi[b, j]
                        r = (min(v - a, z - v) + 1.0) / ((z - a) / 2.0 + 1.0)
                        if r < depth:
                            depth = r
                    val = purity[b] + margin_eps * depth
                    if val > best_in:
                        best_in = val
                elif d2 < best_d2:
                    best_d2 = d2
            if best_in >= 0.0:
                nv += 1
                ms = best_in
            elif best_d2 == no_box:
                ms = -np.inf
            else:
                ms = -np.sqrt(best_d2) / 255.0
            if squash:
                total += 1.0 / (1.0 + np.exp(-4.0 * ms))
            else:
                total += ms
        votes[i] = nv
        score[i] = total / M
    return votes, score


@njit(cache=True, nogil=True)
def box_weights(X, y, W, member, dims, lengths, subset_ids, lo, hi):
    """Weighted positive and negative mass inside each box of the training points,
    weighted by the row ``W[member[b]]`` of the box's owner (serial: it is small)."""
    B = subset_ids.shape[0]
    wp = np.zeros(B)
    wn = np.zeros(B)
    for b in range(B):
        s = subset_ids[b]
        k = lengths[s]
        w = W[member[b]]
        for i in range(X.shape[0]):
            if w[i] <= 0.0:
                continue
            inside = True
            for j in range(k):
                v = X[i, dims[s, j]]
                if v < lo[b, j] or v > hi[b, j]:
                    inside = False
                    break
            if inside:
                if y[i] == 1:
                    wp[b] += w[i]
                else:
                    wn[b] += w[i]
    return wp, wn
