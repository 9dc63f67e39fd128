"""Decoding and preprocessing image files in DataLoader workers, dropping failures."""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, JpegImagePlugin
from torchvision import transforms as T


@dataclass
class ImageBatch:
    """What one DataLoader step yields.

    Attributes:
        pixels: tensor ``(k, 3, H, W)`` of the images that decoded (k may be 0):
            uint8 from :class:`Uint8Pixels`, else whatever the transform returns.
        indices: int64 tensor ``(k,)``, the input positions of those images.
        all_indices: every input position requested in this batch, failed ones included.
        errors: ``{input position: message}`` for images that could not be read.
    """

    pixels: torch.Tensor | None
    indices: torch.Tensor
    all_indices: list[int]
    errors: dict[int, str]

    def pin_memory(self) -> ImageBatch:
        """Called by the DataLoader (``pin_memory=True``) for faster GPU transfers."""
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


class ImageFileDataset(torch.utils.data.Dataset):
    """Map-style dataset over image paths; item ``i`` is ``(i, tensor or None, error)``.

    Failures (missing file, unreadable or truncated image, transform error) are returned
    as ``(i, None, message)`` so the collate function can drop them.
    """

    def __init__(self, paths: Sequence[str], transform: Callable):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            with open_image_file(path) as img:
                tensor = self.transform(as_rgb(img))
        except ImageRefusedError as exc:
            return i, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded
            # PIL names an open file by its object ("<_io.BufferedReader name=11>")
            message = re.sub(r"<_io\.\w+ name=[^>]*>", str(path), str(exc))
            if str(path) not in message:  # "image file is truncated (4 bytes ...)"
                message = f"{path}: {message}"
            return i, None, f"{type(exc).__name__}: {message}"
        return i, tensor, None


#: Images are decoded at no more pixels than this; a larger JPEG is decoded at a
#: reduced scale (``Image.draft``), any other larger image is refused (a 12000 x 12000
#: PNG would take 430 MB as RGB). ``$CLIPBRANCHES_MAX_IMAGE_PIXELS`` overrides it.
MAX_DECODE_PIXELS = 64_000_000
#: A JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) keeping both sides at
#: least this long: four times CLIP's 224-pixel input, so the resize still averages.
DRAFT_MIN_SIDE = 896


class ImageRefusedError(OSError):
    """A file that is not decoded: not a regular file, or too many pixels."""


def max_decode_pixels() -> int:
    """The pixel limit in force (``$CLIPBRANCHES_MAX_IMAGE_PIXELS`` or the default)."""
    raw = os.environ.get("CLIPBRANCHES_MAX_IMAGE_PIXELS", "").strip()
    if not raw:
        return MAX_DECODE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"CLIPBRANCHES_MAX_IMAGE_PIXELS must be a positive int; got {raw!r}"
        )
    return value


#: A URL that FiftyOne joined to the working directory (``http://a/b.jpg`` becomes
#: ``<cwd>/http:/a/b.jpg``: one slash of the scheme's two is lost).
_FOLDED_URL = re.compile(r"/((?:https?|s3|gs|ftp)):/(?!/)", re.IGNORECASE)


def open_image_file(path, max_pixels: int | None = None) -> Image.Image:
    """Open and decode the image at ``path`` (a regular file), bounded in memory.

    Returns:
        the decoded PIL image (its file already closed): a JPEG larger than
        ``DRAFT_MIN_SIDE`` on both sides comes back reduced by its decoder.

    Raises:
        ImageRefusedError: ``path`` is a URL (``s3://``, ``https://``: not a file),
            a FIFO, device, socket or directory (opening
            a FIFO would block forever), or the image holds more than ``max_pixels``
            (default :func:`max_decode_pixels`) after any JPEG reduction.
        OSError and PIL errors: the file cannot be read or decoded.
    """
    limit = max_decode_pixels() if max_pixels is None else int(max_pixels)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", str(path))
    if scheme:  # a cloud or web path (FiftyOne Enterprise, imports): not a file
        raise ImageRefusedError(
            f"{path} is a {scheme.group(1)}:// path: clipbranches reads images from"
            " local files only: download the media (FiftyOne Enterprise:"
            " dataset.download_media()) or point the samples at local copies"
        )
    folded = _FOLDED_URL.search(str(path))
    if folded and not os.path.lexists(path):
        raise ImageRefusedError(
            f"{path} is no file, and it looks like a {folded.group(1)}:// URL that"
            " FiftyOne took for a relative path (it keeps local paths only):"
            " clipbranches reads images from local files only: download the media"
            " and point the samples at the local copies"
        )
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _file_kind(mode)
            raise ImageRefusedError(
                f"{path} is a {kind}, not an image file: point the sample at an "
                "image file or remove it"
            )
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        with warnings.catch_warnings():
            # the limit below replaces PIL's decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = _open_unchecked(fh, path)
            img.draft(None, (DRAFT_MIN_SIDE, DRAFT_MIN_SIDE))
            width, height = img.size
            if width * height > limit:
                raise ImageRefusedError(
                    f"{path} is {width} x {height} pixels, more than the "
                    f"{limit} decoded per image: downscale it, or raise "
                    "$CLIPBRANCHES_MAX_IMAGE_PIXELS"
                )
            img.load()
    finally:
        fh.close()  # the decoded pixels no longer need the file
    return img


def _open_unchecked(fh, path) -> Image.Image:
    """``Image.open(fh)``; a JPEG PIL refuses as over twice its
    ``MAX_IMAGE_PIXELS`` (179 MP) is opened by its own decoder, which PIL's check
    does not run in: :func:`open_image_file` applies its own limit after the
    JPEG's reduction (a 200 MP panorama decodes at 3 MP). Another format over
    PIL's limit is refused in words (PIL's limit is the process's, not changed
    here)."""
    try:
        return Image.open(fh)
    except Image.DecompressionBombError as exc:
        fh.seek(0)
        if fh.read(3) != b"\xff\xd8\xff":
            raise ImageRefusedError(
                f"{path}: {exc} (PIL's own limit, Image.MAX_IMAGE_PIXELS): downscale it"
            ) from None
        fh.seek(0)
        return JpegImagePlugin.jpeg_factory(fh)


def as_rgb(img: Image.Image) -> Image.Image:
    """``img`` as an 8-bit RGB image the way a viewer shows it: turned upright by
    its EXIF orientation, 16-bit, 32-bit and float grey levels scaled to 8 bits
    (PIL's ``convert`` clips them: a 16-bit photo came out white, a float one in
    [0, 1] black), and transparent pixels shown over white (PIL's ``convert``
    keeps the colour stored under them, which no viewer shows)."""
    ImageOps.exif_transpose(img, in_place=True)  # a copy would double the memory
    if img.mode.startswith("I") or img.mode == "F":
        key = img.info.get("transparency")
        grey = Image.fromarray(_grey_levels_8bit(img), mode="L")
        if isinstance(key, (int, float)):  # one level stands for transparent
            opaque = np.where(np.asarray(img) == key, 0, 255).astype(np.uint8)
            shown = Image.new("RGB", img.size, (255, 255, 255))
            shown.paste(grey, mask=Image.fromarray(opaque, mode="L"))
            return shown
        img = grey
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        shown = Image.new("RGB", img.size, (255, 255, 255))
        shown.paste(rgba, mask=rgba)  # blended by its alpha: one image more
        return shown
    return img.convert("RGB")


def _grey_levels_8bit(img: Image.Image) -> np.ndarray:
    """uint8 ``(H, W)`` of a single-channel image of integer or float levels: 16-bit
    levels divided by 257; float levels in [0, 1] times 255; other ranges scaled
    down from their largest level (levels below 0 and NaN count as 0)."""
    levels = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0)
    levels = np.maximum(levels, 0.0)
    top = float(levels.max()) if levels.size else 0.0
    if img.mode.startswith("I;16") or 255.0 < top <= 65535.0:
        levels = levels / 257.0
    elif img.mode == "F" and top <= 1.0:
        levels = levels * 255.0
    elif top > 65535.0:
        levels = levels * (255.0 / top)
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


class Uint8Pixels:
    """PIL image -> uint8 tensor ``(3, H, W)``: the geometric steps of a preprocessing.

    Shipping uint8 from decoding workers moves a quarter of the bytes of float32; the
    scaling and normalisation run on the model's device (:class:`PixelNormalisation`).
    """

    def __init__(self, steps: Sequence[Callable]):
        self.steps = list(steps)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        for step in self.steps:
            img = step(img)
        arr = np.array(img.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class PixelNormalisation:
    """uint8 pixels -> the float tensor ``ToTensor`` then ``Normalize`` would give."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, pixels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, device=pixels.device).view(shape)
        std = torch.tensor(self.std, device=pixels.device).view(shape)
        return ((pixels.float() / 255.0 - mean) / std).to(dtype)


def split_preprocess(
    preprocess: Callable,
) -> tuple[Callable, PixelNormalisation | None]:
    """Split ``Compose([..., ToTensor, Normalize])`` into a uint8 worker transform and
    the normalisation; any other preprocessing comes back whole, with None."""
    steps = getattr(preprocess, "transforms", None)
    if not steps or len(steps) < 2:
        return preprocess, None
    to_tensor, normalize = steps[-2], steps[-1]
    if not (
        type(to_tensor).__name__ in ("ToTensor", "MaybeToTensor")
        and isinstance(normalize, T.Normalize)
    ):
        return preprocess, None
    mean, std = (tuple(float(v) for v in x) for x in (normalize.mean, normalize.std))
    return Uint8Pixels(steps[:-2]), PixelNormalisation(mean, std)


def collate_drop_failures(items) -> ImageBatch:
    """Stack the decoded images of a batch and record the failed ones."""
    good = [(i, t) for i, t, _ in items if t is not None]
    errors = {int(i): msg for i, t, msg in items if t is None}
    pixels = torch.stack([t for _, t in good]) if good else None
    indices = torch.tensor([i for i, _ in good], dtype=torch.int64)
    return ImageBatch(pixels, indices, [int(i) for i, _, _ in items], errors)


def worker_init(_worker_id: int) -> None:
    """Keep each decoding worker on one thread so workers do not fight over cores."""
    torch.set_num_threads(1)


def default_num_workers(n_items: int, batch_size: int) -> int:
    """Decoding workers: none for a single batch, else all cores but one (at most 16:
    a GPU embeds ViT-B-32 faster than 8 workers decode)."""
    if n_items <= batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = cores or os.cpu_count() or 1
    return max(1, min(16, cores - 1))
