"""How many of the random negatives are members of the class: an estimate from the
labels alone, for a training set whose negatives are unlabelled rows.

Random rows are drawn from the rows the user did not label, so they hold the
class's unlabelled members in the share the class has among those rows. With
labels *selected completely at random* from the members (Elkan and Noto, KDD 2008),
a probabilistic classifier ``g`` trained to tell labelled positives from random
rows gives ``g(x) = c * P(member | x)``, where ``c`` is the chance that a member is
labelled; ``c`` is ``g``'s mean over positives it was not trained on, and each
random row ``x`` is a member with probability ``(1 - c) / c * g(x) / (1 - g(x))``.
"""

from __future__ import annotations

import numpy as np

from .linear import LinearClassifier

#: Folds over the positives: each positive is valued by the classifier trained
#: without its fold.
FOLDS = 5


def member_share(
    positives: np.ndarray, random_rows: np.ndarray, seed: int = 0
) -> float:
    """The estimated share of ``random_rows`` that are members of the class the
    ``positives`` are labelled from (uint8 codes, ``(p, D)`` and ``(r, D)``); 0.0
    with fewer than ``FOLDS`` positives or no random row."""
    n_pos, n_rand = positives.shape[0], random_rows.shape[0]
    if n_pos < FOLDS or not n_rand:
        return 0.0
    X = np.concatenate([positives, random_rows])
    y = np.concatenate([np.ones(n_pos, np.int8), np.zeros(n_rand, np.int8)])
    fold = np.random.default_rng(seed).permutation(n_pos) % FOLDS
    held_out = np.empty(n_pos)
    on_random = np.zeros(n_rand)
    for k in range(FOLDS):
        train = np.concatenate([fold != k, np.ones(n_rand, bool)])
        g = _unweighted(X[train], y[train])
        held_out[fold == k] = _probability(g, positives[fold == k])
        on_random += _probability(g, random_rows) / FOLDS
    c = float(np.mean(held_out))
    if c <= 0.0:
        return 0.0
    odds = on_random / np.maximum(1.0 - on_random, 1e-12)
    members = (1.0 - c) / c * odds
    return float(np.clip(members, 0.0, 1.0).mean())


def _unweighted(X, y) -> LinearClassifier:
    return LinearClassifier(class_weight=None, relabel_margin=None).fit(X, y)


def _probability(model: LinearClassifier, X) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-model.decision_function(X)))
