"""Search by classification for FiftyOne: index-aware decision branches over CLIP codes.

This folder is both the Python package and the FiftyOne plugin folder (it holds
``fiftyone.yml``). Importing it is cheap: FiftyOne, torch and numba load only when a
function that needs them is called.
"""

from __future__ import annotations

import sys
from pathlib import Path

__version__ = "0.1.0"
PLUGIN_NAME = "@clipbranches/clipbranches"

_SDK_EXPORTS = (
    "build_index",
    "search",
    "refine",
    "RefineRequest",
    "save_view",
    "list_indexes",
    "index_info",
    "rename_index",
    "delete_index",
    "update_index",
)


def register(p):
    """Register the plugin's operators and panels (called by FiftyOne)."""
    try:
        import fiftyone_clipbranches  # noqa: F401
    except ImportError:  # plugin folder used without `pip install`
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from fiftyone_clipbranches.operators import OPERATORS
    from fiftyone_clipbranches.panels import PANELS

    for cls in (*OPERATORS, *PANELS):
        p.register(cls)


def __getattr__(name):
    if name in _SDK_EXPORTS:
        from fiftyone_clipbranches import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SDK_EXPORTS))
