"""``clipbranches build-index / update-index / indexes / delete-index /
unlock-index / rename-index / search / refine``: the SDK's workflow from the shell,
on a FiftyOne dataset named on the command line."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import sys
from dataclasses import asdict

from fiftyone_clipbranches.cli_types import (
    CommandLineError,
    Once,
    finite_number,
    ids_from_stdin,
    ids_in_file,
    non_blank,
    seen_ids_in_file,
    whole_number,
)
from fiftyone_clipbranches.sdk.progress import ProgressBar

#: Results ``search`` and ``refine`` print for people unless ``--limit`` says
#: otherwise (``--json`` prints every one).
DEFAULT_LIMIT = 20
LIMIT_HELP = (
    f"rows printed (default {DEFAULT_LIMIT}; with --json every row unless --limit is"
    " given; n_results counts them all)"
)


_count = whole_number(0)


def _neighbours(text: str) -> int | str:
    """``--neighbours-per-positive``: ``auto`` or a count."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _count(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither 'auto' nor a whole number >= 0"
        ) from None


#: ``--score-field``: a name (an empty one wrote no score without a word).
_score_field = non_blank("a field name (--no-scores writes none)", strip=False)


def dataset_named(name: str):
    import fiftyone as fo

    names = fo.list_datasets()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"dataset {name!r} does not exist; {hint}see `fiftyone datasets list`"
        )
    return fo.load_dataset(name)


def _pretrained(value, model: str | None = None):
    """``build_index``'s ``pretrained``: not given (``UNSET``), ``none`` (random
    weights, ``None``), or the tag or path as given (with ``--model demo``, which
    has its own weights, any value is passed on to be refused)."""
    from fiftyone_clipbranches.sdk.clip_names import SHIPPED_MODEL, UNSET

    if value is None:
        return UNSET
    if model == SHIPPED_MODEL:
        return value
    return None if value.lower() == "none" else value


def _cmd_build_index(args) -> int:
    from fiftyone_clipbranches import sdk

    ds = dataset_named(args.dataset)
    model, pretrained = args.model, _pretrained(args.pretrained, args.model)
    bar = ProgressBar(f"building {args.key!r}") if not args.quiet else None
    try:
        info = sdk.build_index(
            ds,
            args.key,
            embeddings_field=args.embeddings_field,
            model=model,
            pretrained=pretrained,
            code_method=args.code_method,
            skip_missing=True if args.skip_missing else None,
            progress=bar or False,
            shards=args.shards,
            ray_address=args.ray_address,
            overwrite=args.overwrite,
        )
    finally:
        if bar is not None:
            bar.close()
    _print_info(info, args.json, ds.name)
    return 0


def _dataset_and_key(args):
    """The dataset of ``args.dataset``; ``args.key`` left out becomes the index a
    command that names none uses (``sdk.runs.chosen_index_key``)."""
    from fiftyone_clipbranches.sdk.runs import chosen_index_key

    ds = dataset_named(args.dataset)
    args.key = chosen_index_key(ds, args.key)
    return ds


def _cmd_update_index(args) -> int:
    from fiftyone_clipbranches import sdk

    ds = _dataset_and_key(args)
    bar = ProgressBar(f"updating {args.key!r}") if not args.quiet else None
    try:
        info = sdk.update_index(
            ds,
            args.key,
            retry_failed=args.retry_failed,
            reembed=_reembed(ds, args),
            keep_moved=args.keep_moved,
            skip_missing=args.skip_missing,
            progress=bar or False,
        )
    finally:
        if bar is not None:
            bar.close()
    after = sdk.index_info(ds, info.key)
    if args.json:
        changes = asdict(info.changes)
        print(json.dumps({**after.to_dict(), "changes": changes}, default=str))
        return 0
    read = "embedded again" if after.clip_model else "read again from the field"
    said = info.changes.describe(read)
    print(
        f"index {after.key!r}: {said}"
        if said
        else f"index {after.key!r} was up to date"
    )
    _print_info(after, False, ds.name)  # with what it left out
    return 0


def _reembed(ds, args) -> list[str] | None:
    """The samples ``--reembed`` and ``--reembed-view`` name, or None."""
    ids = list(args.reembed or [])
    if args.reembed_view:
        if not ds.has_saved_view(args.reembed_view):
            raise ValueError(
                f"dataset {ds.name!r} has no saved view {args.reembed_view!r} (its"
                f" saved views: {', '.join(ds.list_saved_views()) or 'none'})"
            )
        ids += ds.load_saved_view(args.reembed_view).values("id")
    return list(dict.fromkeys(ids)) or None


def _print_info(
    info, as_json: bool, dataset_name: str, with_freshness: bool = True
) -> None:
    """``info`` for people (its freshness and the commands that mend it only with
    ``with_freshness``), or as JSON."""
    from fiftyone_clipbranches.sdk.identity import missing_checkpoint
    from fiftyone_clipbranches.sdk.messages import counted

    if as_json:
        print(json.dumps(info.to_dict(), default=str))
        return
    model = info.clip_model or {}
    weights = model.get("pretrained") or "random weights"
    text = f"{model.get('name')} / {weights}" if model else "no"
    shards = f", {info.n_shards} shards" if info.n_shards > 1 else ""
    print(
        f"{info.key}: {info.n_samples} samples{shards}, {info.codes_made_by} codes of"
        f" {info.code_dims} bytes, text search: {text}, built or updated {info.built_at}"
    )
    gone = (
        missing_checkpoint(model, info.key, "embed queries", dataset_name)
        if model
        else None
    )
    if gone:
        print(f"  text search unavailable: {gone}")
    if not with_freshness:
        return
    fresh = info.freshness
    update = f"clipbranches update-index {shlex.quote(dataset_name)} --key {info.key}"
    if fresh is not None and fresh.is_stale:
        moved = f", {fresh.n_moved} with another filepath" if fresh.n_moved else ""
        kept = " (`--keep-moved` if their files just moved)" if fresh.n_moved else ""
        print(
            f"  stale: {counted(fresh.n_added, 'sample')} added, {fresh.n_deleted}"
            f" deleted{moved} since it was built or updated (`{update}` brings it up"
            f" to date{kept})"
        )
    if info.n_reembed_pending:
        print(
            f"  {counted(info.n_reembed_pending, 'sample')} still to embed again: an"
            f" update was interrupted while it embedded them (`{update}` finishes it)"
        )
    listed = f"`clipbranches indexes {shlex.quote(dataset_name)} --json` lists them"
    n_unread = 0 if fresh is None else fresh.n_unreadable - fresh.n_no_vector
    if n_unread:
        print(
            f"  {counted(n_unread, 'sample')} left out:"
            f" {'its image' if n_unread == 1 else 'their images'} could not be read"
            f" ({listed}; fix the files, then `{update} --retry-failed`)"
        )
    if fresh is not None and fresh.n_no_vector:
        print(
            f"  {counted(fresh.n_no_vector, 'sample')} left out: no vector in"
            f" {info.embeddings_field!r} ({listed}; store their vectors, then"
            f" `{update}`)"
        )


def _cmd_indexes(args) -> int:
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.media import media_refusal

    if args.dataset is None:
        return _print_every_dataset(args.json)
    ds = dataset_named(args.dataset)
    infos, broken = [], {}
    for key in sdk.list_indexes(ds):
        try:
            infos.append(sdk.index_info(ds, key))
        except sdk.ClipBranchesError as e:  # listed, and the others still are
            broken[key] = str(e)
    if args.json:
        listed = [i.to_dict() for i in infos]
        listed += [{"key": k, "error": e} for k, e in broken.items()]
        print(json.dumps(listed, default=str))
        return 1 if broken else 0
    refused = media_refusal(ds)
    if not infos and not broken:
        print(
            f"dataset {ds.name!r} has no clipbranches index"
            + (
                ""
                if refused
                else f" (`clipbranches build-index {shlex.quote(ds.name)}`)"
            )
        )
    for info in infos:
        _print_info(info, False, ds.name, with_freshness=not refused)
    if refused:  # what else would be said of its indexes cannot be done
        print(f"note: {refused}")
    for key, error in broken.items():
        print(
            f"{key}: cannot be read: {error} (`clipbranches verify"
            f" {shlex.quote(ds.name)} --key {key}` checks it)"
        )
    return 1 if broken else 0


def _print_every_dataset(as_json: bool) -> int:
    """``indexes`` without a dataset: the datasets that have indexes, and their
    keys."""
    from fiftyone_clipbranches.sdk.runs import indexes_by_dataset

    found = indexes_by_dataset()
    if as_json:
        print(json.dumps([{"dataset": n, "keys": k} for n, k in found.items()]))
        return 0
    if not found:
        print(
            "no dataset has a clipbranches index (`clipbranches build-index DATASET`)"
        )
    for name, keys in found.items():
        print(f"{name}: {', '.join(keys)}")
    if found:
        print("(`clipbranches indexes DATASET` says the state of each)")
    return 0


def _cmd_delete_index(args) -> int:
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.runs import get_index_config, index_dir_references

    ds = dataset_named(args.dataset)
    try:
        index_dir = get_index_config(ds, args.key, suggest=False).index_dir
    except sdk.IndexBeingBuiltError:
        raise
    except sdk.IndexNotFoundError:
        if not args.missing_ok:
            raise
        if args.json:
            print(json.dumps({"dataset": ds.name, "deleted": None,
                              "files_deleted": False}))  # fmt: skip
        else:
            print(f"dataset {ds.name!r} has no index {args.key!r}: nothing to delete")
        return 0
    files_deleted = sdk.delete_index(ds, args.key)
    if args.json:
        print(json.dumps({"dataset": ds.name, "deleted": args.key,
                          "files_deleted": files_deleted}))  # fmt: skip
    elif files_deleted:
        print(f"deleted index {args.key!r} of dataset {ds.name!r} and its files")
    elif index_dir_references(index_dir):
        print(
            f"deleted index {args.key!r} of dataset {ds.name!r}; its files stay:"
            " another index uses them (of a clone of the dataset, or of a copy in"
            " another database)"
        )
    else:  # the warning above says why
        print(
            f"deleted index {args.key!r} of dataset {ds.name!r}; its files could not"
            " be removed now: `clipbranches gc --delete` removes them once it can"
        )
    return 0


def _cmd_unlock_index(args) -> int:
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.claims import unlock_key

    ds = dataset_named(args.dataset)
    held = unlock_key(ds, args.key)
    keys = sdk.list_indexes(ds)
    if held is None and args.key not in keys:  # a mistyped key: a script is told
        there = f"its indexes: {', '.join(keys)}" if keys else "it has none"
        raise sdk.IndexNotFoundError(
            f"dataset {ds.name!r} has no index {args.key!r} and no build holds that"
            f" key: nothing to release ({there})"
        )
    if args.json:
        print(json.dumps({"dataset": ds.name, "key": args.key, "released": held},
                         default=str))  # fmt: skip
    elif held is None:
        print(f"index {args.key!r} of dataset {ds.name!r} was not held: nothing to do")
    else:
        print(
            f"released index {args.key!r} of dataset {ds.name!r} from"
            f" {held.get('work', 'build')} by process {held['pid']} on {held['host']}"
        )
    return 0


def _cmd_rename_index(args) -> int:
    from fiftyone_clipbranches import sdk

    ds = dataset_named(args.dataset)
    sdk.rename_index(ds, args.key, args.new_key)
    if args.json:
        print(json.dumps({"dataset": ds.name, "renamed": args.key, "to": args.new_key}))
    else:
        print(f"renamed index {args.key!r} of dataset {ds.name!r} to {args.new_key!r}")
    return 0


def _cmd_relocate_checkpoint(args) -> int:
    from fiftyone_clipbranches import sdk

    ds = _dataset_and_key(args)
    updated = sdk.relocate_checkpoint(ds, args.pretrained, index_key=args.key)
    if args.json:
        print(json.dumps({"dataset": ds.name, "updated": updated}))
    else:
        where = os.path.abspath(os.path.expanduser(args.pretrained))
        print(f"checkpoint recorded at {where!r} by: {', '.join(updated)}")
    return 0


def _cmd_search(args) -> int:
    from fiftyone_clipbranches import sdk

    ds = _dataset_and_key(args)
    ids, distances = sdk.search_ids(
        ds,
        text=args.text,
        sample_ids=args.sample_ids,
        image=args.image,
        k=args.k,
        index_key=args.key,
    )
    rows = [{"id": i, "sq_distance": int(d)} for i, d in zip(ids, distances)]
    tagged = None
    if args.tag:
        label_tags = (args.positive_tag, args.negative_tag)
        tagged, newly = _tag_results(ds, ids, args.tag, label_tags)
        for row in rows:
            row["tagged"] = row["id"] in newly  # by this command
    query = "text" if args.text is not None else "image" if args.image else "samples"
    _print_nearest(ds, args, rows, query, tagged)
    return 0


def _print_nearest(ds, args, rows: list[dict], query: str, tagged=None) -> None:
    """A k-NN answer (``rows`` of ``id`` and ``sq_distance``), as ``search`` and
    ``next-to-label`` print it: JSON with the stats, or a table (``tagged``:
    what ``--tag`` did), then the samples the index cannot return yet."""
    from fiftyone_clipbranches import sdk

    unsearched = {"n_unindexed": sdk.unsearched_count(ds, args.key)}
    if args.json:
        stats = {"query": query, "index_key": args.key, **unsearched}
        shown = _with_paths(ds, rows[: _limit(args)])
        print(json.dumps({"stats": stats, "n_results": len(rows), "results": shown}))
    else:
        _print_rows(ds, rows, "sq_distance", args, header="sq. distance")
        if tagged:
            print(tagged)
    # a script reading the JSON on stdout is told on stderr too
    _note_unindexed(ds, args.key, unsearched, sys.stderr if args.json else sys.stdout)


def _cmd_next_to_label(args) -> int:
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.next_to_label import refined_ids

    ds = _dataset_and_key(args)
    _with_id_files(args, ("exclude",), empty_ok=True)
    result = []
    if not args.no_result:
        try:
            result = refined_ids(ds, args.score_field)
        except ValueError as e:
            raise ValueError(
                f"{e}; --score-field names another, --no-result leaves none out"
                " (after refine --no-scores)"
            ) from None
    ids, distances = sdk.next_to_label_ids(
        ds,
        exclude=[*result, *(args.exclude or ())],
        k=args.k,
        tags=(args.positive_tag, args.negative_tag),
        index_key=args.key,
    )
    rows = [{"id": i, "sq_distance": int(d)} for i, d in zip(ids, distances)]
    _print_nearest(ds, args, rows, "positives")
    return 0


def _refuse_saved_view_name(ds, name: str) -> None:
    """Refuse ``--saved-view NAME`` when the dataset has a view of that name
    (another client's, or an earlier round's), before any work: replaced only
    with ``--overwrite``, as the service and the App ask first."""
    from fiftyone_clipbranches.sdk.errors import ViewNameTakenError
    from fiftyone_clipbranches.sdk.views import replaceable_view

    name = name.strip()
    replaceable_view(ds, name)  # a view of the user's: refused in its own words
    try:
        replaceable_view(ds, name, replace_own=False)
    except ViewNameTakenError as e:
        raise ViewNameTakenError(
            str(e).replace("pass overwrite=True", "pass --overwrite")
        ) from None


def _with_id_files(args, names, empty_ok: bool = False) -> None:
    """Add the ids of ``--NAME-from`` files to ``args.NAME`` (None stays None
    where no file and no flag gave any); standard input feeds one option
    (``empty_ok``: it may hold none)."""
    from_stdin = [
        n for n in names for ids in getattr(args, f"{n}_files") if ids is None
    ]
    if len(from_stdin) > 1:
        raise ValueError(
            "standard input (-) can feed only one --*-from option: give the others"
            " a file"
        )
    for name in names:
        from_files = [
            i
            for ids in getattr(args, f"{name}_files")
            for i in (ids_from_stdin(empty_ok) if ids is None else ids)
        ]
        if from_files:
            setattr(args, name, [*(getattr(args, name) or []), *from_files])


def _cmd_label(args) -> int:
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.labels import count_tagged
    from fiftyone_clipbranches.sdk.messages import counted

    if args.clear_all and args.clear_files:
        raise ValueError("give --clear-all or --clear-from, not both")
    _with_id_files(args, ("positives", "negatives", "clear"))
    ds = dataset_named(args.dataset)
    tags = (args.positive_tag, args.negative_tag)
    if not (args.positives or args.negatives or args.clear or args.clear_all):
        raise ValueError(
            "say what to label: --positive ID, --negative ID, --clear ID (ids in a"
            " file: --positives-from, --negatives-from, --clear-from) or --clear-all"
        )
    removed = 0
    if args.clear or args.clear_all:
        removed = sdk.clear_labels(ds, None if args.clear_all else args.clear, tags)
    n_pos, n_neg = sdk.label_samples(ds, args.positives, args.negatives, tags)
    held = count_tagged(ds, tags)
    if args.json:
        print(json.dumps({
            "dataset": ds.name, "labelled_positive": n_pos,
            "labelled_negative": n_neg, "removed": removed,
            "positives": held[tags[0]], "negatives": held[tags[1]],
        }))  # fmt: skip
        return 0
    done = (
        [f"{counted(removed, 'label')} removed"] if args.clear or args.clear_all else []
    )
    if n_pos or n_neg:
        done.append(f"{n_pos} labelled positive, {n_neg} negative")
    print(
        f"{'; '.join(done)}; dataset {ds.name!r} holds {held[tags[0]]} positive"
        f" ({tags[0]!r}) and {held[tags[1]]} negative ({tags[1]!r}) labels"
    )
    return 0


def _tag_results(ds, ids, tag: str, label_tags: tuple[str, str]) -> tuple[str, set]:
    """Tag the samples ``ids`` with ``tag``; with one of the ``label_tags``
    (positive, negative), those holding the other one keep it and are not tagged
    (a sample both positive and negative would stop the next refinement). Returns
    what was done, in words, and the ids this tagged (not those tagged before)."""
    from fiftyone_clipbranches.sdk.messages import counted

    view = ds.select(ids)
    positive, negative = label_tags
    other = {positive: negative, negative: positive}
    kept = 0
    if tag in other:
        kept = len(view.match_tags(other[tag]))
        view = view.match_tags(other[tag], bool=False)
    newly = set(view.match_tags(tag, bool=False).values("id"))
    view.tag_samples(tag)
    done = f"tagged {counted(len(newly), 'sample')} {tag!r}"
    before = len(ids) - kept - len(newly)
    if before:
        done += f", {before} already had it"
    if kept:
        done += (
            f"; {counted(kept, 'sample')} already tagged {other[tag]!r} kept that"
            " label (untag them first to change it)"
        )
    return done, newly


def _cmd_refine(args) -> int:
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.messages import (
        counted,
        recovered_note,
        unreadable_note,
    )
    from fiftyone_clipbranches.sdk.settings import DEFAULT_TAGS

    _with_id_files(args, ("positives", "negatives"))
    ds = _dataset_and_key(args)
    tags = (args.positive_tag, args.negative_tag)
    if (args.positives or args.negatives) and tags != DEFAULT_TAGS:
        raise CommandLineError(
            "give the labels as ids (--positive / --negative) or as tags"
            " (--positive-tag / --negative-tag), not both: ids replace the tags"
        )
    if args.overwrite and not args.saved_view:
        raise CommandLineError("--overwrite replaces a --saved-view: give its name")
    if args.saved_view and not args.overwrite:
        _refuse_saved_view_name(ds, args.saved_view)
    result = sdk.refine(
        ds,
        positives=args.positives,
        negatives=args.negatives,
        tags=tags,
        model=args.model,
        index_key=args.key,
        query=args.query,
        saved_view=args.saved_view,
        score_field=None if args.no_scores else args.score_field,
        seed=args.seed,
        random_negatives=args.random_negatives,
        neighbours_per_positive=args.neighbours_per_positive,
        negative_weight=args.negative_weight,
    )
    rows = [{"id": i, "score": float(s)} for i, s in zip(result.ids, result.scores)]
    stats = result.stats
    if args.json:
        shown = _with_paths(ds, rows[: _limit(args)])
        print(json.dumps({"stats": stats, "n_results": len(rows), "results": shown},
                         default=str))  # fmt: skip
        return 0
    print(
        f"{stats.get('model')}: {len(rows)} samples of {stats.get('n_index')} indexed"
        f" ({counted(stats.get('n_pos', 0), 'positive')},"
        f" {counted(stats.get('n_neg', 0), 'negative')} labelled"
        f"{unreadable_note(stats)};"
        f" {stats.get('train_ms', 0):.0f} ms training, {stats.get('query_ms', 0):.0f}"
        " ms query)"
    )
    if stats.get("note"):
        print(f"note: {stats['note']}")
    if stats.get("recovered_fields"):
        print(f"note: {recovered_note(stats)}")
    _print_rows(ds, rows, "score", args)
    if args.saved_view:
        print(f"saved view {args.saved_view!r}")
    _note_unindexed(ds, args.key, stats)
    return 0


def _note_unindexed(ds, key: str, stats: dict, stream=None) -> None:
    """Say on ``stream`` (default stdout) that samples added since the build were
    not searched, and how to add them."""
    from fiftyone_clipbranches.sdk.messages import counted

    n = int(stats.get("n_unindexed") or 0)
    if n:
        print(
            f"note: {counted(n, 'sample')} added since the index was built "
            f"{'was' if n == 1 else 'were'} not searched: clipbranches update-index"
            f" {shlex.quote(ds.name)} --key {key}",
            file=stream or sys.stdout,
        )


def _limit(args) -> int | None:
    """Rows to print: ``--limit``, else every row for ``--json`` (scripts read all
    of them) and ``DEFAULT_LIMIT`` for people."""
    if args.limit is not None:
        return args.limit
    return None if args.json else DEFAULT_LIMIT


def _with_paths(ds, rows: list[dict]) -> list[dict]:
    """``rows`` (dicts with an ``"id"``), each with its sample's ``"filepath"``."""
    paths = dict(zip(*ds.select([r["id"] for r in rows]).values(["id", "filepath"])))
    return [{**r, "filepath": paths.get(r["id"], "")} for r in rows]


def _print_rows(ds, rows: list[dict], value: str, args, header=None) -> None:
    """Rank, sample id, ``value``'s column (headed ``header``) and filepath."""
    shown = _with_paths(ds, rows[: _limit(args)])
    if not rows:
        print("no results")
    elif shown:
        print(f"{'rank':>4}  {'sample id':<24}  {header or value:>12}  filepath")
    for rank, row in enumerate(shown, 1):
        print(f"{rank:>4}  {row['id']}  {_cell(row[value]):>12}  {row['filepath']}")
    if len(rows) > len(shown):
        print(f"... {len(rows) - len(shown)} more (--limit)")


def _cell(value) -> str:
    """A table cell: a float to 4 places, anything else as it prints."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def add_workflow_commands(sub) -> None:
    """Register ``build-index``, ``update-index``, ``indexes``, ``delete-index``,
    ``unlock-index``, ``rename-index``, ``relocate-checkpoint``, ``search``,
    ``refine``, ``next-to-label`` and ``label``."""
    from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL, model_names
    from fiftyone_clipbranches.sdk.settings import (
        DEFAULT_INDEX_KEY,
        DEFAULT_K,
        DEFAULT_SCORE_FIELD,
        DEFAULT_TAGS,
    )
    from fiftyone_clipbranches.sdk.sharding import MAX_SHARDS

    def common(p: argparse.ArgumentParser, key=True, new_index=False) -> None:
        p.add_argument("dataset", help="FiftyOne dataset name")
        if new_index:
            p.add_argument(
                "--key", default=DEFAULT_INDEX_KEY,
                help=f"index key (default {DEFAULT_INDEX_KEY!r})",
            )  # fmt: skip
        elif key:
            p.add_argument(
                "--key", type=non_blank("an index key"),
                help=f"index key (default {DEFAULT_INDEX_KEY!r}, else the dataset's"
                " only index)",
            )  # fmt: skip
        p.add_argument("--json", action="store_true", help="print JSON")

    def ids_from_files(p: argparse.ArgumentParser, names, seen=False) -> None:
        for name in names:
            p.add_argument(
                f"--{name}-from", dest=f"{name}_files", action="append",
                type=seen_ids_in_file if seen else ids_in_file, metavar="FILE",
                default=[],
                help=f"{name} ids from FILE, separated by white space ('-': standard"
                " input; repeatable)",
            )  # fmt: skip

    def tag_options(p: argparse.ArgumentParser) -> None:
        for which, default in zip(("positive", "negative"), DEFAULT_TAGS):
            p.add_argument(
                f"--{which}-tag", default=default,
                type=non_blank("a tag name", strip=False),
                help=f"sample tag of the {which} labels (default {default!r})",
            )  # fmt: skip

    p = sub.add_parser(
        "build-index",
        help="embed a dataset's images (if needed) and build its index",
        description="Build a clipbranches index over every sample of DATASET: its"
        " images are embedded with CLIP into 'clip_embedding' unless"
        " --embeddings-field names a field of CLIP vectors (the SDK's build_index).",
    )
    common(p, new_index=True)
    p.add_argument(
        "--embeddings-field",
        help="VectorField of CLIP vectors; a new one is computed with --model and"
        " --pretrained",
    )
    p.add_argument(
        "--model",
        help="open_clip architecture (default: the model recorded on the"
        " embeddings field by an earlier embedding, else ViT-B-32), or 'demo' for"
        " the small CLIP this package ships (offline; it knows generated shapes,"
        " not photos)",
    )
    p.add_argument(
        "--pretrained",
        help="open_clip tag, checkpoint path, or 'none' for random weights (tests)",
    )
    p.add_argument(
        "--code-method", choices=("head", "pca"),
        help="how the 32-byte codes are made from the CLIP vectors: a small head"
        " trained on the dataset itself (default; with --overwrite, the method of"
        " the index it replaces) or PCA",
    )  # fmt: skip
    p.add_argument(
        "--skip-missing", action="store_true",
        help="index the samples that have an embedding and leave out the others"
        " (the default when embeddings are computed here)",
    )  # fmt: skip
    p.add_argument(
        "--shards",
        type=whole_number(1, MAX_SHARDS),
        help="shards (docs/scale.md; default 1, or with --overwrite as many as the"
        " index it replaces)",
    )
    p.add_argument("--ray-address", help="build shards on this Ray cluster")
    p.add_argument(
        "--overwrite", action="store_true",
        help="build the index of --key again in its place (it answers until the new"
        " one is built; the vectors already embedded are kept)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_build_index)

    p = sub.add_parser(
        "update-index",
        help="bring an index up to date with its dataset (added, deleted samples)",
        description="Embed and append the samples added since the build, drop the"
        " deleted ones, and embed again the samples named by --reembed (the SDK's"
        " update_index).",
    )
    common(p)
    p.add_argument(
        "--retry-failed", action="store_true",
        help="embed again the samples whose image could not be read before",
    )  # fmt: skip
    p.add_argument(
        "--keep-moved", action="store_true",
        help="samples whose filepath changed hold the same images at new paths"
        " (the media were moved): keep their rows, record the new paths (without"
        " it they are embedded again)",
    )  # fmt: skip
    p.add_argument(
        "--reembed", action="append", metavar="ID",
        help="a sample whose image changed: embedded again and its row replaced"
        " (an index of unknown CLIP model reads its vector from the field again:"
        " store the new one first); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--reembed-view", metavar="SAVED_VIEW",
        help="embed again the samples of this saved view (their images changed)",
    )  # fmt: skip
    p.add_argument(
        "--skip-missing", action="store_true",
        help="an index of unknown CLIP model: leave out the added samples without"
        " a vector in its field (indexed once their vectors are stored)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_update_index)

    p = sub.add_parser(
        "indexes",
        help="list a dataset's indexes and their state (or every dataset's keys)",
        description="Each index of DATASET: samples, codes, CLIP model, build time,"
        " and whether samples were added or deleted since (with the command that"
        " updates it). Without DATASET, the datasets that have indexes and their"
        " keys.",
    )
    p.add_argument("dataset", nargs="?", help="FiftyOne dataset name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_indexes)

    p = sub.add_parser(
        "delete-index",
        help="delete one index of a dataset (its files unless a clone uses them)",
        description="Delete index --key of DATASET and its files (kept while a"
        " clone of the dataset still uses them). Samples, tags and fields stay.",
    )
    common(p, key=False)
    p.add_argument("--key", required=True, help="the index to delete")
    p.add_argument(
        "--missing-ok", action="store_true",
        help="no such index is no failure (exit 0, \"deleted\": null): for scripts"
        " that clean up",
    )  # fmt: skip
    p.set_defaults(func=_cmd_delete_index)

    p = sub.add_parser(
        "unlock-index",
        help="release an index key that a build on a dead machine still holds",
        description="A build, update, rename or delete holds its index key until it"
        " ends; one whose machine died holds it for a day. This releases it (a"
        " process of this machine that still runs is refused).",
    )
    common(p, key=False)
    p.add_argument("--key", required=True, help="the index to release")
    p.set_defaults(func=_cmd_unlock_index)

    p = sub.add_parser(
        "rename-index",
        help="give one index of a dataset another key",
        description="Rename index --key of DATASET to --new-key; its files stay"
        " where they are.",
    )
    common(p, key=False)
    p.add_argument("--key", required=True, help="the index to rename")
    p.add_argument("--new-key", required=True, help="its new key")
    p.set_defaults(func=_cmd_rename_index)

    p = sub.add_parser(
        "relocate-checkpoint",
        help="say where an index's CLIP checkpoint file lives now",
        description="The checkpoint file index --key was built with moved: record"
        " its new path (the file must hold the same bytes) on every index and"
        " embeddings field of DATASET that named the old one.",
    )
    common(p)
    p.add_argument("--pretrained", required=True, help="the checkpoint file's new path")
    p.set_defaults(func=_cmd_relocate_checkpoint)

    p = sub.add_parser(
        "search",
        help="the k samples nearest to a text, samples or an image",
        description="Exact nearest neighbours over the index's codes (the SDK's"
        " search_ids): rank, sample id, squared code distance, filepath.",
    )
    common(p)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument(
        "--text", type=non_blank("the words to search for"), action=Once,
        help="text query (needs an index with a CLIP model)",
    )  # fmt: skip
    query.add_argument(
        "--sample-id", dest="sample_ids", action="append", metavar="ID",
        help="query by the mean of these samples (repeat the flag for each)",
    )  # fmt: skip
    query.add_argument(
        "--image", action=Once, help="image path or URL, in the dataset or not"
    )
    p.add_argument(
        "--k", type=whole_number(1), default=DEFAULT_K,
        help=f"results (default {DEFAULT_K})",
    )  # fmt: skip
    p.add_argument(
        "--tag",
        type=non_blank("a tag name", strip=False),
        help="also tag the results with this sample tag; with a label tag"
        " (--positive-tag or --negative-tag), results holding the other one keep it"
        " (--json: each row's 'tagged' says whether this run tagged it)",
    )
    tag_options(p)
    p.add_argument("--limit", type=_count, help=LIMIT_HELP)
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser(
        "refine",
        help="train a model on the labelled samples, return every match",
        description="Labels are the sample tags (--positive-tag, --negative-tag) or"
        " explicit --positive / --negative ids (one per flag); every sample the"
        " model accepts is"
        " returned, best first, its score written to --score-field (the SDK's"
        " refine).",
    )
    common(p)
    p.add_argument(
        "--model", default=DEFAULT_MODEL, choices=model_names(),
        help=f"the model trained on the labels (default {DEFAULT_MODEL}; the README"
        " lists them)",
    )  # fmt: skip
    p.add_argument(
        "--positive", dest="positives", action="append", metavar="ID",
        help="a positive sample id (repeat the flag for each; ids replace the tags)",
    )  # fmt: skip
    p.add_argument(
        "--negative", dest="negatives", action="append", metavar="ID",
        help="a negative sample id (repeat the flag for each; ids replace the tags)",
    )  # fmt: skip
    ids_from_files(p, ("positives", "negatives"))
    tag_options(p)
    p.add_argument("--query", help="the text that was searched (model 'ball')")
    p.add_argument("--saved-view", help="save the result as this view")
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace the --saved-view of that name that clipbranches saved (an"
        " earlier round's); without it an existing name is refused",
    )  # fmt: skip
    scores = p.add_mutually_exclusive_group()
    scores.add_argument(
        "--score-field", default=DEFAULT_SCORE_FIELD, type=_score_field,
        help=f"field receiving the scores (default {DEFAULT_SCORE_FIELD})",
    )  # fmt: skip
    scores.add_argument("--no-scores", action="store_true", help="write no scores")
    p.add_argument(
        "--seed", type=whole_number(0), default=0,
        help="seed of the random negatives and the model (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--random-negatives", type=_count, metavar="N",
        help="unlabelled samples drawn as extra negatives (default: the model's"
        " measured default, the README's table)",
    )  # fmt: skip
    p.add_argument(
        "--neighbours-per-positive", type=_neighbours, metavar="N|auto",
        help="nearest codes of each positive that train as positives too: a count"
        " (0 for none) or 'auto' (default: the model's)",
    )  # fmt: skip
    p.add_argument(
        "--negative-weight", type=finite_number("weight"), default=1.0, metavar="W",
        help="sample weight of every negative (default 1)",
    )  # fmt: skip
    p.add_argument("--limit", type=_count, help=LIMIT_HELP)
    p.set_defaults(func=_cmd_refine)

    p = sub.add_parser(
        "next-to-label",
        help="the samples nearest the positives, neither labelled nor in the result",
        description="What to label next after a refine: the --k samples nearest the"
        " labelled positives (the mean of their codes) that are neither labelled nor"
        " in the result, the samples holding --score-field (the SDK's"
        " next_to_label; the panel's Look further). The next page: the ids shown"
        " so far in --exclude-from (e.g. `--json | jq -r '.results[].id' >>"
        " seen.txt`, then --exclude-from seen.txt).",
    )
    common(p)
    p.add_argument(
        "--k", type=whole_number(1), default=DEFAULT_K,
        help=f"how many (default {DEFAULT_K})",
    )  # fmt: skip
    result = p.add_mutually_exclusive_group()
    result.add_argument(
        "--score-field", default=DEFAULT_SCORE_FIELD, type=_score_field,
        help=f"the field of the refine's scores, which marks its result (default"
        f" {DEFAULT_SCORE_FIELD})",
    )  # fmt: skip
    result.add_argument(
        "--no-result", action="store_true",
        help="leave no refine's result out (none scored yet, or refine"
        " --no-scores): the nearest samples not labelled",
    )  # fmt: skip
    ids_from_files(p, ("exclude",), seen=True)
    tag_options(p)
    p.add_argument("--limit", type=_count, help=LIMIT_HELP)
    p.set_defaults(func=_cmd_next_to_label, exclude=None)

    p = sub.add_parser(
        "label",
        help="label samples positive or negative, or remove their labels",
        description="Label samples as the App's panel marks them (the SDK's"
        " label_samples): a positive loses the negative tag and gets the positive"
        " one, and the other way round; --clear removes both labels from samples,"
        " --clear-all from every sample. Prints the labels the dataset holds after.",
    )
    common(p, key=False)
    p.add_argument(
        "--positive", dest="positives", action="append", metavar="ID", default=[],
        help="label this sample positive (repeat the flag for each)",
    )  # fmt: skip
    p.add_argument(
        "--negative", dest="negatives", action="append", metavar="ID", default=[],
        help="label this sample negative (repeat the flag for each)",
    )  # fmt: skip
    clear = p.add_mutually_exclusive_group()
    clear.add_argument(
        "--clear", action="append", metavar="ID", default=[],
        help="remove both labels from this sample (repeat the flag for each)",
    )  # fmt: skip
    clear.add_argument(
        "--clear-all", action="store_true", help="remove every label of the dataset"
    )
    ids_from_files(p, ("positives", "negatives", "clear"))
    tag_options(p)
    p.set_defaults(func=_cmd_label)
