"""The CLI's progress bar: each state drawn once, the last one too (a log that
is not a terminal showed the final line twice)."""

import sys
import time

from fiftyone_clipbranches.sdk import progress
from fiftyone_clipbranches.sdk.progress import ProgressBar, close_open_bars


def _states(text: str) -> list[str]:
    return [s.split("|")[0].strip() for s in text.replace("\n", "\r").split("\r") if s]


def as_terminal(monkeypatch):
    """The test's stderr as a terminal: the bar is drawn in place (capsys's is a
    file)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def test_the_last_state_is_drawn_once(capsys, monkeypatch):
    as_terminal(monkeypatch)
    bar = ProgressBar("building")
    bar(0.0, "embedding")
    time.sleep(0.2)  # past tqdm's minimum interval: any update may draw
    bar(1.0, "done")
    err = capsys.readouterr().err
    assert _states(err) == ["building:   0%", "building: 100%"]
    assert err.endswith("\n") and "done" in err


def test_an_interrupted_bar_ends_its_line(capsys, monkeypatch):
    as_terminal(monkeypatch)
    bar = ProgressBar("updating")
    bar(0.4, "embedding")
    close_open_bars()
    err = capsys.readouterr().err
    assert _states(err)[-1] == "updating:  40%" and err.endswith("\n")


def test_a_long_step_keeps_the_elapsed_time_moving(capsys, monkeypatch):
    from fiftyone_clipbranches.sdk.progress import ticking

    bar = ProgressBar("logged")  # to a file or pipe: its line, not a redraw
    bar(0.5, "compiling")
    with ticking(bar, every_s=0.1):
        time.sleep(0.5)
    assert capsys.readouterr().err == "logged:  50% compiling\n"  # once
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.2)  # a long step: again, then
    with ticking(bar, every_s=0.1):
        time.sleep(0.5)
    again = capsys.readouterr().err.splitlines()
    assert again and set(again) == {"logged:  50% compiling"}
    # a step that reports within it: the tick writes the state reported last
    with ticking(bar, every_s=0.1):
        for i in range(1, 31):
            time.sleep(0.03)
            bar(0.5 + i / 1000, f"epoch {i}/30")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "logged:  50% epoch 1/30"  # a new step: at once
    assert len(lines) == len(set(lines)) >= 2  # never an old state again
    close_open_bars()
    capsys.readouterr()

    as_terminal(monkeypatch)
    bar = ProgressBar("building")
    bar(0.95, "compiling")
    with ticking(bar, every_s=0.4):
        time.sleep(1.3)
    drawn = [s for s in capsys.readouterr().err.split("\r") if "compiling" in s]
    assert len(drawn) >= 3  # the first state, then a redraw every 0.4 s
    assert "[00:01<" in drawn[-1]  # the elapsed time moved on
    with ticking(lambda f, label: None):  # another reporter: nothing to redraw
        pass
    close_open_bars()


def test_a_log_gets_a_line_per_step_or_tenth_and_no_redraws(capsys, monkeypatch):
    """Written to a file or pipe (a log), a bar redrawn in place is a line of
    ``\\r``-joined states: plain lines instead, one per step (counts in a label are
    the same step), per 10% or per ``LOG_EVERY_S``, and the last state."""
    bar = ProgressBar("updating")
    for i in range(101):
        bar(i / 100, f"embedded {i}/100 images" if i < 60 else "writing the index")
    bar(1.0, "writing the index")
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert err.splitlines() == [
        f"updating: {p:3d}% embedded {p}/100 images" for p in range(0, 60, 10)
    ] + [
        "updating:  60% writing the index",
        "updating:  70% writing the index",
        "updating:  80% writing the index",
        "updating:  90% writing the index",
        "updating: 100% writing the index",
    ]
    bar(0.0, "embedded 0/100 images")  # a second pass: logged as the first
    assert capsys.readouterr().err == "updating:   0% embedded 0/100 images\n"
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # a slow step: a line a tick
    bar = ProgressBar("slow")
    bar(0.01, "compiling")
    bar(0.02, "compiling")
    assert capsys.readouterr().err.splitlines() == [
        "slow:   1% compiling",
        "slow:   2% compiling",
    ]
