"""What clipbranches indexes: the image samples of a dataset, not videos, groups
or the patches, frames, clips and dynamic groups of views."""

from __future__ import annotations

import os

from fiftyone_clipbranches.sdk.errors import UnsupportedMediaError

#: FiftyOne's media types of datasets without images of their own ("unknown", a
#: file of no known extension, and None, an empty dataset, are left to decoding
#: and to the sample counts).
NOT_IMAGES = ("video", "point-cloud", "3d", "multimodal")


def require_image_samples(samples, root) -> None:
    """Refuse ``samples`` (a dataset or view whose root dataset is ``root``)
    unless its rows are image samples of ``root``.

    Raises:
        UnsupportedMediaError: with the way out for each kind.
    """
    media = root.media_type
    if media == "group":
        slices = sorted(root.group_slices or ["SLICE"])
        listed = ", ".join(repr(s) for s in slices)
        raise UnsupportedMediaError(
            f"dataset {root.name!r} is a grouped dataset (slices {listed}):"
            " clipbranches indexes a dataset of images; make one of a slice and"
            f" index that, e.g. fo.load_dataset({root.name!r})"
            f".select_group_slices({slices[0]!r}).clone('{root.name}-{slices[0]}')"
            " (CLI: build-index on that dataset)"
        )
    if media in NOT_IMAGES:
        raise UnsupportedMediaError(
            f"dataset {root.name!r} holds {media} media, not images:"
            " clipbranches indexes images only"
            + (
                ": index its frames as images, a dataset of them made with"
                " dataset.to_frames(sample_frames=False).clone('NAME') where its"
                " frames have image files of their own (a frame-level filepath),"
                " else to_frames(sample_frames=True) (sampling frames to image files"
                " needs ffmpeg)"
                if media == "video"
                else " (a dataset of rendered or captured images of them can be"
                " indexed)"
            )
        )
    if getattr(samples, "_is_dynamic_groups", False):
        raise UnsupportedMediaError(
            f"this view of {root.name!r} groups its samples (group_by): its rows are"
            " groups, one sample standing for each; search or refine its samples,"
            " view.flatten() (or group_by(..., flat=True))"
        )
    for kind in ("patches", "frames", "clips"):
        if getattr(samples, f"_is_{kind}", False):
            frames = (
                ", or make its frames a dataset of images, view.clone('NAME'), and"
                " use that (its frames sampled to image files:"
                " to_frames(sample_frames=True), which needs ffmpeg)"
                if kind == "frames"
                else ""
            )
            raise UnsupportedMediaError(
                f"this is a {kind} view of {root.name!r}: its rows are {kind}, not"
                " the dataset's samples, which clipbranches works on: use the"
                " dataset (or a view of its samples, e.g. dataset.match_labels(...))"
                f" instead{frames}"
            )


def media_refusal(dataset) -> str | None:
    """Why ``dataset`` (a whole dataset) cannot be indexed, in the words of
    :func:`require_image_samples`; None when it can."""
    try:
        require_image_samples(dataset, dataset)
    except UnsupportedMediaError as e:
        return str(e)
    return None


def no_local_file(filepath: str) -> bool:
    """Whether ``filepath`` is a local path with no file behind it (a URL or a
    cloud path is taken as there)."""
    return "://" not in filepath and not os.path.isfile(filepath)
