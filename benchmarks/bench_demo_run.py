"""Time ``clipbranches demo --no-app`` as a newcomer gets it: a first and a second run.

Each repeat points the data directory, FiftyOne's database, datasets and plugins, the
index root and numba's cache at a new empty folder (as a fresh clone has them after
``pip install``), runs the demo twice and records the wall time
of each run, the report's figures and every console line that looks like a warning.
``--busy`` keeps one core busy meanwhile (a Python busy loop pinned to CPU 0 with
``taskset``), as another program on a laptop would.

    .venv/bin/python benchmarks/bench_demo_run.py [--busy] [--repeats 1]

The demo's mongod (started by FiftyOne for the new database folder) is stopped,
by PID, after each repeat. Prints a markdown table; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
# the CLI of the environment running this script (wherever it was installed)
CLI = Path(sys.executable).parent / "clipbranches"
FIGURES = {
    "precision@20": r"precision@20\s+([0-9.]+)",
    "top-k F1": r"F1 of the top \d+\s+([0-9.]+)",
    "refined F1": r"refined .*F1 ([0-9.]+) \(",
    "gain": r"F1 gain\s+([0-9.]+)x",
}
WARNING = re.compile(r"warn|error|deprecat", re.IGNORECASE)


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    env.update(
        CLIPBRANCHES_DATA_DIR=str(root / "data"),
        CLIPBRANCHES_INDEX_ROOT=str(root / "indexes"),
        FIFTYONE_DATABASE_DIR=str(root / "db"),
        FIFTYONE_DEFAULT_DATASET_DIR=str(root / "fiftyone"),
        FIFTYONE_PLUGINS_DIR=str(root / "plugins"),
        FIFTYONE_DO_NOT_TRACK="true",
        # a fresh clone has not compiled its numba kernels yet
        NUMBA_CACHE_DIR=str(root / "numba-cache"),
    )
    return env


def _stop_mongods(root: Path) -> None:
    """Stop the mongod serving the database under ``root`` (and only that one)."""
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "mongod" and str(root / "db") in cmdline:
            proc.terminate()
            try:
                proc.wait(20)
            except psutil.TimeoutExpired:
                proc.kill()


def _run(env: dict) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [str(CLI), "demo", "--no-app"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"demo failed ({done.returncode}):\n{output}")
    row = {"wall_s": round(wall, 1)}
    for name, pattern in FIGURES.items():
        match = re.search(pattern, output)
        row[name] = float(match.group(1)) if match else None
    timings = re.search(r"timings\s+(.*)", output)
    row["timings"] = timings.group(1) if timings else ""
    # progress bars redraw with carriage returns; keep their final states only
    lines = [ln.split("\r")[-1] for ln in output.splitlines()]
    row["warnings"] = [ln for ln in lines if WARNING.search(ln)]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="keep CPU 0 busy")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    busy = None
    if args.busy:
        busy = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-c", "while True: pass"]
        )
    rows = []
    try:
        for _ in range(args.repeats):
            root = Path(tempfile.mkdtemp(prefix="clipbranches-demo-bench-"))
            try:
                env = _env(root)
                load = os.getloadavg()[0]
                for run in ("first", "second"):
                    row = _run(env)
                    row.update(run=run, busy=args.busy, load_1min=round(load, 2))
                    rows.append(row)
            finally:
                _stop_mongods(root)
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait(10)

    print(
        "| run | one core busy | load (1 min) before | wall | precision@20 | F1 top-60"
        " | refined F1 | gain | warnings |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {'yes' if r['busy'] else 'no'} | {r['load_1min']}"
            f" | {r['wall_s']} s | {r['precision@20']} | {r['top-k F1']}"
            f" | {r['refined F1']} | {r['gain']}x | {len(r['warnings'])} |"
        )
    for r in rows:
        print(f"{r['run']}: {r['timings']}")
        for line in r["warnings"]:
            print(f"  warning line: {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
