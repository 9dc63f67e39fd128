"""Bringing an index up to date with its dataset: added, deleted, moved and
re-embedded samples (``update_index``), and the row replacement every edit of an
index ends in (``replace_index_rows``).

Each update rebuilds the trees over all rows into a new directory under the
updating dataset's own folder, which replaces the old one; the old directory is
deleted once no run (of a clone, say) points at it (``sdk/runs.py``).
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.sdk import runs
from fiftyone_clipbranches.sdk.bundle import load_bundle, write_bundle
from fiftyone_clipbranches.sdk.claims import holding_key
from fiftyone_clipbranches.sdk.embedding_reader import open_embeddings
from fiftyone_clipbranches.sdk.embeddings import compute_embeddings, embed_again
from fiftyone_clipbranches.sdk.errors import (
    CheckpointUnavailableError,
    MissingEmbeddingsError,
    SampleIdsError,
    StaleIndexError,
)
from fiftyone_clipbranches.sdk.freshness import (
    compare,
    digests_of,
    embedded_since,
    moved_at,
    path_digests,
)
from fiftyone_clipbranches.sdk.identity import missing_checkpoint
from fiftyone_clipbranches.sdk.index_changes import IndexChanges, count_changes
from fiftyone_clipbranches.sdk.index_info import IndexInfo, info_of, now_iso
from fiftyone_clipbranches.sdk.indexes import (
    GENERATED_MANIFEST_KEYS,
    check_ids_in_dataset,
    dataset_folder,
    release_replaced,
    unembeddable_samples,
)
from fiftyone_clipbranches.sdk.media import no_local_file, require_image_samples
from fiftyone_clipbranches.sdk.messages import KEEP_MOVED, counted
from fiftyone_clipbranches.sdk.progress import as_progress, closes_its_bars
from fiftyone_clipbranches.sdk.rowmap import SampleRowMap, as_sample_ids
from fiftyone_clipbranches.sdk.sharding import n_shards, tree_builder
from fiftyone_clipbranches.sdk.stream_encode import encode_source
from fiftyone_clipbranches.sdk.vector_sources import record_sources, to_embed


@closes_its_bars
@holding_key("update")
def update_index(
    dataset,
    index_key: str | None = None,
    *,
    retry_failed: bool = False,
    reembed=None,
    keep_moved: bool = False,
    skip_missing: bool = False,
    progress=True,
) -> IndexInfo:
    """Bring index ``index_key`` up to date with its dataset.

    Samples added since the build are embedded (when the embeddings field lacks
    them and the CLIP model is known), encoded with the index's own encoder and
    appended; rows of deleted samples are dropped. The trees are rebuilt into a
    new directory under this dataset's own folder, which replaces the old one;
    the old directory is deleted once no run (of a clone, say) points at it.

    Samples whose image could not be embedded at the last build or update are
    recorded in the index and not retried, unless ``retry_failed`` or their
    filepath changed; ``index_info(...).freshness`` reports them as unreadable.

    ``reembed`` (one sample id or sample, several, or a view of the dataset):
    samples whose image changed. Their images are embedded again with the index's
    CLIP model (into its embeddings field, replacing the vectors there:
    ``embeddings.embed_again``)
    and their rows replaced; an image that cannot be read now loses its old
    vector and is left out, as unreadable. An index whose model is unknown reads
    their vectors from the field as they are now (store the new ones first).

    Samples whose filepath changed since their row was embedded
    (``index_info(...).freshness.n_moved``; indexes built by ``build_index``) are
    treated as named in ``reembed``; with ``keep_moved``, as the same images at
    new paths: their rows are kept and their new filepaths recorded (after
    relocating the media, say, which would otherwise embed every image again),
    except those whose new filepath names no file on this machine: embedded
    again, they are left out as unreadable until their filepath is mended.

    Added samples without a vector in the field of an index whose CLIP model is
    unknown (built from a field it did not fill) stop the update, named
    (``MissingEmbeddingsError.ids``); with ``skip_missing`` they are left out, as
    samples without a vector, and indexed by the first update after their vectors
    are stored.
    """
    ds = runs.root_dataset(dataset)
    require_image_samples(ds, ds)
    config = runs.get_index_config(ds, index_key)
    bundle = load_bundle(config.index_dir)
    report = as_progress(progress)
    present, paths = ds.values(["id", "filepath"])
    field = config.embeddings_field
    again = set(_reembed_ids(ds, index_key, config, reembed))
    again |= set(config.reembed_pending or ()) & set(present)  # an interrupted one
    rows, found = bundle.rowmap.rows_of(present)
    moved_pos = np.zeros(0, np.int64)
    if bundle.path_digests is not None:
        moved_pos = moved_at(bundle.path_digests, rows, found, paths)
    if keep_moved:  # a new path with no file is no move of the same image
        gone = np.array([no_local_file(paths[i]) for i in moved_pos], dtype=bool)
        again |= {present[i] for i in moved_pos[gone]}
        moved_pos = moved_pos[~gone]
    moved = [present[i] for i in moved_pos]
    row_digests = None
    if moved and keep_moved:  # the same images elsewhere: record where
        row_digests = np.array(bundle.path_digests)
        row_digests[rows[moved_pos]] = path_digests([paths[i] for i in moved_pos])
        if field:  # the same images: their vectors' files are the new paths
            moved_paths = {present[i]: paths[i] for i in moved_pos}
            record_sources(ds, field, moved_paths, create=False)
    else:
        again |= set(moved)
    n_deleted = len(bundle.rowmap) - int(found.sum())
    reread = set()  # samples with a row, read again to replace it
    if again:
        read_again = np.isin(np.asarray(present), np.asarray(list(again)))
        reread = {present[i] for i in np.flatnonzero(found & read_again)}
        found &= ~read_again
    kept_failed, to_add = {}, []
    for i in np.flatnonzero(~found):
        sid = present[i]
        entry = bundle.unembeddable.get(sid)
        same_file = entry is not None and entry.get("filepath") == paths[i]
        if same_file and not retry_failed and sid not in again:
            kept_failed[sid] = entry
        else:
            to_add.append(sid)
    if kept_failed and field:
        now_embedded = embedded_since(ds, list(kept_failed), field)
        to_add += now_embedded
        for sid in now_embedded:
            del kept_failed[sid]
    if not to_add and not n_deleted and row_digests is None:
        # reembed_pending: its samples were deleted since, nothing left to embed
        return _left_as_it_was(ds, index_key, config, bundle, kept_failed, report)

    new_ids, new_codes = [], np.zeros((0, bundle.index.codes.shape[1]), np.uint8)
    new_failed = {}
    if to_add:
        if bundle.encoder is None:
            raise StaleIndexError(
                f"{len(to_add)} samples were added since index {index_key!r} was "
                "built from precomputed codes; rebuild it with build_index_from_codes"
            )
        if field is None:
            raise MissingEmbeddingsError(
                f"index {index_key!r} records no embeddings field; rebuild it"
            )
        added_view = ds.select(to_add)
        failed = {}
        model = config.clip_model or {}
        embed_with = {"model": model.get("name"), "pretrained": model.get("pretrained")}
        new_view = ds.select([sid for sid in to_add if sid not in again])
        n_again = len(again) if config.clip_model else 0
        # without a vector, or (the model known) with one of another file
        todo = to_embed(new_view, field) if config.clip_model else None
        n_new = new_view.exists(field, False).count() if todo is None else todo.count()
        # the bar's share of each part (embedding, then encoding), by its images
        split = 0.55 * n_again / max(n_again + n_new, 1)
        if n_again:
            _check_checkpoint(ds, config, index_key, len(set(moved) & again))
            _pending_reembed(ds, index_key, config, again)
            failed = embed_again(
                ds.select(list(again)), field, **embed_with,
                progress=lambda f, label: report(split * f, label),
            )["failed"]  # fmt: skip
        if n_new and not config.clip_model:
            if not skip_missing:
                raise _gaps_of_unknown_model(ds, new_view, field, index_key)
        elif n_new:
            _check_checkpoint(ds, config, index_key)
            failed = compute_embeddings(
                new_view, field, **embed_with,
                progress=lambda f, label: report(split + (0.55 - split) * f, label),
            )["failed"] | failed  # fmt: skip
        if added_view.exists(field).count():
            source = open_embeddings(
                added_view, field, skip_missing=True, width=bundle.encoder.in_dim
            )
            new_ids = source.id_list()
            try:
                new_codes = encode_source(
                    source,
                    bundle.encoder,
                    lambda f, label: report(0.55 + 0.05 * f, label),
                )
            except MissingEmbeddingsError as e:
                raise _with_reembed_way(e, ds, index_key, config) from None
        # without a model nothing was embedded: the gaps are samples without one
        new_failed = unembeddable_samples(
            added_view, field, failed, embedded=bool(config.clip_model)
        )

    unreadable_again = set(new_failed) & set(bundle.unembeddable)
    unreadable = {**kept_failed, **new_failed}
    if _nothing_to_write(bundle, new_ids, n_deleted, row_digests, reread, unreadable):
        # reembed_pending: set above for samples it read again in vain
        return _left_as_it_was(
            ds, index_key, config, bundle, unreadable, report, len(unreadable_again)
        )

    report(0.6, "rebuilding the index")
    keep = np.sort(rows[found])
    codes = np.concatenate([np.asarray(bundle.index.codes)[keep], new_codes])
    ids = bundle.rowmap.ids_of(keep) + list(new_ids)
    config.reembed_pending = None  # written with the new rows, or kept if that fails
    info = replace_index_rows(
        ds, index_key, config, bundle, codes, ids, unreadable,
        kept_rows=keep, paths_by_id=dict(zip(present, paths, strict=True)),
        row_digests=row_digests,
    )  # fmt: skip
    # an index of unknown model embeds nothing: what it leaves out had no vector
    why = "image unreadable" if config.clip_model else f"no vector in {field!r}"
    left = f"; {len(new_failed)} more left out ({why})" if new_failed else ""
    report(
        1.0, f"index {index_key!r} now holds {counted(info.n_samples, 'sample')}{left}"
    )
    newly_unreadable = set(new_failed) - set(bundle.unembeddable)
    changes = count_changes(
        reread=reread,
        read_again=again,
        new_rows=set(new_ids),
        newly_unreadable=newly_unreadable,
        n_dropped=n_deleted,
        n_moved_kept=len(moved) if keep_moved else 0,
        without_vector=set() if config.clip_model else newly_unreadable,
        unreadable_again=unreadable_again,
    )
    return replace(info, changes=changes)


def _left_as_it_was(
    ds, index_key, config, bundle, unreadable, report, n_again: int = 0
) -> IndexInfo:
    """The info of an update that writes no index: its run's record of samples
    to embed again cleared, ``n_again`` samples left out before tried again in
    vain (``unreadable``: the record of those left out, as the index holds it)."""
    if config.reembed_pending:
        config.reembed_pending = None
        runs.update_index_config(ds, index_key, config)
    still = f"; {n_again} still left out" if n_again else ""
    report(1.0, f"index is up to date{still}")
    fresh = compare(
        ds, bundle.rowmap, unreadable, bundle.path_digests, config.embeddings_field
    )
    changes = IndexChanges(unreadable_again=n_again)
    return replace(info_of(ds, index_key, config, fresh), changes=changes)


def _nothing_to_write(bundle, new_ids, n_deleted, row_digests, reread, unreadable):
    """Whether an update that read samples again leaves the index as it was: no
    row added, dropped, replaced or moved, and the same record of the samples
    left out (filepath, error and reason: ``retry_failed`` on images broken as
    before)."""
    if len(new_ids) or n_deleted or row_digests is not None or reread:
        return False
    return unreadable == bundle.unembeddable


def replace_index_rows(
    ds,
    index_key: str,
    config,
    bundle,
    codes,
    ids,
    unembeddable: dict,
    *,
    kept_rows,
    paths_by_id: dict | None = None,
    row_digests: np.ndarray | None = None,
) -> IndexInfo:
    """Write a new directory for index ``index_key`` holding ``codes`` (uint8
    ``(N, D)``) of sample ``ids`` with the encoder, subsets and settings of
    ``bundle``, switch the run to it and release the old directory (deleted once
    no run of any dataset points at it).

    ``ids`` are the ``kept_rows`` of ``bundle`` (int array), in that order, then
    the new rows. Where ``bundle`` records filepath digests, a kept row keeps the
    digest of the filepath it was embedded from (``row_digests``, by old row:
    ``bundle``'s unless given) and a new row records its filepath now
    (``paths_by_id``, else read from ``ds``).

    The new directory lies under ``ds``'s own folder, so an update on a clone never
    replaces the original's files.
    """
    if not len(ids):
        unreadable = (
            f" ({counted(len(unembeddable), 'sample')} whose image could not be read:"
            " update_index(..., retry_failed=True) reads them again; CLI: --retry-failed)"
            if unembeddable
            else ""
        )
        raise MissingEmbeddingsError(
            f"no sample of dataset {ds.name!r} is left for index {index_key!r} to"
            f" hold{unreadable}: delete the index (CLI: clipbranches delete-index"
            f" {shlex.quote(ds.name)} --key {index_key}), or add samples and update it"
        )
    rowmap = SampleRowMap(ids)
    leaf_size = bundle.manifest.get("leaf_size")
    index = tree_builder(codes, bundle.index.subsets, leaf_size, n_shards(bundle.index))
    built_at = now_iso()
    meta = dict(bundle.manifest, built_at=built_at, dataset_id=str(ds._doc.id))
    for k in GENERATED_MANIFEST_KEYS:
        meta.pop(k, None)
    old_dir = config.index_dir
    parent = dataset_folder(ds, Path(old_dir).parent.parent)
    digests = None
    if bundle.path_digests is not None:
        kept_rows = np.asarray(kept_rows, dtype=np.int64)
        kept = bundle.path_digests if row_digests is None else row_digests
        new = digests_of(ds, ids[len(kept_rows) :], paths_by_id)
        digests = np.concatenate([np.asarray(kept)[kept_rows], new])
    path = write_bundle(
        parent, index, rowmap, bundle.encoder, meta, unembeddable, digests
    )
    config.index_dir = str(path)
    config.n_samples = len(rowmap)
    config.built_at = built_at
    runs.update_index_config(ds, index_key, config)
    release_replaced(ds, index_key, old_dir)
    fresh = compare(ds, rowmap, unembeddable, digests, config.embeddings_field)
    return info_of(ds, index_key, config, fresh)


def _gaps_of_unknown_model(ds, view, field: str, index_key: str):
    """The refusal of added samples (of ``view``) without a vector in ``field``,
    which the index cannot embed (its CLIP model is unknown), naming them."""
    ids = view.exists(field, False).values("id")
    command = (
        f"clipbranches update-index {shlex.quote(ds.name)} --key {index_key}"
        " --skip-missing"
    )
    gaps = (
        f"{counted(len(ids), 'added sample')} (e.g. {', '.join(ids[:3])}) lack"
        f" {field!r} embeddings and the CLIP model of index {index_key!r} is"
        f" unknown, so the update cannot embed them: store their vectors in"
        f" {field!r}, then update"
    )
    refused = MissingEmbeddingsError(
        f"{gaps}; or leave them out until they have one: update_index(...,"
        f" skip_missing=True) (CLI: {command})",
        n_missing=len(ids),
        ids=ids,
    )
    refused.in_app = (
        f"{gaps} (the SDK's update_index(..., skip_missing=True) or the CLI's"
        " --skip-missing leave them out meanwhile)"
    )
    return refused


def _with_reembed_way(error, ds, index_key: str, config):
    """``error`` (added samples whose vectors another model made, named in its
    ``ids``), saying how the update embeds them again with the index's model, or,
    for an index that knows no model, what else can be done."""
    if not error.ids:
        return error
    command = f"clipbranches update-index {shlex.quote(ds.name)} --key {index_key}"
    if not config.clip_model:  # nothing can embed them again: no way round
        refused = MissingEmbeddingsError(
            f"{error}; index {index_key!r} does not know the model that made its"
            " vectors, so it cannot embed them again: store vectors of that model"
            " there, or set them to None and leave them out"
            f" (update_index(dataset, {index_key!r}, skip_missing=True); CLI:"
            f" {command} --skip-missing)",
            ids=error.ids,
        )
        refused.in_app = (
            f"{error}; the index does not know the model that made its vectors:"
            " store vectors of that model there, or clear them and update with"
            " samples without a vector left out"
        )
        return refused
    named = " ".join(f"--reembed {i}" for i in error.ids)
    shell = (
        f"{command} {named}"
        if len(error.ids) <= 3
        else f"save a view of them, then {command} --reembed-view NAME"
    )
    refused = MissingEmbeddingsError(
        f"{error}: update_index(dataset, {index_key!r}, reembed=error.ids) embeds"
        f" them again with the index's model (CLI: {shell}), or set them to None",
        ids=error.ids,
    )
    refused.in_app = (
        f'{error}: select them and update the index with "Embed again the'
        " selected samples\" ticked: the index's model embeds them again"
    )
    return refused


#: Most sample ids an index run records as still to embed again (a run's document
#: holds at most 16 MB); past it, an interrupted re-embedding is finished by running
#: the same update again.
MAX_PENDING_REEMBED = 200_000


def _pending_reembed(ds, index_key: str, config, ids) -> None:
    """Record on the run that ``ids`` are being embedded again, before their
    vectors are overwritten: until the index holds their new codes, the field and
    the index disagree, and the next update (any) embeds them again."""
    if len(ids) > MAX_PENDING_REEMBED:
        return
    config.reembed_pending = sorted(ids)
    runs.update_index_config(ds, index_key, config)


def _reembed_ids(ds, index_key: str, config, reembed) -> list[str]:
    """The sample ids of ``update_index``'s ``reembed``, checked: samples of
    ``ds``, and an index that reads vectors from a field."""
    if reembed is None:
        return []
    is_view = hasattr(reembed, "values") and hasattr(reembed, "_dataset")
    if is_view and runs.root_dataset(reembed)._doc.id != ds._doc.id:
        raise SampleIdsError(f"reembed: the view is not of dataset {ds.name!r}")
    ids = list(dict.fromkeys(as_sample_ids(reembed, "reembed")))
    if not is_view:
        check_ids_in_dataset(ds, SampleRowMap(ids))
    if ids and config.embeddings_field is None:
        raise MissingEmbeddingsError(
            f"index {index_key!r} records no embeddings field to embed into or read"
            " from; rebuild it"
        )
    return ids


def _check_checkpoint(ds, config, index_key: str, moved: int = 0) -> None:
    gone = missing_checkpoint(
        config.clip_model, index_key, "embed added or changed samples", ds.name
    )
    if gone:
        if moved:
            gone += (
                f"; of the samples to embed, {counted(moved, 'sample')} only"
                f" {'has' if moved == 1 else 'have'} another filepath: if the files"
                f" just moved, {KEEP_MOVED}, which keeps their rows"
            )
        raise CheckpointUnavailableError(gone)
