"""Engine: numpy + numba only. Codes, feature subsets, the k-d tree set index, decision branches."""

from fiftyone_clipbranches.engine.numba_cache import ensure_cache_dir

ensure_cache_dir()  # before any kernel module asks numba to cache
