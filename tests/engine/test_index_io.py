"""Saving and loading CodeIndex directories: round trips and every refusal path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fiftyone_clipbranches.engine.boxes import Boxes
from fiftyone_clipbranches.engine.errors import IndexFormatError
from fiftyone_clipbranches.engine.index import CodeIndex
from fiftyone_clipbranches.engine.index_io import MANIFEST


@pytest.fixture(scope="module")
def codes():
    return np.random.default_rng(11).integers(0, 256, (3000, 32), dtype=np.uint8)


@pytest.fixture(scope="module")
def index(codes):
    return CodeIndex.build(codes, leaf_size=32)


def some_boxes(index):
    rng = np.random.default_rng(5)
    width = index.subsets.max_len
    lo = rng.integers(0, 128, (8, width)).astype(np.int16)
    return Boxes(
        rng.integers(0, len(index.subsets), 8).astype(np.int32),
        lo,
        (lo + 127).astype(np.int16),
        rng.integers(0, 3, 8).astype(np.int32),
    )


def test_round_trip_with_extras(tmp_path, index, codes):
    path = tmp_path / "idx"
    extra = {"sample_ids.json": b'["a", "b"]', "encoder.bin": bytes(range(256))}
    index.save(path, extra_files=extra, extra_manifest={"dataset": "demo", "k": [1, 2]})
    for verify in ("full", "fast", "none"):
        loaded = CodeIndex.load(path, verify=verify)
        assert isinstance(loaded.codes, np.memmap)
        np.testing.assert_array_equal(np.asarray(loaded.codes), codes)
        assert loaded.subsets == index.subsets
        assert loaded.leaf_size == index.leaf_size and len(loaded) == len(index)
        assert loaded.manifest["extra"] == {"dataset": "demo", "k": [1, 2]}
        boxes = some_boxes(index)
        for a, b in zip(loaded.query_boxes(boxes), index.query_boxes(boxes)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(
            loaded.knn(codes[3], 7)[0], index.knn(codes[3], 7)[0]
        )
    for name, data in extra.items():
        assert CodeIndex.read_extra(path, name) == data
    with pytest.raises(KeyError):
        CodeIndex.read_extra(path, "nope")
    in_ram = CodeIndex.load(path, mmap=False)
    assert not isinstance(in_ram.values, np.memmap)


def test_save_replaces_existing_atomically(tmp_path, index, codes):
    path = tmp_path / "idx"
    index.save(path, extra_files={"a": b"1"})
    other = CodeIndex.build(codes[:100], index.subsets, leaf_size=8)
    other.save(path)
    assert len(CodeIndex.load(path, verify="full")) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    with pytest.raises(KeyError):
        CodeIndex.read_extra(path, "a")
    # a failing save leaves the old index in place and no staging directory
    with pytest.raises(TypeError):
        index.save(path, extra_manifest={"bad": object()})
    assert len(CodeIndex.load(path)) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_save_never_replaces_what_is_no_index(tmp_path, index, codes):
    """A save replaces an index at its path, never a user's files: a directory of
    other files or a plain file is left as it was, with a refusal."""
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    plain = tmp_path / "codes_backup.npy"
    plain.write_bytes(b"mine")
    for target in (mine, plain):
        with pytest.raises(FileExistsError, match="not a clipbranches index"):
            index.save(target)
        with pytest.raises(FileExistsError, match="nothing was replaced"):
            CodeIndex.build(codes[:100], index.subsets, leaf_size=8, path=target)
    assert (mine / "notes.txt").read_text() == "mine" and plain.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes_backup.npy", "project"]
    empty = tmp_path / "empty"
    empty.mkdir()
    index.save(empty)  # an empty directory takes the index
    assert len(CodeIndex.load(empty)) == len(index)


def test_a_load_during_a_replacement_reads_one_index(tmp_path, index, codes):
    """Another writer replacing the index while it is read: the load reads the
    new one whole (it mixed the files of both, or called the swap corruption)."""
    from fiftyone_clipbranches.engine import index_io

    path = tmp_path / "idx"
    index.save(path)
    other = CodeIndex.build(codes[::-1].copy(), index.subsets, leaf_size=32)
    real_load_array, swapped = index_io.load_array, []

    def load_array(where, manifest, name, **kwargs):
        if name == "values" and not swapped:  # codes read, the rest not yet
            swapped.append(True)
            other.save(path)
        return real_load_array(where, manifest, name, **kwargs)

    for verify in ("none", "fast"):
        swapped.clear()
        index.save(path)
        index_io.load_array = load_array
        try:
            loaded = CodeIndex.load(path, verify=verify)
        finally:
            index_io.load_array = real_load_array
        assert swapped
        np.testing.assert_array_equal(np.asarray(loaded.codes), other.codes)
        boxes = some_boxes(index)
        for a, b in zip(loaded.query_boxes(boxes), other.query_boxes(boxes)):
            np.testing.assert_array_equal(a, b)


def test_an_index_keeps_its_own_codes(codes, index):
    mine = codes.copy()
    built = CodeIndex.build(mine, index.subsets, leaf_size=32)
    mine[:] = 255  # the caller reuses its array
    np.testing.assert_array_equal(built.codes, codes)
    boxes = some_boxes(index)
    for a, b in zip(built.query_boxes(boxes), index.query_boxes(boxes)):
        np.testing.assert_array_equal(a, b)


def test_build_straight_to_disk(tmp_path, codes, index):
    path = tmp_path / "direct"
    built = CodeIndex.build(
        codes, index.subsets, leaf_size=32, path=path, extra_files={"x": b"y"}
    )
    assert isinstance(built.values, np.memmap)
    np.testing.assert_array_equal(np.asarray(built.values), index.values)
    np.testing.assert_array_equal(np.asarray(built.ids), index.ids)
    assert CodeIndex.read_extra(path, "x") == b"y"
    CodeIndex.load(path, verify="full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct"]


@pytest.fixture()
def saved(tmp_path, index):
    path = tmp_path / "idx"
    index.save(path, extra_files={"ids.bin": b"0123456789"})
    return path


@pytest.mark.parametrize("verify", ["full", "fast"])
@pytest.mark.parametrize("name", ["codes.npy", "values.npy", "ids.npy", "node_lo.npy"])
def test_flipped_byte_is_refused(saved, name, verify):
    p = saved / name
    data = bytearray(p.read_bytes())
    data[len(data) - 7] ^= 0x10
    p.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=name):
        CodeIndex.load(saved, verify=verify)


@pytest.mark.parametrize("name", ["codes.npy", "ids.npy", "node_hi.npy"])
def test_truncated_file_is_refused(saved, name):
    p = saved / name
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 100])
    with pytest.raises(IndexFormatError, match=rf"{name}.*truncated"):
        CodeIndex.load(saved, verify="none")


@pytest.mark.parametrize("name", ["values.npy", MANIFEST])
def test_missing_file_is_refused(saved, name):
    (saved / name).unlink()
    with pytest.raises(IndexFormatError, match=name):
        CodeIndex.load(saved)


def test_wrong_version_and_bad_manifest(saved):
    mpath = saved / MANIFEST
    manifest = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**manifest, "format_version": 999}))
    with pytest.raises(IndexFormatError, match="version"):
        CodeIndex.load(saved)
    mpath.write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(IndexFormatError, match=MANIFEST):
        CodeIndex.load(saved)
    mpath.write_text("{not json")
    with pytest.raises(IndexFormatError, match="JSON"):
        CodeIndex.load(saved)
    mpath.write_text(json.dumps({**manifest, "n_rows": 17}))
    with pytest.raises(IndexFormatError, match="rebuild"):
        CodeIndex.load(saved, verify="none")
    with pytest.raises(IndexFormatError, match="no index directory"):
        CodeIndex.load(saved / "nowhere")


def test_replaced_array_with_other_shape_is_refused(saved):
    np.save(saved / "ids.npy", np.zeros((3, 3), np.uint32))
    with pytest.raises(IndexFormatError, match="ids.npy"):
        CodeIndex.load(saved, verify="none")


def test_corrupted_extra_is_refused(saved):
    (saved / "extra" / "ids.bin").write_bytes(b"0123456788")
    with pytest.raises(IndexFormatError, match="ids.bin"):
        CodeIndex.read_extra(saved, "ids.bin")


def test_bad_arguments(saved, index):
    with pytest.raises(ValueError, match="verify"):
        CodeIndex.load(saved, verify="sometimes")
    with pytest.raises(ValueError, match="invalid file name"):
        index.save(saved.parent / "x", extra_files={"../evil": b""})
    with pytest.raises(TypeError):
        index.save(saved.parent / "y", extra_files={"a": "not bytes"})
    with pytest.raises(TypeError):
        index.save(saved.parent / "z", extra_manifest=[1])


def test_a_garbled_npy_header_is_a_format_error(tmp_path, index):
    path = tmp_path / "idx"
    index.save(path)
    codes = path / "codes.npy"
    data = bytearray(codes.read_bytes())
    data[20] ^= 0x5A  # inside the header's Python literal
    codes.write_bytes(bytes(data))
    for verify in ("none", "fast", "full"):
        with pytest.raises(IndexFormatError, match="codes.npy"):
            CodeIndex.load(path, verify=verify)
