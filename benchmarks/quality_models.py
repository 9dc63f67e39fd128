"""The models a simulated user can train, behind one call: fit on labels, predict the catalogue.

Decision branches and their ensemble come from ``fiftyone_clipbranches.engine``; they need
uint8 codes and are skipped in the ``float`` space. Any other model registered in
``sdk.models.MODELS`` runs as the SDK makes it (``make_model`` / ``fit_model`` /
``engine.search.apply_model``) with the registry's training defaults; a model that
needs the search query (``needs_query``, the query ball) takes the code of the
example image of the interactive protocol and is skipped in the other protocols.
Tree and forest use the engine's ``TreeModel``/``ForestModel`` when importable, else
scikit-learn directly. The NN and Rocchio baselines are implemented here because their protocol is specific to the
evaluation: both return exactly ``k`` = the true class size (an oracle that favours them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from quality_space import Space

ALL_MODELS = (
    "branches",
    "ensemble",
    "cascade",
    "linear",
    "tree",
    "forest",
    "nn",
    "rocchio",
)
CODE_ONLY_MODELS = ("branches", "ensemble", "cascade")
#: The alternatives a model is compared with: the best of them at each P is the
#: "best alternative" of the report (scanned random forest, oracle-k Rocchio and NN).
ALTERNATIVES = ("forest", "rocchio", "nn")
#: Baselines that train on the labelled positives alone (no neighbour positives).
BASELINES = ("tree", "forest", "nn", "rocchio")
MODEL_LABELS = {
    "branches": "decision branches",
    "ensemble": "DB ensemble",
    "cascade": "DB cascade (boxes propose, forest decides)",
    "linear": "linear classifier",
    "tree": "decision tree",
    "forest": "random forest",
    "nn": "NN (k = class size)",
    "rocchio": "Rocchio (k = class size)",
}

#: Defaults of the harness, those of ``sdk.refine``; ``--params`` overrides them per
#: model. Neighbour positives are the project's own models' (the tree, forest, NN
#: and Rocchio baselines train on the labelled positives alone).
DEFAULT_PARAMS: dict[str, dict] = {
    "training": {
        "n_random_negatives": 500,
        "negative_weight": 1.0,
        "negatives_per_positive": 25,
        "min_random_negatives": 100,
        "neighbours_per_positive": 0,
    },
    "training_by_model": {
        "branches": {"n_random_negatives": 1500, "neighbours_per_positive": "auto"},
        "ensemble": {"neighbours_per_positive": "auto"},
        "cascade": {"neighbours_per_positive": "auto"},
        "linear": {"n_random_negatives": 1500},
    },
    "subsets": {"sizes": None, "seed": 0},
    "branches": {},
    "ensemble": {},
    "cascade": {},
    "linear": {},
    "ball": {},
    "tree": {},
    "forest": {"n_estimators": 25},
}


def merge_params(overrides: dict | None) -> dict:
    """Defaults updated section by section with ``overrides`` (``{section: {k: v}}``)."""
    merged = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    for section, values in (overrides or {}).items():
        if section not in merged:
            raise ValueError(
                f"unknown params section {section!r}; use one of {sorted(merged)}"
            )
        if not isinstance(values, dict):
            raise TypeError(f"params[{section!r}] must be a dict of keyword arguments")
        merged[section].update(values)
    return merged


@dataclass(frozen=True)
class TrainingRows:
    """Labelled training rows: ids int64 ``(n,)``, labels int8 ``(n,)``, weights float64,
    and which rows are random (unlabelled) negatives and which neighbour positives,
    bool ``(n,)``, when known."""

    rows: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    unlabelled: np.ndarray | None = None
    neighbours: np.ndarray | None = None


@dataclass(frozen=True)
class Prediction:
    """A model applied to the whole catalogue.

    Attributes:
        mask: bool ``(N,)``, rows classified positive.
        order: int64 ``(N,)``, every row ranked by the model's score (best first, ties
            by id), or ``None`` when no ranking was asked for.
        fit_s: wall seconds spent training and applying the model.
        train_s: wall seconds of ``fit`` alone (0 for NN and Rocchio); the rest of
            ``fit_s`` is the application (and the ranking, when asked for).
        refused: the model refused the labels (``fit`` raised ``ValueError``, as
            the query ball does when the positives are no nearer the query than
            the negatives): the result is empty, the ranking the query's.
    """

    mask: np.ndarray
    order: np.ndarray | None
    fit_s: float
    train_s: float = 0.0
    refused: bool = False

    @property
    def apply_s(self) -> float:
        return self.fit_s - self.train_s


def _own_training_rows(n, positives, negatives, n_random, negative_weight, seed):
    labelled = np.union1d(positives, negatives)
    pool = np.setdiff1d(np.arange(n, dtype=np.int64), labelled, assume_unique=True)
    rng = np.random.default_rng(seed)
    take = min(int(n_random), pool.shape[0])
    randoms = np.sort(rng.choice(pool, size=take, replace=False)) if take else pool[:0]
    rows = np.concatenate([positives, negatives, randoms]).astype(np.int64)
    y = np.concatenate(
        [np.ones(len(positives)), np.zeros(len(negatives) + len(randoms))]
    ).astype(np.int8)
    weight = np.concatenate(
        [
            np.ones(len(positives)),
            np.full(len(negatives), float(negative_weight)),
            np.ones(len(randoms)),
        ]
    )
    unlabelled = np.arange(rows.shape[0]) >= len(positives) + len(negatives)
    return TrainingRows(rows, y, weight, unlabelled)


def random_negatives_for(cfg: dict, n_positives: int) -> int:
    """Number of random negatives: ``cfg["n_random_negatives"]`` when it is an int;
    with ``"auto"``, ``negatives_per_positive * n_positives`` clipped to
    ``[min_random_negatives, max_random_negatives]`` (max default 500)."""
    n = cfg["n_random_negatives"]
    if n != "auto":
        return int(n)
    per = cfg["negatives_per_positive"] * int(n_positives)
    return int(
        np.clip(per, cfg["min_random_negatives"], cfg.get("max_random_negatives", 500))
    )


def _registry_negatives(spec) -> dict:
    """The ``training`` entries that draw ``spec.random_negatives_for(P)``
    random negatives, as ``refine`` does."""
    if not spec.random_negatives_per_positive:
        return {"n_random_negatives": spec.random_negatives}
    return {
        "n_random_negatives": "auto",
        "negatives_per_positive": spec.random_negatives_per_positive,
        "min_random_negatives": spec.random_negatives,
        "max_random_negatives": np.iinfo(np.int64).max,
    }


@dataclass
class ModelContext:
    """Everything a worker needs to train models on one catalogue.

    Attributes:
        features: ``(N, D)`` uint8 codes or float32 embeddings.
        params: merged parameters (see :func:`merge_params`).
    """

    features: np.ndarray
    params: dict
    space: Space = field(init=False)
    _subsets: object = field(default=None, init=False)
    _index: object = field(default=None, init=False)

    def __post_init__(self):
        self.space = Space(self.features)

    @property
    def is_codes(self) -> bool:
        return self.features.dtype == np.uint8

    @property
    def subsets(self):
        if self._subsets is None:
            from fiftyone_clipbranches.engine.subsets import make_subsets

            cfg = self.params["subsets"]
            sizes = cfg["sizes"]
            if sizes is not None:
                sizes = {int(k): int(v) for k, v in sizes.items()}
            self._subsets = make_subsets(
                self.features.shape[1], sizes=sizes, seed=cfg["seed"]
            )
        return self._subsets

    @property
    def catalogue_sample(self) -> np.ndarray:
        """The codes ``refine`` sizes a model's answer by: the index's neighbour
        pool (every row of these small catalogues)."""
        return self.index.neighbour_pool().codes

    @property
    def index(self):
        if self._index is None:
            from fiftyone_clipbranches.engine.index import CodeIndex

            self._index = CodeIndex.build(self.features, subsets=self.subsets)
        return self._index

    def training_config(self, model: str | None = None, as_panel: bool = False) -> dict:
        """The ``training`` section, updated for ``model``.

        A registered model (``sdk.models.MODELS``) trains with the registry's
        ``random_negatives`` and ``neighbours_per_positive``, as ``refine`` does;
        ``--params`` values of ``training`` that differ from the harness's defaults,
        then entries of ``training_by_model[model]``, override them key by key (an
        entry equal to the harness's default one counts as not given). The
        baselines (tree, forest, NN, Rocchio) train on the labelled positives alone
        unless ``as_panel`` (the interactive protocol measures the panel's tree and
        forest as users get them).
        """
        own = self.params["training_by_model"].get(model)
        spec = registered_models().get(model) if model is not None else None
        if spec is not None and (as_panel or model not in BASELINES):
            default = DEFAULT_PARAMS["training_by_model"].get(model)
            given = {} if own is None or own == default else own
            base = DEFAULT_PARAMS["training"]
            overridden = {
                k: v for k, v in self.params["training"].items() if base.get(k) != v
            }
            own = {
                **_registry_negatives(spec),
                "neighbours_per_positive": spec.neighbours_per_positive,
                **overridden,
                **given,
            }
        return {**self.params["training"], **(own or {})}

    def training_rows(
        self,
        positives,
        negatives,
        seed: int,
        model: str | None = None,
        as_panel: bool = False,
    ) -> TrainingRows:
        """Positives + explicit negatives + random catalogue negatives (labelled rows
        excluded), with the configured number of random negatives and negative weight
        (:meth:`training_config`)."""
        cfg = self.training_config(model, as_panel)
        positives = np.asarray(positives, np.int64)
        negatives = np.asarray(negatives, np.int64)
        n_random = random_negatives_for(cfg, positives.shape[0])
        if self.is_codes:
            try:
                from fiftyone_clipbranches.engine.training_set import make_training_set
            except ImportError:
                pass
            else:
                ts = make_training_set(
                    self.features,
                    positives,
                    negatives,
                    n_random_negatives=n_random,
                    negative_weight=cfg["negative_weight"],
                    seed=seed,
                    neighbours_per_positive=cfg.get("neighbours_per_positive", 0),
                )
                return TrainingRows(
                    np.asarray(ts.rows, np.int64),
                    np.asarray(ts.y, np.int8),
                    np.asarray(ts.sample_weight, np.float64),
                    ts.unlabelled,
                    ts.neighbours,
                )
        return _own_training_rows(
            len(self.space),
            positives,
            negatives,
            n_random,
            cfg["negative_weight"],
            seed,
        )


def registered_models() -> dict:
    """``sdk.models.MODELS`` (``{name: ModelSpec}``), or ``{}`` without the SDK."""
    try:
        from fiftyone_clipbranches.sdk.models import MODELS
    except ImportError:
        return {}
    return dict(MODELS)


def known_models() -> tuple[str, ...]:
    """The harness's own models, then every other registered model."""
    return ALL_MODELS + tuple(m for m in registered_models() if m not in ALL_MODELS)


def needs_query(name: str) -> bool:
    """Whether the model needs the search query (it runs in the interactive
    protocol only, centred on the example image)."""
    spec = registered_models().get(name)
    return bool(spec is not None and spec.needs_query)


def available_models(is_codes: bool) -> dict[str, str]:
    """``{model: reason}`` for the models that cannot run in this space/checkout."""
    missing = {}
    if not is_codes:
        for name in registered_models():
            if name not in ALL_MODELS:
                missing[name] = "needs uint8 codes (skipped in the float space)"
    for name in CODE_ONLY_MODELS:
        if not is_codes:
            missing[name] = "needs uint8 codes (skipped in the float space)"
            continue
        module = {"branches": "branches", "cascade": "cascade"}.get(name, "ensemble")
        try:
            __import__(f"fiftyone_clipbranches.engine.{module}")
            __import__("fiftyone_clipbranches.engine.index")
        except ImportError as exc:
            missing[name] = f"engine not importable yet ({exc})"
    return missing


def _order(score: np.ndarray) -> np.ndarray:
    """Row ids by descending score, ties by ascending id."""
    return np.lexsort((np.arange(score.shape[0]), -score)).astype(np.int64)


def _timed_fit(model, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    model.fit(*args, **kwargs)
    return time.perf_counter() - t0


def _knn_union(ctx: ModelContext, positives: np.ndarray, k: int, rank: bool):
    n = len(ctx.space)
    best = np.full(n, np.inf)
    mask = np.zeros(n, bool)
    for p in positives:
        q = ctx.space.row(int(p))
        mask[ctx.space.nearest(q, k)] = True
        if rank:
            best = np.minimum(best, ctx.space.distances(q))
    return mask, (_order(-best) if rank else None), 0.0


def _rocchio(ctx: ModelContext, train: TrainingRows, k: int, rank: bool):
    x = ctx.space.values
    pos = train.rows[train.y == 1]
    neg = train.rows[train.y == 0]
    query = 2.0 * x[pos].mean(axis=0)
    if len(neg):
        query = query - x[neg].mean(axis=0)
    mask = np.zeros(len(ctx.space), bool)
    mask[ctx.space.nearest(query, k)] = True
    return mask, (_order(-ctx.space.distances(query)) if rank else None), 0.0


def _sklearn_like(name, ctx: ModelContext, train: TrainingRows, seed: int, rank: bool):
    """Engine ``TreeModel``/``ForestModel`` on codes; the same sklearn estimators (same
    settings) on float embeddings, which the engine wrappers refuse."""
    params = dict(ctx.params[name])
    model = None
    if ctx.is_codes:
        try:
            from fiftyone_clipbranches.engine import baselines
        except ImportError:
            pass
        else:
            cls = baselines.TreeModel if name == "tree" else baselines.ForestModel
            model = cls(random_state=seed, **params)
    if model is None:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.tree import DecisionTreeClassifier

        if name == "tree":
            model = DecisionTreeClassifier(random_state=seed, **params)
        else:
            model = RandomForestClassifier(random_state=seed, n_jobs=1, **params)
    fit_s = _timed_fit(
        model, ctx.features[train.rows], train.y, sample_weight=train.weight
    )
    mask = np.asarray(model.predict(ctx.features), bool)
    return mask, _model_order(model, ctx, rank), fit_s


def _model_order(model, ctx: ModelContext, rank: bool):
    if not rank:
        return None
    if hasattr(model, "decision_function"):
        score = model.decision_function(ctx.features)
    else:
        score = model.predict_proba(ctx.features)[:, 1]
    return _order(np.asarray(score, np.float64))


def _linear(ctx: ModelContext, train: TrainingRows, rank: bool):
    from fiftyone_clipbranches.engine.linear import LinearClassifier

    model = LinearClassifier(**ctx.params["linear"])
    fit_s = _timed_fit(
        model,
        ctx.features[train.rows],
        train.y,
        sample_weight=train.weight,
        unlabelled=train.unlabelled,
    )
    mask = np.asarray(model.predict(ctx.features), bool)
    return mask, _model_order(model, ctx, rank), fit_s


def _branches(name, ctx: ModelContext, train: TrainingRows, seed: int, rank: bool):
    if name == "branches":
        from fiftyone_clipbranches.engine.branches import DecisionBranches as cls
    elif name == "cascade":
        from fiftyone_clipbranches.engine.cascade import BranchesCascade as cls
    else:
        from fiftyone_clipbranches.engine.ensemble import (
            DecisionBranchesEnsemble as cls,
        )
    model = cls(random_state=seed, **ctx.params[name])
    extra = {}
    if name in ("ensemble", "cascade"):
        extra = {
            "unlabelled": train.unlabelled,
            "neighbours": train.neighbours,
            "catalogue_sample": ctx.catalogue_sample,
        }
    fit_s = _timed_fit(
        model,
        ctx.features[train.rows],
        train.y,
        sample_weight=train.weight,
        subsets=ctx.subsets,
        **extra,
    )
    try:
        from fiftyone_clipbranches.engine.search import apply_model
    except ImportError:
        mask = np.asarray(model.predict(ctx.features), bool)
    else:
        mask = np.zeros(len(ctx.space), bool)
        mask[np.asarray(apply_model(model, ctx.index).ids, np.int64)] = True
    return mask, _model_order(model, ctx, rank), fit_s


def _registered(name, ctx, train: TrainingRows, seed, rank, query_row):
    """A registered model as the SDK makes, fits and applies it."""
    from fiftyone_clipbranches.engine.search import apply_model
    from fiftyone_clipbranches.sdk.models import fit_model, get_model

    spec = get_model(name)
    params = dict(ctx.params.get(name, {}))
    if spec.needs_query:
        if query_row is None:
            raise ValueError(f"model {name!r} needs a query row (interactive only)")
        params["center"] = ctx.features[int(query_row)]
    model = spec.make(seed, **params)
    t0 = time.perf_counter()
    mask = np.zeros(len(ctx.space), bool)
    try:
        fit_model(
            model,
            ctx.features[train.rows],
            train.y,
            train.weight,
            ctx.subsets,
            unlabelled=train.unlabelled,
            neighbours=train.neighbours,
            catalogue_sample=ctx.catalogue_sample,
        )
    except ValueError:
        if not spec.needs_query:
            raise
        query = ctx.space.row(int(query_row))
        order = _order(-ctx.space.distances(query)) if rank else None
        return mask, order, time.perf_counter() - t0, True
    fit_s = time.perf_counter() - t0
    mask[np.asarray(apply_model(model, ctx.index).ids, np.int64)] = True
    return mask, _model_order(model, ctx, rank), fit_s


def run_model(
    name: str,
    ctx: ModelContext,
    train: TrainingRows,
    k_oracle: int,
    seed: int,
    rank: bool = False,
    query_row: int | None = None,
) -> Prediction:
    """Train ``name`` on ``train`` and apply it to the whole catalogue of ``ctx``.

    ``k_oracle`` is the true class size, used by the NN and Rocchio baselines only.
    With ``rank``, also rank every row by the model's score (for display).
    ``query_row`` is the row searched for, for the models that need a query.
    """
    t0 = time.perf_counter()
    if name == "nn":
        out = _knn_union(ctx, train.rows[train.y == 1], k_oracle, rank)
    elif name == "rocchio":
        out = _rocchio(ctx, train, k_oracle, rank)
    elif name == "linear":
        out = _linear(ctx, train, rank)
    elif name in ("tree", "forest"):
        out = _sklearn_like(name, ctx, train, seed, rank)
    elif name in CODE_ONLY_MODELS:
        out = _branches(name, ctx, train, seed, rank)
    elif name in registered_models():
        out = _registered(name, ctx, train, seed, rank, query_row)
    else:
        raise ValueError(f"unknown model {name!r}; use one of {known_models()}")
    mask, order, train_s, *refused = out
    return Prediction(mask, order, time.perf_counter() - t0, train_s, bool(refused))
