"""Where numba keeps the compiled kernels when it cannot keep them where it would.

numba caches a kernel beside its source (``__pycache__`` of this package) or in
the user's cache folder (``~/.cache/numba``). A service run as another user than
the one who installed the package, with ``HOME`` unset or read-only (a container's
arbitrary user), has neither: every kernel module then failed to import ("cannot
cache function ...: no locator available"), and each index was reported as not
loadable. Then a folder of this user's own in the temp directory takes them.
``NUMBA_CACHE_DIR`` set by the user always wins.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numba as nb


def ensure_cache_dir(package_dir: Path | None = None) -> str | None:
    """Point numba's cache at a private temp folder when neither the package's
    folder nor the user's cache folder can take it; returns that folder, or None
    when numba's own places (or ``NUMBA_CACHE_DIR``) serve."""
    if os.environ.get("NUMBA_CACHE_DIR") or nb.config.CACHE_DIR:
        return None
    package_dir = package_dir or Path(__file__).resolve().parent
    if can_write(package_dir / "__pycache__") or can_write(_user_cache_dir()):
        return None
    folder = private_temp_folder(f"clipbranches-numba-{os.getuid()}")
    # the variable too: numba reads its settings again from the environment when
    # one of them changes (a reset to none), and worker processes inherit it
    os.environ["NUMBA_CACHE_DIR"] = folder
    nb.config.CACHE_DIR = folder
    return folder


def can_write(path: Path) -> bool:
    """Whether ``path`` (a folder) is writable, or could be made where its nearest
    existing parent is."""
    path = Path(path)
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def private_temp_folder(name: str) -> str:
    """``<temp dir>/<name>``, made with mode 0700 if missing and used only if it is
    this user's own real folder, which no one else can write (compiled code is
    loaded from it); else a fresh folder of its own."""
    path = Path(tempfile.gettempdir()) / name
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return tempfile.mkdtemp(prefix=f"{name}-")
    info = path.lstat()
    own = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    if own and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return str(path)
    return tempfile.mkdtemp(prefix=f"{name}-")


def _user_cache_dir() -> Path:
    from numba.misc.appdirs import AppDirs

    return Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)
