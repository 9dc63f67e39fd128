"""Which FiftyOne database an index folder belongs to.

Several databases may share one index root (one database per session with
``FIFTYONE_DATABASE_URI``, one ``~/.fiftyone``): a dataset's folder of indexes
records the database that built into it, so that ``gc`` never takes another
database's indexes for leftovers of deleted datasets.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from fiftyone_clipbranches.embed.atomic import write_json_atomic

#: The file in ``<index root>/<dataset id>/`` naming its database.
OWNER_FILE = "database.json"


def database_id() -> str:
    """The identity of the database FiftyOne is connected to: the id of its
    config document, made when FiftyOne first set the database up (of several,
    the newest, the one FiftyOne keeps).

    A copy of the database (a dump restored elsewhere) has the same identity:
    two such copies sharing one index root take each other's folders for theirs.
    """
    import fiftyone.core.odm as foo

    foo.get_db_config()  # made here when missing
    doc = foo.get_db_conn().config.find_one({}, {"_id": 1}, sort=[("_id", -1)])
    return str(doc["_id"])


def mark_owner(dataset_dir: Path) -> None:
    """Create ``dataset_dir`` and record this database as its owner (once)."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    marker = dataset_dir / OWNER_FILE
    if not marker.exists():
        write_json_atomic(marker, {"database": database_id()})


def owner_of(dataset_dir: Path) -> str | None:
    """The database ``dataset_dir`` records, or None (none recorded: a folder
    made before owners were recorded, or an unreadable record)."""
    try:
        return str(json.loads((dataset_dir / OWNER_FILE).read_text())["database"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_if_empty(dataset_dir: Path, this_database: str | None = None) -> None:
    """Remove ``dataset_dir`` when it holds no index any more: nothing, or only
    the record of this database (``this_database``: its :func:`database_id`,
    looked up when not given)."""
    with contextlib.suppress(OSError):  # not empty, or already gone
        names = [p.name for p in dataset_dir.iterdir()]
        if names == [OWNER_FILE]:
            if owner_of(dataset_dir) != (this_database or database_id()):
                return
            (dataset_dir / OWNER_FILE).unlink()
            names = []
        if not names:
            dataset_dir.rmdir()  # only when still empty
