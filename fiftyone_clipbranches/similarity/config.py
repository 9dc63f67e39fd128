"""The brain run's config and factory of the ``clipbranches`` similarity backend.

FiftyOne finds a brain run's method class by the config's class name minus
``Config`` in the same module, so both live here; the index itself is in
``similarity/index.py``.
"""

from __future__ import annotations

from fiftyone.brain.similarity import Similarity, SimilarityConfig

from fiftyone_clipbranches.sdk.settings import SIMILARITY_BACKEND as BACKEND_NAME


class ClipBranchesSimilarityConfig(SimilarityConfig):
    """Config of a similarity index that is a clipbranches index.

    The brain key is the clipbranches index key (``cb.refine(dataset,
    index_key=brain_key)`` uses the same index).

    Args:
        index_key: key of the clipbranches index (default: the brain key).
        clip_model, pretrained: declare the open_clip model of the embeddings
            (text search embeds with it). Needed only when neither the field's
            info, a brain run over the field nor a zoo ``model=`` records it; with
            ``embeddings=False`` and no embeddings field holding vectors, the
            images are embedded with it into ``embeddings_field`` (default
            ``"clip_embedding"``).
        code_method: ``"head"`` (learned 512->32 head) or ``"pca"``.
        encoder_params: extra keyword arguments of ``embed.fit_code_encoder``.
        owns_index: set by the backend: whether this brain run built the index
            (then deleting the run's index through ``cleanup`` deletes it); False
            when it adopted an index the user built with ``cb.build_index``.
        **kwargs: :class:`fiftyone.brain.similarity.SimilarityConfig` arguments.
    """

    def __init__(
        self,
        index_key=None,
        clip_model=None,
        pretrained=None,
        code_method="head",
        encoder_params=None,
        owns_index=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.index_key = index_key
        self.clip_model = clip_model
        self.pretrained = pretrained
        self.code_method = code_method
        self.encoder_params = encoder_params
        self.owns_index = owns_index

    @property
    def method(self):
        return BACKEND_NAME

    @property
    def max_k(self):
        return None

    @property
    def supports_least_similarity(self):
        return True

    @property
    def supported_aggregations(self):
        return ("mean",)


class ClipBranchesSimilarity(Similarity):
    """Factory of :class:`~.index.ClipBranchesSimilarityIndex`."""

    def initialize(self, samples, brain_key):
        from fiftyone_clipbranches.similarity.index import ClipBranchesSimilarityIndex

        try:
            _refuse_what_it_does_not_do(self.config)
            return ClipBranchesSimilarityIndex.initialize(
                samples, self.config, brain_key, backend=self
            )
        except BaseException:
            self.forget_failed_run(samples, brain_key)
            raise

    @classmethod
    def forget_failed_run(cls, samples, key) -> None:
        """Delete run ``key``, whose first build failed: the brain registers a run
        before building it, and a failed build must not leave it."""
        if key is not None and samples.has_brain_run(key):
            cls.delete_run(samples, key, cleanup=False)

    @classmethod
    def save_run_results(cls, samples, key, run_results, overwrite=True, cache=True):
        """Saves the run, after embedding the images with the run's declared
        ``clip_model`` when the brain gave no vectors (an array given to
        ``compute_similarity`` is indexed instead)."""
        finish = getattr(run_results, "finish_first_build", None)
        if finish is not None:
            try:
                finish()
            except BaseException:
                cls.forget_failed_run(samples, key)
                raise
        super().save_run_results(
            samples, key, run_results, overwrite=overwrite, cache=cache
        )


def _refuse_what_it_does_not_do(config) -> None:
    """Options of other backends, refused at the build, before the brain embeds
    anything (a run that would not answer as it says); not when a run is loaded
    (older runs recorded them)."""
    from fiftyone_clipbranches.sdk.errors import ClipBranchesError

    if config.patches_field is not None:
        raise ClipBranchesError(
            f"the {BACKEND_NAME} backend indexes samples, not patches or labels:"
            " leave patches_field out"
        )
    if getattr(config, "roi_field", None) is not None:
        raise ClipBranchesError(
            f"the {BACKEND_NAME} backend indexes whole images (the samples it adds"
            " later are embedded whole, and so are text queries' matches):"
            " leave roi_field out"
        )

    metric = getattr(config, "metric", None)
    if metric not in (None, "euclidean"):
        raise ClipBranchesError(
            f"the {BACKEND_NAME} backend ranks by the euclidean distance between"
            f" its 32-byte codes: metric={metric!r} is not one it has (leave metric"
            " out)"
        )
