"""The per-process cache of loaded index directories: size from the environment,
pinned bundles outliving the LRU."""

import numpy as np
import pytest

from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.sdk import bundle as b
from fiftyone_clipbranches.sdk.rowmap import SampleRowMap
from fiftyone_clipbranches.sdk.settings import INDEX_CACHE_SIZE_ENV, index_cache_size


@pytest.fixture
def bundle_dirs(tmp_path):
    """Five small index directories; the cache is emptied before and after."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        codes = rng.integers(0, 256, size=(20, 32), dtype=np.uint8)
        rowmap = SampleRowMap([f"{i:02d}{j:022d}" for j in range(20)])
        paths.append(b.write_bundle(tmp_path, CodeIndex.build(codes), rowmap, None, {}))
    _clear(paths)
    yield paths
    _clear(paths)


def _clear(paths):
    for path in paths:
        b.forget_bundle(path)


def _held(paths):
    pinned, lru = b.cached_bundles()
    keys = [str(p.resolve()) for p in paths]
    return [k in pinned for k in keys], [k in lru for k in keys]


def test_cache_size_comes_from_the_environment(bundle_dirs, monkeypatch):
    monkeypatch.setenv(INDEX_CACHE_SIZE_ENV, "2")
    loaded = [b.load_bundle(p) for p in bundle_dirs[:3]]
    assert _held(bundle_dirs)[1] == [False, True, True, False, False]
    assert b.load_bundle(bundle_dirs[2]) is loaded[2]
    assert b.load_bundle(bundle_dirs[0]) is not loaded[0]
    monkeypatch.setenv(INDEX_CACHE_SIZE_ENV, "0")
    b.load_bundle(bundle_dirs[3])
    assert _held(bundle_dirs)[1] == [False] * 5
    monkeypatch.delenv(INDEX_CACHE_SIZE_ENV)
    assert index_cache_size() == 4


@pytest.mark.parametrize("raw", ["-1", "four", "2.5"])
def test_bad_cache_size_is_a_clear_error(monkeypatch, raw):
    monkeypatch.setenv(INDEX_CACHE_SIZE_ENV, raw)
    with pytest.raises(ValueError, match=INDEX_CACHE_SIZE_ENV):
        index_cache_size()


def test_pinned_bundles_survive_any_number_of_other_loads(bundle_dirs, monkeypatch):
    monkeypatch.setenv(INDEX_CACHE_SIZE_ENV, "1")
    cached = b.load_bundle(bundle_dirs[0])
    pinned = [b.pin_bundle(p) for p in bundle_dirs[:3]]
    assert pinned[0] is cached
    for p in bundle_dirs[3:]:
        b.load_bundle(p)
    assert all(b.load_bundle(p) is x for p, x in zip(bundle_dirs, pinned))
    assert _held(bundle_dirs) == (
        [True, True, True, False, False],
        [False, False, False, False, True],
    )
    b.unpin_bundle(bundle_dirs[1])
    assert b.load_bundle(bundle_dirs[1]) is not pinned[1]
    b.forget_bundle(bundle_dirs[0])
    assert not _held(bundle_dirs)[0][0]
