"""FiftyOne glue: one implementation used by the operators, the panel, the service
and the CLI.

Indexes are FiftyOne runs on the root dataset (``method="clipbranches"``) whose
files live under :func:`settings.index_root`.

Importing this package is cheap: each name below loads its module (and FiftyOne)
when first used.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    "relocate_checkpoint": "checkpoints",
    "read_embeddings": "embedding_reader",
    "compute_embeddings": "embeddings",
    "ClipBranchesError": "errors",
    "ContradictoryLabelsError": "errors",
    "IdentityConflictError": "errors",
    "UnsupportedMediaError": "errors",
    "IndexCorruptedError": "errors",
    "IndexExistsError": "errors",
    "IndexBusyError": "errors",
    "IndexInUseError": "errors",
    "IndexNotFoundError": "errors",
    "IndexPermissionError": "errors",
    "ShardsUnavailableError": "errors",
    "MissingEmbeddingsError": "errors",
    "NoPositivesError": "errors",
    "ResultTooLargeError": "errors",
    "SampleIdsError": "errors",
    "StaleIndexError": "errors",
    "IndexFilesMissingError": "errors",
    "UnknownModelError": "errors",
    "CheckpointUnavailableError": "errors",
    "ViewNameTakenError": "errors",
    "WeightsUnavailableError": "errors",
    "IndexBeingBuiltError": "errors",
    "RayUnavailableError": "errors",
    "IndexChanges": "index_changes",
    "IndexInfo": "index_info",
    "build_index": "indexes",
    "build_index_from_codes": "indexes",
    "delete_index": "indexes",
    "index_info": "indexes",
    "list_indexes": "indexes",
    "load_index": "indexes",
    "rename_index": "indexes",
    "update_index": "update",
    "IndexVerifyReport": "integrity",
    "verify_index": "integrity",
    "collect_labels": "labels",
    "label_samples": "labels",
    "clear_labels": "labels",
    "RankedRows": "refine",
    "RefineResult": "refine",
    "apply_refine_result": "refine",
    "refine": "refine",
    "refine_ranking": "refine",
    "RefinePages": "refine_pages",
    "RefinedPage": "refine_pages",
    "refine_pages": "refine_pages",
    "next_to_label": "next_to_label",
    "next_to_label_ids": "next_to_label",
    "RemoteServiceError": "remote",
    "RefineRequest": "request",
    "search": "search",
    "search_ids": "search",
    "unsearched_count": "search",
    "recover_unfinished_writes": "views",
    "save_view": "views",
    "wait_for_writes": "views",
    "warm_refinement": "warm",
}

__all__ = sorted(_EXPORTS)


class _Package(types.ModuleType):
    """This package's module type: ``refine`` and ``search`` stay the functions when
    their modules (``sdk/refine.py``, ``sdk/search.py``) are imported, which would
    otherwise set the package attributes of those names to the modules."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


#: Serializes first uses: threads importing FiftyOne's modules at once can each see
#: the others' modules half-initialized.
_IMPORT_LOCK = threading.RLock()


def __getattr__(name):
    """The public names, and the submodules (``sdk.errors``), loaded on first use."""
    module = _EXPORTS.get(name)
    if module is not None:
        with _IMPORT_LOCK:
            value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name.isidentifier() and not name.startswith("__"):
        with _IMPORT_LOCK:
            if importlib.util.find_spec(f"{__name__}.{name}") is not None:
                return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


sys.modules[__name__].__class__ = _Package
