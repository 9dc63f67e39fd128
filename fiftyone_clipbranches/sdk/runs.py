"""The index as a FiftyOne run: config and run classes, key validation, lookups.

FiftyOne re-imports run config classes by their fully qualified name, which is
why they live here, in the installed package, and not in plugin-only modules.
The run holds paths and small metadata only; codes and trees stay on disk.

Ownership of index directories: ``Dataset.clone()`` copies runs, so several runs
(of several datasets) may point at one directory. A directory's files are removed
only when no run of any existing dataset still points at it
(:func:`release_index_dir`); the manifest's ``dataset_id`` names the dataset that
wrote it, and an update on any other dataset writes its new directory under that
dataset's own folder (copy on write).
"""

from __future__ import annotations

import logging
import shlex
import shutil
from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace

import fiftyone.core.odm as foo_odm
import fiftyone.core.runs as fors

from fiftyone_clipbranches.sdk.errors import (
    IndexBeingBuiltError,
    IndexExistsError,
    IndexNotFoundError,
)
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_INDEX_KEY,
    RUN_METHOD,
    SIMILARITY_BACKEND,
    default_index_key,
    index_root,
)

logger = logging.getLogger(__name__)


class ClipBranchesIndexConfig(fors.RunConfig):
    """Config of one index run.

    Args:
        index_dir: absolute path of the index directory (codes, trees, encoder,
            sample-id order).
        n_samples: number of samples the index holds.
        code_dims: number of bytes per code.
        code_method: how embeddings were turned into codes (``"head"`` or ``"pca"``).
        embeddings_field: sample field the embeddings were read from, if any.
        clip_model: identity of the CLIP model of the embeddings
            (``{"name": ..., "pretrained": ...}``), needed for text queries; None
            when unknown.
        built_at: UTC ISO timestamp of the build (or of the last update).
        reembed_pending: sample ids an update began to embed again and did not
            finish (interrupted): the next update embeds them again; None when
            there are none.
    """

    def __init__(
        self,
        index_dir=None,
        n_samples=None,
        code_dims=None,
        code_method=None,
        embeddings_field=None,
        clip_model=None,
        built_at=None,
        reembed_pending=None,
        **kwargs,
    ):
        kwargs.pop("method", None)
        super().__init__(method=RUN_METHOD, **kwargs)
        self.index_dir = index_dir
        self.n_samples = n_samples
        self.code_dims = code_dims
        self.code_method = code_method
        self.embeddings_field = embeddings_field
        self.clip_model = clip_model
        self.built_at = built_at
        self.reembed_pending = reembed_pending


class ClipBranchesIndex(fors.Run):
    """Run class of :class:`ClipBranchesIndexConfig`: on cleanup, deletes the files
    unless another run (of a clone, say) still uses them."""

    def cleanup(self, samples, key):
        release_index_dir(
            self.config.index_dir, exclude=(str(root_dataset(samples)._doc.id), key)
        )


def index_dir_references(index_dir, exclude=None, root=None) -> list[tuple[str, str]]:
    """``(dataset id, key)`` of every index run of an existing dataset whose
    ``index_dir`` is ``index_dir`` (:func:`located` under the index root or
    ``root``), but ``exclude``."""
    refs = referenced_index_dirs(root).get(_norm(index_dir), [])
    return [r for r in refs if r != exclude]


def referenced_index_dirs(root=None) -> dict[str, list[tuple[str, str]]]:
    """Every index directory a run of an existing dataset points at (normalised
    path, :func:`located` under the index root or ``root``) -> ``[(dataset id,
    key), ...]``; one query of each collection."""
    db = foo_odm.get_db_conn()
    live_runs = set()
    for doc in db.datasets.find({}, {"runs": 1}):
        live_runs.update(v for v in (doc.get("runs") or {}).values())
    refs: dict[str, list[tuple[str, str]]] = {}
    query = {"config.method": RUN_METHOD}
    fields = {"_dataset_id": 1, "key": 1, "config.index_dir": 1}
    for doc in db.runs.find(query, fields):
        index_dir = (doc.get("config") or {}).get("index_dir")
        if not index_dir or doc["_id"] not in live_runs:
            continue
        ref = (str(doc.get("_dataset_id")), doc.get("key"))
        refs.setdefault(_norm(located(index_dir, root)), []).append(ref)
    return refs


def indexes_by_dataset() -> dict[str, list[str]]:
    """``{dataset name: [index keys]}`` of every dataset of the database that has
    a clipbranches index, by name; one query of each collection."""
    from bson import ObjectId

    names = {
        str(doc["_id"]): doc.get("name")
        for doc in foo_odm.get_db_conn().datasets.find({}, {"name": 1})
    }
    out: dict[str, list[str]] = {}
    for refs in referenced_index_dirs().values():
        for dataset_id, key in refs:
            name = names.get(dataset_id) if ObjectId.is_valid(dataset_id) else None
            if name is not None:
                out.setdefault(name, []).append(key)
    return {name: sorted(set(out[name])) for name in sorted(out)}


def located(index_dir: str | None, root=None) -> str | None:
    """``index_dir`` as a run records it, or, when nothing is there, the directory
    of the same dataset folder and name under the index root (or ``root``), if
    there is one: the index root was moved, and ``$CLIPBRANCHES_INDEX_ROOT`` names
    its new place (the next update records the new path)."""
    if not index_dir:
        return index_dir
    path = Path(index_dir)
    if path.exists():
        return index_dir
    for base in (index_root(), *([] if root is None else [Path(root)])):
        moved = base / path.parent.name / path.name
        if moved.is_dir():
            return str(moved)
    return index_dir


def release_index_dir(index_dir, exclude=None) -> bool:
    """Delete ``index_dir`` unless a run other than ``exclude`` (``(dataset id,
    key)``) points at it, or its dataset folder records another database (a
    dataset exported with its runs and imported into this one points at the
    files of the database it came from, whose runs this one cannot see); returns
    whether it was deleted."""
    if not index_dir or index_dir_references(index_dir, exclude):
        return False
    if of_another_database(index_dir):
        return False
    remove_index_dir(index_dir)
    return True


def of_another_database(index_dir) -> bool:
    """Whether ``index_dir``'s dataset folder records a database other than the
    one FiftyOne is connected to (a folder recording none is taken as this
    one's)."""
    from fiftyone_clipbranches.sdk.folder_owner import database_id, owner_of

    owner = owner_of(Path(index_dir).parent)
    return owner is not None and owner != database_id()


def _norm(index_dir) -> str:
    return str(Path(index_dir).expanduser().resolve())


def remove_index_dir(index_dir) -> None:
    """Delete an index directory if it exists (a missing one is not an error).

    Only for a directory no run points at: see :func:`release_index_dir`.
    """
    if not index_dir:
        return
    path = Path(index_dir)
    if path.exists():
        shutil.rmtree(path)


def root_dataset(samples):
    """The root dataset of a dataset or view, where index runs are registered.

    Raises:
        TypeError: ``samples`` is not a FiftyOne dataset or view (a name, say).
    """
    root = getattr(samples, "_root_dataset", None)
    if root is None:
        hint = (
            f": load it first, fo.load_dataset({samples!r})"
            if isinstance(samples, str)
            else ""
        )
        raise TypeError(
            f"expected a FiftyOne dataset or view, got {type(samples).__name__}"
            f" {samples!r:.80}{hint}"
        )
    return root


def list_index_keys(samples) -> list[str]:
    """Keys of the index runs registered on the root dataset of ``samples``, as
    the database holds them now (:func:`database_runs`)."""
    return list(_index_configs(root_dataset(samples)))


def chosen_index_key(samples, index_key: str | None) -> str:
    """``index_key``, or when None ``settings.default_index_key`` of the dataset's
    indexes; ``DEFAULT_INDEX_KEY`` when there is no index, or several while a
    build of it runs (reading it then says why it is not there: how to build
    one, or that it is being built).

    Raises:
        IndexNotFoundError: None given, several indexes and none is the default.
    """
    if index_key is not None:
        return index_key
    root = root_dataset(samples)
    keys = list(_index_configs(root))
    chosen = default_index_key(keys)
    if chosen is not None:
        return chosen
    if not keys:
        return DEFAULT_INDEX_KEY
    from fiftyone_clipbranches.sdk.claims import key_in_progress

    if key_in_progress(root, DEFAULT_INDEX_KEY) is not None:
        return DEFAULT_INDEX_KEY
    raise IndexNotFoundError(
        f"dataset {root.name!r} has {len(keys)} clipbranches indexes"
        f" ({', '.join(keys)}) and none is {DEFAULT_INDEX_KEY!r}: say which to"
        " use, one of them (e.g. index_key="
        f"{keys[0]!r}; CLI: --key {shlex.quote(keys[0])})"
    )


def database_runs(root, field: str = "runs") -> dict[str, dict]:
    """``{key: run config dict}`` of the root dataset's runs of ``field``
    (``"runs"``, ``"brain_methods"``) read from the database now. FiftyOne keeps
    the runs a process read when it loaded the dataset, so an index another
    process built, updated, renamed or deleted since would be seen as it was (its
    deleted files answering); reloading that shared object instead could drop a
    run another thread is registering. Two small queries."""
    if root.deleted:
        return {}
    db = foo_odm.get_db_conn()
    doc = db.datasets.find_one({"_id": root._doc.id}, {field: 1}) or {}
    refs = doc.get(field) or {}
    if not refs:
        return {}
    query = {"_id": {"$in": list(refs.values())}}
    configs = {
        d["_id"]: d.get("config") or {} for d in db.runs.find(query, {"config": 1})
    }
    return {key: configs[ref] for key, ref in refs.items() if ref in configs}


def _index_configs(root) -> dict[str, dict]:
    return {
        key: config
        for key, config in database_runs(root).items()
        if config.get("method") == RUN_METHOD
    }


def validate_new_key(
    samples, key, for_build: bool = True, replacing: bool = False
) -> str:
    """Check that ``key`` can name a new index; returns it. ``for_build``: the
    key is for a new build (an existing index of that key is pointed to
    ``update_index``, or to ``overwrite=True``), not a rename. ``replacing``: an
    existing index of that key may be replaced (any other run of it may not).

    Raises:
        ValueError: when ``key`` is not an identifier.
        IndexExistsError: when a run already uses ``key``.
    """
    if not isinstance(key, str) or not key.isidentifier():
        raise ValueError(
            f"index key {key!r} is not valid: use letters, digits and underscores, "
            "not starting with a digit"
        )
    root = root_dataset(samples)
    brain_method = _other_brain_method(root, key)
    if brain_method is not None:
        raise IndexExistsError(
            f"a brain run with key {key!r} ({brain_method}) already exists on dataset"
            f" {root.name!r}: choose another key (an index key is the brain key of"
            " its backend='clipbranches' similarity run, so the two share names)"
        )
    if key in database_runs(root):
        hint = ""
        is_index = key in list_index_keys(root)
        if replacing and is_index:
            return key
        if for_build and is_index:
            hint = (
                "; to add the samples new since its build, update it instead"
                f" (update_index; CLI: clipbranches update-index"
                f" {shlex.quote(root.name)} --key {key}), or build it again in its"
                " place (overwrite=True; CLI: --overwrite)"
            )
        raise IndexExistsError(
            f"a run with key {key!r} already exists on dataset {root.name!r}: choose"
            f" another key or delete it first{hint}"
        )
    return key


def key_taken(samples, key: str) -> str | None:
    """Why ``key`` cannot name a new index, in a few words (a form's field error);
    None when it can."""
    root = root_dataset(samples)
    brain_method = _other_brain_method(root, key)
    if brain_method is not None:
        return f"A brain run ({brain_method}) has key '{key}'"
    if key in database_runs(root):
        return f"A run with key '{key}' already exists"
    return None


def _other_brain_method(ds, key: str) -> str | None:
    """The method of brain run ``key``, or None when there is none or it is a
    clipbranches similarity run (whose index takes its key)."""
    config = database_runs(ds, "brain_methods").get(key)
    if config is None:
        return None
    method = config.get("method") or "unknown method"
    return None if method == SIMILARITY_BACKEND else str(method)


def get_index_config(samples, key, suggest: bool = True) -> ClipBranchesIndexConfig:
    """The config of index ``key``; a missing one's error names the dataset's only
    index as the one to pass, or a build when it has none, when ``suggest`` (not
    for work that would change it: a delete or a rename).

    Raises:
        IndexNotFoundError: when no index run has that key.
    """
    root = root_dataset(samples)
    configs = _index_configs(root)
    keys = list(configs)
    if key not in keys:
        from fiftyone_clipbranches.sdk.claims import key_in_progress

        in_progress = key_in_progress(root, key)
        if in_progress is not None:
            raise IndexBeingBuiltError(in_progress)
        brain = database_runs(root, "brain_methods").get(key) or {}
        answers_from = brain.get("index_key")
        hint = (
            f"brain run {key!r} answers from index {answers_from!r} (a brain run"
            f" renamed keeps its index's key): pass index_key={answers_from!r}"
            if brain.get("method") == SIMILARITY_BACKEND
            and answers_from not in (None, key)
            else f"pass index_key={keys[0]!r} (CLI: --key {keys[0]})"
            if suggest and len(keys) == 1
            else "check the key (index_key=, CLI: --key)"
            if keys
            else f"build one with build_index(dataset, index_key={key!r}) (CLI:"
            f" clipbranches build-index {root.name} --key {key})"
            if suggest
            else ""  # nothing to delete or rename: no way out to give
        )
        raise IndexNotFoundError(
            f"no clipbranches index {key!r} on dataset {root.name!r} (its indexes: "
            f"{', '.join(keys) or 'none'})" + (f": {hint}" if hint else "")
        )
    config = ClipBranchesIndexConfig.from_dict(deepcopy(configs[key]))
    config.index_dir = located(config.index_dir)
    return config


def register_index(samples, key, config: ClipBranchesIndexConfig) -> None:
    """Register ``config`` under ``key`` on the root dataset (never overwrites)."""
    root_dataset(samples).register_run(key, config, overwrite=False)


def update_index_config(samples, key, config: ClipBranchesIndexConfig) -> None:
    root_dataset(samples).update_run_config(key, config)


def brain_configs(samples):
    """``(key, config)`` of each brain run of ``samples``' root dataset, as the
    database holds them now; a config's fields are its attributes (read as data:
    a run of a backend that is not installed is listed too)."""
    for key, config in database_runs(root_dataset(samples), "brain_methods").items():
        yield key, SimpleNamespace(**config)


def brain_runs_using(samples, index_key: str) -> list[str]:
    """Keys of the similarity brain runs (``backend="clipbranches"``) that answer
    from index ``index_key``."""
    return [
        key
        for key, config in brain_configs(samples)
        if getattr(config, "method", None) == SIMILARITY_BACKEND
        and (getattr(config, "index_key", None) or key) == index_key
    ]
