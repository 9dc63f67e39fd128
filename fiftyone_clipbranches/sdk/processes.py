"""Which process holds a record in the database, and whether it still runs."""

from __future__ import annotations

import os
import socket


def this_process() -> dict:
    """``{"host", "pid", "pid_started"}`` of this process; the start time tells a
    reused pid apart."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_started": process_started(),
    }


def on_this_host(holder: dict) -> bool:
    """Whether ``holder`` (as :func:`this_process` recorded it) ran on this host."""
    return holder.get("host") == socket.gethostname()


def is_this_process(holder: dict) -> bool:
    """Whether ``holder`` (as :func:`this_process` recorded it) is this process."""
    return (
        on_this_host(holder)
        and holder.get("pid") == os.getpid()
        and holder.get("pid_started") == process_started()
    )


def holder_gone(holder: dict, age_s: float, foreign_timeout_s: float) -> bool:
    """Whether the process ``holder`` (as :func:`this_process` recorded it) has
    ended: on this host by its pid and start time; on another host, which cannot
    be asked, when its record is older than ``foreign_timeout_s``."""
    import psutil

    if not on_this_host(holder):
        return age_s > foreign_timeout_s
    try:
        proc = psutil.Process(int(holder["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False
    return abs(started - float(holder["pid_started"])) > 1e-3


def process_started() -> float:
    """This process's start time (seconds since the epoch)."""
    import psutil

    pid = os.getpid()
    if _STARTED.get("pid") != pid:  # first call, or a forked child
        _STARTED.update(pid=pid, at=psutil.Process().create_time())
    return _STARTED["at"]


_STARTED: dict = {}
