"""Making ``backend="clipbranches"`` known to FiftyOne's brain.

``fob.compute_similarity(..., backend=ClipBranchesSimilarityConfig)`` works
without any registration; a backend *name* is looked up in
``fiftyone.brain.brain_config.similarity_backends``, read once per process from
``~/.fiftyone/brain_config.json`` (``FIFTYONE_BRAIN_CONFIG_PATH``) and the
``FIFTYONE_BRAIN_SIMILARITY_*`` environment variables. Loading a run needs
neither: FiftyOne imports its config class by its full name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from fiftyone_clipbranches.similarity.config import BACKEND_NAME

CONFIG_CLS = "fiftyone_clipbranches.similarity.config.ClipBranchesSimilarityConfig"


def register_similarity_backend(persist: bool = False) -> Path | None:
    """Register the ``clipbranches`` backend in this process; with ``persist``,
    also in the brain config file so that every later process knows it.

    Idempotent. The file is written only when ``persist`` is True and its entry
    differs; its other settings are kept.

    Returns:
        the brain config file written, or None when none was.
    """
    import fiftyone.brain as fob
    from fiftyone.brain.config import locate_brain_config

    entry = fob.brain_config.similarity_backends.setdefault(BACKEND_NAME, {})
    entry["config_cls"] = CONFIG_CLS
    if not persist:
        return None
    path = Path(locate_brain_config())
    current = json.loads(path.read_text()) if path.is_file() else {}
    backends = current.setdefault("similarity_backends", {})
    if backends.get(BACKEND_NAME, {}).get("config_cls") == CONFIG_CLS:
        return None
    backends.setdefault(BACKEND_NAME, {})["config_cls"] = CONFIG_CLS
    _write_atomically(path, json.dumps(current, indent=4) + "\n")
    return path


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
