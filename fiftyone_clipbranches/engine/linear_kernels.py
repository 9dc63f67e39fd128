"""Numba kernels of the linear classifier: integer scores over uint8 codes, and the
gradient and Hessian of a weighted logistic loss (small dense problems, no BLAS: its
threads would contend with the callers' own)."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .jit import serial_and_parallel

_BLOCK = 4096
#: Below this many rows the scores are computed on the calling thread.
PARALLEL_MIN_ROWS = 1 << 16


def _linear_scores(codes, weights, out):
    """``out[i] = sum_d weights[d] * codes[i, d]`` exactly, in int32.

    Args:
        codes: uint8 ``(N, D)``.
        weights: int32 ``(D,)``, small enough that no sum overflows int32
            (``255 * D * max|weights| < 2**31``).
        out: int32 ``(N,)``, written.
    """
    n, n_dims = codes.shape
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for b in nb.prange(n_blocks):
        first = b * _BLOCK
        last = min(n, first + _BLOCK)
        for i in range(first, last):
            acc = np.int32(0)
            for d in range(n_dims):
                acc += weights[d] * np.int32(codes[i, d])
            out[i] = acc


linear_scores_serial, linear_scores_parallel = serial_and_parallel(_linear_scores)


def linear_scores(codes, weights, out) -> None:
    """:func:`_linear_scores` on one thread for small inputs, on all for large."""
    if codes.shape[0] < PARALLEL_MIN_ROWS:
        linear_scores_serial(codes, weights, out)
    else:
        linear_scores_parallel(codes, weights, out)


@nb.njit(cache=True, nogil=True)
def logistic_terms(z, y, s, beta, grad, hess):
    """Objective, gradient and Hessian of the weighted logistic loss at ``beta``.

    The design is ``[z, 1]``: ``z`` float64 ``(n, D)``, the intercept last in
    ``beta`` float64 ``(D + 1,)``. ``y`` and ``s`` float64 ``(n,)`` are labels in
    {0, 1} and weights. Writes ``grad`` ``(D + 1,)`` and ``hess`` ``(D + 1, D + 1)``
    of ``sum_i s_i * logloss_i`` (no penalty) and returns that sum.
    """
    n, n_dims = z.shape
    m = n_dims + 1
    grad[:] = 0.0
    hess[:, :] = 0.0
    row = np.empty(m)
    row[n_dims] = 1.0
    total = 0.0
    for i in range(n):
        t = beta[n_dims]
        for d in range(n_dims):
            row[d] = z[i, d]
            t += beta[d] * row[d]
        # log(1 + e^t) without overflow, and the sigmoid from it
        softplus = max(t, 0.0) + math.log1p(math.exp(-abs(t)))
        p = math.exp(t - softplus)
        total += s[i] * (softplus - y[i] * t)
        g = s[i] * (p - y[i])
        c = s[i] * p * (1.0 - p)
        for a in range(m):
            grad[a] += g * row[a]
            ca = c * row[a]
            for b in range(a + 1):
                hess[a, b] += ca * row[b]
    for a in range(m):
        for b in range(a):
            hess[b, a] = hess[a, b]
    return total
