"""The path a user takes to an index, for tests of every face.

Images on disk -> a FiftyOne dataset -> CLIP embeddings from a local open_clip
checkpoint (a tiny architecture with random weights, saved the way a user saves a
fine-tuned model: ``<name>.pt`` with ``<name>.json`` beside it) -> ``build_index``.
Any process, a service subprocess included, can load that checkpoint, so text
queries work everywhere the index is used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

TINY_CLIP_NAME = "clipbranches-tiny-user"
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 32,
        "layers": 1,
        "width": 32,
        "patch_size": 16,
        "head_width": 16,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
    },
}


def write_tiny_clip_checkpoint(directory: Path) -> Path:
    """Write a random-weight tiny CLIP checkpoint and its config; returns the
    checkpoint path (pass it as ``pretrained=`` with ``model=TINY_CLIP_NAME``)."""
    import open_clip
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{TINY_CLIP_NAME}.json"
    checkpoint = directory / f"{TINY_CLIP_NAME}.pt"
    if checkpoint.is_file():
        return checkpoint
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    if TINY_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(config)
    torch.manual_seed(0)
    # open_clip logs "no pretrained weights" for a random model: expected here
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None, device="cpu")
    finally:
        logging.disable(logging.NOTSET)
    torch.save(model.state_dict(), checkpoint)
    return checkpoint


def images_dataset(images_dir: Path, n_per_class: int, name: str | None = None):
    """A new dataset of the first ``n_per_class`` image files of each class folder
    of ``images_dir`` (label in ``ground_truth``), as a user imports a folder."""
    import fiftyone as fo

    samples = []
    for class_dir in sorted(p for p in Path(images_dir).iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir())[:n_per_class]:
            label = fo.Classification(label=class_dir.name)
            samples.append(fo.Sample(filepath=str(path), ground_truth=label))
    ds = fo.Dataset(name)
    ds.add_samples(samples, progress=False)
    return ds


def grouped_images_dataset(images_dir: Path, n_groups: int):
    """A new grouped dataset: ``n_groups`` groups of two image files of
    ``images_dir``'s class folders, slices ``left`` and ``right``."""
    import fiftyone as fo

    paths = sorted(str(p) for p in Path(images_dir).glob("*/*"))[: 2 * n_groups]
    ds = fo.Dataset()
    ds.add_group_field("group", default="left")
    for a, b in zip(paths[::2], paths[1::2]):
        group = fo.Group()
        ds.add_samples(
            [
                fo.Sample(filepath=a, group=group.element("left")),
                fo.Sample(filepath=b, group=group.element("right")),
            ],
            progress=False,
        )
    return ds


def build_user_index(ds, checkpoint: Path, index_key: str = "clip", **kwargs):
    """Embed ``ds``'s images with the tiny checkpoint, then ``build_index`` on them
    (PCA codes: seconds, no head training). Returns the ``IndexInfo``."""
    from fiftyone_clipbranches import sdk

    field = kwargs.pop("embeddings_field", "clip_embedding")
    sdk.compute_embeddings(
        ds, field, model=TINY_CLIP_NAME, pretrained=str(checkpoint), progress=False
    )
    kwargs.setdefault("code_method", "pca")
    kwargs.setdefault("progress", False)
    return sdk.build_index(
        ds,
        index_key,
        embeddings_field=field,
        model=TINY_CLIP_NAME,
        pretrained=str(checkpoint),
        **kwargs,
    )
