"""Finding CLIP weights on disk (or downloading them) without ever hanging offline."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import open_clip

#: Environment variables that mark the process as offline.
OFFLINE_ENV_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CLIPBRANCHES_OFFLINE")

_DOWNLOAD_TIMEOUT_S = 30.0
_PROBE_TIMEOUT_S = 3.0


class WeightsUnavailableError(RuntimeError):
    """The requested pretrained CLIP weights are neither cached locally nor downloadable."""


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights of a model come from.

    Attributes:
        checkpoint_path: local file to load, or None for random initialisation.
        tag: open_clip pretrained tag when the weights came from one.
        sha256: hex digest of a user-supplied checkpoint file.
        preprocess: image preprocessing overrides that belong to the tag (mean, std, ...).
        quick_gelu: whether the tag was trained with QuickGELU.
    """

    checkpoint_path: str | None
    tag: str | None = None
    sha256: str | None = None
    preprocess: dict = field(default_factory=dict)
    quick_gelu: bool = False


def is_offline() -> bool:
    """True when one of :data:`OFFLINE_ENV_VARS` is set to a true value."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in OFFLINE_ENV_VARS
    )


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def unavailable_message(name: str, tag: str, cache_dir: str | None, reason: str) -> str:
    """The one actionable message raised when weights cannot be obtained."""
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    where = cache_dir or f"{hf_home}/hub (Hugging Face) or ~/.cache/clip (direct URLs)"
    return (
        f"CLIP weights {name!r} / {tag!r} are not available: {reason}. "
        "Provide them in one of these ways: "
        "(1) pass a local checkpoint file as pretrained (Python:"
        f" build_index(..., model={name!r}, pretrained='/path/to/"
        "open_clip_pytorch_model.bin'); CLI: --pretrained /path/to/file); "
        f"(2) put the open_clip/Hugging Face cache on this machine at {where} "
        "(set HF_HOME or HF_HUB_CACHE, or pass cache_dir=, to point at a copied cache); "
        "(3) run once with network access (and without HF_HUB_OFFLINE=1) so the weights "
        "are downloaded into the cache. Use pretrained=None only if you really want "
        "random weights (for tests)."
    )


def _cached_file(cfg: dict, cache_dir: str | None) -> str | None:
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            hf_hub_download = None
        if hf_hub_download is not None:
            repo_id, filename = os.path.split(hub)
            filename = filename or open_clip.constants.HF_WEIGHTS_NAME
            candidates = [filename]
            if filename == open_clip.constants.HF_WEIGHTS_NAME:
                candidates.insert(0, open_clip.constants.HF_SAFE_WEIGHTS_NAME)
            for fname in candidates:
                try:
                    return hf_hub_download(
                        repo_id, fname, cache_dir=cache_dir, local_files_only=True
                    )
                except Exception:  # noqa: BLE001 - any miss means "not cached"
                    continue
    url = cfg.get("url", "")
    if url:
        target = Path(
            cache_dir or os.path.expanduser("~/.cache/clip")
        ) / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def _host_reachable(cfg: dict) -> str | None:
    """Return None when the weights host answers within a few seconds, else why not."""
    if cfg.get("hf_hub"):
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    else:
        endpoint = cfg.get("url", "")
    host = urlparse(endpoint).hostname
    if not host:
        return "no download location is known for this tag"
    try:
        socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S).close()
    except socket.gaierror:
        return f"cannot reach {host}: its name does not resolve (no network here?)"
    except TimeoutError:
        return f"cannot reach {host}: no answer within {_PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"cannot reach {host} ({exc.strerror or exc})"
    return None


def _download(cfg: dict, cache_dir: str | None) -> str:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        return open_clip.pretrained.download_pretrained(cfg, cache_dir=cache_dir)
    finally:
        socket.setdefaulttimeout(previous)


def resolve_weights(name: str, pretrained: str | os.PathLike | None, cache_dir=None):
    """Resolve ``pretrained`` (a tag, a checkpoint file, or None) to a :class:`WeightsSource`.

    Raises:
        WeightsUnavailableError: a known tag whose weights are not cached and cannot be
            downloaded (offline, or the download failed).
        ValueError: ``pretrained`` is neither a known tag for ``name`` nor an existing file.
    """
    if pretrained is None:
        return WeightsSource(checkpoint_path=None)
    if not isinstance(pretrained, str | os.PathLike):
        raise TypeError("pretrained must be a tag string, a checkpoint path, or None")
    text = os.fspath(pretrained)
    if os.path.isfile(text):
        return WeightsSource(checkpoint_path=text, sha256=file_sha256(text))
    if os.path.isdir(text):
        raise ValueError(
            f"pretrained={text!r} is a directory; pass the checkpoint file inside it"
        )
    cfg = open_clip.pretrained.get_pretrained_cfg(name, text)
    if not cfg:
        tags = open_clip.pretrained.list_pretrained_tags_by_model(name)
        raise ValueError(
            f"pretrained={text!r} is neither an existing checkpoint file nor a known "
            f"open_clip tag for {name!r}; known tags: {tags or 'none'}"
        )
    preprocess = {
        k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg
    }
    quick_gelu = bool(cfg.get("quick_gelu", False))
    path = _cached_file(cfg, cache_dir)
    if path is None:
        if is_offline():
            raise WeightsUnavailableError(
                unavailable_message(
                    name,
                    text,
                    cache_dir,
                    "not in the local cache and "
                    "the process is offline (HF_HUB_OFFLINE is set)",
                )
            )
        unreachable = _host_reachable(cfg)
        if unreachable is not None:
            raise WeightsUnavailableError(
                unavailable_message(
                    name, text, cache_dir, f"not cached and {unreachable}"
                )
            )
        try:
            path = _download(cfg, cache_dir)
        except Exception as exc:  # noqa: BLE001 - every failure gets the same advice
            raise WeightsUnavailableError(
                unavailable_message(name, text, cache_dir, f"download failed ({exc})")
            ) from exc
        if not path or not os.path.isfile(path):
            raise WeightsUnavailableError(
                unavailable_message(
                    name, text, cache_dir, "the download produced no file"
                )
            )
    return WeightsSource(path, tag=text, preprocess=preprocess, quick_gelu=quick_gelu)
