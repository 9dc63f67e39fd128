"""Progress reporting shared by the long SDK calls."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import sys
import threading
import time
from collections.abc import Callable

ProgressFn = Callable[[float, str], None]

#: The bars opened during the current :func:`closes_its_bars` call.
_opened: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "clipbranches_opened_bars", default=None
)


def as_progress(progress, desc: str = "clipbranches") -> ProgressFn:
    """Normalise a ``progress`` argument into ``fn(fraction, label)``.

    True shows a :class:`ProgressBar` on stderr, False/None nothing, and a callable
    is used as is.
    """
    if callable(progress):
        return progress
    if progress:
        return ProgressBar(desc)
    return _no_progress


class ProgressBar:
    """``progress(fraction, label)`` shown on stderr: one tqdm bar, opened at the
    first update and closed when it reaches 100%, on a terminal or in a notebook;
    written to a file or pipe (a log), a plain line per step or per 10% (or
    ``LOG_EVERY_S``), which a bar redrawn in place would fill with ``\\r``."""

    def __init__(self, desc: str):
        self.desc = desc
        self._bar = None
        self._logged = None  # (percent, step, time) of the last line in a log
        self._last = None  # (percent, label) last reported

    def __call__(self, fraction: float, label: str) -> None:
        done = min(100, max(0, round(100 * fraction)))
        if self._bar is None and self._logged is None and not _draws_in_place():
            self._logged = (-LOG_EVERY_PERCENT, None, 0.0)
        if self._logged is not None:
            self._last = (done, label)  # what a long step's tick writes again
            self._log_line(done, label)
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=100, desc=self.desc, file=sys.stderr,
                bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]",
            )  # fmt: skip
            opened = _opened.get()
            if opened is not None:
                opened.append(self)
        self._bar.set_postfix_str(label, refresh=False)
        if done >= 100:  # closing draws the last state: once, not twice in a log
            self._bar.n = 100
            self.close()
            return
        self._bar.update(done - self._bar.n)

    def _log_line(self, done: int, label: str) -> None:
        percent, last_step, at = self._logged
        if percent >= 100 > done:  # a new pass after one that ended
            percent, last_step = -LOG_EVERY_PERCENT, None
        step = re.sub(r"\d+", "#", label)  # "encoded 10/90": the step, not a new one
        now = time.monotonic()
        final = done >= 100 > percent
        moved = done - percent >= LOG_EVERY_PERCENT or now - at >= LOG_EVERY_S
        if step == last_step and not (final or moved):
            return
        print(f"{self.desc}: {done:3d}% {label}".rstrip(), file=sys.stderr, flush=True)
        self._logged = (done, step, now)

    def _log_again(self) -> None:
        """The last state reported, in a log, when no line was written for
        ``LOG_EVERY_S``."""
        if self._logged is not None and self._last is not None:
            self._log_line(*self._last)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


#: A log's progress line: at each new step, else each 10% or 30 s.
LOG_EVERY_PERCENT = 10
LOG_EVERY_S = 30.0


def _draws_in_place() -> bool:
    """Whether stderr redraws a bar in place: a terminal, or a notebook."""
    try:
        return sys.stderr.isatty() or _in_notebook()
    except (AttributeError, ValueError):  # replaced by an object without it; closed
        return False


def closes_its_bars(fn):
    """Decorate a long call so that the progress bars it opened are closed when it
    raises (an error, Ctrl-C): an open bar stays registered with tqdm, which then
    draws the next call's bar a line below it, with cursor escapes, in a notebook
    or a log."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        token = _opened.set([])
        try:
            return fn(*args, **kwargs)
        except BaseException:
            for bar in _opened.get():
                bar.close()
            raise
        finally:
            _opened.reset(token)

    return call


@contextlib.contextmanager
def ticking(report: ProgressFn, every_s: float = 1.0):
    """While the block runs (a step with no finer progress, such as compiling),
    redraw ``report``'s console bar every ``every_s`` seconds, so that its elapsed
    time moves; in a log, write its line again every ``LOG_EVERY_S``, so that the
    log shows the step still runs. Other reporters are left as they are."""
    tick = every = None
    if isinstance(report, ProgressBar):
        if report._bar is not None and _draws_in_place():
            tick, every = report._bar.refresh, every_s
        elif report._logged is not None:
            tick, every = report._log_again, LOG_EVERY_S
    if tick is None:
        yield
        return
    stop = threading.Event()

    def redraw():
        while not stop.wait(every):
            tick()

    thread = threading.Thread(target=redraw, name="clipbranches-tick", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (its stderr is no terminal, but
    the notebook redraws a bar in place)."""
    return "ipykernel" in sys.modules


def _no_progress(fraction: float, label: str) -> None:
    return None


def close_open_bars() -> None:
    """End every progress bar still open (a call that raised leaves its bar at
    its last step), so what is printed next starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is None:
        return
    for bar in list(getattr(tqdm.tqdm, "_instances", ())):
        bar.close()
