"""Where the demo keeps its files: a per-user data directory, overridable by env."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

#: Environment variable that overrides the data directory.
DATA_DIR_ENV = "CLIPBRANCHES_DATA_DIR"

_APP_DIR_NAME = "fiftyone-clipbranches"


def default_data_dir() -> Path:
    """The per-user data directory of the package.

    ``$CLIPBRANCHES_DATA_DIR`` when set, else ``$XDG_DATA_HOME/fiftyone-clipbranches``,
    else ``~/.local/share/fiftyone-clipbranches``. The directory is not created.
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / _APP_DIR_NAME


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` as a :class:`~pathlib.Path`, or :func:`default_data_dir` if None."""
    if data_dir is None:
        return default_data_dir()
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(
            f"data_dir must be a path or None, got {type(data_dir).__name__}"
        )
    return Path(data_dir).expanduser()


def demo_models_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding the cached demo CLIP models, one sub-folder per configuration."""
    return resolve_data_dir(data_dir) / "demo" / "models"


def demo_images_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Default folder for the generated demo images."""
    return resolve_data_dir(data_dir) / "demo" / "images"


def write_json_atomic(path: Path, payload) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
