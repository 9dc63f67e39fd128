"""Input and parameter validation shared by the models (scikit-learn style errors)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .subsets import FeatureSubsets, make_subsets


def check_codes(X, name: str = "X", n_dims: int | None = None) -> np.ndarray:
    """Return ``X`` as C-contiguous uint8 ``(n, D)``, refusing anything else clearly."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.dtype != np.uint8:
        if X.dtype.kind == "f" and np.isnan(X).any():
            raise ValueError(f"{name} contains NaN; models take uint8 codes")
        if X.dtype.kind == "f":
            raise TypeError(
                f"{name} must be uint8 codes, got {X.dtype}: quantise float vectors first"
            )
        if X.dtype.kind not in "iu" or X.dtype == bool:
            raise TypeError(f"{name} must be uint8 codes, got dtype {X.dtype}")
        if X.size and (X.min() < 0 or X.max() > 255):
            raise ValueError(
                f"{name} has values outside [0, 255]; expected uint8 codes"
            )
        X = X.astype(np.uint8)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (n, D) array, got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column")
    if n_dims is not None and X.shape[1] != n_dims:
        raise ValueError(f"{name} has {X.shape[1]} dims, the model was fit on {n_dims}")
    return np.ascontiguousarray(X)


def check_features(X, name: str = "X", n_dims: int | None = None) -> np.ndarray:
    """uint8 codes as :func:`check_codes`; float features (finite) are also accepted."""
    if isinstance(X, np.ndarray) and X.dtype.kind == "f":
        if X.ndim != 2 or X.shape[1] == 0:
            raise ValueError(f"{name} must be a 2-d (n, D) array, got shape {X.shape}")
        if n_dims is not None and X.shape[1] != n_dims:
            raise ValueError(
                f"{name} has {X.shape[1]} dims, the model was fit on {n_dims}"
            )
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return X
    return check_codes(X, name, n_dims)


def check_training(X, y, sample_weight, *, allow_float: bool = False):
    """Validate ``(X, y, sample_weight)``; returns X (uint8 unless ``allow_float``),
    int8 y and float64 weights."""
    X = check_features(X) if allow_float else check_codes(X)
    if X.shape[0] == 0:
        raise ValueError("X is empty: at least one training row is required")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError("y contains NaN")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold only 0 (negative) and 1 (positive) labels")
    y = y.astype(np.int8)
    if not (y == 1).any():
        raise ValueError(
            "y has no positive (1) label: at least one positive is required"
        )
    if sample_weight is None:
        w = np.ones(X.shape[0])
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (X.shape[0],):
            raise ValueError(
                f"sample_weight must have shape ({X.shape[0]},), got {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ValueError("sample_weight contains NaN or infinite values")
        if (w < 0).any():
            raise ValueError("sample_weight must be >= 0")
        if not (w[y == 1] > 0).any():
            raise ValueError("every positive has sample_weight 0: nothing to learn")
    return X, y, np.ascontiguousarray(w)


def check_positive_number(value, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float, refusing anything but a finite int or float > 0
    (``>= 0`` with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an int or a float, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def resolve_candidates(max_candidates, n_subsets: int) -> int:
    """Number of candidate subsets per box from an int, a float fraction, "sqrt", "all"."""
    if isinstance(max_candidates, str):
        if max_candidates == "all":
            return n_subsets
        if max_candidates == "sqrt":
            return max(1, math.ceil(math.sqrt(n_subsets)))
        raise ValueError(
            f'max_candidates must be an int, a float in (0, 1], "sqrt" or "all";'
            f" got {max_candidates!r}"
        )
    if isinstance(max_candidates, bool):
        raise TypeError("max_candidates must be an int, a float, 'sqrt' or 'all'")
    if isinstance(max_candidates, numbers.Integral):
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        return min(int(max_candidates), n_subsets)
    if isinstance(max_candidates, numbers.Real):
        if not 0.0 < max_candidates <= 1.0:
            raise ValueError(
                f"a float max_candidates must be in (0, 1], got {max_candidates}"
            )
        return max(1, min(n_subsets, math.ceil(max_candidates * n_subsets)))
    raise TypeError("max_candidates must be an int, a float, 'sqrt' or 'all'")


def check_margin(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"bound_margin must be a float in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"bound_margin must be in [0, 1), got {value}")
    return float(value)


def check_end_extension(value) -> float:
    """``end_extension`` as the kernels' float (``-1.0`` for "open")."""
    if isinstance(value, str):
        if value == "open":
            return -1.0
        raise ValueError(f'end_extension must be a float >= 0 or "open", got {value!r}')
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'end_extension must be a float >= 0 or "open", got {value!r}')
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"end_extension must be a finite float >= 0, got {value}")
    return float(value)


def resolve_subsets(subsets, n_dims: int) -> FeatureSubsets:
    if subsets is None:
        return make_subsets(n_dims)
    if not isinstance(subsets, FeatureSubsets):
        raise TypeError(
            "subsets must be a FeatureSubsets (see engine.subsets.make_subsets)"
        )
    if subsets.n_dims != n_dims:
        raise ValueError(
            f"subsets index {subsets.n_dims} dims but X has {n_dims} columns"
        )
    return subsets


def check_row_mask(mask, shape: tuple, name: str) -> np.ndarray:
    """bool ``shape`` mask over the training rows (all False when ``mask`` is None)."""
    if mask is None:
        return np.zeros(shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != shape:
        raise ValueError(f"{name} must be a bool array of shape {shape}")
    return mask


def check_rows(rows, n_rows: int, name: str = "rows") -> np.ndarray:
    """``rows`` as C-contiguous int64 ``(m,)``, every one in ``[0, n_rows)``."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of row numbers")
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(
            f"{name} must lie in [0, {n_rows}), got values in"
            f" [{rows.min()}, {rows.max()}]"
        )
    return rows


def seed_from(random_state) -> np.random.Generator:
    if random_state is None:
        return np.random.default_rng(0)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise TypeError("random_state must be an int, a numpy Generator or None")
    if random_state < 0:
        raise ValueError("random_state must be >= 0")
    return np.random.default_rng(int(random_state))


class EstimatorParams:
    """``get_params``/``set_params`` and ``repr`` derived from the constructors'
    keyword arguments, as scikit-learn estimators have them.

    The parameters are those named in the ``__init__`` of the class and of its
    bases (a subclass may pass the parameters of its base on as ``**kwargs``).
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        names: list[str] = []
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
                    continue
                if p.name not in names:
                    names.append(p.name)
        return names

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters (validated at the next ``fit``); returns self."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"unknown parameter {key!r}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
