"""Journey (d): every file of an index directory corrupted in turn (bytes flipped,
truncated, extended, sample ids permuted). Under ``verify="full"`` each case is a
clear error; at the default level each case is a clear error or the right answer,
never a wrong one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.bundle import forget_bundle


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x5A
    return bytes(out)


def _permute_ids(data: bytes, path: Path) -> bytes:
    path.write_bytes(data)
    ids = np.load(path)
    np.save(path, ids[::-1].copy())
    return path.read_bytes()


CORRUPTIONS = {
    "first bytes": lambda data, path: _flip(data, min(20, len(data) - 1)),
    "middle byte": lambda data, path: _flip(data, len(data) // 2),
    "last byte": lambda data, path: _flip(data, len(data) - 1),
    "truncated": lambda data, path: data[: len(data) // 2],
    "one byte more": lambda data, path: data + b"\0",
}


def _answer(ds, verify):
    sdk.load_index(ds, "clip", verify=verify)
    found = sdk.search_ids(ds, text="a photo of a dog", k=12, index_key="clip")[0]
    refined = sdk.refine(ds, found[:3], found[-3:], index_key="clip", score_field=None)
    return found, list(refined.ids)


def test_each_file_corrupted_in_turn_never_gives_a_wrong_answer(make_user_index):
    ds = make_user_index(n_per_class=5)
    index_dir = Path(sdk.index_info(ds, "clip").index_dir)
    expected = _answer(ds, "full")
    files = sorted(p for p in index_dir.rglob("*") if p.is_file())
    names = {p.relative_to(index_dir).as_posix() for p in files}
    assert {"manifest.json", "sample_ids.npy", "index/manifest.json"} <= names
    assert any(n.startswith("encoder/") for n in names)

    cases = 0
    for path in files:
        original = path.read_bytes()
        corruptions = dict(CORRUPTIONS)
        if path.name == "sample_ids.npy":
            corruptions["permuted"] = _permute_ids
        for how, corrupt in corruptions.items():
            path.write_bytes(corrupt(original, path))
            try:
                for level in ("full", "fast"):
                    forget_bundle(index_dir)
                    try:
                        answer = _answer(ds, level)
                    except (sdk.IndexCorruptedError, sdk.StaleIndexError) as e:
                        assert "rebuild" in str(e) or "build it again" in str(e)
                        continue
                    assert level != "full", f"{path.name} {how}: no error"
                    assert answer == expected, f"{path.name} {how}: wrong answer"
                with pytest.raises(sdk.IndexCorruptedError):
                    sdk.verify_index(ds, "clip", level="full")
                cases += 1
            finally:
                path.write_bytes(original)
    forget_bundle(index_dir)
    assert cases == 5 * len(files) + 1
    assert _answer(ds, "full") == expected
