"""Run the FiftyOne App in a subprocess and drive it with headless Chromium.

The App is launched with :func:`fiftyone.launch_app` in its own Python process on a
free port of 127.0.0.1 and stopped by terminating that process and every process it
started, by PID (the App's server service survives a SIGTERM of the launcher alone).
Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright; no browser is ever
downloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

_LAUNCH_SCRIPT = """
import json, sys
import fiftyone as fo
name, port, layout = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
panel = fo.Panel(type=layout["panel"])
spaces = fo.Space(
    children=[fo.Panel(type="Samples", pinned=True), panel],
    orientation="horizontal",
    sizes=layout["sizes"],
)
session = fo.launch_app(
    fo.load_dataset(name), port=port, address="127.0.0.1", remote=True, auto=False,
    spaces=spaces,
)
session.wait(-1)
"""


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} not found: install Debian's chromium "
            "(apt-get install -y chromium) to run the browser tests"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed in this environment"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate_tree(pid: int, timeout: float = 10.0) -> None:
    """Terminate process ``pid`` and all its descendants (collected first), by PID."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [*root.children(recursive=True), root]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)


@contextlib.contextmanager
def running_app(
    dataset_name: str,
    panel: str,
    log_path: Path,
    *,
    sizes: tuple[float, float] = (0.5, 0.5),
    startup_timeout: float = 150.0,
):
    """Serve ``dataset_name`` in the App with the grid and ``panel`` side by side.

    Yields the App's URL once it answers HTTP; on exit the whole process tree of the
    App is terminated. ``sizes`` are the relative widths of grid and panel.
    """
    port = free_port()
    layout = {"panel": panel, "sizes": list(sizes)}
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _LAUNCH_SCRIPT,
                dataset_name,
                str(port),
                json.dumps(layout),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        try:
            _wait_for_http(url, proc, startup_timeout, log_path)
            yield url
        finally:
            terminate_tree(proc.pid)


def _wait_for_http(url: str, proc, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the App exited with {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the App did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def compact_png(src: Path, dst: Path, width: int = 1200, colors: int = 256) -> int:
    """Write a smaller copy of screenshot ``src`` to ``dst`` (resized to ``width``
    pixels, palette of ``colors``); returns its size in bytes."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize(
                (width, round(img.height * width / img.width)), Image.LANCZOS
            )
        small = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    small.save(tmp, format="PNG", optimize=True)
    tmp.replace(dst)
    return dst.stat().st_size
