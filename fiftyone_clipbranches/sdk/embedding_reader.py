"""Embeddings of a FiftyOne field read in batches, never all at once.

FiftyOne stores a ``VectorField`` value as the zlib-compressed bytes of
``numpy.save``; :func:`decode_vectors` turns a batch of them into one float32
matrix (one header parse, one join, one ``frombuffer``). An
:class:`EmbeddingSource` holds only the sample ids (24 bytes each) of the samples
that have a vector; their vectors are read by row position (a fit sample) or
streamed in fixed-size batches in collection order.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator

import fiftyone as fo
import numpy as np
from bson import ObjectId

from fiftyone_clipbranches.sdk.errors import MissingEmbeddingsError, StaleIndexError
from fiftyone_clipbranches.sdk.messages import counted
from fiftyone_clipbranches.sdk.runs import root_dataset

#: Rows per streamed batch (a multiple of ``embed.encoder.ENCODE_ROWS``, so encoding
#: a stream batch by batch gives the very codes of one call on all rows).
BATCH_ROWS = 1 << 16
#: Sample ids per ``$in`` query when reading rows by position.
_LOOKUP_IDS = 20_000


class EmbeddingSource:
    """The embeddings of ``field`` over ``samples``, read lazily.

    Build with :func:`open_embeddings`. Row ``i`` is the ``i``-th sample of
    ``samples`` (in collection order) that has a vector.

    Attributes:
        ids: ``S24`` array of the sample ids of the rows.
        n_missing: samples of ``samples`` without a vector (left out).
        width: the length every vector must have (an index's model's), or None
            (one length, whichever).
    """

    def __init__(
        self,
        samples,
        field: str,
        ids: np.ndarray,
        n_missing: int,
        width: int | None = None,
    ):
        self._present = samples.exists(field)
        self.field = field
        self.ids = ids
        self.n_missing = int(n_missing)
        self.width = width

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def id_list(self) -> list[str]:
        return np.char.decode(self.ids, "ascii").tolist()

    def read_rows(self, rows) -> np.ndarray:
        """float32 ``(len(rows), d)`` vectors of rows ``rows`` (int array)."""
        rows = np.asarray(rows, dtype=np.int64)
        wanted = self.ids[rows]
        slot = {sid: k for k, sid in enumerate(wanted.tolist())}
        out = None
        for a in range(0, len(wanted), _LOOKUP_IDS):
            chunk = [ObjectId(s.decode()) for s in wanted[a : a + _LOOKUP_IDS]]
            docs = list(
                self._present._aggregate(
                    post_pipeline=[
                        {"$match": {"_id": {"$in": chunk}}},
                        {"$project": {self.field: 1}},
                    ]
                )
            )
            if len(docs) != len(chunk):
                raise _changed_error(self._present, self.field)
            got = _hex_ids([d["_id"] for d in docs]).tolist()
            vectors = decode_vectors(
                [_value(d, self.field) for d in docs], self.field, got, self.width
            )
            if out is None:
                out = np.empty((len(rows), vectors.shape[1]), np.float32)
            elif vectors.shape[1] != out.shape[1]:
                raise _width_error(self.field, got, vectors.shape[1], out.shape[1])
            out[[slot[sid] for sid in got]] = vectors
        if out is None:
            return np.zeros((0, 0), np.float32)
        return out

    def batches(
        self, batch_rows: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 (b, d))`` over every row in order, ``b ==
        batch_rows`` (default :data:`BATCH_ROWS`) but for the last batch.

        Raises:
            StaleIndexError: the samples changed since the ids were read.
        """
        batch_rows = batch_rows or BATCH_ROWS
        cursor = self._present._aggregate(post_pipeline=[{"$project": {self.field: 1}}])
        start, ids, values, width = 0, [], [], self.width
        for doc in cursor:
            ids.append(doc["_id"])
            values.append(_value(doc, self.field))
            if len(values) == batch_rows:
                vectors = self._checked(start, ids, values, width)
                width = vectors.shape[1]
                yield start, vectors
                start, ids, values = start + len(values), [], []
        if values:
            yield start, self._checked(start, ids, values, width)
            start += len(values)
        if start != len(self):
            raise _changed_error(self._present, self.field)

    def read_all(self) -> np.ndarray:
        """float32 ``(n, d)`` of every row (for small collections)."""
        parts = [v for _, v in self.batches()]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def _checked(self, start, ids, values, width=None) -> np.ndarray:
        got = _hex_ids(ids)
        if not np.array_equal(got, self.ids[start : start + len(got)]):
            raise _changed_error(self._present, self.field)
        vectors = decode_vectors(values, self.field, got, self.width)
        if width is not None and vectors.shape[1] != width:  # vs earlier batches
            raise _width_error(self.field, got, vectors.shape[1], width)
        _refuse_unusable(vectors, got, self.field)
        return vectors


def refuse_non_vector_field(root, field: str):
    """``root``'s field ``field`` (None when there is none), unless it cannot hold
    embeddings: neither a VectorField nor a list of numbers (``tags``, a label)."""
    found = root.get_field(field)
    if found is None or isinstance(found, fo.VectorField | fo.ArrayField):
        return found  # an array of another shape is refused as it is read
    kind = type(found).__name__
    if isinstance(found, fo.ListField):
        if found.field is None or isinstance(found.field, fo.FloatField | fo.IntField):
            return found
        kind += f" of {type(found.field).__name__}"
    raise MissingEmbeddingsError(
        f"field {field!r} of dataset {root.name!r} has type {kind}, not a"
        " VectorField of embeddings: pass the name of one, or of a new field to"
        " compute them into"
    )


def open_embeddings(
    samples, field: str, skip_missing: bool = False, width: int | None = None
) -> EmbeddingSource:
    """The :class:`EmbeddingSource` of ``field`` over ``samples`` (reads the ids).

    Args:
        skip_missing: leave out samples without a vector instead of raising.
        width: the length every vector must have (the model's of the index they
            are added to): vectors of another length are named as another
            model's (``MissingEmbeddingsError.ids``: those of the batch read).

    Raises:
        MissingEmbeddingsError: when the field does not exist, when some samples
            lack a vector (unless ``skip_missing``) or when none has one.
    """
    root = root_dataset(samples)
    found = refuse_non_vector_field(root, field)
    if found is None:
        raise MissingEmbeddingsError(
            f"dataset {root.name!r} has no embeddings field {field!r}; compute "
            "embeddings first (compute_embeddings), give model= and pretrained= to "
            "build_index to compute them into it (CLI: --model, --pretrained), or "
            "pass the name of an existing VectorField"
        )
    cursor = samples.exists(field)._aggregate(post_pipeline=[{"$project": {"_id": 1}}])
    parts, chunk = [], []
    for doc in cursor:
        chunk.append(doc["_id"])
        if len(chunk) == _LOOKUP_IDS:
            parts.append(_hex_ids(chunk))
            chunk = []
    parts.append(_hex_ids(chunk))
    ids = np.concatenate(parts)
    n_missing = samples.count() - len(ids)
    if n_missing and not skip_missing:
        raise MissingEmbeddingsError(
            f"{n_missing} samples have no {field!r} embedding; compute them with "
            f"compute_embeddings(dataset, {field!r}) first, or pass "
            "skip_missing=True (CLI: --skip-missing) to index the others (an image "
            "that cannot be read never gets one; index_info reports those left out)",
            n_missing=n_missing,
        )
    if not len(ids):
        raise MissingEmbeddingsError(
            f"no sample has a {field!r} embedding: nothing to index"
        )
    return EmbeddingSource(samples, field, ids, n_missing, width)


def read_embeddings(
    samples, field: str, skip_missing: bool = False
) -> tuple[list[str], np.ndarray]:
    """Sample ids and float32 ``(n, d)`` embeddings of ``samples`` from ``field``,
    all in memory (for a few samples: an update's additions, say); errors as
    :func:`open_embeddings`."""
    source = open_embeddings(samples, field, skip_missing=skip_missing)
    return source.id_list(), source.read_all()


def decode_vectors(
    values: list, field: str = "embeddings", ids=None, width: int | None = None
) -> np.ndarray:
    """float32 ``(n, d)`` from stored ``VectorField`` (or ``ListField``) values.

    Args:
        ids: optional sample ids (one per value), named in the error.
        width: the length every vector must have, or None (one length).

    Raises:
        MissingEmbeddingsError: the values are not 1-d vectors of one length.
    """
    if not values:
        return np.zeros((0, 0), np.float32)
    if not all(isinstance(v, bytes) for v in values):
        return _stack([np.asarray(v) for v in values], field, ids, width)
    blobs = [zlib.decompress(v) for v in values]
    first = blobs[0]
    with io.BytesIO(first) as f:
        version = np.lib.format.read_magic(f)
        read_header = _HEADER_READERS.get(version)
        shape, _, dtype = read_header(f) if read_header else ((), False, None)
        offset = f.tell()
    size = len(first)
    head = first[:offset]
    if (
        len(shape) != 1
        or dtype.hasobject
        or (width is not None and shape[0] != width)
        or any(  # mixed: decode one by one
            len(b) != size or not b.startswith(head) for b in blobs
        )
    ):
        return _stack(
            [np.load(io.BytesIO(b), allow_pickle=False) for b in blobs],
            field,
            ids,
            width,
        )
    raw = np.frombuffer(b"".join(blobs), np.uint8).reshape(len(blobs), size)
    matrix = np.ascontiguousarray(raw[:, offset:]).view(dtype)
    return float32_rows(matrix.reshape(len(blobs), shape[0]), f"field {field!r}")


#: float64 rows whose largest magnitude lies outside this range are divided by it
#: before the cast to float32, which would make them infinite or zero (a vector's
#: direction is what the index compares, not its length).
_FLOAT32_SAFE = (1e-30, 1e30)


def float32_rows(matrix: np.ndarray, what: str) -> np.ndarray:
    """``matrix`` (``(n, d)`` of any real dtype) as float32, rows of magnitudes
    float32 cannot hold scaled down or up first; complex values are refused
    (``what`` holds them: ``"field 'emb'"``, say)."""
    if np.iscomplexobj(matrix):
        raise MissingEmbeddingsError(
            f"{what} holds complex numbers ({matrix.dtype}): give real vectors"
            " (float32)"
        )
    if matrix.dtype.itemsize > 4 and np.issubdtype(matrix.dtype, np.floating):
        from fiftyone_clipbranches.embed.quantizer import rows_in_range

        matrix = rows_in_range(matrix, *_FLOAT32_SAFE)
    return matrix.astype(np.float32, copy=False)


_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _stack(arrays: list[np.ndarray], field: str, ids=None, width=None) -> np.ndarray:
    shapes = [a.shape for a in arrays]
    if width is not None and any(shape != (width,) for shape in shapes):
        odd = [i for i, shape in enumerate(shapes) if shape != (width,)]
        raise _another_model_error(field, ids, odd, shapes, width)
    if any(len(shape) != 1 for shape in shapes) or len(set(shapes)) != 1:
        usual = max(
            set(shapes), key=lambda shape: (len(shape) == 1, shapes.count(shape))
        )
        odd = [i for i, shape in enumerate(shapes) if shape != usual]
        if not odd and len(usual) == 2 and 1 in usual:  # one row or column each
            raise MissingEmbeddingsError(
                f"field {field!r} holds its vectors as arrays of shape {usual}, not"
                " as 1-d vectors: store them flat (vector.ravel()), then build again"
            )
        raise _ragged_error(field, [_shape_words(shapes[i]) for i in odd], ids, odd,
                            _shape_words(usual))  # fmt: skip
    return float32_rows(np.stack(arrays), f"field {field!r}")


def _refuse_unusable(vectors: np.ndarray, ids: np.ndarray, field: str) -> None:
    """Raise when a vector holds NaN or infinite values, or only zeros (it has no
    direction to compare), naming the samples (``ids`` hex, one per row)."""
    bad = ~np.isfinite(vectors).all(axis=1) | ~vectors.any(axis=1)
    if not bad.any():
        return
    which = [_hex(i) for i in ids[bad][:3]]
    raise MissingEmbeddingsError(
        f"{counted(int(bad.sum()), 'sample')} in {field!r} (e.g. {', '.join(which)})"
        " hold a vector of NaN or infinite values, or of zeros only: compute them"
        " again, or clear them (set the field to None) and leave them out"
        " (skip_missing)"
    )


def _another_model_error(field: str, ids, odd, shapes, width: int):
    """Vectors at positions ``odd`` of ``ids`` are not of the ``width`` the index's
    model makes: another model's (merged from another dataset, say). The caller
    adds the way out (embedding them again needs the index's model)."""
    named = [
        f"{_hex(ids[i])} ({_shape_words(shapes[i])})" if ids is not None else str(i)
        for i in odd[:3]
    ]
    verb = "holds a vector" if len(odd) == 1 else "hold vectors"
    return MissingEmbeddingsError(
        f"{counted(len(odd), 'sample')} of {field!r} (e.g. {', '.join(named)}) {verb}"
        f" of another length than the {width} the index's model makes: another"
        " model made them (merged from another dataset?)",
        ids=[] if ids is None else [_hex(ids[i]) for i in odd],
    )


def _width_error(field: str, ids, width: int, earlier: int) -> MissingEmbeddingsError:
    """A batch of ``ids`` whose vectors are of length ``width``, the earlier
    batches' of length ``earlier`` (which of the two is odd is not known here)."""
    return MissingEmbeddingsError(
        f"field {field!r} does not hold 1-d vectors of one length: samples from"
        f" {_hex(ids[0])} on hold vectors of length {width}, those read before them"
        f" of length {earlier}; compute the vectors again with one model, or clear"
        " those of the other (set the field to None) and leave them out"
        " (skip_missing)"
    )


def _shape_words(shape: tuple) -> str:
    if len(shape) == 1:
        return f"length {shape[0]}"
    return "a scalar" if not shape else f"shape {shape}"


def _ragged_error(
    field: str, odd=(), ids=None, where=(), usual: str | None = None
) -> MissingEmbeddingsError:
    """``field`` does not hold 1-d vectors of one length; ``odd`` describes the
    vectors unlike the ``usual`` one, at positions ``where`` of ``ids``."""
    message = f"field {field!r} does not hold 1-d vectors of one length"
    if odd and ids is not None and usual is not None:
        named = [f"{_hex(ids[i])} ({words})" for i, words in zip(where[:3], odd[:3])]
        message += (
            f": {counted(len(odd), 'sample')} (e.g. {', '.join(named)}) unlike the"
            f" others ({usual}); compute them again with the others' model, or"
            " clear them (set the field to None) and leave them out (skip_missing)"
        )
    return MissingEmbeddingsError(message)


def _hex(sample_id) -> str:
    return sample_id.decode() if isinstance(sample_id, bytes) else str(sample_id)


def _hex_ids(object_ids: list) -> np.ndarray:
    joined = b"".join(oid.binary for oid in object_ids)
    return np.frombuffer(joined.hex().encode("ascii"), dtype="S24")


def _value(doc: dict, path: str):
    value = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _changed_error(samples, field: str) -> StaleIndexError:
    return StaleIndexError(
        f"the samples of dataset {root_dataset(samples).name!r} or their {field!r} "
        "embeddings changed while they were read; build the index again"
    )
