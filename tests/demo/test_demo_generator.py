"""Generated demo images: determinism, idempotency, ground truth consistent with pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fiftyone_clipbranches.demo.generator import (
    BACKGROUNDS,
    COLOURS,
    MANIFEST_NAME,
    SHAPES,
    SIZES,
    TEXTURES,
    describe_object,
    generate_images,
    make_scene,
    make_scenes,
)


def _bytes(records):
    return [open(r.filepath, "rb").read() for r in records]


def test_same_seed_same_images_and_records(tmp_path):
    a = generate_images(tmp_path / "a", n=12, seed=3, progress=False)
    b = generate_images(tmp_path / "b", n=12, seed=3, progress=False)
    assert [r.caption for r in a] == [r.caption for r in b]
    assert [r.objects for r in a] == [r.objects for r in b]
    assert _bytes(a) == _bytes(b)
    c = generate_images(tmp_path / "c", n=12, seed=4, progress=False)
    assert [r.caption for r in a] != [r.caption for r in c]


def test_prefix_of_larger_set_is_identical(tmp_path):
    small = generate_images(tmp_path / "s", n=5, seed=1, progress=False)
    large = generate_images(tmp_path / "l", n=9, seed=1, progress=False)
    assert [r.to_dict() | {"filepath": ""} for r in small] == [
        r.to_dict() | {"filepath": ""} for r in large[:5]
    ]
    assert _bytes(small) == _bytes(large[:5])


def test_second_call_rewrites_nothing(tmp_path):
    records = generate_images(tmp_path, n=8, progress=False)
    paths = [tmp_path / f"{i:05d}.png" for i in range(8)] + [tmp_path / MANIFEST_NAME]
    stamps = [p.stat().st_mtime_ns for p in paths]
    again = generate_images(tmp_path, n=8, progress=False)
    assert again == records
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_missing_or_mismatched_files_are_regenerated(tmp_path):
    records = generate_images(tmp_path, n=4, seed=0, progress=False)
    original = _bytes(records)
    (tmp_path / "00002.png").unlink()
    assert _bytes(generate_images(tmp_path, n=4, seed=0, progress=False)) == original

    other = generate_images(tmp_path, n=4, seed=5, progress=False)
    assert _bytes(other) != original
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 5 and manifest["n"] == 4
    assert [e["caption"] for e in manifest["records"]] == [r.caption for r in other]


def test_manifest_round_trips_records(tmp_path):
    records = generate_images(tmp_path, n=6, seed=2, progress=False)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    for rec, entry in zip(records, manifest["records"], strict=True):
        assert (tmp_path / entry["filename"]).resolve() == tmp_path.resolve() / (
            rec.filepath.rsplit("/", 1)[-1]
        )
        assert {k: v for k, v in entry.items() if k != "filename"} == {
            k: v for k, v in rec.to_dict().items() if k != "filepath"
        }


def test_attributes_are_valid_and_caption_describes_them():
    for scene in make_scenes(200, seed=11):
        rec = scene.record()
        assert 1 <= len(rec.objects) <= 3
        assert rec.background in BACKGROUNDS and rec.texture in TEXTURES
        for o in rec.objects:
            assert o["shape"] in SHAPES and o["size"] in SIZES
            assert o["colour"] in COLOURS and o["colour"] != rec.background
            x, y, w, h = o["bbox"]
            assert x >= 0 and y >= 0 and x + w <= 1.0001 and y + h <= 1.0001
            assert describe_object(o) in rec.caption
        suffix = f" on a {rec.texture} {rec.background} background"
        assert rec.caption.endswith(suffix)
        things = rec.caption[: -len(suffix)]
        assert things.count(" and ") == (len(rec.objects) > 1)
        assert things.count(",") == max(0, len(rec.objects) - 2)


def _nearest_colour(pixel):
    names = list(COLOURS)
    dists = [np.sum((np.array(COLOURS[c]) - pixel) ** 2) for c in names]
    return names[int(np.argmin(dists))]


def test_pixels_at_object_centres_have_the_object_colour():
    for i in range(60):
        scene = make_scene(7, i, image_size=96)
        pixels = np.asarray(scene.render(), dtype=np.int64)
        assert pixels.shape == (96, 96, 3)
        for o in scene.objects:
            cx, cy = (int(round(v)) for v in o.centre)
            assert _nearest_colour(pixels[cy, cx]) == o.colour


def test_image_files_are_rgb_of_requested_size(tmp_path):
    records = generate_images(tmp_path, n=2, image_size=64, progress=False)
    for rec in records:
        with Image.open(rec.filepath) as img:
            assert img.mode == "RGB" and img.size == (64, 64)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n": 0}, ValueError),
        ({"n": 2.5}, TypeError),
        ({"seed": -1}, ValueError),
        ({"image_size": 8}, ValueError),
        ({"n": True}, TypeError),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, error):
    with pytest.raises(error):
        generate_images(tmp_path, progress=False, **kwargs)


def test_out_dir_that_is_a_file_raises(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        generate_images(f, n=1, progress=False)
