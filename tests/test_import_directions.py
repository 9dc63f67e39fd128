"""Imports point down: engine < embed < sdk < faces (operators, panels, service).

Every module of the package is parsed (not imported) and each of its imports of the
project, at module level or inside a function, is checked against its layer's rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "fiftyone_clipbranches"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Layer -> the layers it may import (itself included).
ALLOWED = {
    "engine": {"engine"},
    "embed": {"engine", "embed"},
    "distributed": {"engine", "distributed"},
    "sdk": {"engine", "embed", "distributed", "sdk"},
    "operators": {"sdk", "operators"},
    "panels": {"sdk", "panels"},
    "service": {"sdk", "engine", "service"},
    "similarity": {"engine", "embed", "sdk", "similarity"},
    "demo": {"engine", "embed", "sdk", "demo", "plugin_install"},
}
#: Single modules a layer may import beyond its rule, with the reason.
EXCEPTIONS = {
    # the demo opens the App with the panel shown: it needs the panel's name only
    ("demo", f"{PACKAGE}.panels.constants"),
    # model="demo" names the small CLIP the package ships, in Python as in the CLI
    # and the App's forms (one resolution, sdk.clip_names)
    ("sdk", f"{PACKAGE}.demo.model"),
    # a compute worker's first module lives outside the service package, whose
    # import loads FiftyOne, so that it can ignore Ctrl-C before that
    ("service", f"{PACKAGE}.worker_process"),
    # `serve` checks its numeric options with the argparse types of every command
    ("service", f"{PACKAGE}.cli_types"),
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<package root>"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import of the project in ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module]
            if names == [PACKAGE]:
                names = [f"{PACKAGE}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [
            (node.lineno, n)
            for n in names
            if n == PACKAGE or n.startswith(PACKAGE + ".")
        ]
    return found


def _modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_the_layers_below_it(layer):
    assert _modules(layer), f"no modules under {layer}/"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in _modules(layer)
        for line, target in _project_imports(path)
        if _layer(target) not in ALLOWED[layer] and (layer, target) not in EXCEPTIONS
    ]
    assert not wrong, "\n".join(wrong)


def test_every_subpackage_has_a_rule():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(ALLOWED), "give each subpackage a rule in ALLOWED"


def test_the_checker_sees_every_kind_of_import():
    faces = ROOT / "operators" / "refine.py"
    targets = {t for _, t in _project_imports(faces)}
    assert (
        f"{PACKAGE}.sdk.remote" in targets and f"{PACKAGE}.operators.common" in targets
    )
    panel = {t for _, t in _project_imports(ROOT / "panels" / "panel.py")}
    assert f"{PACKAGE}.sdk" in panel  # `from fiftyone_clipbranches import sdk`
    assert _layer(f"{PACKAGE}.service.client") == "service"


def test_the_package_root_offers_every_public_sdk_name():
    import fiftyone_clipbranches as cb
    from fiftyone_clipbranches import sdk

    assert set(sdk.__all__) <= set(dir(cb))
    assert all(getattr(cb, name) is getattr(sdk, name) for name in sdk.__all__)
    assert cb.verify_index is sdk.verify_index


def test_subpackages_are_reachable_from_the_root_in_a_fresh_process():
    """docs/scale.md's ``cb.sdk.sharding.use_ray("auto")`` as the first line of a
    program (``cb.sdk`` was only there once another SDK name had been used)."""
    import subprocess
    import sys

    code = (
        "import fiftyone_clipbranches as cb; cb.sdk.sharding.use_ray; "
        "cb.sdk.RefineRequest; cb.engine; "
        "assert not {'sys', 'Path', 'annotations'} & set(dir(cb)), dir(cb)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
