"""One numba kernel body, compiled for one thread and for many."""

from __future__ import annotations

import types

import numba as nb


def serial_and_parallel(py_func):
    """``(serial, parallel)`` dispatchers of a body written with ``nb.prange``.

    ``prange`` is a plain ``range`` in a function compiled without
    ``parallel=True``, so one body serves small inputs (no thread start-up) and large
    ones. Numba's on-disk cache keys a function by its qualified name and signature,
    not by its compile flags, so the serial twin is compiled from a copy under its
    own name; otherwise one twin could load the other's cached machine code.
    """
    twin = types.FunctionType(
        py_func.__code__,
        py_func.__globals__,
        f"{py_func.__name__}_serial",
        py_func.__defaults__,
        py_func.__closure__,
    )
    twin.__qualname__ = f"{py_func.__qualname__}_serial"
    twin.__module__ = py_func.__module__
    twin.__doc__ = py_func.__doc__
    return nb.njit(cache=True)(twin), nb.njit(cache=True, parallel=True)(py_func)
