"""The plugin installed the FiftyOne way: ``fiftyone plugins download`` of the
repository (FiftyOne's own ``download_plugin``, offline: the repository archive is
served from localhost) into a fresh plugins dir, then loaded by FiftyOne.

With the package installed, the copied folder registers every operator and panel;
in an environment that has FiftyOne but not the package, it registers nothing and
says in one log line to ``pip install fiftyone-clipbranches``.
"""

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

import fiftyone_clipbranches
from fiftyone_clipbranches import INSTALL_HINT, PLUGIN_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "fiftyone_clipbranches"

RUNNER = textwrap.dedent(
    """
    import importlib.util, json, sys
    if sys.argv[1] != "with-package":
        # site-packages without its .pth files: FiftyOne and every dependency are
        # there, the editable install of fiftyone-clipbranches is not
        sys.path.append(sys.argv[3])
    if sys.argv[1] == "leftover":  # what pip uninstall leaves: numba's caches
        sys.path.insert(0, sys.argv[4])
    import fiftyone.plugins as fop
    from fiftyone.plugins.context import build_plugin_contexts

    downloaded = fop.download_plugin(sys.argv[2])
    requirements = "satisfied"
    try:
        fop.ensure_plugin_requirements("@clipbranches/clipbranches", error_level=0)
    except Exception as exc:
        requirements = type(exc).__name__
    ours = [
        c for c in build_plugin_contexts() if c.name == "@clipbranches/clipbranches"
    ]
    print(json.dumps({
        "package_importable": bool(
            importlib.util.find_spec("fiftyone_clipbranches")
            and importlib.util.find_spec("fiftyone_clipbranches.operators")
        ),
        "downloaded": downloaded,
        "requirements": requirements,
        "registered": [type(i).__name__ for c in ours for i in c.instances],
        "errors": [e for c in ours for e in c.errors],
    }))
    """
)


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory):
    """URL of a zip of the repository's tracked files (as GitHub serves it: one
    top folder), served over HTTP on localhost."""
    serve_dir = tmp_path_factory.mktemp("archive")
    files = (
        subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    with zipfile.ZipFile(serve_dir / "fiftyone-clipbranches-main.zip", "w") as zf:
        for rel in filter(None, files):
            if (REPO_ROOT / rel).is_file():
                zf.write(REPO_ROOT / rel, f"fiftyone-clipbranches-main/{rel}")
    handler = functools.partial(_QuietHandler, directory=str(serve_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/fiftyone-clipbranches-main.zip"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _download_and_load(tmp_path, url, mode):
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=str(plugins_dir), NO_PROXY="*")
    env.pop("PYTHONPATH", None)  # a checkout on it is an installed package
    args = [sys.executable]
    if mode != "with-package":
        args.append("-S")
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    args += [str(runner), mode, url, sysconfig.get_paths()["purelib"]]
    if mode == "leftover":
        left = tmp_path / "site" / "fiftyone_clipbranches" / "engine" / "__pycache__"
        left.mkdir(parents=True)
        (left / "kernels.scan_kernels-10.py311.nbi").write_bytes(b"\0" * 16)
        args.append(str(tmp_path / "site"))
    out = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    console = out.stdout + out.stderr  # FiftyOne logs to stdout by default
    return json.loads(out.stdout.strip().splitlines()[-1]), console, plugins_dir


def _yml():
    return yaml.safe_load((PACKAGE_DIR / "fiftyone.yml").read_text())


def test_downloaded_plugin_registers_with_the_package_installed(tmp_path, repo_url):
    result, _, plugins_dir = _download_and_load(tmp_path, repo_url, "with-package")
    copied = plugins_dir / "@clipbranches" / "clipbranches"
    assert result["downloaded"] == {PLUGIN_NAME: str(copied)}
    assert not copied.is_symlink() and (copied / "requirements.txt").is_file()
    assert result["package_importable"]
    assert result["errors"] == []
    assert result["requirements"] == "satisfied"
    yml = _yml()
    assert len(result["registered"]) == len(yml["operators"]) + len(yml["panels"])


@pytest.mark.parametrize("mode", ["without-package", "leftover"])
def test_downloaded_plugin_without_the_package_says_how_to_install(
    tmp_path, repo_url, mode
):
    """Also where pip uninstall left the package's folder with numba's caches in
    it (an empty namespace package): the plugin failed with a traceback."""
    result, console, _ = _download_and_load(tmp_path, repo_url, mode)
    # the App shows no log line: a panel of the plugin's name says it there
    assert result["errors"] == [] and result["registered"] == ["InstallHintPanel"]
    hint_lines = [line for line in console.splitlines() if INSTALL_HINT in line]
    assert len(hint_lines) == 1
    assert "pip install fiftyone-clipbranches" in hint_lines[0]
    assert "Traceback" not in console


def test_requirements_txt_sits_beside_fiftyone_yml_and_names_this_version():
    lines = (PACKAGE_DIR / "requirements.txt").read_text().split()
    assert lines == [f"fiftyone-clipbranches>={fiftyone_clipbranches.__version__}"]
    assert _yml()["version"] == fiftyone_clipbranches.__version__
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert version == fiftyone_clipbranches.__version__  # one version everywhere
    assert re.search(r'fiftyone_clipbranches = \[[^]]*"requirements.txt"', pyproject)
