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
