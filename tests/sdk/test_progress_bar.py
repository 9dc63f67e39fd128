"""The CLI's progress bar: each state drawn once, the last one too (a log that
is not a terminal showed the final line twice)."""

import time

from fiftyone_clipbranches.sdk.progress import ProgressBar, close_open_bars


def _states(text: str) -> list[str]:
    return [s.split("|")[0].strip() for s in text.replace("\n", "\r").split("\r") if s]


def test_the_last_state_is_drawn_once(capsys):
    bar = ProgressBar("building")
    bar(0.0, "embedding")
    time.sleep(0.2)  # past tqdm's minimum interval: any update may draw
    bar(1.0, "done")
    err = capsys.readouterr().err
    assert _states(err) == ["building:   0%", "building: 100%"]
    assert err.endswith("\n") and "done" in err


def test_an_interrupted_bar_ends_its_line(capsys):
    bar = ProgressBar("updating")
    bar(0.4, "embedding")
    close_open_bars()
    err = capsys.readouterr().err
    assert _states(err)[-1] == "updating:  40%" and err.endswith("\n")


def test_a_long_step_keeps_the_elapsed_time_moving(capsys, monkeypatch):
    import sys

    from fiftyone_clipbranches.sdk.progress import ticking

    bar = ProgressBar("logged")  # to a file or pipe: a line per redraw, so none
    bar(0.5, "compiling")
    with ticking(bar, every_s=0.1):
        time.sleep(0.5)
    assert capsys.readouterr().err.count("compiling") <= 1  # no redraw
    close_open_bars()
    capsys.readouterr()

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal
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
