"""The model registry: one ModelSpec per model, the settings tables derived from it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from fiftyone_clipbranches.engine.model import RefinementModel
from fiftyone_clipbranches.sdk import models, settings

#: Measured defaults (docs/quality.md): random negatives and neighbour positives.
MEASURED = {
    "cascade": ("max(500, 15 x positives)", "auto"),
    "branches": (1500, "auto"),
    "ensemble": (500, "auto"),
    "linear": (1500, 0),
    "ball": (1500, 0),
    "tree": (500, "auto"),
    "forest": (500, "auto"),
}


def test_every_name_resolves_to_an_engine_model():
    assert models.model_names() == tuple(MEASURED)
    assert models.DEFAULT_MODEL == "cascade" == models.model_names()[0]
    for name in models.model_names():
        spec = models.get_model(name)
        assert spec.name == name and spec.label and spec.purpose
        assert issubclass(spec.model_class, RefinementModel)
        model = spec.make(random_state=3)
        assert isinstance(model, spec.model_class)
        if spec.seeded:
            assert model.random_state == 3
        else:
            assert "random_state" not in model.get_params()
        assert spec.index_aware == (name in ("cascade", "branches", "ensemble"))


def test_defaults_are_the_measured_ones():
    for name, (negatives, neighbours) in MEASURED.items():
        spec = models.get_model(name)
        assert spec.random_negatives_rule == str(negatives)
        assert spec.neighbours_per_positive == neighbours


def test_the_registry_is_the_one_table_of_models():
    assert models.model_names() == tuple(models.MODELS)
    assert not hasattr(settings, "MODEL_NAMES")
    query_models = [n for n, s in models.MODELS.items() if s.needs_query]
    assert query_models == ["ball"]
    no_neighbours = {
        n: s.neighbours_per_positive
        for n, s in models.MODELS.items()
        if s.neighbours_per_positive != "auto"
    }
    assert no_neighbours == {"linear": 0, "ball": 0}
    ball = models.get_model("ball")
    assert ball.needs_query and [i.name for i in ball.inputs] == ["query"]
    assert not any(models.get_model(n).needs_query for n in MEASURED if n != "ball")


def test_unknown_name_error_lists_the_valid_names():
    for bad in ("boxes", None, ""):
        with pytest.raises(ValueError) as err:
            models.get_model(bad)
        assert all(name in str(err.value) for name in MEASURED)
    with pytest.raises(ValueError, match="branches, ensemble"):
        models.make_model("svm")


def test_make_model_seeds_and_fit_model_is_uniform():
    assert models.make_model("ensemble", random_state=1).random_state == 1
    model = models.make_model("forest", 5, n_estimators=3)
    assert model.random_state == 5 and model.n_estimators == 3
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (60, 8)).astype(np.uint8)
    y = (np.arange(60) < 15).astype(np.int8)
    X[:15] //= 4
    for name in ("cascade", "branches", "ensemble", "linear", "tree", "forest"):
        clf = models.make_model(name)
        assert models.fit_model(clf, X, y, None, None, y == 0, None) is clf
        assert clf.n_relabelled_ >= 0


def test_the_registry_imports_no_project_module_at_import_time():
    # settings (imported by nearly every module) derives its tables from the
    # registry: the registry must stand on the standard library alone
    tree = ast.parse(Path(models.__file__).read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            imported.add(node.module.split(".")[0])
    assert imported <= {"importlib", "dataclasses"}


def test_defaults_description_names_every_models_default():
    text = models.defaults_description("random_negatives")
    assert text.startswith("Empty: the model's default")
    for name, (negatives, _) in MEASURED.items():
        assert f"{name} {negatives}" in text
    assert models.defaults_description("seeded", "Omitted").startswith("Omitted")


def test_readme_models_table_is_the_registrys():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = models.markdown_table()
    assert table in readme
    for name, (negatives, neighbours) in MEASURED.items():
        (row,) = [line for line in table.splitlines() if f"`{name}`" in line]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[-2:] == [str(negatives), str(neighbours or "none")]


def test_cascade_random_negatives_grow_with_the_positives():
    spec = models.get_model("cascade")
    assert [spec.random_negatives_for(p) for p in (1, 33, 34, 100)] == [
        500,
        500,
        510,
        1500,
    ]
    assert models.get_model("ensemble").random_negatives_for(100) == 500


def test_fit_with_defaults_fits_as_refine_does_with_the_models_defaults():
    from fiftyone_clipbranches.engine.index import CodeIndex
    from fiftyone_clipbranches.engine.search import apply_model
    from fiftyone_clipbranches.sdk.models import fit_on_index

    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (2000, 32), dtype=np.uint8)
    index = CodeIndex.build(codes)
    pos, neg = np.arange(12), np.arange(100, 104)
    for name in ("cascade", "linear"):
        spec = models.get_model(name)
        a, b = spec.make(7), spec.make(7)
        got = spec.fit_with_defaults(a, index, pos, neg, seed=7)
        want = fit_on_index(
            b, index, pos, neg,
            n_random_negatives=spec.random_negatives_for(len(pos)),
            max_random_fraction=spec.max_random_fraction,
            neighbours_per_positive=spec.neighbours_per_positive, seed=7,
        )  # fmt: skip
        np.testing.assert_array_equal(got.rows, want.rows)
        np.testing.assert_array_equal(got.y, want.y)
        np.testing.assert_array_equal(
            apply_model(a, index).ids, apply_model(b, index).ids
        )
