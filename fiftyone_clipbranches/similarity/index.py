"""The ``clipbranches`` similarity index: a brain run's face of a clipbranches index.

One index, two doors: the brain run keeps only its config (``index_key``, by
default the brain key); codes, trees and encoder are the clipbranches index that
``cb.search`` and ``cb.refine(dataset, index_key=...)`` use. Queries are exact
k-NN over the 32-byte codes; a distance is the Euclidean distance between codes.
"""

from __future__ import annotations

import logging

import fiftyone as fo
import numpy as np
from bson import ObjectId
from fiftyone.brain.similarity import SimilarityIndex

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.engine.scan import knn_scan
from fiftyone_clipbranches.sdk.clip_names import SHIPPED_MODEL, resolve_clip
from fiftyone_clipbranches.sdk.errors import (
    REBUILD,
    ClipBranchesError,
    IndexCorruptedError,
    IndexFilesMissingError,
    IndexNotFoundError,
    StaleIndexError,
    UnknownModelError,
)
from fiftyone_clipbranches.sdk.freshness import alive_rows
from fiftyone_clipbranches.sdk.identity import build_identity, zoo_identity
from fiftyone_clipbranches.sdk.index_edits import edit_index_rows
from fiftyone_clipbranches.sdk.indexes import discard_index, refuse_if_nothing_read
from fiftyone_clipbranches.sdk.messages import counted
from fiftyone_clipbranches.sdk.rowmap import as_sample_ids
from fiftyone_clipbranches.sdk.runs import brain_runs_using, root_dataset
from fiftyone_clipbranches.sdk.search import query_code, text_embeddings
from fiftyone_clipbranches.sdk.settings import DEFAULT_EMBEDDINGS_FIELD

logger = logging.getLogger(__name__)

#: Rows outside the view up to which a tree query (k + those rows) beats a scan.
_KNN_SLACK = 4096
#: Sample ids per database query when reading vectors of many samples.
_ID_BATCH = 10_000


class ClipBranchesSimilarityIndex(SimilarityIndex):
    """Similarity index over a clipbranches index (see the module docstring).

    ``add_to_index`` and ``remove_from_index`` rebuild the trees over all rows
    (O(N log N) per call, like ``cb.update_index``): batch them.
    ``remove_from_index`` leaves the embeddings field as it is.
    """

    def __init__(self, samples, config, brain_key, backend=None):
        self._dataset = root_dataset(samples)
        super().__init__(samples, config, brain_key, backend=backend)

    @classmethod
    def initialize(cls, samples, config, brain_key, backend=None):
        """The index of a new brain run: built here from the embeddings field
        (or by embedding the images with a declared ``clip_model``) when it can
        be, else empty until the brain adds embeddings."""
        if brain_key is None:
            raise ClipBranchesError(
                "the clipbranches backend needs a brain_key: it is the key of the "
                "clipbranches index that cb.search and cb.refine use"
            )
        ds = root_dataset(samples)
        if config.clip_model == SHIPPED_MODEL:  # its registered name and checkpoint
            config.clip_model, config.pretrained = resolve_clip(
                config.clip_model, config.pretrained
            )
        if config.index_key is None:
            config.index_key = brain_key
        embed_later = False
        if config.index_key in sdk.list_indexes(ds):
            _check_adoptable(ds, config, brain_key)
            config.owns_index = False
        else:
            embed_later = not _build_from_field_if_filled(ds, config)
            config.owns_index = True
        index = cls(samples, config, brain_key, backend=backend)
        # the images are embedded with the declared clip_model once the brain has
        # run, unless it hands vectors to add_to_index first (an array)
        index._embed_pending = embed_later
        index._computing = True  # until the brain saves the run
        index._save_config()
        return index

    def finish_first_build(self) -> None:
        """Embed the images with the declared ``clip_model`` and build the index,
        when the run declared one and the brain gave no vectors (it saves the run
        after; ``ClipBranchesSimilarity.save_run_results`` calls this)."""
        self._computing = False  # the run is saved next: later failures keep it
        if not getattr(self, "_embed_pending", False):
            return
        self._embed_pending = False
        config = self.config
        if config.clip_model is None or config.model is not None:
            return
        if self._load(required=False) is not None:
            return
        field = config.embeddings_field or DEFAULT_EMBEDDINGS_FIELD
        report = sdk.compute_embeddings(
            self._dataset,
            field,
            model=config.clip_model,
            pretrained=config.pretrained,
            progress=_show_progress(),
        )
        refuse_if_nothing_read(self._dataset, report)  # else the build embeds again
        config.embeddings_field = field
        _build_from_field(self._dataset, config, field, _declared_identity(config))
        self._save_config()
        self.reload()

    @property
    def index_key(self) -> str:
        return self.config.index_key or self.key

    @property
    def is_external(self):
        return self.config.embeddings_field is None

    @property
    def supports_prompts(self):
        return _embeds_prompts(self._load(required=False))

    @property
    def sample_ids(self):
        loaded = self._load(required=False)
        if loaded is None:
            return np.array([], dtype=str)
        rowmap = loaded[1].rowmap
        return np.array(rowmap.ids_of(np.arange(len(rowmap))))

    @property
    def label_ids(self):
        return None

    @property
    def total_index_size(self):
        loaded = self._load(required=False)
        return 0 if loaded is None else len(loaded[1].rowmap)

    def add_to_index(
        self,
        embeddings,
        sample_ids,
        label_ids=None,
        overwrite=True,
        allow_existing=True,
        warn_existing=False,
        reload=True,
    ):
        _refuse_labels(label_ids, self.config)
        self._embed_pending = False  # vectors given: nothing to embed
        ids = as_sample_ids(list(sample_ids), "sample_ids")
        vectors = _checked_vectors(embeddings, len(ids))
        loaded = self._load(required=False)
        if loaded is not None and not overwrite:
            indexed = loaded[1].rowmap.contains(ids)
            if indexed.any():
                message = f"{int(indexed.sum())} ids are already in the index"
                if not allow_existing:
                    raise ClipBranchesError(f"{message}; pass overwrite=True")
                if warn_existing:
                    logger.warning("%s; they are left as they are", message)
                vectors = vectors[~indexed]
                ids = [i for i, x in zip(ids, indexed) if not x]
        if not ids:
            return
        field = self.config.embeddings_field
        if loaded is None:
            try:
                self._first_build(ids, vectors)
            except BaseException:
                if getattr(self, "_computing", False):  # in compute_similarity
                    self._computing = False
                    self._backend.forget_failed_run(self._dataset, self.key)
                raise
        else:
            encoder = loaded[1].encoder
            if encoder is None:
                raise ClipBranchesError(
                    f"index {self.index_key!r} was built from codes and has no "
                    "encoder, so embeddings cannot be added to it"
                )
            codes = encoder.encode(vectors)  # refuses another width first
            edit_index_rows(self._dataset, self.index_key, add_ids=ids, add_codes=codes)
            if field is not None:  # once the index took them
                _store_embeddings(self._dataset, field, ids, vectors)
        self._save_config()
        if reload:
            self.reload()

    def remove_from_index(
        self,
        sample_ids=None,
        label_ids=None,
        allow_missing=True,
        warn_missing=False,
        reload=True,
    ):
        _refuse_labels(label_ids, self.config)
        ids = [str(i) for i in (sample_ids if sample_ids is not None else [])]
        _, bundle = self._load()
        missing = ~bundle.rowmap.contains(ids)
        if missing.any():
            message = f"{int(missing.sum())} ids are not in index {self.index_key!r}"
            if not allow_missing:
                raise ClipBranchesError(message)
            if warn_missing:
                logger.warning(message)
        found = {sid for sid, gone in zip(ids, missing) if not gone}
        if len(found) == len(bundle.rowmap) and self.config.owns_index is not False:
            # its own index emptied: as after embeddings=False (add_to_index builds)
            discard_index(self._dataset, self.index_key)
        else:
            edit_index_rows(self._dataset, self.index_key, remove_ids=ids)
        if reload:
            self.reload()

    def get_embeddings(
        self,
        sample_ids=None,
        label_ids=None,
        allow_missing=True,
        warn_missing=False,
    ):
        """The embeddings field's vectors of the indexed ``sample_ids`` (all
        indexed samples when None); the index itself keeps only codes."""
        _refuse_labels(label_ids, self.config)
        field = self.config.embeddings_field
        if field is None:
            raise ClipBranchesError(
                f"index {self.index_key!r} keeps 32-byte codes, not the embeddings: "
                "pass embeddings_field= to compute_similarity to keep them in a field"
            )
        _, bundle = self._load()
        if sample_ids is None:
            ids = list(self.sample_ids)
        else:
            ids = [sample_ids] if isinstance(sample_ids, str) else list(sample_ids)
            found = bundle.rowmap.contains(ids)
            if not found.all():
                message = (
                    f"{int((~found).sum())} ids are not in index {self.index_key!r}"
                )
                if not allow_missing:
                    raise ClipBranchesError(message)
                if warn_missing:
                    logger.warning(message)
                ids = [i for i, f in zip(ids, found) if f]
        # rows of deleted samples stay in the index until an update, and a
        # sample's vector may have been cleared since the build: neither has one
        by_id = dict(zip(*self._dataset.select(ids).values(["id", field])))
        no_vector = [i for i in dict.fromkeys(ids) if by_id.get(i) is None]
        if no_vector:
            message = (
                f"{len(no_vector)} samples of index {self.index_key!r} have no vector"
                f" in field {field!r} (deleted, or the field cleared since the"
                f" build; e.g. {no_vector[0]})"
            )
            if not allow_missing:
                raise ClipBranchesError(message)
            if warn_missing:
                logger.warning(message)
            ids = [i for i in ids if by_id.get(i) is not None]
        dims = bundle.encoder.in_dim if bundle.encoder is not None else 0
        matrix = (
            np.asarray([by_id[i] for i in ids], np.float32)
            if ids
            else np.zeros((0, dims), np.float32)
        )
        return matrix, np.array(ids), None

    def find_duplicates(self, *args, **kwargs):
        raise ClipBranchesError(
            "the clipbranches backend answers queries (sort_by_similarity), not"
            " duplicate searches: compute_similarity with backend='sklearn' offers"
            " find_duplicates and find_unique"
        )

    find_unique = find_duplicates

    def cleanup(self):
        """Deletes the clipbranches index (its run and files) when this brain run
        built it; an index the user built and the run adopted is left alone, and
        so is one another brain run answers from (runs made before adoption
        refused that)."""
        if self.config.owns_index is False:
            return
        if self.index_key not in sdk.list_indexes(self._dataset):
            return
        others = _other_runs_using(self._dataset, self.index_key, self.key)
        if others:
            logger.warning(
                "clipbranches index %r is kept: the similarity brain run(s) %s of"
                " dataset %r also answer from it",
                self.index_key,
                ", ".join(repr(k) for k in others),
                self._dataset.name,
            )
            return
        discard_index(self._dataset, self.index_key)

    def _parse_query(self, query):
        prompts = _prompts(query)
        if prompts is None:
            return super()._parse_query(query)
        loaded = self._load()
        if not _embeds_prompts(loaded):
            raise UnknownModelError(
                f"similarity index {self.key!r} does not know the open_clip model"
                " of its embeddings, so it cannot embed text prompts: query by"
                " sample ids or vectors, or run compute_similarity again (another"
                " brain_key) declaring the model of the embeddings,"
                " clip_model='ViT-B-32', pretrained='openai' for example (FiftyOne's"
                " clip-vit-base32-torch is open_clip ViT-B-32 / openai)"
            )
        return text_embeddings(*loaded, self.index_key, prompts)

    def _kneighbors(
        self,
        query=None,
        k=None,
        reverse=False,
        aggregation=None,
        return_dists=False,
    ):
        if query is None:
            raise ClipBranchesError(
                "the clipbranches backend answers queries (ids, vectors or text), "
                "not neighbours of every indexed sample"
            )
        if aggregation not in (None, "mean"):
            raise ClipBranchesError(
                f"aggregation {aggregation!r} is not supported; use 'mean'"
            )
        if k is not None and (isinstance(k, bool) or not int(k) == k or k < 0):
            raise ValueError(f"k must be a whole number >= 0 (or None: all), got {k!r}")
        config, bundle = self._load()
        try:
            codes = self._query_codes(config, bundle, query, aggregation)
        except StaleIndexError as e:
            if config.embeddings_field is not None or not e.ids:
                raise
            # an index from vectors given to the run: update_index has none to read
            raise StaleIndexError(
                f"{counted(len(e.ids), 'query sample')} not in the index of brain"
                f" run {self.key!r} (e.g. {e.ids[0]}): added since it was built, or"
                " removed from it; the run was given its vectors: add theirs with"
                f" load_brain_results({self.key!r}).add_to_index(embeddings,"
                " sample_ids)",
                ids=e.ids,
            ) from None
        mask = self._allowed_rows(bundle)
        results = [self._rank(bundle, code, k, reverse, mask) for code in codes]
        ids = [bundle.rowmap.ids_of(rows) for rows, _ in results]
        dists = [np.sqrt(sq.astype(np.float64)).tolist() for _, sq in results]
        if len(codes) == 1 and (aggregation is not None or _single(query)):
            ids, dists = ids[0], dists[0]
        if return_dists:
            return ids, None, dists
        return ids, None

    @classmethod
    def _from_dict(cls, d, samples, config, brain_key):
        return cls(samples, config, brain_key)

    def _load(self, required=True):
        try:
            return sdk.load_index(self._dataset, self.index_key)
        except (IndexFilesMissingError, IndexCorruptedError) as e:
            if self.key is None or REBUILD not in str(e) or self._computing_now():
                raise
            # built again in its place, it would be refused: the run answers from it
            key, index_key = self.key, self.index_key
            first = (
                f"dataset.load_brain_results({key!r}).cleanup(),"
                f" dataset.delete_brain_run({key!r})"
                if self.config.owns_index is not False
                else f"dataset.delete_brain_run({key!r}) (the index {index_key!r} is"
                " yours: the run only answered from it), build_index(dataset,"
                f" {index_key!r}, overwrite=True)"
            )
            raise type(e)(
                str(e).replace(
                    REBUILD,
                    f"compute the brain run again: {first}, then"
                    " fob.compute_similarity(..., backend='clipbranches',"
                    f" brain_key={key!r}); or restore its directory from a backup",
                )
            ) from None
        except IndexNotFoundError:
            if required:
                raise IndexNotFoundError(
                    f"similarity index {self.key or self.index_key!r} has no"
                    f" clipbranches index {self.index_key!r} (made with"
                    " embeddings=False, and nothing added yet?): add samples with"
                    " add_to_index(embeddings, sample_ids), at least 64 vectors"
                    " for its first build, or run compute_similarity with"
                    " embeddings"
                ) from None
            return None

    def _computing_now(self) -> bool:
        """Whether this index belongs to a ``compute_similarity`` still running
        (no run is saved yet to load or delete)."""
        return bool(getattr(self, "_computing", False))

    def _save_config(self):
        loaded = self._load(required=False)
        self.config.supports_prompts = _embeds_prompts(loaded)
        if loaded is not None and self.config.embeddings_field is None:
            self.config.embeddings_field = loaded[0].embeddings_field
        if self.key is not None:
            self._backend.update_run_config(self._dataset, self.key, self.config)

    def _first_build(self, ids, vectors):
        """Build the index over ``ids`` alone: from the embeddings field when they
        are every sample it holds a vector of (``update_index`` then works as for
        any index), else from ``vectors``. The vectors reach the field only once
        they are known to fit an index (their number, their width), and a build
        that fails puts the field back as it was."""
        identity = _declared_identity(self.config)
        field = self.config.embeddings_field
        from fiftyone_clipbranches.sdk.stream_encode import check_fit_rows

        check_fit_rows(
            len(ids), self.config.code_method, self.config.encoder_params,
            f"add_to_index was given {counted(len(ids), 'embedding')} to build"
            f" index {self.index_key!r} from",
        )  # fmt: skip
        if field is None:
            self._build_from_vectors(ids, vectors, identity)
            return
        _refuse_another_width(self._dataset, field, ids, vectors.shape[1])
        before = _stored_embeddings(self._dataset, field, ids)
        _store_embeddings(self._dataset, field, ids, vectors)
        try:
            if len(self._dataset.exists(field)) == len(set(ids)):
                _build_from_field(self._dataset, self.config, field, identity)
                return
            declared = identity or {}
            identity = build_identity(
                self._dataset, field, declared.get("name"), declared.get("pretrained")
            )
            self._build_from_vectors(ids, vectors, identity)
        except BaseException:
            _store_embeddings(self._dataset, field, ids, before)  # as it was
            raise

    def _build_from_vectors(self, ids, vectors, identity) -> None:
        from fiftyone_clipbranches.embed.encoder import fit_code_encoder

        encoder = fit_code_encoder(
            vectors,
            method=self.config.code_method,
            clip_identity=identity,
            progress=_show_progress(),
            **(self.config.encoder_params or {}),
        )
        sdk.build_index_from_codes(
            self._dataset,
            encoder.encode(vectors),
            ids,
            self.index_key,
            encoder=encoder,
            clip_model=identity,
            code_method=self.config.code_method,
            embeddings_field=self.config.embeddings_field,
        )

    def _query_codes(self, config, bundle, query, aggregation) -> list[np.ndarray]:
        key = self.index_key
        if isinstance(query, np.ndarray):
            vectors = np.atleast_2d(query)
            if aggregation == "mean" and len(vectors) > 1:
                vectors = vectors.mean(axis=0, keepdims=True)
            return [query_code(config, bundle, key, vector=v) for v in vectors]
        ids = [query] if isinstance(query, str) else list(query)
        ds = self._dataset
        if aggregation == "mean":
            return [query_code(config, bundle, key, sample_ids=ids, ds=ds)]
        return [query_code(config, bundle, key, sample_ids=[i], ds=ds) for i in ids]

    def _allowed_rows(self, bundle) -> np.ndarray | None:
        """Rows the answer may hold (alive samples of the current view); None:
        every row."""
        mask = alive_rows(self._dataset, bundle.rowmap, str(bundle.path))
        in_view = self._view_rows(bundle)
        if in_view is not None:
            mask = in_view if mask is None else mask & in_view
        return mask

    def _view_rows(self, bundle) -> np.ndarray | None:
        """bool ``(N,)``: the rows of the samples of the view :meth:`use_view`
        restricts to, or None. Found by id in the index as it is now (FiftyOne's
        row positions, computed at ``use_view``, go stale once the index's rows
        change: an edit from another handle or process, ``update_index``); read
        once per view and index directory (``reload`` reads the view again).
        Samples of the view the index lacks are simply not found."""
        if not self.has_view:
            return None
        where = str(bundle.path)
        cached = getattr(self, "_view_rows_cache", None)
        if cached is not None and cached[0] == where and cached[1] is self._curr_view:
            return cached[2]
        rows, found = bundle.rowmap.rows_of(self._curr_view.values("id"))
        in_view = np.zeros(len(bundle.rowmap), bool)
        in_view[rows[found]] = True
        self._view_rows_cache = (where, self._curr_view, in_view)
        return in_view

    def use_view(self, samples, allow_missing=True, warn_missing=False):
        self._view_rows_cache = None  # a view, or the same one again (reload)
        return super().use_view(
            samples, allow_missing=allow_missing, warn_missing=warn_missing
        )

    @staticmethod
    def _rank(bundle, code, k, reverse, mask):
        """``(rows, squared distances)`` nearest first (farthest first with
        ``reverse``), ties by row; ``k`` None: every allowed row."""
        if k is not None and int(k) == 0:  # as FiftyOne's other backends: nothing
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        n = len(bundle.index)
        n_out = 0 if mask is None else int((~mask).sum())
        if k is not None and not reverse and n_out <= max(int(k), _KNN_SLACK):
            rows, sq = bundle.index.knn(code, min(int(k) + n_out, n))
        else:
            rows, sq = knn_scan(np.asarray(bundle.index.codes), code, n)
        if mask is not None:
            keep = mask[rows]
            rows, sq = rows[keep], sq[keep]
        if reverse:
            rows, sq = rows[::-1], sq[::-1]
        if k is not None:
            rows, sq = rows[: int(k)], sq[: int(k)]
        return rows, sq


def _build_from_field_if_filled(ds, config) -> bool:
    """Build the index of a new run from the embeddings field, if it holds
    vectors; whether it did."""
    field = config.embeddings_field
    if field is not None and ds.has_sample_field(field) and ds.exists(field).count():
        _build_from_field(ds, config, field, _declared_identity(config))
        return True
    return False


def _check_adoptable(ds, config, brain_key: str) -> None:
    """An existing clipbranches index may back the brain run only if no other
    brain run answers from it (the owner's ``cleanup`` would delete it under the
    other) and it indexes the run's embeddings field (else add_to_index and
    update_index would disagree on where the vectors live). The run's config then
    records the index's code method."""
    key = config.index_key
    others = _other_runs_using(ds, key, brain_key)
    if others:
        raise ClipBranchesError(
            f"clipbranches index {key!r} already answers the similarity brain run"
            f" {others[0]!r} of dataset {ds.name!r} (a renamed run keeps its"
            " index's key): pass another brain_key, or index_key= a key no"
            " clipbranches index has (cb.list_indexes(dataset) lists them)"
        )
    info = sdk.index_info(ds, key, check=False)
    field = info.embeddings_field
    if config.embeddings_field is None:
        config.embeddings_field = field
    elif field is not None and field != config.embeddings_field:
        raise ClipBranchesError(
            f"clipbranches index {key!r} already exists over embeddings "
            f"field {field!r}, not {config.embeddings_field!r}: pass "
            f"embeddings={field!r}, or another brain_key (or index_key=)"
        )
    if info.code_method is not None:
        config.code_method = info.code_method


def _embeds_prompts(loaded) -> bool:
    """Whether a loaded ``(config, bundle)`` (or None) can embed text: it records
    its CLIP model and has an encoder."""
    return bool(loaded and loaded[0].clip_model and loaded[1].encoder is not None)


def _other_runs_using(ds, index_key: str, brain_key: str | None) -> list[str]:
    return [k for k in brain_runs_using(ds, index_key) if k != brain_key]


def _build_from_field(ds, config, field, identity) -> None:
    declared = {}
    if identity is not None:
        declared = {"model": identity["name"], "pretrained": identity["pretrained"]}
    sdk.build_index(
        ds,
        config.index_key,
        embeddings_field=field,
        code_method=config.code_method,
        encoder_params=config.encoder_params,
        skip_missing=True,
        progress=_show_progress(),
        **declared,
    )


def _declared_identity(config) -> dict | None:
    """The model the user declared (``clip_model=``) or the zoo model the brain
    embedded with (``model=``), as an open_clip identity; None when neither."""
    if config.clip_model is not None:
        return {"name": config.clip_model, "pretrained": config.pretrained}
    return zoo_identity(config.model, config.model_kwargs)


def _checked_vectors(embeddings, n_ids: int) -> np.ndarray:
    """float32 ``(n_ids, D)`` embeddings, checked before anything is written."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != n_ids:
        raise ClipBranchesError(
            f"add_to_index needs one embedding per sample id: an array of shape"
            f" ({n_ids}, D); got shape {vectors.shape}"
        )
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise ClipBranchesError(
            f"{counted(int(bad.sum()), 'embedding')} given to add_to_index hold NaN"
            f" or infinite values (rows {np.flatnonzero(bad)[:5].tolist()}); nothing"
            " was written"
        )
    return vectors


def _refuse_another_width(ds, field: str, ids, width: int) -> None:
    """Refuse vectors of another width than those ``field`` holds for other
    samples (other runs, or FiftyOne's own backends, read that field too)."""
    if not ds.has_sample_field(field):
        return
    given = set(ids)  # not a query of them: millions of ids pass no pipeline
    other = next((i for i in ds.exists(field).values("id") if i not in given), None)
    others = [] if other is None else ds.select(other).values(field)
    if others and len(others[0]) != width:
        raise ClipBranchesError(
            f"field {field!r} holds {len(others[0])}-dim vectors; add_to_index was"
            f" given {width}-dim ones: nothing was written (embed with the model"
            " that filled the field, or give the run another embeddings field)"
        )


def _stored_embeddings(ds, field, ids) -> list:
    """The vectors ``field`` holds for ``ids`` now (None where it holds none)."""
    if not ds.has_sample_field(field):
        return [None] * len(ids)
    held = {}
    for start in range(0, len(ids), _ID_BATCH):  # a bounded query each
        batch = ids[start : start + _ID_BATCH]
        held.update(zip(*ds.select(batch).values(["id", field])))
    return [held.get(i) for i in ids]


def _store_embeddings(ds, field, ids, vectors) -> None:
    if not ds.has_sample_field(field):
        ds.add_sample_field(field, fo.VectorField)
    ds.set_values(field, dict(zip(ids, vectors)), key_field="id")


def _refuse_labels(label_ids, config) -> None:
    if label_ids is not None or config.patches_field is not None:
        raise ClipBranchesError(
            "the clipbranches backend indexes samples, not patches or labels"
        )


def _prompts(query) -> list[str] | None:
    """The text prompts of ``query``, or None when it is ids or vectors."""
    if isinstance(query, np.ndarray) or query is None:
        return None
    items = [query] if isinstance(query, str) else list(query)
    if not items or not all(isinstance(i, str) for i in items):
        return None
    return None if ObjectId.is_valid(items[0]) else items


def _single(query) -> bool:
    if isinstance(query, np.ndarray):
        return query.ndim == 1
    return isinstance(query, str)


def _show_progress() -> bool:
    """FiftyOne's setting for progress bars: the brain passes ``progress=`` to the
    embedding of the images only, never to a backend."""
    import fiftyone as fo

    return bool(fo.config.show_progress_bars)
