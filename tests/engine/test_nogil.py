"""Kernels release the GIL: other Python threads run while one computes, and
parallel kernels launched from several threads at once give the serial answers."""

from __future__ import annotations

import threading
import time

import numba as nb
import numpy as np

from fiftyone_clipbranches.engine import branches_kernels, kdtree_query, scan_kernels
from fiftyone_clipbranches.engine.jit import NOGIL_PARALLEL, serial_and_parallel


def _sum_of_squares(x, repeats):
    total = 0.0
    for _ in range(repeats):
        for i in nb.prange(x.shape[0]):
            total += x[i] * x[i]
    return total


SERIAL, PARALLEL = serial_and_parallel(_sum_of_squares)


def test_kernels_are_compiled_without_the_gil():
    assert SERIAL.targetoptions["nogil"] is True
    assert kdtree_query.fill_boxes_serial.targetoptions["nogil"] is True
    assert branches_kernels.fit_branches.targetoptions["nogil"] is True
    parallel = (PARALLEL, scan_kernels.count_boxes_parallel)
    for kernel in parallel:
        assert bool(kernel.targetoptions.get("nogil")) is NOGIL_PARALLEL


def _python_turns_during(kernel, x, repeats) -> tuple[list[float], float, float]:
    """Times at which another Python thread ran while ``kernel`` computed."""
    stamps: list[float] = []
    done = threading.Event()

    def python_work():
        while not done.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.001)

    worker = threading.Thread(target=python_work)
    worker.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    try:
        kernel(x, repeats)
    finally:
        t1 = time.perf_counter()
        done.set()
        worker.join()
    return stamps, t0, t1


def test_python_threads_run_while_a_kernel_computes():
    x = np.random.default_rng(0).random(200_000)
    SERIAL(x, 1)  # compiled before timing
    stamps, t0, t1 = _python_turns_during(SERIAL, x, 600)
    assert t1 - t0 > 0.05
    # with the GIL held the other thread gets no turn until the kernel returns
    middle = [t for t in stamps if t0 + 0.25 * (t1 - t0) < t < t0 + 0.75 * (t1 - t0)]
    assert len(middle) >= 3


def test_parallel_kernels_from_many_threads_give_the_serial_answers():
    x = np.random.default_rng(1).random(100_000)
    expected = SERIAL(x, 3)
    results = []

    def call():
        results.append(PARALLEL(x, 3))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    np.testing.assert_allclose(results, expected, rtol=1e-9)
