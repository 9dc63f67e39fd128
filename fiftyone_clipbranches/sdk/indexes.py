"""Index lifecycle on a FiftyOne dataset: build, list, inspect, rename, delete
(updates: ``sdk/update.py``).

An index always covers the whole root dataset of the collection it is given.
Index directories may be shared by clones (``Dataset.clone()`` copies runs): an
update writes a new directory under the updating dataset's own folder, and a
directory's files are deleted only once no run points at it (``sdk/runs.py``).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import warnings
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.sdk import runs
from fiftyone_clipbranches.sdk.bundle import (
    forget_bundle,
    let_go,
    load_bundle,
    where_indexes_cannot_go,
    write_bundle,
)
from fiftyone_clipbranches.sdk.claims import holding, holding_key
from fiftyone_clipbranches.sdk.clip_names import (
    SHIPPED_MODEL,
    UNSET,
    given_weights,
    resolve_clip,
)
from fiftyone_clipbranches.sdk.embedding_reader import (
    open_embeddings,
    refuse_non_vector_field,
)
from fiftyone_clipbranches.sdk.embeddings import (
    clip_to_compute,
    compute_embeddings,
    refuse_another_length,
)
from fiftyone_clipbranches.sdk.errors import (
    IndexExistsError,
    IndexInUseError,
    IndexNotFoundError,
    MissingEmbeddingsError,
    SampleIdsError,
)
from fiftyone_clipbranches.sdk.folder_owner import mark_owner, remove_if_empty
from fiftyone_clipbranches.sdk.freshness import (
    at_build,
    compare,
    digests_of,
)
from fiftyone_clipbranches.sdk.identity import (
    build_identity,
    field_identity,
    field_model_identity,
)
from fiftyone_clipbranches.sdk.index_info import IndexInfo, info_of, now_iso
from fiftyone_clipbranches.sdk.media import require_image_samples
from fiftyone_clipbranches.sdk.messages import counted
from fiftyone_clipbranches.sdk.progress import as_progress, closes_its_bars, ticking
from fiftyone_clipbranches.sdk.rowmap import SampleRowMap
from fiftyone_clipbranches.sdk.settings import (
    DEFAULT_EMBEDDINGS_FIELD,
    DEFAULT_INDEX_KEY,
    NO_VECTOR,
    chosen_root,
    index_root,
)
from fiftyone_clipbranches.sdk.sharding import (
    check_ray_address,
    check_shards,
    connect_cluster,
    replaced_shards,
    tree_builder,
)
from fiftyone_clipbranches.sdk.stream_encode import (
    check_fit_rows,
    fit_and_encode,
)
from fiftyone_clipbranches.sdk.warm import refinement_is_warm, warm_refinement_or_warn

logger = logging.getLogger(__name__)

CODE_METHODS = ("head", "pca")


@closes_its_bars
def build_index(
    dataset,
    index_key: str = DEFAULT_INDEX_KEY,
    *,
    embeddings_field: str | None = None,
    model: str | None = None,
    pretrained=UNSET,
    code_method: str | None = None,
    encoder_params: dict | None = None,
    skip_missing: bool | None = None,
    subsets=None,
    leaf_size: int | None = None,
    root=None,
    progress=True,
    shards: int | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
) -> IndexInfo:
    """Build a code index over every sample of ``dataset``'s root dataset.

    Args:
        dataset: a FiftyOne dataset (or view: its root dataset is indexed).
        index_key: run key of the new index; must not exist yet, unless
            ``overwrite``.
        embeddings_field: a ``VectorField`` of CLIP embeddings. When None,
            embeddings are computed with ``model``/``pretrained`` into
            ``"clip_embedding"`` (samples that already have one are kept); a
            field that does not exist yet is computed with ``model`` /
            ``pretrained`` (both required) in the same way, and so are the
            samples without a vector of a field this package embedded into with
            them (the same call resumes a build stopped while embedding).
        model, pretrained: CLIP model of the embeddings (also what text queries are
            embedded with): an open_clip architecture and its tag or checkpoint
            path (None: random weights, for tests). When embeddings are computed
            here, both default to the model recorded on the field they go into
            (an earlier ``compute_embeddings``), else to ViT-B-32 /
            laion2b_s34b_b79k;
            another ``model`` needs its ``pretrained``. With ``embeddings_field``
            they declare the field's model (give both, or neither to use what the
            field records; a declaration that contradicts the record is refused).
        code_method: ``"head"`` (learned 512->32 head, minutes on CPU) or ``"pca"``;
            None (default): ``"head"``, or the method of the index ``overwrite``
            replaces (without ``encoder_params``).
        encoder_params: extra keyword arguments of ``embed.fit_code_encoder``
            (e.g. ``{"steps": 200}`` for the head).
        skip_missing: index only the samples that have an embedding (the others
            are reported as not indexed) instead of raising (or, for a field
            this package embedded into, instead of embedding them). Default: True when
            embeddings are computed here (unreadable images are left out), False
            for an existing ``embeddings_field``.
        subsets: ``FeatureSubsets`` of the index trees (default: engine's).
        leaf_size: k-d tree leaf size (default: engine's).
        root: directory holding index files (default :func:`settings.index_root`).
        progress: True, False or ``fn(fraction, label)``.
        shards: split the index into this many shards over contiguous row ranges
            (``sdk/sharding.py``, docs/scale.md); 1 is one index. None (default):
            1, or as many as the index ``overwrite`` replaces has.
        ray_address: build the shards as Ray tasks on this cluster (``"auto"``,
            ``"HOST:PORT"``; default: ``$CLIPBRANCHES_RAY_ADDRESS``, else here).
        overwrite: an index of ``index_key`` is built again: it answers until the
            new one is built, which then takes its key, and its files are deleted
            (unless a clone's index uses them). Refused while a similarity brain
            run answers from it. Vectors already in the embeddings field are kept.
            What is not given is kept from the index it replaces (built "in its
            place", the remedy of a damaged index): its ``shards``, and its
            ``code_method`` unless ``encoder_params`` are given.

    The first build of a process also compiles (or loads from numba's disk cache)
    the kernels a refinement needs (``sdk.warm.warm_refinement``): 40 s once per
    installation, about 3 s after that.

    Returns:
        the :class:`IndexInfo` of the new index, with its ``freshness`` (the
        samples left out as unreadable or without an embedding).
    """
    ds = runs.root_dataset(dataset)
    require_image_samples(ds, ds)  # a view of it indexes the whole dataset
    pretrained = given_weights(pretrained)
    # the warm-up below runs after the key is free: the index is built by then
    with holding(ds, index_key, "build"), _folder_kept_only_if_used(ds, root):
        runs.validate_new_key(ds, index_key, replacing=overwrite)
        replaced = overwrite and index_key in runs.list_index_keys(ds)
        if replaced:
            _refuse_if_brain_runs_use(ds, index_key, "building it again")
            if code_method is None and encoder_params is None:  # those of a method
                code_method = runs.get_index_config(ds, index_key).code_method
        code_method = code_method or "head"
        if code_method not in CODE_METHODS:
            raise ValueError(
                f"code_method must be 'head' or 'pca'; got {code_method!r}"
            )
        report = as_progress(progress)
        try:  # a root that cannot take it fails now, not after embedding
            dataset_folder(ds, root)
        except OSError as e:
            raise where_indexes_cannot_go(e, root or index_root()) from e
        n = ds.count()
        if shards is None:  # a rebuild keeps its deployment: a damaged shard's remedy
            shards = min(replaced_shards(ds, index_key), max(n, 1)) if replaced else 1
        check_ray_address(check_shards(shards, n), ray_address)
        if shards > 1 and ray_address is not None:
            connect_cluster(ray_address)  # fails now, not after embedding every image

        if model == SHIPPED_MODEL:  # its name and checkpoint, computed or declared
            model, pretrained = resolve_clip(model, pretrained)
        compute_here = _embeds_here(ds, embeddings_field, model, skip_missing)
        model_given = model is not None
        if skip_missing is None:
            skip_missing = compute_here
        embed_report = {}
        if compute_here:
            embeddings_field = embeddings_field or DEFAULT_EMBEDDINGS_FIELD
            if not model_given:
                refuse_filling_unknown_vectors(ds, embeddings_field)
            model, pretrained = clip_to_compute(ds, embeddings_field, model, pretrained)
            check_fit_rows(  # a too small dataset is refused before embedding
                n,
                code_method,
                encoder_params,
                f"{ds.name!r} has {counted(n, 'sample')}",
            )
            embed_report = compute_embeddings(
                ds,
                embeddings_field,
                model=model,
                pretrained=pretrained,
                progress=lambda f, label: report(0.7 * f, label),
            )
            refuse_if_nothing_read(ds, embed_report)
            if not model_given and not embed_report["n_embedded"]:
                # nothing embedded with the default: the vectors' own record says
                # (or nothing does, and text search is refused), not the default
                model, pretrained = None, UNSET
        elif (model is None) != (pretrained is UNSET):
            raise ValueError(
                "to declare the CLIP model of an embeddings field, pass both model= and "
                "pretrained= (e.g. model='ViT-B-32', pretrained='openai'), or neither to "
                "use the model the field records"
            )
        identity = build_identity(
            ds, embeddings_field, model, None if pretrained is UNSET else pretrained
        )
        if not compute_here and model is not None:  # declared: of the field's length?
            from fiftyone_clipbranches.embed.models import declared_embedding_dim

            refuse_non_vector_field(ds, embeddings_field)
            dim = declared_embedding_dim(model, pretrained)
            refuse_another_length(ds, embeddings_field, dim, model)
        try:
            source = open_embeddings(ds, embeddings_field, skip_missing=skip_missing)
        except MissingEmbeddingsError as e:
            raise _with_recorded_model(e, ds, embeddings_field) from None
        unembeddable = unembeddable_samples(
            ds,
            embeddings_field,
            embed_report.get("failed"),
            # a field this package embedded into: its gaps are images it could not
            # read (by this build: named), or, with skip_missing, not embedded yet
            embedded=compute_here or field_identity(ds, embeddings_field) is not None,
        )

        with ticking(report):  # the clock moves between the fit's reports
            encoder, codes = fit_and_encode(
                source,
                code_method,
                identity,
                encoder_params,
                # the bar's first 70% is the embedding: none here, none to wait on
                lambda f, label: report(
                    0.7 + 0.2 * f if compute_here else 0.9 * f, label
                ),
                n_unreadable=embed_report.get("n_failed", 0),
            )
        _warn_if_one_code(codes, embeddings_field)
        report(
            0.9, "building the index" + (f" ({shards} shards)" if shards > 1 else "")
        )
        config = _write_index(
            ds,
            index_key,
            codes,
            SampleRowMap(source.ids),
            encoder,
            subsets=subsets,
            leaf_size=leaf_size,
            root=root,
            embeddings_field=embeddings_field,
            clip_model=identity,
            code_method=code_method,
            unembeddable=unembeddable,
            shards=shards,
            ray_address=ray_address,
            record_paths=True,
            replace=overwrite,
            # the build's own bar covers the shards: a second bar under it drew
            # over it (cursor escapes in the first bar's line)
            shard_progress=False,
        )
    left_out = (
        f"; {counted(len(unembeddable), 'sample')} left out (unreadable or"
        " without an embedding)"
        if unembeddable
        else ""
    )
    if not refinement_is_warm():
        report(
            0.95,
            "preparing the refinement's kernels (compiled on first use after"
            " installing, then loaded from a cache)",
        )
        try:
            with ticking(report):
                warm_refinement_or_warn()
        except KeyboardInterrupt as stop:  # stops the caller, who may say what is done
            stop.built = (
                f"index {index_key!r} was built over {counted(len(source), 'sample')};"
                " preparing the refinement's kernels was interrupted (the first"
                " refinement finishes it)"
            )
            stop.add_note(f"{stop.built}: it is ready, no need to build it again")
            raise
    report(
        1.0,
        f"index {index_key!r} built over {counted(len(source), 'sample')}{left_out}",
    )
    return info_of(ds, index_key, config, at_build(len(source), unembeddable))


@contextlib.contextmanager
def _folder_kept_only_if_used(ds, root):
    """Remove ``ds``'s folder under ``root`` when the block fails and leaves it
    holding no index (a failed first build left an empty folder behind)."""
    try:
        yield
    except BaseException:
        # never in the way of the error (the database down, say: it names the owner)
        with contextlib.suppress(Exception):
            remove_if_empty(_folder_of(ds, root))
        raise


def _warn_if_one_code(codes, field: str) -> None:
    """Warn when every sample got the same code (vectors that all point one way):
    the index is built, but nothing it answers can tell the samples apart."""
    if len(codes) > 1 and not np.ptp(codes, axis=0).any():
        warnings.warn(
            f"every one of the {len(codes)} samples got the same code: searches"
            " and refinements cannot tell them apart (do the vectors in"
            f" {field!r} all point the same way?)",
            UserWarning,
            stacklevel=4,  # the caller of build_index (through its decorator)
        )


def _embeds_here(ds, field, model, skip_missing) -> bool:
    """Whether ``build_index`` embeds images: into the default field; into a new
    ``field`` with ``model`` given; or, with ``model`` given, into the samples
    without a vector of a field this package embedded into (it records its model:
    a build stopped while embedding resumes), unless ``skip_missing`` is True
    (only the samples that have one are indexed)."""
    if field is None:
        return True
    if model is None:
        return False
    if ds.get_field(field) is None:
        return True
    return skip_missing is not True and field_identity(ds, field) is not None


def _with_recorded_model(error, ds, field: str):
    """``error`` (samples without a vector in ``field``), saying how to have the
    build embed them with the model the field records, when it records one."""
    recorded = field_identity(ds, field) if error.n_missing else None
    if recorded is None:
        return error
    name, weights = recorded["name"], recorded["pretrained"]
    shown = "none" if weights is None else shlex.quote(str(weights))
    return MissingEmbeddingsError(
        f"{error}; or have build_index embed them with the model the field records"
        f" (model={name!r}, pretrained={weights!r}; CLI: --model"
        f" {shlex.quote(name)} --pretrained {shown})",
        n_missing=error.n_missing,
    )


def refuse_filling_unknown_vectors(ds, field: str) -> None:
    """Refuse to embed the samples missing from ``field`` with the default model
    when the vectors already there come from a model nothing records: the two
    would be mixed in one field."""
    if ds.get_field(field) is None or field_model_identity(ds, field).identity:
        return
    missing = len(ds.exists(field, False))
    if not missing or not len(ds.exists(field).limit(1)):
        return
    raise MissingEmbeddingsError(
        f"field {field!r} of dataset {ds.name!r} holds vectors of a model nothing"
        f" records, and {missing} of its samples are without one: pass the"
        " model that computed them (model=..., pretrained=...; CLI: --model,"
        " --pretrained) to embed the rest with it, or index only the samples with a"
        f" vector (embeddings_field={field!r}, skip_missing=True; CLI:"
        f" --embeddings-field {field} --skip-missing)"
    )


def refuse_if_nothing_read(ds, embed_report: dict) -> None:
    """No image of a dataset with none embedded before could be read: say so, with
    one of them (a wrong folder, a disk not mounted), before anything is built."""
    failed = embed_report["failed"]
    field = embed_report["field"]
    if embed_report["n_embedded"] or not failed:
        return
    if ds.get_field(field) is not None and len(ds.exists(field).limit(1)):
        return
    sample_id, error = next(iter(failed.items()))
    path = ds[sample_id].filepath
    raise MissingEmbeddingsError(
        f"none of the {embed_report['n_failed']} images of dataset {ds.name!r} could"
        f" be read (e.g. {path}: {error}): check that their files are there and"
        " readable"
    )


@holding_key("build")
def build_index_from_codes(
    dataset,
    codes: np.ndarray,
    sample_ids,
    index_key: str = DEFAULT_INDEX_KEY,
    *,
    encoder=None,
    subsets=None,
    leaf_size: int | None = None,
    root=None,
    embeddings_field: str | None = None,
    clip_model: dict | None = None,
    code_method: str | None = None,
    unembeddable: dict | None = None,
    shards: int = 1,
    ray_address: str | None = None,
) -> IndexInfo:
    """Register an index over precomputed codes.

    Args:
        codes: uint8 ``(N, D)``, row ``i`` the code of sample ``sample_ids[i]``.
        sample_ids: ``N`` sample ids of the root dataset.
        encoder: the ``CodeEncoder`` that produced ``codes`` (None: the index then
            answers sample-id and code queries, not text or vector ones).
        unembeddable: ``{sample id: {"filepath", "error"}}`` of samples left out
            because their image could not be embedded.
        shards, ray_address: as :func:`build_index`.

    Raises:
        SampleIdsError: some ids are not samples of the dataset.
    """
    ds = runs.root_dataset(dataset)
    runs.validate_new_key(ds, index_key)
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise TypeError(
            f"codes must be a uint8 (N, D) array; got {codes.dtype} {codes.shape}"
        )
    rowmap = SampleRowMap(sample_ids)
    if len(rowmap) != codes.shape[0]:
        raise ValueError(f"{codes.shape[0]} codes but {len(rowmap)} sample ids")
    check_ids_in_dataset(ds, rowmap)
    config = _write_index(
        ds,
        index_key,
        codes,
        rowmap,
        encoder,
        subsets=subsets,
        leaf_size=leaf_size,
        root=root,
        embeddings_field=embeddings_field,
        clip_model=clip_model,
        code_method=code_method,
        unembeddable=unembeddable,
        shards=shards,
        ray_address=ray_address,
    )
    return info_of(ds, index_key, config)


def _write_index(
    ds,
    index_key,
    codes,
    rowmap,
    encoder,
    *,
    subsets,
    leaf_size,
    root,
    embeddings_field,
    clip_model,
    code_method,
    unembeddable,
    shards=1,
    ray_address=None,
    shard_progress=False,
    record_paths=False,
    replace=False,
):
    """Build the trees into a new index directory and register it as a run
    (``record_paths``: with the digests of the rows' filepaths, for an index whose
    rows were embedded from the samples' images; ``replace``: in place of the
    index of ``index_key``, whose directory is then released)."""
    check_ray_address(check_shards(shards, len(codes)), ray_address)
    built_at = now_iso()
    meta = {
        "dataset_id": str(ds._doc.id),
        "code_method": code_method,
        "clip_model": clip_model,
        "leaf_size": leaf_size,
        "built_at": built_at,
    }
    digests = None
    if record_paths:
        digests = digests_of(ds, rowmap.ids_of(np.arange(len(rowmap))))
    path = write_bundle(
        dataset_folder(ds, root),
        tree_builder(codes, subsets, leaf_size, shards, ray_address, shard_progress),
        rowmap,
        encoder,
        meta,
        unembeddable,
        digests,
    )
    config = runs.ClipBranchesIndexConfig(
        index_dir=str(path),
        n_samples=len(rowmap),
        code_dims=int(codes.shape[1]),
        code_method=code_method,
        embeddings_field=embeddings_field,
        clip_model=clip_model,
        built_at=built_at,
    )
    replaced = None
    try:
        if replace and index_key in runs.list_index_keys(ds):
            replaced = runs.get_index_config(ds, index_key).index_dir
            runs.update_index_config(ds, index_key, config)
        else:
            runs.register_index(ds, index_key, config)
    except BaseException:
        runs.remove_index_dir(path)
        raise
    if replaced is not None:
        release_replaced(ds, index_key, replaced)
    return config


def release_replaced(ds, index_key: str, old_dir) -> None:
    """Release ``old_dir``, the directory index ``index_key`` answered from before
    its run was pointed at new files (deleted once no run of any dataset points at
    it; one that cannot be removed now is left to gc, with a warning)."""
    try:
        if runs.release_index_dir(old_dir):
            forget_bundle(old_dir)
    except OSError as e:  # a read-only root, say: the new files answer already
        logger.warning(
            "index %r of dataset %r answers from its new files; its old files at %s"
            " could not be removed (%s): clipbranches gc removes them once it can",
            index_key, ds.name, old_dir, e,
        )  # fmt: skip


def list_indexes(dataset) -> list[str]:
    """Keys of the clipbranches indexes of ``dataset``'s root dataset."""
    return runs.list_index_keys(dataset)


def index_info(
    dataset, index_key: str | None = None, *, check: bool = True
) -> IndexInfo:
    """Config of index ``index_key``; with ``check``, also compares it with the
    dataset (added / deleted samples)."""
    ds = runs.root_dataset(dataset)
    index_key = runs.chosen_index_key(ds, index_key)
    config = runs.get_index_config(ds, index_key)
    fresh = None
    if check:
        bundle = load_bundle(config.index_dir)
        fresh = compare(
            ds, bundle.rowmap, bundle.unembeddable, bundle.path_digests,
            config.embeddings_field,
        )  # fmt: skip
    return info_of(ds, index_key, config, fresh)


@holding_key("rename")
def rename_index(dataset, index_key: str, new_key: str) -> None:
    """Rename index ``index_key`` to ``new_key`` (files stay where they are).

    Raises:
        IndexInUseError: a similarity brain run answers from the index.
    """
    ds = runs.root_dataset(dataset)
    runs.get_index_config(ds, index_key, suggest=False)
    if new_key == index_key:
        raise IndexExistsError(
            f"index {index_key!r} of dataset {ds.name!r} already has that key: give"
            " it a new one"
        )
    runs.validate_new_key(ds, new_key, for_build=False)
    _refuse_if_brain_runs_use(ds, index_key, "renaming it")
    ds.rename_run(index_key, new_key)


@holding_key("delete")
def delete_index(dataset, index_key: str) -> bool:
    """Delete index ``index_key``: its run, and its files unless another run (of a
    clone of the dataset, say) still points at them.

    The run goes first, then the files: a process stopped between the two leaves
    a directory no run points at, which ``clipbranches gc`` removes.

    Returns:
        Whether its files were deleted (False: another run still uses them, or
        they could not be removed now, which a warning says; gc removes them).

    Raises:
        IndexInUseError: a similarity brain run answers from the index (its
            ``cleanup()`` deletes the index it built).
    """
    ds = runs.root_dataset(dataset)
    index_dir = runs.get_index_config(ds, index_key, suggest=False).index_dir
    _refuse_if_brain_runs_use(ds, index_key, "deleting it")
    discard_index(ds, index_key)
    return not Path(index_dir).expanduser().exists()


def _refuse_if_brain_runs_use(ds, index_key: str, what: str) -> None:
    users = runs.brain_runs_using(ds, index_key)
    if users:
        names = ", ".join(repr(k) for k in users)
        raise IndexInUseError(
            f"index {index_key!r} answers the similarity brain run(s) {names} of "
            f"dataset {ds.name!r}; {what} would break them. Delete the brain run "
            f"first: dataset.load_brain_results({users[0]!r}).cleanup() deletes the"
            f" index when the run built it, then dataset.delete_brain_run("
            f"{users[0]!r})"
            + (
                "; or rename the brain run instead (dataset.rename_brain_run: it"
                " keeps answering from this index)"
                if what == "renaming it"
                else ""
            )
        )


def discard_index(dataset, index_key: str) -> None:
    """Delete index ``index_key`` whatever uses it (a similarity brain run's
    ``cleanup`` deleting the index it built)."""
    ds = runs.root_dataset(dataset)
    config = runs.get_index_config(ds, index_key)
    forget_bundle(config.index_dir)
    # the run first, then its files: a process killed between the two leaves a
    # directory no run points at (gc removes it), never a run without its files
    runs.ClipBranchesIndex.delete_run(ds, index_key, cleanup=False)
    try:
        runs.release_index_dir(config.index_dir)
    except OSError as e:  # a read-only root, say: gc removes them later
        logger.warning(
            "index %r of dataset %r is deleted; its files at %s could not be (%s):"
            " clipbranches gc removes them once it can",
            index_key, ds.name, config.index_dir, e,
        )  # fmt: skip
        return
    remove_if_empty(Path(config.index_dir).parent)


def load_index(dataset, index_key: str | None = None, *, verify: str = "fast"):
    """``(config, bundle)`` of index ``index_key`` (None: the one
    :func:`~.runs.chosen_index_key` picks), the bundle cached per process
    (``verify``: ``"fast"``, ``"full"`` or ``"none"``, see ``sdk/bundle.py``)."""
    index_key = runs.chosen_index_key(dataset, index_key)
    owner = (str(runs.root_dataset(dataset)._doc.id), index_key)
    try:
        config = runs.get_index_config(dataset, index_key)
    except IndexNotFoundError:  # deleted (elsewhere, say): its files are let go
        let_go(owner)
        raise
    return config, load_bundle(config.index_dir, verify=verify, owner=owner)


GENERATED_MANIFEST_KEYS = (
    "format",
    "format_version",
    "n_samples",
    "has_encoder",
    "n_unembeddable",
    "files",
    "manifest_sha256",
)


#: Up to this many ids, :func:`check_ids_in_dataset` counts them in the database
#: (a few labels on a large dataset); beyond, it reads the dataset's ids once.
FEW_IDS = 10_000


def check_ids_in_dataset(ds, rowmap: SampleRowMap) -> None:
    """Raise :class:`SampleIdsError` (``ids``: those that are not) when some ids of
    ``rowmap`` are not samples of ``ds``."""
    if len(rowmap) <= FEW_IDS:
        few = rowmap.ids_of(np.arange(len(rowmap)))
        if ds.select(few).count() == len(few):
            return
    rows, found = rowmap.rows_of(ds.values("id"))
    inside = np.zeros(len(rowmap), bool)
    inside[rows[found]] = True
    n_out = int((~inside).sum())
    if n_out:
        out = rowmap.ids_of(np.flatnonzero(~inside))
        raise SampleIdsError(
            f"{n_out} of {len(rowmap)} sample ids"
            f" {'is not a sample' if n_out == 1 else 'are not samples'} of dataset "
            f"{ds.name!r} (e.g. {out[0]!r}); pass ids of its samples "
            "(dataset.values('id'); of a patches view, view.values('sample_id'))",
            ids=out,
        )


def unembeddable_samples(
    samples, field: str, errors: dict | None, embedded=True
) -> dict:
    """``{sample id: {"filepath", "error"[, "reason", "field"]}}`` of the samples of
    ``samples`` that have no embedding in ``field`` (``errors``: ``{sample id:
    error}`` where this build's embedding named them, None where it embedded
    nothing; ``embedded`` False: this package never embedded into ``field``, the
    samples had no vector, ``reason`` :data:`NO_VECTOR`)."""
    if samples._root_dataset.get_field(field) is None:
        return {}
    missing = samples.exists(field, False)
    ids, paths = missing.values(["id", "filepath"])
    if not embedded:
        error = f"no vector in {field!r} when the index was built or updated"
        error += " (skip_missing)"
        return {
            sid: {"filepath": path, "error": error, "reason": NO_VECTOR, "field": field}
            for sid, path in zip(ids, paths)
        }
    default = (
        f"no embedding in {field!r} (the image could not be read or embedded)"
        if errors is not None
        else f"no vector in {field!r} when the index was built: the image could"
        " not be read when it was embedded, or it was not embedded yet"
    )
    errors = errors or {}
    return {
        sid: {"filepath": path, "error": str(errors.get(sid, default))}
        for sid, path in zip(ids, paths)
    }


def dataset_folder(ds, root) -> Path:
    """The folder of ``ds``'s indexes under ``root``, made and marked as this
    database's (``sdk.folder_owner``)."""
    folder = _folder_of(ds, root)
    mark_owner(folder)
    return folder


def _folder_of(ds, root) -> Path:
    base = chosen_root(root)
    return base / str(ds._doc.id)
