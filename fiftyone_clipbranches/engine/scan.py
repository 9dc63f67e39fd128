"""Full parallel scans over the codes: the baselines the index is measured against.

They give exactly the same answers as :class:`~.index.CodeIndex` and are also what the
model layer uses to predict on arrays (:func:`contains_any`). Boxes are also measured
against a sample of the codes: the rows each holds (:func:`rows_per_box`) and, above
a limit, shrunk about their seeds (:func:`shrink_boxes`, the cascade's cap).
"""

from __future__ import annotations

import numpy as np

from .boxes import Boxes
from .codes import as_codes, as_query
from .scan_kernels import (
    count_boxes_parallel,
    count_boxes_serial,
    knn_kernel,
    knn_serial,
    rows_per_box_kernel,
    shrink_boxes_kernel,
)
from .subsets import FeatureSubsets
from .validation import check_codes, check_int

#: Largest ``D`` for which squared distances of uint8 codes fit the packed knn key.
MAX_KNN_DIMS = 33000
#: Scans of fewer rows run on one thread: a parallel region on a busy machine can
#: cost far more than the work (threads waiting at the barrier).
PARALLEL_MIN_ROWS = 1 << 17
#: Rows scored per chunk when a scanned model searches the whole catalogue.
SEARCH_CHUNK_ROWS = 1 << 20


def check_boxes(boxes, subsets: FeatureSubsets) -> Boxes:
    """Validate ``boxes`` against ``subsets``; raise ``TypeError``/``ValueError``."""
    if not isinstance(boxes, Boxes):
        raise TypeError(f"boxes must be a Boxes instance, got {type(boxes).__name__}")
    if not isinstance(subsets, FeatureSubsets):
        raise TypeError(
            f"subsets must be a FeatureSubsets instance, got {type(subsets).__name__}"
        )
    boxes.validate(subsets)
    if len(boxes) and boxes.member.min() < 0:
        raise ValueError("box members must be >= 0")
    return boxes


def box_bounds(boxes: Boxes, subsets: FeatureSubsets) -> tuple[np.ndarray, np.ndarray]:
    """int32 ``(B, subsets.max_len)`` lo/hi; padding is ``[0, 255]`` (never binds)."""
    width = subsets.max_len
    lo = np.zeros((len(boxes), width), dtype=np.int32)
    hi = np.full((len(boxes), width), 255, dtype=np.int32)
    lengths = subsets.lengths[boxes.subset_ids] if len(boxes) else np.zeros(0, np.int32)
    for b in range(len(boxes)):
        n = int(lengths[b])
        lo[b, :n] = boxes.lo[b, :n]
        hi[b, :n] = boxes.hi[b, :n]
    return lo, hi


def member_order(member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes grouped by member: ``order`` int64 and ``next_group`` int64 (B,)."""
    order = np.argsort(member, kind="stable").astype(np.int64)
    sorted_members = member[order]
    next_group = np.empty(len(order), dtype=np.int64)
    end = len(order)
    for t in range(len(order) - 1, -1, -1):
        if t + 1 < len(order) and sorted_members[t + 1] != sorted_members[t]:
            end = t + 1
        next_group[t] = end
    return order, next_group


def _count(codes, subsets, boxes, by_member: bool, dtype) -> np.ndarray:
    """Per row: distinct members (``by_member``) or 0/1 "any box" (else), as ``dtype``."""
    boxes = check_boxes(boxes, subsets)
    codes = as_codes(codes, n_dims=subsets.n_dims, allow_empty=True)
    out = np.zeros(codes.shape[0], dtype=dtype)
    lo, hi = box_bounds(boxes, subsets)
    lengths = subsets.lengths[boxes.subset_ids] if len(boxes) else np.zeros(0, np.int32)
    active = np.arange(lo.shape[1])[None, :] < lengths[:, None]
    empty = np.any(active & ((lo > hi) | (hi < 0) | (lo > 255)), axis=1)
    keep = np.flatnonzero(~empty)
    if keep.size == 0 or codes.shape[0] == 0:
        return out
    lo8 = np.clip(lo[keep], 0, 255).astype(np.uint8)
    span8 = (np.clip(hi[keep], 0, 255) - lo8).astype(np.uint8)
    box_dims = np.ascontiguousarray(subsets.dims[boxes.subset_ids[keep]])
    box_len = np.ascontiguousarray(lengths[keep])
    used_dims = np.unique(box_dims[active[keep]]).astype(np.int64)
    if by_member:
        order, next_group = member_order(boxes.member[keep])
    else:
        order = np.arange(keep.size, dtype=np.int64)
        next_group = np.full(keep.size, keep.size, dtype=np.int64)
    parallel = codes.shape[0] >= PARALLEL_MIN_ROWS
    kernel = count_boxes_parallel if parallel else count_boxes_serial
    kernel(codes, used_dims, box_dims, box_len, lo8, span8, order, next_group, out)
    return out


def scan_boxes(
    codes, subsets: FeatureSubsets, boxes: Boxes
) -> tuple[np.ndarray, np.ndarray]:
    """Rows inside the union of ``boxes`` by a full parallel scan.

    Args:
        codes: uint8 ``(N, D)``.
        subsets: the feature subsets the boxes refer to.
        boxes: the boxes; ``boxes.member`` names each box's ensemble member.

    Returns:
        ``(ids, members_hit)``: int64 row ids sorted ascending and int32 counts of
        the distinct members whose boxes contain each row (as ``query_boxes``).
    """
    n_members = len(np.unique(boxes.member)) if isinstance(boxes, Boxes) else 0
    dtype = np.uint8 if n_members < 256 else np.int32
    hit = _count(codes, subsets, boxes, True, dtype)
    ids = np.flatnonzero(hit).astype(np.int64, copy=False)
    return ids, hit[ids].astype(np.int32)


def contains_any(codes, subsets: FeatureSubsets, boxes: Boxes) -> np.ndarray:
    """bool ``(N,)``: True where at least one box contains the row (parallel scan)."""
    return _count(codes, subsets, boxes, False, np.uint8).view(bool)


def rows_per_box(codes, subsets: FeatureSubsets, boxes: Boxes) -> np.ndarray:
    """int64 ``(B,)``: how many rows of ``codes`` (uint8 ``(N, D)``) each box holds
    (the boxes in parallel, each reading only its dims of the transposed codes)."""
    boxes = check_boxes(boxes, subsets)
    codes = as_codes(codes, n_dims=subsets.n_dims, allow_empty=True)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    return rows_per_box_kernel(*_by_columns(codes, subsets, boxes))


def _by_columns(codes, subsets: FeatureSubsets, boxes: Boxes) -> tuple:
    """``(cols, box_dims, box_len, lo, hi)``: the checked ``codes`` transposed (uint8
    ``(D, N)``), each box's dims (int32 ``(B, max_len)``) and their number (int32
    ``(B,)``), and :func:`box_bounds`."""
    box_dims = np.ascontiguousarray(subsets.dims[boxes.subset_ids])
    box_len = np.ascontiguousarray(subsets.lengths[boxes.subset_ids])
    cols = np.ascontiguousarray(codes.T)
    return (cols, box_dims, box_len, *box_bounds(boxes, subsets))


def shrink_boxes(codes, subsets: FeatureSubsets, boxes: Boxes, seeds, limits) -> Boxes:
    """The ``boxes``, each holding more than ``limits[b]`` rows of ``codes`` (uint8
    ``(N, D)``) shrunk about its seed (uint8 ``seeds (B, D)``: a code each box
    holds, the row it was grown around) to the smallest box holding the rows that
    the largest scaling within the limit holds (see
    :func:`~.scan_kernels.shrink_boxes_kernel`; a box whose seed's duplicates alone
    exceed it keeps the seed's point). ``limits``: int ``(B,)`` >= 0."""
    boxes = check_boxes(boxes, subsets)
    codes = as_codes(codes, n_dims=subsets.n_dims, allow_empty=True)
    seeds = check_codes(seeds, "seeds", subsets.n_dims)
    limits = np.ascontiguousarray(limits, dtype=np.int64)
    if seeds.shape[0] != len(boxes) or limits.shape != (len(boxes),):
        raise ValueError("seeds and limits need one row per box")
    if limits.size and limits.min() < 0:
        raise ValueError(f"limits must be >= 0, got {int(limits.min())}")
    if len(boxes) == 0:
        return boxes
    cols, box_dims, box_len, lo, hi = _by_columns(codes, subsets, boxes)
    at = np.take_along_axis(seeds, box_dims.astype(np.int64), axis=1).astype(np.int32)
    if np.any((at < lo) | (at > hi)):  # padding (dims -1) is [0, 255]: never fails
        raise ValueError("every seed must lie inside its box")
    lo, hi = shrink_boxes_kernel(cols, box_dims, box_len, lo, hi, at, limits)
    used = np.arange(lo.shape[1])[None, :] < box_len[:, None]  # padding as given
    return Boxes(
        boxes.subset_ids,
        np.where(used, lo, boxes.lo),
        np.where(used, hi, boxes.hi),
        boxes.member,
    )


def check_k(k, n_rows: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(min(k, n_rows))


def check_allowed(allowed, n_rows: int) -> np.ndarray:
    """``allowed`` as a bool ``(n_rows,)`` array (a mask of the rows a k-NN may
    return), or ValueError."""
    allowed = np.asarray(allowed)
    if allowed.dtype != np.bool_ or allowed.shape != (n_rows,):
        raise ValueError(
            f"allowed must be a bool array of shape ({n_rows},); got"
            f" {allowed.dtype} {allowed.shape}"
        )
    return allowed


def knn_scan(codes, query, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows to ``query`` by squared Euclidean distance (parallel scan).

    Args:
        codes: uint8 ``(N, D)``.
        query: uint8 ``(D,)``.
        k: number of neighbours; ``k > N`` returns all ``N`` rows.
        allowed: bool ``(N,)``: only the rows it holds True are ranked (one scan
            whatever it leaves out); None: every row.

    Returns:
        ``(ids int64, sq_dists int64)`` of length ``min(k, N)`` (of the allowed
        rows, when given), sorted by distance, ties by ascending id.
    """
    codes = as_codes(codes)
    if codes.shape[1] > MAX_KNN_DIMS:
        raise ValueError(f"knn supports at most {MAX_KNN_DIMS} dims")
    if codes.shape[0] >= 2**32:
        raise ValueError("knn supports at most 2**32 - 1 rows")
    q = as_query(query, codes.shape[1])
    kernel = knn_kernel if len(codes) >= PARALLEL_MIN_ROWS else knn_serial
    if allowed is None:
        k = check_k(k, codes.shape[0])
        keys = kernel(codes, q, k, None)
    else:
        allowed = check_allowed(allowed, codes.shape[0])
        k = check_k(k, int(np.count_nonzero(allowed)))
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        keys = kernel(codes, q, k, allowed.view(np.uint8))
    return (keys & 0xFFFFFFFF).astype(np.int64), (keys >> 32).astype(np.int64)


def search_chunks(codes, n_dims: int, score_chunk, chunk_rows: int = SEARCH_CHUNK_ROWS):
    """Every accepted row of ``codes``, scored ``chunk_rows`` rows at a time.

    Args:
        codes: uint8 ``(N, n_dims)`` (a memory map is read one chunk at a time).
        score_chunk: ``score_chunk(chunk, buffer) -> (hits, scores)``: the accepted
            rows of the uint8 ``chunk`` (int positions within it) and their float
            scores; ``buffer`` is an int32 scratch array of ``len(chunk)``.

    Returns:
        ``(ids int64, scores float64)``, by ascending id.
    """
    chunk_rows = check_int(chunk_rows, "chunk_rows", 1)
    n = codes.shape[0]
    ids, scores = [], []
    buffer = np.empty(min(chunk_rows, n), dtype=np.int32)
    for start in range(0, n, chunk_rows):
        chunk = check_codes(
            np.asarray(codes[start : start + chunk_rows]), "codes", n_dims
        )
        hit, score = score_chunk(chunk, buffer[: chunk.shape[0]])
        ids.append(np.asarray(hit, dtype=np.int64) + start)
        scores.append(np.asarray(score, dtype=np.float64))
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(ids), np.concatenate(scores)
