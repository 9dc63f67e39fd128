"""Link the package folder into FiftyOne's plugins directory (and undo it)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

PLUGIN_SUBDIR = Path("@clipbranches") / "clipbranches"


class PluginInstallError(RuntimeError):
    """The plugin link cannot be created or removed safely."""


@dataclass(frozen=True)
class InstallOutcome:
    action: str  # "linked", "unchanged", "replaced", "removed", "absent"
    link: Path
    target: Path

    def describe(self) -> str:
        messages = {
            "linked": f"linked {self.link} -> {self.target}",
            "unchanged": f"already installed: {self.link} -> {self.target}",
            "replaced": f"replaced {self.link}, now -> {self.target}",
            "removed": f"removed {self.link}",
            "absent": f"nothing to remove: {self.link} does not exist",
        }
        return messages[self.action]


def package_dir() -> Path:
    """The folder of this package, which is also the plugin folder."""
    return Path(__file__).resolve().parent


def default_plugins_dir() -> Path:
    import fiftyone as fo

    return Path(fo.config.plugins_dir).expanduser()


def _plugin_link(plugins_dir: Path | None) -> Path:
    root = Path(plugins_dir).expanduser() if plugins_dir else default_plugins_dir()
    return root / PLUGIN_SUBDIR


def _points_to(link: Path, target: Path) -> bool:
    return link.is_symlink() and Path(os.path.realpath(link)) == target.resolve()


def broken_link(link: Path) -> Path | None:
    """Where ``link`` points when it is a link to no plugin: its target gone (a
    moved virtual environment), or a ``fiftyone_clipbranches`` folder without the
    package (``pip uninstall`` leaves its numba caches); else None. Replacing it
    loses nothing (the target is never touched). A target that cannot be read
    (an unmounted volume, no permission) is not called broken."""
    if not link.is_symlink():
        return None
    target = Path(os.path.realpath(link))
    try:
        os.lstat(target)
        if target.name == package_dir().name:
            os.lstat(target / "__init__.py")
    except FileNotFoundError:
        return target
    except OSError:
        pass
    return None


def other_copy(link: Path) -> Path | None:
    """Where ``link`` points when it is a link to a plugin other than this
    package's folder (another checkout or virtual environment: the App would run
    that copy's code); else None."""
    if not link.is_symlink() or broken_link(link) is not None:
        return None
    if _points_to(link, package_dir()):
        return None
    return Path(os.path.realpath(link))


def plugin_link(plugins_dir: Path | None = None) -> Path:
    """Where :func:`install_plugin` puts the link (FiftyOne's plugins dir by
    default)."""
    return _plugin_link(plugins_dir)


def install_plugin(
    plugins_dir: Path | None = None, force: bool = False
) -> InstallOutcome:
    """Symlink the package folder to ``<plugins_dir>/@clipbranches/clipbranches``.

    Idempotent. An existing file, folder or foreign link at that place is replaced only
    with ``force=True``; a link to no plugin (:func:`broken_link`) always is.
    """
    target = package_dir()
    link = _plugin_link(plugins_dir)
    if _points_to(link, target):
        return InstallOutcome("unchanged", link, target)
    action = "linked"
    if link.is_symlink() or link.exists():
        if not force and broken_link(link) is None:
            raise PluginInstallError(
                f"{link} already exists and is not a link to this package;"
                " pass --force to replace it"
            )
        _remove_path(link)
        action = "replaced"
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        _remove_path(tmp)
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)
    return InstallOutcome(action, link, target)


def uninstall_plugin(
    plugins_dir: Path | None = None, force: bool = False
) -> InstallOutcome:
    """Remove the link made by :func:`install_plugin` (or a link to no plugin);
    foreign content needs ``force``."""
    target = package_dir()
    link = _plugin_link(plugins_dir)
    if not (link.is_symlink() or link.exists()):
        return InstallOutcome("absent", link, target)
    if not _points_to(link, target) and not force and broken_link(link) is None:
        raise PluginInstallError(
            f"{link} is not a link to this package; pass --force to remove it anyway"
        )
    _remove_path(link)
    with contextlib.suppress(OSError):  # the "@clipbranches" folder, once empty
        link.parent.rmdir()
    return InstallOutcome("removed", link, target)


def _remove_path(path: Path) -> None:
    import shutil

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
