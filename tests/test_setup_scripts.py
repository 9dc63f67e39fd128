"""scripts/venv.sh, the setup step of scripts/demo.sh and scripts/test.sh: it
installs into .venv once per pyproject.toml, again when that file changes or an
install failed. Run in a copy with stand-ins for python3 and pip that log calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
# 'python3 -c' (the stamp) runs the real one; 'python3 -m venv' is logged
if [ "$1" = "-c" ]; then exec "$REAL_PYTHON" "$@"; fi
echo "python3 $*" >> "$LOG"
mkdir -p .venv/bin
cat > .venv/bin/pip <<'PIP'
#!/usr/bin/env bash
echo "pip $*" >> "$LOG"
[ -n "${PIP_FAILS:-}" ] && exit 1
printf '#!/bin/sh\\nexit 0\\n' > .venv/bin/python
chmod +x .venv/bin/python
PIP
chmod +x .venv/bin/pip
"""


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "venv.sh", root / "scripts" / "venv.sh")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    return root


def setup(root: Path, stderr: list | None = None, **env) -> tuple[int, list[str]]:
    """``(exit status, the commands it ran)``; its stderr appended to ``stderr``."""
    log = root.parent / "calls.log"
    before = log.read_text().splitlines() if log.exists() else []
    run = subprocess.run(
        ["bash", "-c", "set -euo pipefail; source scripts/venv.sh"],
        cwd=root,
        env={
            **os.environ,
            "PATH": f"{root.parent / 'bin'}:{os.environ['PATH']}",
            "LOG": str(log),
            "REAL_PYTHON": sys.executable,
            **env,
        },
        capture_output=True,
        text=True,
    )
    after = log.read_text().splitlines() if log.exists() else []
    if stderr is not None:
        stderr.append(run.stderr)
    return run.returncode, after[len(before) :]


def test_installs_once_per_pyproject(tmp_path):
    root = checkout(tmp_path)
    said = []
    assert setup(root, said) == (
        0,
        ["python3 -m venv .venv", "pip install --quiet -e .[dev]"],
    )
    assert "setting up .venv" in said[0]  # minutes of a quiet pip: said first
    said = []
    assert setup(root, said) == (0, [])  # nothing to do: no pip, no network
    assert said == [""]  # and nothing to say
    with open(root / "pyproject.toml", "a") as f:
        f.write('dependencies = ["numpy"]\n')
    assert setup(root)[1] == ["python3 -m venv .venv", "pip install --quiet -e .[dev]"]
    assert setup(root) == (0, [])


def test_a_failed_install_is_tried_again(tmp_path):
    root = checkout(tmp_path)
    rc, calls = setup(root, PIP_FAILS="1")
    assert rc != 0 and calls[-1] == "pip install --quiet -e .[dev]"
    assert not (root / ".venv" / ".installed-pyproject").exists()
    assert setup(root) == (
        0,
        ["python3 -m venv .venv", "pip install --quiet -e .[dev]"],
    )


def test_a_venv_without_the_package_is_installed_into(tmp_path):
    root = checkout(tmp_path)
    setup(root)
    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    assert setup(root)[1] == ["python3 -m venv .venv", "pip install --quiet -e .[dev]"]
    assert setup(root) == (0, [])


def test_a_moved_checkout_is_installed_again(tmp_path):
    """An editable install points at the checkout it was made in."""
    root = checkout(tmp_path)
    setup(root)
    moved = root.rename(tmp_path / "moved")
    assert setup(moved)[1] == ["python3 -m venv .venv", "pip install --quiet -e .[dev]"]
    assert setup(moved) == (0, [])


def test_the_setup_leaves_no_variables_in_the_calling_script(tmp_path):
    root = checkout(tmp_path)
    script = (
        "set -euo pipefail; source scripts/venv.sh; set | grep -c '^_venv_' || true"
    )
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=root, capture_output=True, text=True,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
             "LOG": str(tmp_path / "calls.log"), "REAL_PYTHON": sys.executable},
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "0"
