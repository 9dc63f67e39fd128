"""Fit a code encoder on a bounded sample of a field's embeddings and encode them
all in batches: memory is the sample, one batch and the codes (N x 32 bytes)."""

from __future__ import annotations

import numpy as np

from fiftyone_clipbranches.sdk.embedding_reader import EmbeddingSource
from fiftyone_clipbranches.sdk.messages import counted
from fiftyone_clipbranches.sdk.progress import ProgressFn


def fit_rows_needed(method: str, n_dims: int = 32) -> int:
    """The fewest embeddings a code encoder of ``method`` ("head" or "pca") with
    ``n_dims`` dims fits on (for the faces: ``embed.encoder.min_fit_rows``)."""
    from fiftyone_clipbranches.embed.encoder import min_fit_rows

    return min_fit_rows(method, n_dims)


def check_fit_rows(
    n: int, method: str, encoder_params, what: str, missing: str | None = None
) -> None:
    """Raise ValueError when ``n`` embeddings are too few to fit a code encoder of
    ``method`` (``what`` says whose), naming the way out (``missing``: computing
    the samples' missing vectors, when that would be enough)."""
    n_dims = int((encoder_params or {}).get("n_dims", 32))
    need = fit_rows_needed(method, n_dims)
    if n >= need:
        return
    pca = fit_rows_needed("pca", n_dims)
    if missing:
        hint = missing
    elif method == "head" and n >= pca:
        hint = f"use code_method='pca' (CLI: --code-method pca), which needs {pca}"
    else:
        hint = f"add {need - n} or more samples ({need} embeddings in all)"
    raise ValueError(
        f"{what}; code_method={method!r} needs at least {need} embeddings to fit"
        f" its code encoder: {hint}"
    )


def fit_and_encode(
    source: EmbeddingSource,
    method: str,
    identity: dict | None,
    encoder_params: dict | None,
    report: ProgressFn,
    n_unreadable: int = 0,
):
    """``(encoder, codes uint8 (N, 32))`` of every row of ``source``
    (``n_unreadable``: of the samples without a vector, those whose image could
    not be read, which computing cannot fill).

    The encoder is the one ``embed.fit_code_encoder`` fits on all the vectors in
    memory (same sample rows, same seed), so the codes are identical to that path.
    """
    from fiftyone_clipbranches.embed.encoder import (
        MAX_FIT_ROWS,
        fit_code_encoder,
        fit_sample_rows,
        min_fit_rows,
    )

    params = dict(encoder_params or {})
    n, absent = len(source), source.n_missing
    what = f"{counted(n, 'sample')} with embeddings"
    way_out = None
    computable = absent - min(n_unreadable, absent)
    if absent:
        what = (
            f"{counted(n, 'sample')} of {n + absent} with a vector in {source.field!r}"
        )
        if n_unreadable:
            what += f" ({counted(n_unreadable, 'image')} could not be read)"
        if computable and n + computable >= min_fit_rows(
            method, params.get("n_dims", 32)
        ):
            way_out = (
                f"compute the {computable} missing vectors first, with the model of"
                " the others (sdk.compute_embeddings; in the App, Compute CLIP"
                " embeddings)"
            )
    check_fit_rows(n, method, params, what, way_out)
    max_fit_rows = params.pop("max_fit_rows", MAX_FIT_ROWS)
    rows = fit_sample_rows(len(source), max_fit_rows, params.get("seed", 0))
    whole = len(rows) == len(source)
    report(0.0, f"reading {len(rows)} of {len(source)} embeddings to fit the encoder")
    sample = source.read_all() if whole else source.read_rows(rows)
    fitting = f"fitting the code encoder ({method}) on {len(rows)} embeddings"
    report(0.2, fitting)
    encoder = fit_code_encoder(
        sample,
        method=method,
        clip_identity=identity,
        progress=lambda f: report(0.2 + 0.6 * f, fitting),
        max_fit_rows=None,
        **params,
    )
    if whole:
        report(0.9, f"encoding {len(source)} embeddings")
        return encoder, encoder.encode(sample)
    del sample
    return encoder, encode_source(
        source, encoder, lambda f, label: report(0.8 + 0.2 * f, label)
    )


def encode_source(source: EmbeddingSource, encoder, report: ProgressFn) -> np.ndarray:
    """uint8 ``(N, n_dims)`` codes of every row of ``source``, read batch by batch
    (a source of vectors added to an index is opened with the ``width`` of its
    model: vectors of another model are named as it reads them)."""
    codes = np.empty((len(source), encoder.n_dims), np.uint8)
    for start, batch in source.batches():
        codes[start : start + len(batch)] = encoder.encode(batch)
        done = start + len(batch)
        report(done / len(source), f"encoded {done}/{len(source)} embeddings")
    return codes
