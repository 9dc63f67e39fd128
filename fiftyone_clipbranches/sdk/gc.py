"""Leftovers under the index root: temp directories of crashed builds and index
directories no run points at (indexes of deleted datasets, say); and in the
database, claims on index keys that no work holds any more (``sdk/claims.py``).

Nothing a run of an existing dataset points at is ever reported or removed; the
references are read again just before each removal. Folders of another database
sharing the index root (``sdk/folder_owner.py``) are left alone, and so are
folders that record no database and whose dataset is not in this one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from fiftyone_clipbranches.sdk import runs
from fiftyone_clipbranches.sdk.bundle import TMP_PREFIX, WRITER_FILE
from fiftyone_clipbranches.sdk.claims import dead_claims, index_written, release_claim
from fiftyone_clipbranches.sdk.folder_owner import (
    database_id,
    mark_owner,
    owner_of,
    remove_if_empty,
)
from fiftyone_clipbranches.sdk.settings import chosen_root, index_root

#: Default age (seconds) after which an unreferenced directory may be removed.
DEFAULT_MIN_AGE_S = 3600.0


@dataclass(frozen=True)
class Leftover:
    """One removable directory.

    Attributes:
        path: the directory.
        kind: ``"temp"`` (a build that never finished), ``"unreferenced"`` (a
            complete index directory no run points at) or ``"claim"`` (a claim on
            an index key whose work ended without releasing it; ``path`` is
            ``"<dataset id>:<key>"``, ``n_bytes`` 0).
        reason: why it is removable, in words.
        n_bytes: its size on disk.
        dataset: the name of the dataset it belongs to, or None when no dataset
            of this database has its id (deleted since, or another database's).
    """

    path: str
    kind: str
    reason: str
    n_bytes: int
    dataset: str | None = None


@dataclass
class GcReport:
    """What :func:`collect_garbage` found and removed.

    Attributes:
        root: the index root scanned.
        leftovers: the removable directories and dead claims.
        n_referenced: index directories in use (kept).
        n_young: unreferenced directories younger than the age limit (kept: they
            may belong to a build in progress).
        n_being_written: unreferenced directories of datasets a live build or
            update holds a key of (kept: the build may be about to register one).
        n_other_database: index directories of datasets of another database that
            shares the root (kept).
        unowned: folders of datasets (``<root>/<dataset id>``) that record no
            database and whose dataset is not in this one (kept: they may be
            another database's, from before databases were recorded; remove them
            by hand once no database uses them).
        removed: paths removed (only with ``delete=True``).
    """

    root: str
    leftovers: list[Leftover] = field(default_factory=list)
    n_referenced: int = 0
    n_young: int = 0
    n_being_written: int = 0
    n_other_database: int = 0
    unowned: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def n_bytes(self) -> int:
        return sum(item.n_bytes for item in self.leftovers)


def collect_garbage(
    root=None, *, delete: bool = False, min_age_s: float = DEFAULT_MIN_AGE_S
) -> GcReport:
    """Find (and with ``delete``, remove) leftovers under the index root, and
    dead claims on index keys in the database (all of its claims, whatever the
    root: a claim names a dataset and a key, not a directory).

    Args:
        root: index root (default :func:`settings.index_root`).
        delete: remove what is found; otherwise only report.
        min_age_s: a directory younger than this is kept, unless it is a temp
            directory whose writing process (on this host) is gone. A temp
            directory whose writer still runs on this host is always kept, and so
            is every directory of a dataset a live build or update holds a key of
            (its new directory is in place before its run is registered).
    """
    base = chosen_root(root)
    if root is not None and not base.is_dir():
        raise ValueError(
            f"no folder at {str(base)!r}: give the folder the indexes are kept in"
            f" (default: {str(index_root())!r})"
        )
    report = GcReport(str(base))
    referenced = runs.referenced_index_dirs(base)  # a root moved there included
    this_database = database_id()
    names = _dataset_names()
    now = time.time()
    folders = base.iterdir() if base.is_dir() else ()
    for dataset_dir in sorted(p for p in folders if p.is_dir()):
        entries = sorted(p for p in dataset_dir.iterdir() if p.is_dir())
        owner = owner_of(dataset_dir)
        if owner is None and (
            dataset_dir.name in names
            # a run here points in: a clone's of a dataset deleted since
            or any(str(e.resolve()) in referenced for e in entries)
        ):
            owner = this_database  # its dataset is, or was, here
            if delete:  # recorded now (a report writes nothing)
                with contextlib.suppress(OSError):
                    mark_owner(dataset_dir)
        if owner is None:
            report.unowned.append(str(dataset_dir.resolve()))
            continue
        if owner != this_database:
            report.n_other_database += len(entries)
            continue
        # a build or update of the dataset may be about to register a directory
        writing = index_written(dataset_dir.name)
        for entry in entries:
            key = str(entry.resolve())
            if key in referenced:
                report.n_referenced += 1
                continue
            age = now - entry.stat().st_mtime
            if entry.name.startswith(TMP_PREFIX):
                writer = _writer_state(entry)
                dead = writer == "dead"
                if writer != "alive" and (dead or age >= min_age_s):
                    why = "its writer process is gone" if dead else _age(age)
                    report.leftovers.append(
                        Leftover(
                            key,
                            "temp",
                            f"unfinished build: {why}",
                            _du(entry),
                            names.get(dataset_dir.name),
                        )
                    )
                else:
                    report.n_young += 1
            elif entry.name.startswith("."):
                continue
            elif writing:
                report.n_being_written += 1
            elif age >= min_age_s:
                report.leftovers.append(
                    Leftover(
                        key,
                        "unreferenced",
                        f"no run of any dataset points at it; {_age(age)}",
                        _du(entry),
                        names.get(dataset_dir.name),
                    )
                )
            else:
                report.n_young += 1
    claims = {}
    for claim, why in dead_claims():
        name = names.get(str(claim["_id"]).partition(":")[0])
        if name is not None:  # the next build, update or save of it takes it over
            why += "; the next work that needs it takes it over itself"
        item = Leftover(str(claim["_id"]), "claim", f"no work holds it: {why}", 0, name)
        claims[item.path] = claim
        report.leftovers.append(item)
    if delete:
        for item in report.leftovers:
            if item.kind == "claim":
                # one gone meanwhile (released, or taken over) counts as removed
                release_claim(claims[item.path])
                report.removed.append(item.path)
                continue
            # a build writes its directory, then registers its run: the claim is
            # read first, then the runs (registered once the claim is let go)
            if index_written(Path(item.path).parent.name):
                continue  # a build or update of its dataset may register it
            if runs.index_dir_references(item.path, root=base):
                continue  # registered since the scan
            shutil.rmtree(item.path, ignore_errors=True)
            if not Path(item.path).exists():
                report.removed.append(item.path)
        for dataset_dir in base.iterdir() if base.is_dir() else ():
            remove_if_empty(dataset_dir, this_database)
    return report


def _dataset_names() -> dict[str, str]:
    """``{dataset id: name}`` of every dataset of this database (a dataset's folder
    under the root and its claims are named by its id)."""
    import fiftyone.core.odm as foo

    found = foo.get_db_conn().datasets.find({}, {"_id": 1, "name": 1})
    return {str(doc["_id"]): doc.get("name") for doc in found}


def _writer_state(tmp: Path) -> str:
    """``"alive"`` or ``"dead"`` when the ``.writer`` file of ``tmp`` names a
    process of this host, else ``"unknown"`` (another host, or no file: the last
    moments of a write, or a crash then)."""
    try:
        writer = json.loads((tmp / WRITER_FILE).read_text())
        pid, host = int(writer["pid"]), writer["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"
    if host != socket.gethostname():
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        return "alive"
    return "alive"


def _du(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return total


def _age(seconds: float) -> str:
    return f"untouched for {seconds / 3600:.1f} h"
