"""Contrastive training of the demo CLIP model on generated (image, caption) pairs.

Each step draws a batch of images and one caption variant per image (see
:mod:`.captions`). Because variants such as ``"a red circle"`` match many images,
every (text, image) pair whose text is true of the image counts as a positive: the
loss is a cross-entropy against the uniform distribution over a row's positives, in
both directions (text to image and image to text).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from .captions import (
    atom_phrase,
    atom_vocabulary,
    atoms_matrix,
    caption_variants,
    scene_atoms,
)
from .generator import GENERATOR_VERSION, make_scenes

#: Bumped whenever training changes in a way that changes the trained weights.
TRAINING_VERSION = 3

#: Intra-op threads while training. CPU kernels split their sums by thread, so a
#: fixed count makes the weights independent of the machine's core count; and one
#: thread does not collapse when another program keeps a core busy, as spinning
#: OpenMP threads do.
TRAIN_THREADS = 1

#: Seed of the token embedding's initial values (see :func:`initial_token_embedding`).
TOKEN_EMBEDDING_SEED = 20_240_714


class DemoTrainingBudgetError(RuntimeError):
    """Training ran past its time budget; the partly trained model was dropped."""

    def __init__(self, steps: int, planned_steps: int, max_seconds: float):
        super().__init__(
            f"demo model training ran past its {max_seconds:.0f}-second budget after"
            f" {steps} of {planned_steps} steps; nothing was cached (raise the"
            " budget, or run without one)"
        )
        self.steps = steps
        self.planned_steps = planned_steps
        self.max_seconds = max_seconds


def initial_token_embedding(shape: tuple[int, int], seed: int = TOKEN_EMBEDDING_SEED):
    """The token embedding the demo model starts from: N(0, 0.02), float32.

    Drawn from numpy's ``RandomState`` (whose stream numpy keeps stable), so the
    rows that training never touches can be regenerated exactly without storing them.
    """
    rng = np.random.RandomState(seed)
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


@dataclass(frozen=True)
class DemoTrainConfig:
    """Data and optimisation settings of the demo model (the cache key hashes them).

    Attributes:
        n_images: number of generated training images.
        seed: data seed of the generator (and of caption sampling).
        image_size: side of the generated images before open_clip preprocessing.
        variants_per_image: caption variants drawn per image up front.
        batch_size: images per step.
        texts_per_image: caption variants per image per step.
        atom_texts: also put one short text per atom (``"a red circle"``,
            ``"something red"``, ``"a striped background"``, ...) in every batch, so
            every image is scored against every attribute at every step.
        phrases_per_atom: distinct phrasings drawn up front per atom.
        steps: optimisation steps.
        lr: peak AdamW learning rate (linear warm-up, cosine decay).
        weight_decay: AdamW weight decay on matrices (not on norms, biases, scales).
        warmup_steps: linear warm-up length.
        torch_seed: seed of the weight initialisation and batch sampling. 1 was
            chosen among 0, 1 and 2 by the held-out top-20 precision of the 30
            colour+shape queries (``demo.evaluate.colour_shape_precision``; 0.940,
            0.972, 0.955; docs/benchmarks.md, Demo).
    """

    n_images: int = 3000
    seed: int = 0
    image_size: int = 96
    variants_per_image: int = 16
    batch_size: int = 128
    texts_per_image: int = 1
    atom_texts: bool = True
    phrases_per_atom: int = 6
    steps: int = 1000
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 40
    torch_seed: int = 1

    def validate(self) -> None:
        ints = {
            "n_images": 2,
            "seed": 0,
            "image_size": 32,
            "variants_per_image": 1,
            "batch_size": 2,
            "texts_per_image": 1,
            "phrases_per_atom": 1,
            "steps": 1,
            "warmup_steps": 0,
            "torch_seed": 0,
        }
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.batch_size > self.n_images:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed n_images "
                f"({self.n_images})"
            )
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if not isinstance(self.atom_texts, bool):
            raise TypeError("atom_texts must be a bool")
        if self.lr == 0:
            raise ValueError("lr must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self, model_config: dict) -> str:
        """Hex sha256 of this config, the model config and the code versions."""
        payload = {
            "train": self.to_dict(),
            "model": model_config,
            "generator_version": GENERATOR_VERSION,
            "training_version": TRAINING_VERSION,
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass
class _PairData:
    images: object  # torch float16 (N, 3, H, W), preprocessed
    image_atoms: object  # torch float32 (N, A)
    tokens: object  # torch int64 (T, context_length)
    text_atoms: object  # torch float32 (T, A)
    variant_ids: np.ndarray  # int64 (N, K): rows of tokens / text_atoms
    atom_phrase_ids: np.ndarray  # int64 (A, P): rows of tokens / text_atoms


def _prepare(config: DemoTrainConfig, preprocess, tokenizer, progress: bool):
    import torch
    from tqdm.auto import tqdm

    scenes = make_scenes(config.n_images, config.seed, config.image_size)
    rng = np.random.default_rng([config.seed, 7919])
    images, img_atoms, text_index = [], [], {}
    texts, txt_atoms = [], []
    variant_ids = np.empty((len(scenes), config.variants_per_image), dtype=np.int64)
    for i, scene in enumerate(
        tqdm(scenes, desc="demo training data", unit="img", disable=not progress)
    ):
        images.append(preprocess(scene.render()).to(torch.float16))
        objects = scene.object_dicts()
        img_atoms.append(scene_atoms(objects, scene.background, scene.texture))
        variants = caption_variants(
            objects, scene.background, scene.texture, rng, config.variants_per_image
        )
        for j, (text, atoms) in enumerate(variants):
            key = (text, atoms)
            if key not in text_index:
                text_index[key] = len(texts)
                texts.append(text)
                txt_atoms.append(atoms)
            variant_ids[i, j] = text_index[key]
    vocab = atom_vocabulary()
    atom_phrase_ids = np.empty((len(vocab), config.phrases_per_atom), dtype=np.int64)
    for atom, a in vocab.items():
        for j in range(config.phrases_per_atom):
            key = (atom_phrase(atom, rng), frozenset([atom]))
            if key not in text_index:
                text_index[key] = len(texts)
                texts.append(key[0])
                txt_atoms.append(key[1])
            atom_phrase_ids[a, j] = text_index[key]
    return _PairData(
        images=torch.stack(images),
        image_atoms=torch.from_numpy(atoms_matrix(img_atoms).astype(np.float32)),
        tokens=tokenizer(texts),
        text_atoms=torch.from_numpy(atoms_matrix(txt_atoms).astype(np.float32)),
        variant_ids=variant_ids,
        atom_phrase_ids=atom_phrase_ids,
    )


def positives_mask(text_atoms, image_atoms):
    """Bool ``(n_texts, n_images)``: text ``t`` is true of image ``i``.

    Both inputs are float multi-hot atom matrices (see :func:`.captions.atoms_matrix`).
    """
    hits = text_atoms @ image_atoms.T
    return hits >= text_atoms.sum(dim=1, keepdim=True) - 0.5


def multi_positive_loss(text_features, image_features, logit_scale, positives):
    """Symmetric cross-entropy against uniform targets over each row's positives.

    Args:
        text_features: float ``(T, d)``, L2-normalised.
        image_features: float ``(B, d)``, L2-normalised.
        logit_scale: scalar tensor, the log of the softmax temperature's inverse.
        positives: bool ``(T, B)``, ``positives[t, i]`` = text ``t`` matches image
            ``i``. Every image needs at least one matching text; texts matching no
            image only serve as negatives.
    """
    import torch

    logits = logit_scale.exp() * text_features @ image_features.T
    targets = positives.float()
    per_text = targets.sum(1, keepdim=True)
    if bool((targets.sum(0) == 0).any()):
        raise ValueError("every image needs at least one matching text")
    t2i = -(targets / per_text.clamp(min=1) * torch.log_softmax(logits, 1)).sum(1)
    has_image = per_text.squeeze(1) > 0
    i2t = -(targets.T / targets.T.sum(1, keepdim=True) * torch.log_softmax(logits.T, 1))
    return 0.5 * (t2i[has_image].mean() + i2t.sum(1).mean())


def encode_text_trimmed(model, tokens):
    """``model.encode_text(tokens, normalize=True)`` on the tokens' used length only.

    With a causal mask and end-of-text pooling, padding after the longest text does
    not change any output, so cutting it is exact and saves most of the text cost
    for short captions. Falls back to ``encode_text`` for other text towers.
    """
    import torch

    length = int((tokens != 0).sum(dim=1).max())
    if (
        length >= tokens.shape[1]
        or getattr(model, "text_pool_type", None) != "argmax"
        or getattr(model, "attn_mask", None) is None
    ):
        return model.encode_text(tokens, normalize=True)
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
    if isinstance(model.text_projection, torch.nn.Linear):
        x = model.text_projection(x)
    elif model.text_projection is not None:
        x = x @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "logit_scale" in name or "embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _lr_at(step: int, config: DemoTrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = (step - config.warmup_steps) / span
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _augment(images, generator):
    import torch

    flip_h = torch.rand(images.shape[0], generator=generator) < 0.5
    flip_v = torch.rand(images.shape[0], generator=generator) < 0.5
    images = torch.where(flip_h[:, None, None, None], images.flip(3), images)
    return torch.where(flip_v[:, None, None, None], images.flip(2), images)


def train_demo_model(
    config: DemoTrainConfig | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    callback=None,
):
    """Train the demo architecture from scratch on generated pairs.

    Args:
        config: training settings; default ``DemoTrainConfig()``.
        progress: show tqdm progress bars.
        max_seconds: wall-clock budget including data generation; None for none.
            Running past it raises :class:`DemoTrainingBudgetError`.
        callback: optional ``callback(step, model, loss)`` called after every step
            (the model is in training mode; switch to eval and back if needed).

    Returns:
        ``(model, stats)``: the open_clip model in eval mode on the CPU, and a dict
        with ``steps``, ``planned_steps``, ``seconds``, ``first_loss``,
        ``final_loss`` (means over the first and last 10% of steps) and
        ``n_texts``.

    Raises:
        DemoTrainingBudgetError: ``max_seconds`` ran out before the last step.
    """
    import torch

    config = config or DemoTrainConfig()
    config.validate()
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        return _train(config, progress, max_seconds, callback)
    finally:
        torch.set_num_threads(threads)


def _train(config, progress, max_seconds, callback):
    import open_clip
    import torch
    from tqdm.auto import tqdm

    from .model import DEMO_MODEL_NAME, quiet_random_init, register_demo_model

    start = time.perf_counter()
    register_demo_model()

    torch.manual_seed(config.torch_seed)
    with quiet_random_init():
        model, _, preprocess = open_clip.create_model_and_transforms(DEMO_MODEL_NAME)
    with torch.no_grad():
        weight = model.token_embedding.weight
        weight.copy_(torch.from_numpy(initial_token_embedding(tuple(weight.shape))))
    tokenizer = open_clip.get_tokenizer(DEMO_MODEL_NAME)
    data = _prepare(config, preprocess, tokenizer, progress)

    model.train()
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98)
    )
    generator = torch.Generator().manual_seed(config.torch_seed)
    sampler = np.random.default_rng([config.torch_seed, config.seed])
    n, k = data.variant_ids.shape
    losses = []
    bar = tqdm(
        range(config.steps), desc="demo model", unit="step", disable=not progress
    )
    for step in bar:
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            bar.close()
            raise DemoTrainingBudgetError(step, config.steps, max_seconds)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        rows = sampler.choice(n, size=config.batch_size, replace=False)
        picks = sampler.integers(k, size=(config.batch_size, config.texts_per_image))
        text_rows = data.variant_ids[rows[:, None], picks].ravel()
        text_groups = [text_rows]
        if config.atom_texts:
            n_atoms, n_phrases = data.atom_phrase_ids.shape
            phrase = sampler.integers(n_phrases, size=n_atoms)
            text_groups.append(data.atom_phrase_ids[np.arange(n_atoms), phrase])
            text_rows = np.concatenate(text_groups)
        rows_t = torch.from_numpy(rows)
        text_rows_t = torch.from_numpy(text_rows)
        positives = positives_mask(
            data.text_atoms[text_rows_t], data.image_atoms[rows_t]
        )
        images = _augment(data.images[rows_t].float(), generator)
        image_features = model.encode_image(images, normalize=True)
        text_features = torch.cat(
            [
                encode_text_trimmed(model, data.tokens[torch.from_numpy(group)])
                for group in text_groups
            ]
        )
        loss = multi_positive_loss(
            text_features, image_features, model.logit_scale, positives
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if callback is not None:
            callback(step, model, losses[-1])
        if step % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()

    tail = max(1, len(losses) // 10)
    stats = {
        "steps": len(losses),
        "planned_steps": config.steps,
        "seconds": round(time.perf_counter() - start, 2),
        "first_loss": float(np.mean(losses[:tail])) if losses else None,
        "final_loss": float(np.mean(losses[-tail:])) if losses else None,
        "n_texts": int(data.tokens.shape[0]),
        "torch_threads": torch.get_num_threads(),
    }
    return model, stats


def save_checkpoint(model, path) -> None:
    """Save ``model``'s state dict where open_clip's ``pretrained=<path>`` loads it."""
    import torch

    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
