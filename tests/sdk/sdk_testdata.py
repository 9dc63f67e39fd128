"""Helpers building FiftyOne datasets and class-structured codes for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_cifar_dataset(cifar_dir: Path, n_per_class: int):
    """A new dataset of the first ``n_per_class`` images of each CIFAR class."""
    import fiftyone as fo

    samples = []
    for class_dir in sorted(p for p in Path(cifar_dir).iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir())[:n_per_class]:
            label = fo.Classification(label=class_dir.name)
            samples.append(fo.Sample(filepath=str(path), ground_truth=label))
    ds = fo.Dataset()
    ds.add_samples(samples, progress=False)
    return ds


def cluster_codes(labels, n_dims: int = 32, spread: float = 6.0, seed: int = 0):
    """uint8 ``(N, n_dims)`` codes: one well separated cluster per label value."""
    labels = np.asarray(labels)
    classes, idx = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    centers = rng.integers(40, 216, size=(len(classes), n_dims))
    noise = rng.normal(0.0, spread, size=(len(labels), n_dims))
    return np.clip(np.rint(centers[idx] + noise), 0, 255).astype(np.uint8)


def index_dataset(ds, key: str = "cb", spread: float = 6.0, **build_kwargs):
    """Register an index over cluster codes of ``ds``'s labels (``build_kwargs`` of
    ``build_index_from_codes``, e.g. ``shards``); returns the codes."""
    from fiftyone_clipbranches.sdk import build_index_from_codes

    codes = cluster_codes(ds.values("ground_truth.label"), spread=spread)
    build_index_from_codes(ds, codes, ds.values("id"), key, **build_kwargs)
    return codes


def attach_real_embeddings(ds, emb_dir: Path, field: str = "emb") -> None:
    """Give each CIFAR class of ``ds`` the real CLIP embeddings of one Caltech-101
    class (so samples of a class share real CLIP structure) in VectorField ``field``."""
    import fiftyone as fo

    vectors = np.load(Path(emb_dir) / "caltech101_test_img_emb.npy").astype(np.float32)
    labels = np.load(Path(emb_dir) / "caltech101_test_labels.npy")
    ds_labels = np.array(ds.values("ground_truth.label"))
    classes = np.unique(ds_labels)
    counts = np.bincount(labels)
    donors = [
        c for c in np.argsort(-counts) if counts[c] >= (ds_labels == classes[0]).sum()
    ]
    values = {}
    ids = np.array(ds.values("id"))
    for cls, donor in zip(classes, donors):
        rows = np.flatnonzero(labels == donor)
        for sid, row in zip(ids[ds_labels == cls], rows):
            values[sid] = vectors[row]
    ds.add_sample_field(field, fo.VectorField)
    ds.set_values(field, values, key_field="id")


def doubtful_labels(ds, n_pos, n_odd_pos, n_neg_planes, n_other_neg, seed):
    """Labels the models will disagree with, on a CIFAR dataset: ``n_pos``
    airplanes plus ``n_odd_pos`` samples of other classes as positives (the models
    doubt those), the next ``n_neg_planes`` airplanes (None: all the others) plus
    ``n_other_neg`` other samples as negatives (the models would accept the
    airplanes). Returns ``(positives, negatives, ids, planes, rest)``: id lists,
    then every id, the airplanes' rows and the other classes' rows not labelled
    positive."""
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    planes = np.flatnonzero(labels == "airplane")
    others = np.flatnonzero(labels != "airplane")
    rng = np.random.default_rng(seed)
    odd_pos = rng.choice(others, n_odd_pos, replace=False)
    rest = np.setdiff1d(others, odd_pos)
    end = None if n_neg_planes is None else n_pos + n_neg_planes
    neg_rows = np.concatenate(
        [planes[n_pos:end], rng.choice(rest, n_other_neg, replace=False)]
    )
    positives = ids[np.concatenate([planes[:n_pos], odd_pos])].tolist()
    return positives, ids[neg_rows].tolist(), ids, planes, rest
