"""Loading an open_clip model and embedding images and texts with it."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fiftyone_clipbranches.embed.checkpoints import BatchCheckpoints, paths_digest
from fiftyone_clipbranches.embed.devices import (
    precision_dtype,
    resolve_device,
    resolve_precision,
)
from fiftyone_clipbranches.embed.image_loading import (
    ImageFileDataset,
    collate_drop_failures,
    default_num_workers,
    split_preprocess,
    worker_init,
)
from fiftyone_clipbranches.embed.weights import WeightsUnavailableError, resolve_weights

__all__ = ["ClipModel", "EmbeddingResult", "WeightsUnavailableError", "load_clip"]

#: Seed of the random initialisation used when ``pretrained=None``.
RANDOM_INIT_SEED = 0


@dataclass
class EmbeddingResult:
    """Image embeddings with per-image success flags.

    Attributes:
        vectors: float32 ``(n, d)``, L2-normalised rows; all-zero rows where ``ok`` is False.
        ok: bool ``(n,)``, True where the image was read and embedded.
        errors: ``{input position: message}`` for every image that failed.
    """

    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return int((~self.ok).sum())


class ClipModel:
    """A frozen CLIP model ready for inference. Build it with :func:`load_clip`.

    Attributes:
        model: the open_clip module (eval mode, on ``device``).
        preprocess: PIL image -> float tensor ``(3, H, W)`` transform.
        tokenizer: list of strings -> int tensor ``(m, context_length)``.
        device: torch device the forward passes run on.
        precision: "fp32", "bf16" or "fp16": the dtype of the weights and activations
            (embeddings are returned as float32 either way).
        identity: dict with ``name``, ``pretrained`` (tag, file name or None),
            ``checkpoint_sha256`` (user checkpoint files only) and ``embedding_dim``;
            equal identities mean interchangeable embeddings.
    """

    def __init__(self, model, preprocess, tokenizer, device, precision, identity):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.identity = identity

    @property
    def embedding_dim(self) -> int:
        return int(self.identity["embedding_dim"])

    def __repr__(self) -> str:
        return (
            f"ClipModel({self.identity['name']!r}, pretrained="
            f"{self.identity['pretrained']!r}, device={self.device.type!r}, "
            f"precision={self.precision!r})"
        )

    def _encode_pixels(self, pixels: torch.Tensor, normalise=None) -> np.ndarray:
        """Embed a batch: float pixels as preprocessed, or uint8 with ``normalise``."""
        dtype = precision_dtype(self.precision)
        pixels = pixels.to(self.device, non_blocking=True)
        pixels = normalise(pixels, dtype) if normalise else pixels.to(dtype)
        with torch.inference_mode():
            out = self.model.encode_image(pixels)
        return F.normalize(out.float(), dim=-1).cpu().numpy()

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed strings. Returns float32 ``(m, d)`` with L2-normalised rows."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                "texts must be a list of strings (wrap a single query in a list)"
            )
        _check_batch_size(batch_size)
        chunks = [np.zeros((0, self.embedding_dim), dtype=np.float32)]
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(
                self.device
            )
            with torch.inference_mode():
                out = self.model.encode_text(tokens)
            chunks.append(F.normalize(out.float(), dim=-1).cpu().numpy())
        return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)

    def embed_images(
        self,
        paths: Sequence[str | os.PathLike],
        batch_size: int = 64,
        num_workers: int | str = "auto",
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> EmbeddingResult:
        """Embed image files; unreadable or missing files are recorded, not fatal.

        Args:
            paths: image file paths (e.g. FiftyOne ``sample.filepath`` values).
            batch_size: images per forward pass.
            num_workers: decoding worker processes; "auto" = all cores but one (none
                for a single batch).
            progress: show a tqdm bar.
            checkpoint_dir: folder where each finished batch is saved; calling again
                with the same model, paths and batch size continues where it stopped.

        Returns:
            EmbeddingResult with float32 ``(n, d)`` vectors (zero rows for failures).
        """
        if isinstance(paths, str | os.PathLike):
            raise TypeError("paths must be a list of file paths, not a single path")
        paths = [os.fspath(p) for p in paths]
        _check_batch_size(batch_size)
        n, d = len(paths), self.embedding_dim
        if num_workers == "auto":
            num_workers = default_num_workers(n, batch_size)
        if (
            isinstance(num_workers, bool)
            or not isinstance(num_workers, int)
            or num_workers < 0
        ):
            raise ValueError(
                f"num_workers must be 'auto' or an int >= 0, got {num_workers!r}"
            )

        vectors = np.zeros((n, d), dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        errors: dict[int, str] = {}
        n_batches = -(-n // batch_size)
        store = None
        done: set[int] = set()
        if checkpoint_dir is not None:
            run_info = {
                "identity": self.identity,
                "precision": self.precision,
                "n": n,
                "paths_sha256": paths_digest(paths),
                "batch_size": batch_size,
            }
            store = BatchCheckpoints(checkpoint_dir, run_info)
            done = store.done() & set(range(n_batches))
            for b in sorted(done):
                idx, vec, errs = store.load(b)
                vectors[idx] = vec
                ok[idx] = True
                errors.update(errs)
        todo = [
            list(range(b * batch_size, min(n, (b + 1) * batch_size)))
            for b in range(n_batches)
            if b not in done
        ]
        transform, normalise = split_preprocess(self.preprocess)
        loader = torch.utils.data.DataLoader(
            ImageFileDataset(paths, transform),
            batch_sampler=todo,
            num_workers=num_workers,
            collate_fn=collate_drop_failures,
            worker_init_fn=worker_init if num_workers else None,
            pin_memory=self.device.type == "cuda",
        )
        initial = n - sum(len(t) for t in todo)
        with tqdm(total=n, initial=initial, unit="img", disable=not progress) as bar:
            for batch in loader:
                idx = batch.indices.numpy()
                if batch.pixels is not None:
                    vec = self._encode_pixels(batch.pixels, normalise)
                else:
                    vec = np.zeros((0, d), dtype=np.float32)
                vectors[idx] = vec
                ok[idx] = True
                errors.update(batch.errors)
                if store is not None:
                    store.save(
                        batch.all_indices[0] // batch_size, idx, vec, batch.errors
                    )
                bar.update(len(batch.all_indices))
        return EmbeddingResult(vectors, ok, dict(sorted(errors.items())))


def _check_batch_size(batch_size) -> None:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def load_clip(
    name: str = "ViT-B-32",
    pretrained: str | os.PathLike | None = "laion2b_s34b_b79k",
    device: str | torch.device = "auto",
    precision: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    *,
    warn_random: bool = True,
) -> ClipModel:
    """Load an open_clip model for inference.

    Args:
        name: open_clip architecture name (``open_clip.list_models()``).
        pretrained: an open_clip tag (looked up in the local cache first, downloaded
            only when online), a local checkpoint file, or None for random weights
            (tests only; warns).
        device: "auto" (cuda > mps > cpu), "cpu", "cuda[:N]" or "mps".
        precision: "auto" (fp16 on GPU, bf16 on CPUs with native bf16, else fp32),
            "fp32", "bf16" or "fp16". Half precisions cast the whole model: on a
            2-core CPU with native bf16 this is 2.3x faster than autocast and keeps
            the fp32 neighbours (docs/benchmarks.md).
        cache_dir: where tagged weights are cached (default: the Hugging Face cache).
        warn_random: warn when the weights are random (the SDK warns itself, when
            they are chosen: :func:`warn_random_weights`).

    Raises:
        WeightsUnavailableError: the tag's weights are not cached and cannot be fetched.
        ValueError: unknown architecture, tag, device or precision, or a bad checkpoint.
    """
    pretrained = expand_checkpoint(pretrained)
    with _open_clip_logging():
        _refuse_unknown_architecture(name, pretrained)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
    source = resolve_weights(name, pretrained, cache_dir)
    kwargs = {f"image_{k}": v for k, v in source.preprocess.items()}
    if source.checkpoint_path is None and warn_random:
        warn_random_weights(name)
    # open_clip's registry of architectures is the process's: the config beside
    # this checkpoint is made the current one and read under the same hold
    with torch.random.fork_rng(devices=[]), _open_clip_logging():
        _refuse_unknown_architecture(name, pretrained)
        torch.manual_seed(RANDOM_INIT_SEED)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name,
                pretrained=source.checkpoint_path,
                device="cpu",
                force_quick_gelu=source.quick_gelu,
                pretrained_text=False,
                **kwargs,
            )
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
            raise ValueError(
                f"could not load {name!r} from {source.checkpoint_path!r}: "
                + _load_failure(source.checkpoint_path, exc)
            ) from exc
        embedding_dim = int(open_clip.get_model_config(name)["embed_dim"])
        tokenizer = open_clip.get_tokenizer(name)
    model = model.to(device=dev, dtype=precision_dtype(prec)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    identity = {
        "name": name,
        "pretrained": source.tag
        if source.tag is not None
        else (
            os.path.abspath(source.checkpoint_path) if source.checkpoint_path else None
        ),
        "checkpoint_sha256": source.sha256,
        "embedding_dim": embedding_dim,
    }
    return ClipModel(model, preprocess, tokenizer, dev, prec, identity)


def warn_random_weights(name: str) -> None:
    """Warn that CLIP ``name`` has random weights: its embeddings carry no
    meaning (said at the first caller outside this package)."""
    warnings.warn(
        f"load_clip({name!r}, pretrained=None) uses RANDOM weights (seed "
        f"{RANDOM_INIT_SEED}); embeddings carry no meaning. Pass a pretrained tag "
        "or checkpoint for real use.",
        UserWarning,
        stacklevel=_caller_outside_package(),
    )


def _caller_outside_package() -> int:
    """The ``stacklevel`` of a warning raised here that names the first caller
    outside this package (the user's line, not the SDK's call of ``load_clip``)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        package + os.sep
    ):
        frame, level = frame.f_back, level + 1
    return level


#: Held while open_clip loads a model (see :func:`_open_clip_logging`).
_ROOT_LOGGER_HELD = threading.Lock()


@contextmanager
def _open_clip_logging():
    """open_clip logs on the root logger, and its first ``logging.info`` would give
    a root logger without handlers one for good (then every library's records, the
    App's own messages included, print a second time). Meanwhile such a root logger
    gets a handler of warnings to stderr (as Python's last resort prints them), and
    open_clip's "No pretrained weights loaded" is dropped: the caller asked for
    random weights and was warned once already (load_clip's warning). One load at a
    time holds it: another's end would otherwise take the handler away mid-load."""
    root = logging.getLogger()

    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")

    with _ROOT_LOGGER_HELD:
        stand_in = None
        if not root.handlers:
            stand_in = logging.StreamHandler()
            stand_in.setLevel(logging.WARNING)
            root.addHandler(stand_in)
        root.addFilter(drop)
        try:
            yield
        finally:
            root.removeFilter(drop)
            if stand_in is not None:
                root.removeHandler(stand_in)


#: File name endings of checkpoints (a ``pretrained`` ending so is a path, not a tag).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _check_checkpoint_exists(pretrained) -> None:
    """Refuse a ``pretrained`` that names a file (a path, not a tag) which is not
    there: the architecture's config is looked for beside it, so a wrong path
    would otherwise read as an unknown architecture."""
    if _looks_like_checkpoint(pretrained) and not os.path.exists(pretrained):
        raise ValueError(
            f"no checkpoint file at {os.fspath(pretrained)!r}: check the path"
        )


def expand_checkpoint(pretrained):
    """``pretrained`` with a leading ``~`` of a checkpoint path expanded (tags and
    None as given)."""
    if isinstance(pretrained, str | os.PathLike):
        text = os.fspath(pretrained)
        if text.startswith("~"):
            return os.path.expanduser(text)
    return pretrained


def _refuse_unknown_architecture(name, pretrained) -> None:
    """Make the config beside a local checkpoint ``name``'s (:func:`_use_config_beside`),
    then refuse a ``name`` open_clip does not know."""
    if isinstance(name, str):
        _use_config_beside(name, pretrained)
    if not isinstance(name, str) or name not in open_clip.list_models():
        _check_checkpoint_exists(pretrained)
        near = close_architectures(name)
        hint = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
        beside = (
            f", or put its open_clip config as '{name}.json' next to the checkpoint"
            if _looks_like_checkpoint(pretrained)
            else f"; an architecture of your own: give its checkpoint"
            f" (pretrained=, with its config '{name}.json' next to it), or"
            " register its config first (open_clip.add_model_config(path))"
            if pretrained is None
            else ""
        )
        raise ValueError(
            f"unknown open_clip architecture {name!r}; {hint}see"
            f" open_clip.list_models() (e.g. 'ViT-B-32'){beside}"
        )


def close_architectures(name, also=()) -> list[str]:
    """Up to three of open_clip's architectures (and the names ``also``) spelled
    like ``name``, case aside."""
    import difflib

    by_lower = {m.lower(): m for m in [*open_clip.list_models(), *also]}
    near = difflib.get_close_matches(str(name).lower(), list(by_lower), n=3)
    return [by_lower[m] for m in near]


def _looks_like_checkpoint(pretrained) -> bool:
    """Whether ``pretrained`` names a file (a path), not a tag or random weights."""
    if not isinstance(pretrained, str | os.PathLike):
        return False
    text = os.fspath(pretrained)
    return os.sep in text or Path(text).suffix in CHECKPOINT_SUFFIXES


def _use_config_beside(name: str, pretrained) -> None:
    """Make ``<name>.json`` lying next to a local checkpoint the config open_clip
    builds ``name`` from.

    Custom architectures travel with their config, so any process holding the
    checkpoint path can load them. Two checkpoints of one name may carry different
    configs: the one beside each is made current before it loads (the first one
    registered was used for both, and the second gave other vectors without a
    word). open_clip's own architectures are never replaced.
    """
    if pretrained is None or not isinstance(pretrained, str | os.PathLike):
        return
    checkpoint = os.fspath(pretrained)
    config = _config_beside(name, checkpoint)
    if not (os.path.isfile(checkpoint) and os.path.isfile(config)):
        return
    if _is_open_clip_own(name):
        return
    try:
        with open(config, encoding="utf-8") as f:
            wanted = json.load(f)
    except (OSError, ValueError):
        wanted = None  # open_clip's own reading says what is wrong, or skips it
    if wanted is None or open_clip.get_model_config(name) != wanted:
        open_clip.add_model_config(config)  # the last one added wins a name


def _is_open_clip_own(name: str) -> bool:
    """Whether ``name`` is one of the architectures open_clip ships."""
    return (
        Path(open_clip.__file__).parent / "model_configs" / f"{name}.json"
    ).is_file()


def _config_beside(name: str, checkpoint) -> str:
    """The path of architecture ``name``'s config next to ``checkpoint``."""
    folder = os.path.dirname(os.path.abspath(os.fspath(checkpoint)))
    return os.path.join(folder, f"{name}.json")


def missing_config_beside(name: str, checkpoint) -> str | None:
    """The path ``<name>.json`` must have beside ``checkpoint`` for the
    architecture ``name`` to load from it, when it is not there and ``name`` is
    not one of open_clip's own architectures; None otherwise."""
    if _is_open_clip_own(name):
        return None
    config = _config_beside(name, expand_checkpoint(checkpoint))
    return None if os.path.isfile(config) else config


def declared_embedding_dim(name: str, pretrained=None) -> int | None:
    """The length of the vectors CLIP architecture ``name`` gives, from its config
    alone (no weights loaded: a declaration is checked offline), registering a
    config beside a local checkpoint ``pretrained``; None for a name open_clip
    does not know."""
    with _open_clip_logging():
        _use_config_beside(name, expand_checkpoint(pretrained))
        config = open_clip.get_model_config(name)
    return int(config["embed_dim"]) if config and "embed_dim" in config else None


def _load_failure(path, exc: Exception) -> str:
    """Why a checkpoint file did not load, in words (never torch's advice to load
    it unsafely)."""
    if path is not None and not _looks_like_torch_file(path):
        return (
            "it is not a PyTorch checkpoint (neither a torch archive nor a pickle):"
            " give an open_clip checkpoint file (.pt, .bin, .safetensors) or a"
            " pretrained tag"
        )
    text = str(exc).strip()
    if "Weights only load failed" in text:
        detail = [line for line in text.splitlines() if "Unpickler error" in line]
        # torch's line goes on with how to load it unsafely: only what it found
        found = detail[0].split(" Please ")[0].split(" was not an allowed")[0]
        return (
            "torch's safe loader refused it: it holds more than weights"
            + (f" ({found.strip().rstrip('.')})" if detail else "")
            + ". Give a checkpoint of weights only (a state dict:"
            " torch.save(model.state_dict(), path))"
        )
    lines = text.splitlines() or [type(exc).__name__]
    shapes = [line.strip() for line in lines if "size mismatch" in line][:1]
    first = (shapes or lines)[0].rstrip(".!:")
    return (
        f"{first}. Check that the checkpoint belongs to this architecture and is not"
        " truncated."
    )


def _looks_like_torch_file(path) -> bool:
    """Whether ``path`` starts like a file torch or safetensors writes: a zip
    archive, a pickle, or a safetensors header."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return True  # unreadable: the loader's own error says so
    # safetensors: a little-endian u64 header size, then the JSON header
    return head.startswith(b"PK") or head[:1] == b"\x80" or head[8:9] == b"{"
