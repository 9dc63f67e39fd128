"""A stand-in handler for compute worker processes (``service/workers.py``), whose
tasks can be made slow, failing or fatal on demand; imported by the spawned
workers (the test session's ``sys.path`` is theirs)."""

from __future__ import annotations

import os
import time


class StandInHandler:
    """Tasks: ``("echo", x)`` -> ``(greeting, x, pid)``; ``("sleep", s)`` sleeps
    ``s`` seconds; ``("report", path)`` writes its pid to ``path``, then sleeps; ``("raise", message)`` raises ValueError; ``("exit", code)`` ends the
    process at once (a native crash as the parent sees it)."""

    def __init__(self, greeting: str = "hello"):
        self.greeting = greeting

    def __call__(self, task):
        kind, arg = task
        if kind == "echo":
            return (self.greeting, arg, os.getpid())
        if kind == "sleep":
            time.sleep(arg)
            return os.getpid()
        if kind == "report":
            with open(arg, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(60)
        if kind == "raise":
            raise ValueError(arg)
        if kind == "exit":
            os._exit(arg)
        raise KeyError(kind)


def failing_handler():
    raise RuntimeError("this handler never starts")


def slow_starting_handler(pid_file: str):
    """Writes its pid to ``pid_file``, then takes ten minutes to start."""
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
    return StandInHandler()


def gated_handler(gate: str):
    """Starts as :class:`StandInHandler`, but only once the file ``gate`` is gone."""
    while os.path.exists(gate):
        time.sleep(0.05)
    return StandInHandler()
