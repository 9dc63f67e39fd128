"""Decoding and preprocessing image files in DataLoader workers, dropping failures."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
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
            with Image.open(path) as img:
                img.load()
                tensor = self.transform(img.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded
            return i, None, f"{type(exc).__name__}: {exc}"
        return i, tensor, None


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
