"""Decoding and preprocessing image files in DataLoader workers, dropping failures."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image


@dataclass
class ImageBatch:
    """What one DataLoader step yields.

    Attributes:
        pixels: float tensor ``(k, 3, H, W)`` of the images that decoded (k may be 0).
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
    """Decoding workers: none for a single batch, else all cores but one (at most 8)."""
    if n_items <= batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = cores or os.cpu_count() or 1
    return max(1, min(8, cores - 1))
