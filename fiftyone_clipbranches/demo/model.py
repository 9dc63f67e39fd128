"""The demo CLIP model: a tiny open_clip architecture trained on generated images.

Pretrained CLIP weights cannot be downloaded offline and random weights make search
meaningless, so the demo has its own small model, trained by :mod:`.train` and
shipped with the package in a compact form (:mod:`.checkpoint`; ``clipbranches demo
--retrain`` trains it again, about 4 minutes on 2 cores). It is unpacked into the
user data directory as an ordinary open_clip checkpoint::

    demo = ensure_demo_model()
    model, _, preprocess = open_clip.create_model_and_transforms(
        demo.name, pretrained=demo.checkpoint_path
    )

The architecture is registered with open_clip's config registry under
:data:`DEMO_MODEL_NAME` by :func:`register_demo_model` (which
:func:`ensure_demo_model` calls).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fiftyone_clipbranches.sdk.clip_names import SHIPPED_MODEL

from .paths import demo_models_dir, resolve_data_dir, write_json_atomic

logger = logging.getLogger(__name__)

#: Name of the demo architecture in open_clip's model registry.
DEMO_MODEL_NAME = "clipbranches-demo-rn16"

#: open_clip model config: a small modified ResNet (open_clip's RN towers, base
#: width 16, one block per stage, attention pooling) on 64x64 images and a 2-layer
#: text transformer, joined in a 128-d embedding space.
DEMO_MODEL_CONFIG: dict = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 64,
        "layers": [1, 1, 1, 1],
        "width": 16,
        "patch_size": None,
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 96,
        "heads": 4,
        "layers": 2,
    },
}

CHECKPOINT_NAME = "open_clip_model.pt"
COMPACT_NAME = "demo_clip.ckpt"
INFO_NAME = "demo_model.json"
_INFO_FORMAT = "clipbranches-demo-model"


@dataclass(frozen=True)
class DemoModel:
    """A trained, cached demo model.

    Attributes:
        name: open_clip model name (:data:`DEMO_MODEL_NAME`), registered.
        checkpoint_path: path of the open_clip-loadable state-dict checkpoint.
        identity: ``{"name", "pretrained", "checkpoint_sha256", "config_key",
            "data_seed", ...}`` plus ``"training"`` statistics.
    """

    name: str
    checkpoint_path: str
    identity: dict = field(default_factory=dict)

    def load(self, device: str = "cpu"):
        """``(model, preprocess, tokenizer)`` through open_clip, in eval mode."""
        import open_clip

        register_demo_model()
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.name, pretrained=self.checkpoint_path, device=device
        )
        model.eval()
        return model, preprocess, open_clip.get_tokenizer(self.name)


def write_model_config(folder: str | os.PathLike) -> Path:
    """Write :data:`DEMO_MODEL_CONFIG` as ``<folder>/<DEMO_MODEL_NAME>.json``.

    Atomic, and skipped when the file already holds that config. Next to a
    checkpoint, it lets ``embed.load_clip`` load the checkpoint in any process.
    """
    path = Path(folder) / f"{DEMO_MODEL_NAME}.json"
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current != DEMO_MODEL_CONFIG:
        write_json_atomic(path, DEMO_MODEL_CONFIG)
    return path


def register_demo_model(config_dir: str | os.PathLike | None = None) -> str:
    """Register :data:`DEMO_MODEL_CONFIG` with open_clip; idempotent.

    open_clip reads architectures from JSON files, so the config is written (once,
    atomically) to ``config_dir`` (default: ``<data dir>/demo/open_clip_configs``)
    and that file is added to open_clip's registry.

    Returns:
        :data:`DEMO_MODEL_NAME`.
    """
    import open_clip

    if DEMO_MODEL_NAME in open_clip.list_models():
        return DEMO_MODEL_NAME
    folder = (
        Path(config_dir)
        if config_dir is not None
        else resolve_data_dir() / "demo" / "open_clip_configs"
    )
    path = write_model_config(folder)
    open_clip.add_model_config(path)
    if DEMO_MODEL_NAME not in open_clip.list_models():
        raise RuntimeError(f"open_clip did not register {DEMO_MODEL_NAME} from {path}")
    return DEMO_MODEL_NAME


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_cached(folder: Path) -> DemoModel | None:
    checkpoint = folder / CHECKPOINT_NAME
    try:
        info = json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(info, dict)
        or info.get("format") != _INFO_FORMAT
        or not checkpoint.is_file()
    ):
        return None
    identity = info.get("identity", {})
    if identity.get("checkpoint_size") != checkpoint.stat().st_size:
        return None
    if identity.get("training", {}).get("truncated"):
        return None  # written by versions that cached a model cut short by its budget
    return DemoModel(info["name"], str(checkpoint), identity)


class quiet_random_init(logging.Filter):
    """Context manager: drop open_clip's "initialized randomly" warning for the demo.

    Training starts from random weights on purpose, so the warning (logged on the
    root logger) says nothing to the user there.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("No pretrained weights loaded for model")
            and DEMO_MODEL_NAME in message
        )

    def __enter__(self):
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self)


def ensure_demo_model(
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    max_minutes: float | None = None,
    config=None,
    force: bool = False,
) -> DemoModel:
    """The cached demo model for ``config``: unpacked from the shipped checkpoint for
    the default configuration, else trained; reused by later calls.

    The cache folder is ``<data dir>/demo/models/<name>-<config key>/`` holding the
    open_clip checkpoint, its compact form (:mod:`.checkpoint`), a small JSON with
    the model's identity and the architecture's open_clip config (so that any
    process loads the checkpoint path an index records: ``write_model_config``).
    It is written to a temporary folder and renamed, so a crash never leaves a
    partial model behind. A trained model is packed and unpacked like
    the shipped one, so a retrain of the default configuration on a machine that
    trains bit-reproducibly gives the shipped checkpoint's bytes
    (``identity["matches_shipped"]``).

    Args:
        data_dir: data directory; default :func:`~.paths.default_data_dir`.
        progress: show tqdm progress bars while generating and training.
        max_minutes: wall-clock budget for training, None for none. Running past it
            raises :class:`~.train.DemoTrainingBudgetError` and caches nothing.
        config: a :class:`~.train.DemoTrainConfig`; default ``DemoTrainConfig()``.
        force: train from scratch even when a cached or shipped model exists.

    Returns:
        A :class:`DemoModel`.
    """
    from . import checkpoint as compact
    from .train import TOKEN_EMBEDDING_SEED, DemoTrainConfig, train_demo_model

    if config is None:
        config = DemoTrainConfig()
    if not isinstance(config, DemoTrainConfig):
        raise TypeError(
            f"config must be a DemoTrainConfig, got {type(config).__name__}"
        )
    config.validate()
    if max_minutes is not None:
        if isinstance(max_minutes, bool) or not isinstance(max_minutes, (int, float)):
            raise TypeError("max_minutes must be a number or None")
        if not max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {max_minutes}")

    register_demo_model(resolve_data_dir(data_dir) / "demo" / "open_clip_configs")
    key = config.key(DEMO_MODEL_CONFIG)
    root = demo_models_dir(data_dir)
    folder = root / f"{DEMO_MODEL_NAME}-{key[:16]}"
    if not force:
        cached = _read_cached(folder)
        if cached is not None:
            with contextlib.suppress(OSError):  # a read-only cache of older versions
                write_model_config(folder)
            return cached

    shipped = compact.shipped_meta()
    shipped_sha = (
        sha256_file(compact.SHIPPED_PATH)
        if shipped is not None and shipped.get("config_key") == key
        else None
    )
    if shipped_sha is not None and not force:
        data = compact.SHIPPED_PATH.read_bytes()
        source = "shipped"
    else:
        max_seconds = None if max_minutes is None else 60.0 * max_minutes
        model, stats = train_demo_model(
            config, progress=progress, max_seconds=max_seconds
        )
        meta = {
            "config_key": key,
            "model_config": DEMO_MODEL_CONFIG,
            "train_config": config.to_dict(),
            "planned_steps": config.steps,
            "steps": stats["steps"],
        }
        data = compact.pack(model.state_dict(), TOKEN_EMBEDDING_SEED, meta)
        source = "trained"
    state, meta = compact.unpack(data)
    if meta.get("steps") != meta.get("planned_steps"):
        raise RuntimeError(f"demo checkpoint is not fully trained: {meta}")
    compact_sha = compact.sha256_bytes(data)

    import torch

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        checkpoint = tmp / CHECKPOINT_NAME
        torch.save(state, checkpoint)
        (tmp / COMPACT_NAME).write_bytes(data)
        identity = {
            "name": DEMO_MODEL_NAME,
            "pretrained": None,
            "source": source,
            "checkpoint_sha256": sha256_file(checkpoint),
            "checkpoint_size": checkpoint.stat().st_size,
            "compact_sha256": compact_sha,
            "matches_shipped": None
            if shipped_sha is None
            else compact_sha == shipped_sha,
            "config_key": key,
            "data_seed": config.seed,
            "model_config": DEMO_MODEL_CONFIG,
            "train_config": config.to_dict(),
            "training": stats if source == "trained" else {"steps": meta["steps"]},
        }
        write_json_atomic(
            tmp / INFO_NAME,
            {"format": _INFO_FORMAT, "name": DEMO_MODEL_NAME, "identity": identity},
        )
        write_model_config(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cached = _read_cached(folder)
    if cached is None:
        raise RuntimeError(f"demo model cache at {folder} could not be read back")
    return cached


def clip_choice(model: str | None, pretrained, progress: bool = False) -> tuple:
    """``(model, pretrained)`` as ``build_index`` and ``compute_embeddings`` take
    them: :data:`SHIPPED_MODEL` becomes the demo CLIP's registered name and its
    cached checkpoint (offline; it knows generated shapes, not photos); any other
    model passes through.

    Raises:
        ValueError: weights given with :data:`SHIPPED_MODEL`, which has its own.
    """
    if model != SHIPPED_MODEL:
        return model, pretrained
    if pretrained:
        raise ValueError(
            f"model {SHIPPED_MODEL!r} is the small CLIP this package ships, with its"
            " own weights: leave the pretrained weights empty"
        )
    demo = ensure_demo_model(progress=progress)
    return demo.name, demo.checkpoint_path
