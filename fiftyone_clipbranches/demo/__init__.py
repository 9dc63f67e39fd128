"""The offline demo world: generated captioned images and a small CLIP trained on them.

- :func:`generate_images` writes deterministic captioned PNGs with ground truth.
- :func:`ensure_demo_model` returns the cached demo CLIP (unpacked from the checkpoint
  shipped in ``assets/`` on first use, or trained for other configurations),
  loadable with ``open_clip.create_model_and_transforms(DEMO_MODEL_NAME,
  pretrained=demo.checkpoint_path)`` once :func:`register_demo_model` has run.

Importing this package does not import torch or open_clip.
"""

from .generator import ImageRecord, generate_images
from .model import DEMO_MODEL_NAME, DemoModel, ensure_demo_model, register_demo_model
from .paths import default_data_dir

__all__ = [
    "DEMO_MODEL_NAME",
    "DemoModel",
    "ImageRecord",
    "default_data_dir",
    "ensure_demo_model",
    "generate_images",
    "register_demo_model",
]
