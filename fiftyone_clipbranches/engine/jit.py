"""One numba kernel body, compiled for one thread and for many; the GIL released.

Every kernel runs without the GIL (``nogil=True``), so a server's other threads
(health checks, JSON, I/O) run while one computes. Serial kernels may always do so.
A parallel kernel may only when numba's threading layer accepts concurrent launches
from several threads (``tbb`` or ``omp``); the ``workqueue`` layer aborts the process
on one, and the GIL was what serialised them. :data:`NOGIL_PARALLEL` says whether a
thread-safe layer is loadable here; then it is required (``threadsafe``, unless
``NUMBA_THREADING_LAYER`` names one) and parallel kernels release the GIL too.
"""

from __future__ import annotations

import importlib
import types

import numba as nb


def _threadsafe_layer_loadable() -> bool:
    if nb.config.THREADING_LAYER not in ("default", "threadsafe", "safe", "tbb", "omp"):
        return False  # workqueue chosen explicitly
    for pool in ("tbbpool", "omppool"):
        try:
            importlib.import_module(f"numba.np.ufunc.{pool}")
        except (ImportError, OSError):
            continue
        return True
    return False


#: Whether parallel kernels run without the GIL (a thread-safe layer is in use).
NOGIL_PARALLEL = _threadsafe_layer_loadable()
if NOGIL_PARALLEL and nb.config.THREADING_LAYER == "default":
    nb.config.THREADING_LAYER = "threadsafe"


def _renamed(py_func, suffix: str):
    """A copy of ``py_func`` under ``name + suffix``: numba's on-disk cache keys a
    function by its qualified name and signature, not by its compile flags, so each
    set of flags needs its own name (or one could load another's machine code)."""
    if not suffix:
        return py_func
    twin = types.FunctionType(
        py_func.__code__,
        py_func.__globals__,
        f"{py_func.__name__}{suffix}",
        py_func.__defaults__,
        py_func.__closure__,
    )
    twin.__qualname__ = f"{py_func.__qualname__}{suffix}"
    twin.__module__ = py_func.__module__
    twin.__doc__ = py_func.__doc__
    return twin


def parallel_kernel(py_func):
    """``njit(cache=True, parallel=True)``, without the GIL when
    :data:`NOGIL_PARALLEL`."""
    if NOGIL_PARALLEL:
        fn = _renamed(py_func, "_nogil")
        return nb.njit(cache=True, parallel=True, nogil=True)(fn)
    return nb.njit(cache=True, parallel=True)(py_func)


def serial_and_parallel(py_func):
    """``(serial, parallel)`` dispatchers of a body written with ``nb.prange``.

    ``prange`` is a plain ``range`` in a function compiled without
    ``parallel=True``, so one body serves small inputs (no thread start-up) and large
    ones. The serial twin never holds the GIL; the parallel one as
    :func:`parallel_kernel`.
    """
    serial = nb.njit(cache=True, nogil=True)(_renamed(py_func, "_serial_nogil"))
    return serial, parallel_kernel(py_func)
