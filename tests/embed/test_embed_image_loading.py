"""Image files that must not hang or exhaust memory: FIFOs, directories, huge images."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from fiftyone_clipbranches.embed.image_loading import (
    ImageFileDataset,
    ImageRefusedError,
    open_image_file,
)


def _identity(img):
    return np.asarray(img).shape


def test_a_fifo_named_jpg_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    i, tensor, error = ImageFileDataset([str(fifo)], _identity)[0]
    assert (i, tensor) == (0, None)
    assert "FIFO (named pipe), not an image file" in error
    with pytest.raises(ImageRefusedError, match="directory"):
        open_image_file(tmp_path)


def test_a_file_that_is_no_image_is_named_by_its_path(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    i, tensor, error = ImageFileDataset([str(bad)], _identity)[0]
    assert tensor is None and error.startswith("UnidentifiedImageError")
    assert str(bad) in error and "BufferedReader" not in error


def test_a_truncated_image_is_named_by_its_path(tmp_path, cifar_paths):
    whole = tmp_path / "whole.png"
    Image.open(cifar_paths[0]).convert("RGB").resize((256, 256)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _, tensor, error = ImageFileDataset([str(cut)], _identity)[0]
    assert tensor is None and error.startswith("OSError: ")
    assert f"{cut}: " in error and "truncated" in error


def test_embedding_a_fifo_among_images_finishes(tiny_model, cifar_paths, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    paths = [str(p) for p in cifar_paths[:3]] + [str(fifo)]
    res = tiny_model.embed_images(paths, batch_size=2, num_workers=0, progress=False)
    assert res.ok.tolist() == [True, True, True, False]
    assert "FIFO" in res.errors[3]


_BIG_PNG = textwrap.dedent(
    """
    import resource, sys
    from fiftyone_clipbranches.embed.image_loading import ImageFileDataset
    def peak():
        return 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = peak()  # the imports' peak
    _, tensor, error = ImageFileDataset([sys.argv[1]], lambda img: img.size)[0]
    print(tensor, "|", error, "|", peak() - before)
    """
)


def _load_in_a_fresh_process(path) -> tuple[str, str, int]:
    """(tensor, error, growth in bytes of the peak RSS) of loading ``path``."""
    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", _BIG_PNG, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    tensor, error, rss = out.stdout.strip().rsplit("\n", 1)[-1].split(" | ")
    return tensor, error, int(rss)


def test_a_12000_pixel_png_is_refused_without_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (12000, 12000)).save(path)  # a few KB on disk
    assert path.stat().st_size < 100_000
    tensor, error, growth = _load_in_a_fresh_process(path)
    assert tensor == "None"
    assert "12000 x 12000 pixels, more than the 64000000" in error
    assert "CLIPBRANCHES_MAX_IMAGE_PIXELS" in error
    assert growth < 100e6  # decoding it as RGB alone would take 432 MB more


def test_a_huge_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (9000, 9000), (200, 30, 30)).save(path, quality=50)
    with open_image_file(path) as img:
        assert img.size == (1125, 1125)  # 1/8 scale: both sides still >= 896
        assert img.getpixel((10, 10))[0] > 150
    with pytest.raises(ImageRefusedError, match="more than the 100"):
        open_image_file(path, max_pixels=100)


def test_pils_own_pixel_refusal_gives_way_for_a_jpeg(tmp_path, monkeypatch):
    """PIL refuses images over twice its MAX_IMAGE_PIXELS (179 MP) when it opens
    them: a 200 MP panorama JPEG was never indexed, though it decodes at 1/8 scale.
    PIL's limit is lowered here to make small files stand for such images; other
    formats keep PIL's limit (the process's), said in words."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    jpeg, png = tmp_path / "pano.jpg", tmp_path / "big.png"
    Image.new("RGB", (4000, 2000), (20, 200, 20)).save(jpeg, quality=50)
    Image.new("L", (1500, 1500), 7).save(png)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(jpeg)
    with open_image_file(jpeg) as img:
        assert img.size == (2000, 1000) and img.getpixel((5, 5))[1] > 150  # 1/2
    with pytest.raises(ImageRefusedError, match="PIL's own limit"):
        open_image_file(png)
    with pytest.raises(ImageRefusedError, match="CLIPBRANCHES_MAX_IMAGE_PIXELS"):
        open_image_file(jpeg, max_pixels=1_000_000)  # the package's, after reduction
    assert Image.MAX_IMAGE_PIXELS == 1_000_000  # never changed


@pytest.mark.parametrize("url", ["s3://bucket/cats/a.jpg", "https://example.com/a.jpg"])
def test_a_remote_path_is_said_to_be_one(url):
    with pytest.raises(ImageRefusedError, match="local files only: download"):
        open_image_file(url)


def test_small_images_are_decoded_whole(cifar_paths):
    with open_image_file(cifar_paths[0]) as img, Image.open(cifar_paths[0]) as ref:
        assert img.size == ref.size
        assert np.array_equal(np.asarray(img), np.asarray(ref))


def test_the_pixel_limit_setting_is_checked(monkeypatch, cifar_paths):
    monkeypatch.setenv("CLIPBRANCHES_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="CLIPBRANCHES_MAX_IMAGE_PIXELS"):
        open_image_file(cifar_paths[0])
    monkeypatch.setenv("CLIPBRANCHES_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(ImageRefusedError):
        open_image_file(cifar_paths[0])


def _pixels(img):
    return np.asarray(img)


@pytest.mark.parametrize("kind", ["16-bit png", "32-bit tiff", "float tiff"])
def test_deep_grey_levels_are_scaled_to_8_bits_not_clipped(tmp_path, kind):
    levels = np.tile(np.linspace(0, 1, 64), (32, 1))
    eight = tmp_path / "eight.png"
    Image.fromarray(np.rint(levels * 255).astype(np.uint8)).save(eight)
    deep = tmp_path / ("deep.png" if kind == "16-bit png" else "deep.tif")
    if kind == "float tiff":
        Image.fromarray(levels.astype(np.float32), mode="F").save(deep)
    else:
        wide = np.rint(levels * 65535).astype(np.uint16 if "16" in kind else np.int32)
        Image.fromarray(wide).save(deep)
    _, want, _ = ImageFileDataset([str(eight)], _pixels)[0]
    _, got, error = ImageFileDataset([str(deep)], _pixels)[0]
    assert error is None and got.shape == want.shape == (32, 64, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_an_image_is_turned_upright_by_its_exif_orientation(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # white left half, stored 40 wide and 20 high
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    path = tmp_path / "turned.jpg"
    img.save(path, exif=exif, quality=95)
    _, shown, error = ImageFileDataset([str(path)], _pixels)[0]
    assert error is None and shown.shape == (40, 20, 3)
    assert shown[:15].mean() > 200 and shown[25:].mean() < 50  # white on top


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16"])
def test_transparent_pixels_are_shown_over_white_not_as_the_colour_under_them(
    tmp_path, mode
):
    """A cut-out whose transparent part stores red (or black) was embedded as
    red: PIL's convert drops the alpha and keeps what no viewer shows."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, stored
    rgba[8:, :, 3] = 255  # the bottom half opaque, the top transparent
    img = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":
        pixels = np.zeros((16, 16), np.uint8)
        pixels[:8] = 1  # slot 1: red stored, and the transparent slot
        img = Image.fromarray(pixels, "P")
        img.putpalette([255, 0, 0, 255, 0, 0])
        img.info["transparency"] = 1
    elif mode == "I;16":  # one 16-bit grey level stands for transparent
        levels = np.full((16, 16), 30000, np.uint16)
        levels[:8] = 1234
        img = Image.fromarray(levels)
        img.info["transparency"] = 1234
    path = tmp_path / f"cut-out-{mode}.png"
    img.save(path, transparency=img.info.get("transparency"))
    _, shown, error = ImageFileDataset([str(path)], _pixels)[0]
    assert error is None
    assert (shown[:8] == 255).all()  # transparent: white, as shown
    opaque = shown[8:].reshape(-1, 3)
    grey = {"LA": (76, 76, 76), "I;16": (117, 117, 117)}  # LA: red in grey
    expected = grey.get(mode, (255, 0, 0))
    assert (opaque == expected).all()


def test_a_url_that_fiftyone_made_a_local_path_is_said_to_be_one(tmp_path):
    """FiftyOne keeps ``http://host/a.jpg`` as ``<cwd>/http:/host/a.jpg``: the
    user saw only FileNotFoundError on a path they never wrote."""
    folded = tmp_path / "http:" / "example.com" / "cat.jpg"
    with pytest.raises(ImageRefusedError, match="looks like a http:// URL"):
        open_image_file(str(folded))
    folded.parent.mkdir(parents=True)  # a real folder of that name: read as a file
    Image.new("RGB", (4, 4)).save(folded, format="JPEG")
    with open_image_file(str(folded)) as img:
        assert img.size == (4, 4)
