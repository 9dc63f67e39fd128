"""CLIP embeddings and their compression to 32-byte codes (torch + open_clip).

Names load on first use, so ``embed.quantizer`` alone does not pay for open_clip.
"""

from importlib import import_module

_EXPORTS = {
    "ClipModel": "models",
    "EmbeddingResult": "models",
    "WeightsUnavailableError": "models",
    "load_clip": "models",
    "CodeEncoder": "encoder",
    "fit_code_encoder": "encoder",
    "CodeHead": "head",
    "train_head": "head",
    "PCAProjection": "pca",
    "FixedQuantizer": "quantizer",
    "PCACodes": "quantizer",
    "Quantizer": "quantizer",
    "quantizer_from_dict": "quantizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
