"""Search by classification for FiftyOne: index-aware decision branches over CLIP codes.

This folder is both the Python package and the FiftyOne plugin folder (it holds
``fiftyone.yml``). Importing it is cheap: FiftyOne, torch and numba load only when a
function that needs them is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path

__version__ = "0.1.0"
PLUGIN_NAME = "@clipbranches/clipbranches"


INSTALL_HINT = (
    "the clipbranches plugin needs its Python package: pip install "
    "fiftyone-clipbranches (or: fiftyone plugins requirements "
    f"{PLUGIN_NAME} --install), then restart FiftyOne"
)


def register(p):
    """Register the plugin's operators and panels (called by FiftyOne).

    FiftyOne loads this file as ``fiftyone.plugins.orgs.clipbranches...`` from
    a linked package folder (``clipbranches install-plugin``) or from a copy of it
    (``fiftyone plugins download``); either way the operators and panels come
    from the installed ``fiftyone_clipbranches`` package. Without it, a panel of
    the same name says how to install it (the App shows no log line).
    """
    if not _package_importable():
        logging.getLogger(__name__).error(INSTALL_HINT)
        p.register(_install_hint_panel())
        return
    from fiftyone_clipbranches.operators import OPERATORS
    from fiftyone_clipbranches.panels import PANELS

    for cls in (*OPERATORS, *PANELS):
        p.register(cls)


def _package_importable() -> bool:
    """Whether the package itself can be imported: not only a folder of that name
    (``pip uninstall`` leaves one behind with numba's caches in it)."""
    try:
        if importlib.util.find_spec("fiftyone_clipbranches.operators") is not None:
            return True
    except ImportError:
        pass
    here = Path(__file__).resolve().parent
    if here.name == "fiftyone_clipbranches":  # a checkout's folder, not pip-installed
        sys.path.insert(0, str(here.parent))
        return True
    return False


def _install_hint_panel():
    """A panel, named as the plugin's own, that shows :data:`INSTALL_HINT`."""
    import fiftyone.operators as foo
    import fiftyone.operators.types as types

    class InstallHintPanel(foo.Panel):
        @property
        def config(self):
            return foo.PanelConfig(
                name="clipbranches_panel",
                label="CLIP branches (not installed)",
                surfaces="grid",
            )

        def render(self, ctx):
            panel = types.Object()
            panel.view(
                "hint", types.Warning(label=INSTALL_HINT[:1].upper() + INSTALL_HINT[1:])
            )
            return types.Property(panel)

    return InstallHintPanel


#: Subpackages reachable as ``cb.<name>`` without importing them first.
_SUBPACKAGES = ("sdk", "engine", "embed", "service", "similarity", "distributed")


def __getattr__(name):
    """``cb.<name>``: the SDK's public names (``sdk.__all__``) and the
    subpackages, loaded on first use."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    sdk = importlib.import_module("fiftyone_clipbranches.sdk")  # cheap: lazy too
    if name in sdk.__all__:
        return getattr(sdk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    sdk = importlib.import_module("fiftyone_clipbranches.sdk")
    own = ["INSTALL_HINT", "PLUGIN_NAME", "__version__", "register"]
    return sorted([*own, *_SUBPACKAGES, *sdk.__all__])
