"""The models a refinement round can train: one :class:`ModelSpec` per model, by name.

Everything the faces (panel, operators, CLI, service, docs) and ``refine`` need to
know about a model lives in its entry of :data:`MODELS`: its label, what it is for,
the engine class that implements it, its measured defaults and what it needs.
Adding a model is adding one entry. This module imports no engine class until a
model is made, so that ``settings`` (imported everywhere) can derive its tables
from it.

Where the defaults come from (real CLIP embeddings, docs/quality.md):

- random negatives: the single decision-branches model needs many to keep its boxes
  tight (F1 at 16 positives .48/.59/.66 with 420/840/1500 on oxford_flowers); the
  ensemble and the sklearn models do best with 500; the linear classifier (balanced
  class weights) and the query ball (the same regression on one feature) with 1500.
- neighbours per positive: ``"auto"`` (round(32 / P) below 64 positives, 48 / P
  where their cluster has no boundary; from 32 positives only for a class
  estimated to hold 2.5 times them) for the box
  models and the sklearn baselines; none for the linear classifier, which measured
  worse with them, and none for the query ball, which learns a centre (Rocchio)
  and a radius from the user's labels.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

DEFAULT_MODEL = "cascade"


@dataclass(frozen=True)
class ModelInput:
    """An input a face must offer for this model besides the common ones.

    Attributes:
        name: the ``refine`` argument it fills (e.g. ``"query"``).
        label: UI label.
        description: UI help text.
    """

    name: str
    label: str
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one model of a refinement round.

    Attributes:
        name: the ``model=`` value of ``refine`` and every face.
        label: UI text.
        purpose: one line: what the model is for.
        factory: ``"module:Class"`` of the engine class (a
            :class:`~fiftyone_clipbranches.engine.model.RefinementModel`), imported
            when a model is made.
        random_negatives: random negatives drawn when the caller does not say, or
            the least of them with ``random_negatives_per_positive``.
        random_negatives_per_positive: when > 0, at least this many random
            negatives per labelled positive (:meth:`random_negatives_for`): with many
            positives the training set keeps the class rare, as it is in the
            catalogue (docs/quality.md, "Random negatives that grow with the
            positives").
        max_random_fraction: random negatives are at most this share of the
            samples left unlabelled: drawing nearly all of a small dataset would
            make every unmarked match a negative. The share the defaults were
            measured at (docs/quality.md, "Small datasets").
        neighbours_per_positive: neighbour positives added per positive when the caller
            does not say (an int, or ``"auto"``).
        seeded: whether the class takes ``random_state``.
        needs_query: ``refine`` needs the search query (``query=``): its code is a
            parameter of the model (``center``).
        inputs: inputs the faces must offer for this model.
        in_panel: offered by the App (the panel and the refine operator's form).
            The App is for rounds of labelling: a model whose results give too
            few new matches to label each round (docs/quality.md, interactive
            protocol) stays in the SDK, CLI and service, for comparison.
    """

    name: str
    label: str
    purpose: str
    factory: str
    random_negatives: int
    random_negatives_per_positive: int = 0
    max_random_fraction: float = 0.9
    neighbours_per_positive: int | str = "auto"
    seeded: bool = True
    needs_query: bool = False
    inputs: tuple[ModelInput, ...] = field(default_factory=tuple)
    in_panel: bool = True

    @property
    def model_class(self) -> type:
        """The engine class (imported on first use)."""
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)

    def random_negatives_for(self, n_positives: int) -> int:
        """Random negatives drawn by default for ``n_positives`` labelled positives."""
        return max(
            self.random_negatives, self.random_negatives_per_positive * n_positives
        )

    @property
    def random_negatives_rule(self) -> str:
        """:meth:`random_negatives_for` in words."""
        if not self.random_negatives_per_positive:
            return str(self.random_negatives)
        per = self.random_negatives_per_positive
        return f"max({self.random_negatives}, {per} x positives)"

    @property
    def index_aware(self) -> bool:
        """Whether the model is answered by the index (else by a scan of the codes)."""
        return self.model_class.answered_by == "index"

    @property
    def param_names(self) -> tuple[str, ...]:
        """The constructor arguments of the engine class (those its bases take
        through ``**params`` too) a caller may set, sorted: not the seed, nor the
        query's centre (set from ``seed`` and ``query``)."""
        import inspect

        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        names = set()
        for klass in self.model_class.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            names |= {p.name for p in params if p.kind not in variadic}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        names.discard("self")
        if self.seeded:
            names.discard("random_state")
        if self.needs_query:
            names.discard("center")
        return tuple(sorted(names))

    def check_params(self, params: dict) -> None:
        """Refuse ``params`` (``model_params``) the engine class does not take.

        Raises:
            ValueError: naming the parameter and what the model takes.
        """
        if self.seeded and "random_state" in params:
            raise ValueError(
                "model_params cannot set random_state: pass seed= (CLI: --seed),"
                " which seeds the model and the random negatives alike"
            )
        taken = self.param_names
        unknown = [name for name in params if name not in taken]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], taken, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"model_params: model {self.name!r} takes no parameter"
                f" {unknown[0]!r}{hint}; its"
                f" parameters: {', '.join(taken)}"
            )

    def make(self, random_state: int = 0, **params):
        """A fresh, unfitted model: ``params`` are constructor arguments of the
        engine class; ``random_state`` seeds the models that take one."""
        if self.seeded:
            params["random_state"] = random_state
        return self.model_class(**params)

    def fit_with_defaults(self, model, index, positives, negatives=(), seed: int = 0):
        """Fit ``model`` (one :meth:`make` made) on the labelled rows of ``index``
        as ``refine`` does with this model's defaults (random negatives, their cap,
        neighbour positives); returns the ``TrainingSet`` (:func:`fit_on_index`)."""
        return fit_on_index(
            model,
            index,
            positives,
            negatives,
            n_random_negatives=self.random_negatives_for(len(positives)),
            max_random_fraction=self.max_random_fraction,
            neighbours_per_positive=self.neighbours_per_positive,
            seed=seed,
        )


_ENGINE = "fiftyone_clipbranches.engine"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="cascade",
            label="Decision branches cascade (boxes propose, a forest decides)",
            purpose="Recommended, from one label to the whole class, and for broad"
            " concepts (a large share of the dataset): boxes found through the"
            " index propose candidates, a random forest on the codes decides on"
            " them alone",
            factory=f"{_ENGINE}.cascade:BranchesCascade",
            random_negatives=500,
            random_negatives_per_positive=15,
            max_random_fraction=0.3,
        ),
        ModelSpec(
            name="branches",
            label="Decision branches",
            purpose="The papers' single model: a union of boxes over a few code"
            " dimensions each, answered by the index. For comparison: the default"
            " scores a higher F1 at every number of labels",
            factory=f"{_ENGINE}.branches:DecisionBranches",
            random_negatives=1500,
            in_panel=False,  # round-2 F1 1.35x round 0 on oxford_pets (target 1.5x)
        ),
        ModelSpec(
            name="ensemble",
            label="Decision branches ensemble",
            purpose="For comparison: the papers' ensemble, boxes of many members"
            " voting (a linear model settles close votes), answered by the index."
            " The default is this plus a forest that decides on its candidates",
            factory=f"{_ENGINE}.ensemble:DecisionBranchesEnsemble",
            random_negatives=500,
        ),
        ModelSpec(
            name="linear",
            label="Linear classifier (scan)",
            purpose="A straight boundary in the code space (logistic regression),"
            " applied by one scan: classes that differ from the rest along one"
            " direction",
            factory=f"{_ENGINE}.linear:LinearClassifier",
            random_negatives=1500,
            neighbours_per_positive=0,
            seeded=False,
        ),
        ModelSpec(
            name="ball",
            label="Query ball (the search query moved by the labels, learned radius)",
            purpose="The search's own ranking, its query moved toward the positives"
            " and away from the negatives (Rocchio), cut where the labels put the"
            " class's edge: when the search already points at the class",
            factory=f"{_ENGINE}.ball:QueryBall",
            random_negatives=1500,
            neighbours_per_positive=0,
            seeded=False,
            needs_query=True,
            inputs=(
                ModelInput(
                    "query",
                    "Text query the labels refine",
                    "Needed by the query ball model: the text that was searched",
                ),
            ),
        ),
        ModelSpec(
            name="tree",
            label="Decision tree",
            purpose="A scikit-learn decision tree, applied by a scan (a baseline,"
            " for comparison)",
            factory=f"{_ENGINE}.baselines:TreeModel",
            random_negatives=500,
        ),
        ModelSpec(
            name="forest",
            label="Random forest",
            purpose="A scikit-learn random forest, applied by a scan (a baseline):"
            " many labels on compact classes, when a scan's cost is no concern",
            factory=f"{_ENGINE}.baselines:ForestModel",
            random_negatives=500,
        ),
    )
}


def model_names() -> tuple[str, ...]:
    """Names of the registered models, in display order."""
    return tuple(MODELS)


def panel_models() -> dict[str, ModelSpec]:
    """The models the App offers (``in_panel``), in display order."""
    return {name: spec for name, spec in MODELS.items() if spec.in_panel}


def get_model(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
    """
    spec = MODELS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return spec


def defaults_description(attribute: str, absent: str = "Empty") -> str:
    """``"<absent>: the model's default (branches 1500, ...)"``: each model's
    default of ``attribute`` (a field of :class:`ModelSpec`), for the help text of
    an input that may be left out."""
    if attribute == "random_negatives":
        attribute = "random_negatives_rule"
    values = ", ".join(f"{n} {getattr(s, attribute)}" for n, s in MODELS.items())
    return f"{absent}: the model's default ({values})"


def random_negatives_description() -> str:
    """The help text of a random-negatives input: what they are, the share of the
    unlabelled samples each model takes at most, and each model's default."""
    shares = {}
    for name, spec in MODELS.items():
        shares.setdefault(f"{spec.max_random_fraction:.0%}", []).append(name)
    caps = "; ".join(
        f"{share} for {', '.join(names)}" for share, names in shares.items()
    )
    return (
        f"Unlabelled samples used as negatives, at most a share of them ({caps})."
        f" {defaults_description('random_negatives')}"
    )


def markdown_table() -> str:
    """The README's table of the models: name, purpose, defaults."""
    lines = [
        "| model | in the App | what it is for | random negatives | neighbour"
        " positives |",
        "|---|---|---|---|---|",
    ]
    for spec in MODELS.values():
        neighbours = spec.neighbours_per_positive or "none"
        label = (
            spec.label
            if spec.in_panel
            else "not in the App (SDK, CLI and service only)"
        )
        lines.append(
            f"| `{spec.name}` | {label} | {spec.purpose} | "
            f"{spec.random_negatives_rule} | {neighbours} |"
        )
    return "\n".join(lines) + "\n"


def make_model(name: str, random_state: int = 0, **params):
    """A fresh, unfitted model registered as ``name`` (see :meth:`ModelSpec.make`)."""
    return get_model(name).make(random_state, **params)


def fit_model(
    model,
    X,
    y,
    sample_weight,
    subsets,
    unlabelled=None,
    neighbours=None,
    catalogue_sample=None,
):
    """Fit ``model`` (any engine model: they all take the same arguments and ignore
    those they do not use): ``subsets`` the index's feature subsets, ``unlabelled`` /
    ``neighbours`` bool ``(n,)`` (``TrainingSet.unlabelled`` / ``.neighbours``),
    ``catalogue_sample`` uint8 ``(m, D)`` the index's ``neighbour_pool().codes``."""
    return model.fit(
        X,
        y,
        sample_weight,
        subsets=subsets,
        unlabelled=unlabelled,
        neighbours=neighbours,
        catalogue_sample=catalogue_sample,
    )


def fit_on_index(
    model,
    index,
    positives,
    negatives,
    *,
    n_random_negatives: int,
    max_random_fraction: float,
    neighbours_per_positive,
    negative_weight: float = 1.0,
    seed: int = 0,
):
    """Fit ``model`` on the training set a refinement makes from the labelled rows
    ``positives`` / ``negatives`` (int ``(p,)`` / ``(q,)``) of ``index`` (a
    ``CodeIndex`` or ``ShardedIndex``): random unlabelled rows as negatives and the
    positives' nearest codes from the index's neighbour pool
    (``engine.training_set.make_training_set``). Returns the ``TrainingSet``."""
    from fiftyone_clipbranches.engine.training_set import make_training_set

    pool = index.neighbour_pool()
    train = make_training_set(
        index.codes,
        positives,
        negatives,
        n_random_negatives=n_random_negatives,
        max_random_fraction=max_random_fraction,
        negative_weight=negative_weight,
        seed=seed,
        neighbours_per_positive=neighbours_per_positive,
        neighbour_pool=pool,
    )
    fit_model(
        model,
        train.X,
        train.y,
        train.sample_weight,
        index.subsets,
        train.unlabelled,
        train.neighbours,
        catalogue_sample=pool.codes,
    )
    return train
