"""The protocol every model of a refinement round follows.

Callers (:func:`~.search.apply_model`, the SDK's model registry) train and apply any
model through it, without knowing the concrete class: ``fit`` takes the same
arguments everywhere, every fitted model reports ``n_relabelled_``, and
``answered_by`` says how the catalogue is ranked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from .scan import SEARCH_CHUNK_ROWS, search_chunks
from .validation import EstimatorParams, check_int

#: How a model's positive rows are found in a catalogue (``answered_by``).
ANSWERED_BY = ("index", "scan", "top_k")


class RefinementModel(EstimatorParams, ABC):
    """Base of every engine model: a binary classifier of uint8 codes that can rank a
    whole catalogue.

    Subclasses implement ``fit``, ``predict`` and ``decision_function``, and
    override ``search`` when they scan faster than by predicting in chunks.

    Attributes:
        answered_by: how :func:`~.search.apply_model` finds the positive rows:
            ``"index"``: the model is a union of boxes (``boxes_``, ``subsets_``)
            answered by the index's range queries, then ``answer_hits``
            (:class:`~.branch_model.BranchModel`); ``"scan"``: ``search(codes)``,
            one pass over the codes; ``"top_k"``: ``search(codes)`` returns a
            fixed number of rows, so ``predict(X)`` treats ``X`` as the whole
            catalogue.

    Fitted attributes every model sets: ``n_features_in_`` (``D``) and
    ``n_relabelled_`` (random negatives left out of training as likely matches;
    0 for models that keep them all).
    """

    answered_by: ClassVar[str] = "scan"

    @abstractmethod
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        subsets=None,
        unlabelled=None,
        neighbours=None,
        catalogue_sample=None,
    ):
        """Fit on uint8 codes ``X (n, D)`` and labels ``y (n,)`` in {0, 1}; returns self.

        Args:
            sample_weight: float ``(n,)`` >= 0, or None for ones.
            subsets: the index's :class:`~.subsets.FeatureSubsets` (used by models
                answered by the index; the others ignore it).
            unlabelled: bool ``(n,)``, the random negatives
                (``TrainingSet.unlabelled``), or None; models that treat them apart
                use it, the others ignore it.
            neighbours: bool ``(n,)``, the neighbour positives
                (``TrainingSet.neighbours``), or None; likewise.
            catalogue_sample: uint8 ``(m, D)``, the catalogue's codes or a sample
                spread over it (``index.neighbour_pool().codes``), or None; models
                that size their answer by the catalogue use it (the cascade's class
                ball), the others ignore it.
        """

    @abstractmethod
    def predict(self, X) -> np.ndarray:
        """bool ``(n,)``: the rows of ``X`` the model accepts."""

    @abstractmethod
    def decision_function(self, X) -> np.ndarray:
        """float64 ``(n,)`` ranking score of the rows of ``X`` (higher is better)."""

    def search(self, codes, chunk_rows: int = SEARCH_CHUNK_ROWS):
        """Every row of the catalogue ``codes`` the model accepts.

        This default predicts and scores ``chunk_rows`` rows at a time; models with
        a scan of their own override it (and may ignore ``chunk_rows``).

        Returns:
            ``(ids int64, scores float64)``: the accepted rows and their
            ``decision_function``, in any order.
        """
        self._check_fitted()
        chunk_rows = check_int(chunk_rows, "chunk_rows", 1)

        def score_chunk(chunk, _buffer):
            hit = np.flatnonzero(np.asarray(self.predict(chunk), dtype=bool))
            if not hit.size:
                return hit, np.zeros(0)
            return hit, self.decision_function(chunk[hit])

        return search_chunks(codes, self.n_features_in_, score_chunk, chunk_rows)

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise RuntimeError(
                f"this {type(self).__name__} is not fitted: call fit first"
            )
