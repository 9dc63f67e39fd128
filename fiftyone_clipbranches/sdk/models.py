"""The classifiers a refinement round can train, by name."""

from __future__ import annotations

import inspect

from fiftyone_clipbranches.sdk.settings import MODEL_NAMES

MODEL_LABELS = {
    "branches": "Decision branches",
    "ensemble": "Decision branches ensemble",
    "linear": "Linear classifier (scan)",
    "ball": "Query ball (the search query, learned radius)",
    "tree": "Decision tree",
    "forest": "Random forest",
}


def make_model(name: str, random_state: int = 0, **params):
    """A fresh, unfitted classifier for ``name`` (one of :data:`MODEL_NAMES`)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    if name == "branches":
        from fiftyone_clipbranches.engine.branches import DecisionBranches as cls
    elif name == "ensemble":
        from fiftyone_clipbranches.engine.ensemble import (
            DecisionBranchesEnsemble as cls,
        )
    elif name == "linear":
        from fiftyone_clipbranches.engine.linear import LinearClassifier as cls
    elif name == "ball":
        from fiftyone_clipbranches.engine.ball import QueryBall as cls
    elif name == "tree":
        from fiftyone_clipbranches.engine.baselines import TreeModel as cls
    else:
        from fiftyone_clipbranches.engine.baselines import ForestModel as cls
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", random_state)
    return cls(**params)


def fit_model(model, X, y, sample_weight, subsets, unlabelled=None, neighbours=None):
    """Fit ``model``; index-aware models get the index's feature subsets, models
    that treat random negatives or neighbour positives apart get ``unlabelled`` /
    ``neighbours`` (bool ``(n,)``, ``TrainingSet.unlabelled`` / ``.neighbours``)."""
    params = inspect.signature(model.fit).parameters
    extra = {}
    if "subsets" in params:
        extra["subsets"] = subsets
    if "unlabelled" in params and unlabelled is not None:
        extra["unlabelled"] = unlabelled
    if "neighbours" in params and neighbours is not None:
        extra["neighbours"] = neighbours
    return model.fit(X, y, sample_weight=sample_weight, **extra)
