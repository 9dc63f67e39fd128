"""Health checks behind ``clipbranches doctor``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float


class CheckFailed(RuntimeError):
    """A check found what it checks wrong: its message is the whole report."""


def check_numba() -> str:
    import numba
    import numpy as np

    @numba.njit(cache=False)
    def _total(a):
        s = 0
        for v in a:
            s += v
        return s

    if _total(np.arange(10, dtype=np.int64)) != 45:
        raise CheckFailed("numba compiled a kernel that returns a wrong result")
    return f"numba {numba.__version__} compiles and runs kernels"


def check_kernels() -> str:
    from fiftyone_clipbranches import sdk

    seconds = sdk.warm_refinement()
    return (
        f"the refinement's kernels compiled (or loaded from numba's cache) in"
        f" {seconds:.1f} s; later processes load them from the cache"
    )


def check_torch() -> str:
    import open_clip
    import torch

    return f"torch {torch.__version__}, open_clip {open_clip.__version__}"


def check_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    torch.zeros(1) + 1
    return f"cpu ({torch.get_num_threads()} threads)"


def check_database() -> str:
    import fiftyone as fo

    name = f"clipbranches-doctor-{time.time_ns()}"
    try:
        dataset = fo.Dataset(name)
    except Exception as exc:  # say which database it tried
        where = (
            shown_uri(fo.config.database_uri)
            if fo.config.database_uri
            else f"a local mongod in {fo.config.database_dir}"
        )
        raise CheckFailed(f"cannot reach {where}: {type(exc).__name__}: {exc}") from exc
    try:
        dataset.add_sample(fo.Sample(filepath="/doctor/probe.jpg"))
        if len(dataset) != 1:
            raise CheckFailed("the database did not keep a sample")
    finally:
        dataset.delete()
    if fo.config.database_uri:
        return f"database works ({shown_uri(fo.config.database_uri)})"
    return f"database works ({_local_database_folder(fo.config.database_dir)})"


def shown_uri(uri: str) -> str:
    """``uri`` without its password (a doctor's report is pasted into issues)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _local_database_folder(configured: str) -> str:
    """The folder of the local mongod FiftyOne talks to, and whether it is the one
    configured: FiftyOne joins a database service already running for another
    folder (another user's, or one started before FIFTYONE_DATABASE_DIR was set)."""
    import os

    from fiftyone.core.odm.database import get_db_client

    try:
        opts = get_db_client().admin.command("getCmdLineOpts")
        folder = opts["parsed"]["storage"]["dbPath"]
    except Exception:  # an older or restricted mongod: say what is configured
        return f"local mongod, database_dir {configured}"
    if os.path.realpath(folder) == os.path.realpath(configured):
        return f"local mongod in {folder}"
    return (
        f"local mongod in {folder}, NOT the configured database_dir {configured}:"
        " FiftyOne joined a database service another process started; stop it"
        " (e.g. fiftyone app, or the Python sessions using it) to use your own"
    )


def check_plugin() -> str:
    import fiftyone.plugins as fop
    from fiftyone.operators.registry import OperatorRegistry

    from fiftyone_clipbranches import PLUGIN_NAME
    from fiftyone_clipbranches.plugin_install import (
        broken_link,
        other_copy,
        package_dir,
        plugin_link,
    )

    link = plugin_link()
    gone = broken_link(link)
    if gone is not None:
        raise CheckFailed(
            f"the plugin link {link} points to {gone}, which holds no plugin (the"
            " package was uninstalled or moved): run `clipbranches install-plugin`"
        )
    other = other_copy(link)
    if other is not None:
        raise CheckFailed(
            f"the plugin link {link} points to {other}, another copy of"
            f" clipbranches than this one ({package_dir()}): the App runs that"
            " copy's panel and operators; run `clipbranches install-plugin --force`"
            " to link this one"
        )
    plugins = {p.name: p for p in fop.list_plugins(enabled="all")}
    if PLUGIN_NAME not in plugins:
        raise CheckFailed(
            f"plugin {PLUGIN_NAME} not found in FiftyOne's plugins dir;"
            " run `clipbranches install-plugin`"
        )
    if PLUGIN_NAME not in {p.name for p in fop.list_plugins(enabled=True)}:
        raise CheckFailed(
            f"plugin {PLUGIN_NAME} is disabled: fiftyone plugins enable {PLUGIN_NAME}"
        )
    errors = [e for e in OperatorRegistry().list_errors() if "clipbranches" in str(e)]
    if errors:
        raise CheckFailed(f"plugin registration errors: {errors}")
    return f"plugin {PLUGIN_NAME} discovered, no registration errors"


def check_settings() -> str:
    """The ``CLIPBRANCHES_*`` variables set (names only: one holds a token); a
    misspelt one, which nothing reads, fails."""
    import os

    from fiftyone_clipbranches.sdk.settings import ENVIRONMENT, unknown_environment

    unknown = unknown_environment()
    if unknown:
        known = ", ".join(sorted(ENVIRONMENT))
        raise CheckFailed(
            "; ".join(unknown) + f": nothing reads it (settings: {known})"
        )
    given = sorted(name for name in ENVIRONMENT if os.environ.get(name))
    return f"set: {', '.join(given)}" if given else "no CLIPBRANCHES_* settings set"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("numba", check_numba),
    ("kernels", check_kernels),
    ("torch", check_torch),
    ("device", check_device),
    ("settings", check_settings),
    ("database", check_database),
    ("plugin", check_plugin),
]


def run_checks(checks=None) -> list[CheckResult]:
    """Every check's result (:func:`iter_checks`)."""
    return list(iter_checks(checks))


def iter_checks(checks=None) -> Iterator[CheckResult]:
    """Run ``checks`` (default :data:`CHECKS`) in order, yielding each result as
    soon as it is known (the kernels' check compiles them on first use: about a
    minute)."""
    for name, fn in checks or CHECKS:
        start = time.perf_counter()
        try:
            detail, ok = fn(), True
        except Exception as e:  # each check reports its failure as one line
            said = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
            detail, ok = said.splitlines()[0], False
        yield CheckResult(name, ok, detail, time.perf_counter() - start)
