"""Retrieval quality of a demo model on held-out generated images."""

from __future__ import annotations

import numpy as np

from .generator import COLOURS, SHAPES, article, make_scenes

#: Data seed of the held-out evaluation images (training uses small seeds).
HELD_OUT_SEED = 1_000_003


def colour_shape_queries() -> list[tuple[str, str, str]]:
    """``(text, colour, shape)`` for every colour x shape, e.g. ``"a red circle"``."""
    return [(f"{article(c)} {c} {s}", c, s) for c in COLOURS for s in SHAPES]


def embed_scenes(model, preprocess, scenes, batch_size: int = 256) -> np.ndarray:
    """L2-normalised image embeddings, float32 ``(len(scenes), d)``."""
    import torch

    out = []
    with torch.no_grad():
        for lo in range(0, len(scenes), batch_size):
            batch = torch.stack(
                [preprocess(s.render()) for s in scenes[lo : lo + batch_size]]
            )
            out.append(model.encode_image(batch, normalize=True).numpy())
    return np.concatenate(out).astype(np.float32)


def embed_texts(model, tokenizer, texts: list[str]) -> np.ndarray:
    """L2-normalised text embeddings, float32 ``(len(texts), d)``."""
    import torch

    with torch.no_grad():
        return model.encode_text(tokenizer(texts), normalize=True).numpy()


def colour_shape_precision(
    model,
    preprocess,
    tokenizer,
    n_images: int = 1000,
    k: int = 20,
    seed: int = HELD_OUT_SEED,
    image_size: int = 96,
) -> dict:
    """Top-``k`` precision of ``"a <colour> <shape>"`` text queries.

    A hit is an image holding an object of that colour and shape. Images are
    generated with ``seed`` (disjoint from the training seeds by default).

    Returns:
        ``{"mean": float, "min": float, "per_query": {text: precision}, "k": k,
        "n_images": n_images}``.
    """
    scenes = make_scenes(n_images, seed, image_size)
    image_emb = embed_scenes(model, preprocess, scenes)
    queries = colour_shape_queries()
    text_emb = embed_texts(model, tokenizer, [q[0] for q in queries])
    scores = text_emb @ image_emb.T
    per_query = {}
    for qi, (text, colour, shape) in enumerate(queries):
        top = np.argsort(-scores[qi], kind="stable")[:k]
        hits = [
            any(o.colour == colour and o.shape == shape for o in scenes[i].objects)
            for i in top
        ]
        per_query[text] = float(np.mean(hits))
    values = list(per_query.values())
    return {
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
        "per_query": per_query,
        "k": k,
        "n_images": n_images,
    }
