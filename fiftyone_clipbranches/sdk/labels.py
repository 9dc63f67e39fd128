"""Training labels from sample tags or explicit ids."""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass

from fiftyone_clipbranches.sdk.errors import ContradictoryLabelsError, NoPositivesError
from fiftyone_clipbranches.sdk.messages import counted, counted_are
from fiftyone_clipbranches.sdk.rowmap import as_sample_ids, is_part_view
from fiftyone_clipbranches.sdk.runs import root_dataset
from fiftyone_clipbranches.sdk.settings import DEFAULT_TAGS


@dataclass(frozen=True)
class Labels:
    """Positive and negative sample ids of one refinement round."""

    positives: list[str]
    negatives: list[str]
    source: str  # "tags" or "ids"


def collect_labels(
    dataset, positives=None, negatives=None, tags=DEFAULT_TAGS
) -> Labels:
    """Positive/negative sample ids, validated.

    When neither ``positives`` nor ``negatives`` is given they are read from the
    sample tags ``tags = (positive tag, negative tag)``; when either is given the
    other defaults to none.

    Raises:
        NoPositivesError: no positive sample.
        ContradictoryLabelsError: a sample is both positive and negative.
        SampleIdsError: an id is not a sample id (24 hexadecimal digits).
    """
    pos_tag, neg_tag = _check_tags(tags)
    if positives is None and negatives is None:
        pos = tagged_ids(dataset, pos_tag)
        neg = tagged_ids(dataset, neg_tag)
        source = "tags"
        panel = (
            "select them, Mark positive"
            if pos_tag == DEFAULT_TAGS[0]
            else f"its Positive tag set to {pos_tag!r}, select them, Mark positive"
        )
        app_hint = f"tag some samples {pos_tag!r} (in the App's panel: {panel})"
        flag = (
            ""
            if pos_tag == DEFAULT_TAGS[0]
            else f" --positive-tag {shlex.quote(pos_tag)}"
        )
        shell = (
            f"clipbranches label {shlex.quote(root_dataset(dataset).name)}"
            f" --positive ID{flag}"
        )
        hint = (
            f"tag some samples {pos_tag!r} (in the App's panel: {panel}; in a shell:"
            f" {shell})"
        )
    else:
        pos = as_sample_ids(positives, "positives")
        neg = as_sample_ids(negatives, "negatives")
        source = "ids"
        hint = "pass positive sample ids (positives= in Python, --positive in the CLI)"
    pos, neg = list(dict.fromkeys(pos)), list(dict.fromkeys(neg))
    both = set(pos).intersection(neg)
    if both:
        example = ", ".join(sorted(both)[:3])
        what = (
            f"tagged both {pos_tag!r} and {neg_tag!r}"
            if source == "tags"
            else ("in both positives and negatives")
        )
        raise ContradictoryLabelsError(
            f"{counted_are(len(both), 'sample')} {what} (e.g. {example}); "
            "remove one of the labels and try again",
            ids=sorted(both),
        )
    if not pos:
        if source == "ids":
            tagged = len(tagged_ids(dataset, pos_tag))
            if tagged:
                hint = (
                    f"ids given replace the tags, so the {counted(tagged, 'sample')}"
                    f" tagged {pos_tag!r} {'was' if tagged == 1 else 'were'} not"
                    " used: pass the positives' ids"
                    " (positives= in Python, --positive in the CLI), or pass no ids"
                    " at all (neither positives nor negatives) to read the tags,"
                    f" the negatives tagged {neg_tag!r}"
                )
        else:
            others = _other_tags(dataset, (pos_tag, neg_tag))
            if others:
                hint = f"no sample is tagged {pos_tag!r}{others}; {hint}"
                app_hint = f"no sample is tagged {pos_tag!r}{others}; {app_hint}"
        refused = NoPositivesError(f"no positive samples: {hint}, then try again")
        if source == "tags":
            refused.in_app = f"no positive samples: {app_hint}, then try again"
        raise refused
    return Labels(pos, neg, source)


def _other_tags(dataset, tags: tuple[str, str]) -> str:
    """The tags ``dataset``'s samples hold besides ``tags`` (positive, negative),
    the positive tag's likely typo first, in words; empty when they hold none."""
    held = sorted(t for t in dataset.distinct("tags") if t not in tags)
    if not held:
        return ""
    close = difflib.get_close_matches(tags[0], held, n=1)
    shown = ", ".join(repr(t) for t in held[:8]) + (", ..." if len(held) > 8 else "")
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f" ({guess}the samples are tagged {shown})"


def ensure_tags_index(dataset) -> None:
    """Create the database index on sample tags once (per process and collection;
    seconds at millions of samples, once), so reading or counting the samples of
    one tag costs in proportion to their number, not to the dataset's."""
    root = root_dataset(dataset)
    name = root._sample_collection_name
    if name in _TAG_INDEXED:
        return
    root.create_index("tags")
    _TAG_INDEXED.add(name)


def tagged_ids(dataset, tag: str) -> list[str]:
    """Ids of the samples of ``dataset`` (a dataset or view) tagged ``tag``, by the
    tags index when ``dataset`` is a whole dataset."""
    if root_dataset(dataset) is not dataset:
        return dataset.match_tags(tag).values("id")
    ensure_tags_index(dataset)
    cursor = dataset._sample_collection.find({"tags": tag}, {"_id": 1})
    return [str(doc["_id"]) for doc in cursor]


def count_tagged(dataset, tags) -> dict[str, int]:
    """``{tag: number of samples of dataset tagged tag}``, by the tags index when
    ``dataset`` is a whole dataset (``count_sample_tags`` reads every sample)."""
    if root_dataset(dataset) is not dataset:
        counts = dataset.count_sample_tags()
        return {t: counts.get(t, 0) for t in tags}
    ensure_tags_index(dataset)
    coll = dataset._sample_collection
    return {t: coll.count_documents({"tags": t}) for t in tags}


def count_both(dataset, tags) -> int:
    """The samples of the whole ``dataset`` tagged both ``tags`` (positive,
    negative): contradictory labels, which stop a refinement."""
    ds = root_dataset(dataset)
    ensure_tags_index(ds)
    return ds._sample_collection.count_documents({"tags": {"$all": list(tags)}})


_TAG_INDEXED: set[str] = set()


def _check_tags(tags) -> tuple[str, str]:
    if (
        not isinstance(tags, list | tuple)
        or len(tags) != 2
        or not all(isinstance(t, str) and t.strip() for t in tags)
    ):
        raise ValueError(
            "tags must be (positive tag, negative tag), each more than white space;"
            f" got {tags!r}"
        )
    if tags[0] == tags[1]:
        raise ValueError("the positive and negative tags must differ")
    return tags[0], tags[1]


def label_samples(
    dataset, positives=(), negatives=(), tags=DEFAULT_TAGS
) -> tuple[int, int]:
    """Label samples of ``dataset``'s root dataset positive or negative, as the
    App's panel marks them: a positive loses the negative tag and gets the
    positive one, and the other way round.

    Args:
        positives, negatives: sample ids (24 hexadecimal digits) of the dataset.
        tags: ``(positive tag, negative tag)``.

    Returns:
        ``(n_positives, n_negatives)`` labelled.

    Raises:
        SampleIdsError: an id is malformed or not a sample of the dataset.
        ContradictoryLabelsError: an id is in both lists.
    """
    pos_tag, neg_tag = _check_tags(tags)
    ds = root_dataset(dataset)
    pos = list(dict.fromkeys(as_sample_ids(positives, "positives")))
    neg = list(dict.fromkeys(as_sample_ids(negatives, "negatives")))
    both = sorted(set(pos).intersection(neg))
    if both:
        raise ContradictoryLabelsError(
            f"{counted_are(len(both), 'sample')} both positive and negative"
            f" (e.g. {both[0]}): give each one label",
            ids=both,
        )
    if pos or neg:
        from fiftyone_clipbranches.sdk.indexes import check_ids_in_dataset
        from fiftyone_clipbranches.sdk.rowmap import SampleRowMap

        check_ids_in_dataset(ds, SampleRowMap([*pos, *neg]))
    for ids, add, drop in ((pos, pos_tag, neg_tag), (neg, neg_tag, pos_tag)):
        if ids:
            view = ds.select(ids)
            # the new label first: stopped between the two, a sample holds both
            # (refused as contradictory, named), never neither (its label lost)
            view.tag_samples(add)
            view.untag_samples(drop)
    return len(pos), len(neg)


def clear_labels(dataset, ids=None, tags=DEFAULT_TAGS) -> int:
    """Remove both labels (``tags``) from the samples ``ids`` of ``dataset``'s root
    dataset, or (``ids`` None) from every sample of ``dataset``: of a view, its
    samples only. Returns how many labels it removed."""
    pos_tag, neg_tag = _check_tags(tags)
    ds = root_dataset(dataset)
    if ids is None:  # a view's samples (of patches, the images they come from)
        part = dataset is not ds and is_part_view(dataset)
        scope = ds.select(as_sample_ids(dataset, "ids")) if part else dataset
    else:
        scope = ds.select(as_sample_ids(ids, "ids"))
    labelled = scope.match_tags([pos_tag, neg_tag])
    n = sum(count_tagged(labelled, (pos_tag, neg_tag)).values())
    labelled.untag_samples([pos_tag, neg_tag])
    return n
