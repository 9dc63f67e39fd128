"""The streamed build_index (embeddings read in batches, encoder fitted on a bounded
sample) gives the index of the in-memory path on the same vectors, bit for bit."""

import fiftyone as fo
import fiftyone.core.utils as fou
import numpy as np
import pytest
from sdk_testdata import attach_real_embeddings

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.embed import encoder as encoder_module
from fiftyone_clipbranches.embed.encoder import fit_code_encoder
from fiftyone_clipbranches.sdk import embedding_reader
from fiftyone_clipbranches.sdk.embedding_reader import decode_vectors, open_embeddings


@pytest.fixture
def embedded(make_dataset, clip_embeddings_dir):
    ds = make_dataset(20)
    attach_real_embeddings(ds, clip_embeddings_dir)
    return ds


@pytest.fixture
def small_batches(monkeypatch):
    """Stream 64 rows at a time (200 samples: 4 batches, the last one short)."""
    monkeypatch.setattr(embedding_reader, "BATCH_ROWS", 64)
    monkeypatch.setattr(encoder_module, "ENCODE_ROWS", 64)


def _in_memory_index(ds, key, method, params):
    """Today's path: every vector in memory, fit, encode, index the codes."""
    present = ds.exists("emb")
    ids, vectors = present.values(["id", "emb"])
    vectors = np.stack(vectors).astype(np.float32)
    encoder = fit_code_encoder(vectors, method=method, progress=False, **params)
    sdk.build_index_from_codes(ds, encoder.encode(vectors), ids, key, encoder=encoder)
    return encoder


def _answers(ds, key, cats):
    near = sdk.search_ids(ds, sample_ids=cats[:3], k=25, index_key=key)
    by_vector = sdk.search_ids(ds, vector=ds[cats[5]]["emb"], k=25, index_key=key)
    refined = sdk.refine(ds, positives=cats[:8], index_key=key, model="ensemble")
    return [
        (list(ids), np.asarray(dists).tolist()) for ids, dists in (near, by_vector)
    ] + [(list(refined.ids), np.asarray(refined.scores).tolist())]


@pytest.mark.parametrize(
    "method, params",
    [
        ("pca", {"max_fit_rows": 120}),
        ("pca", {}),
        ("head", {"steps": 25, "max_fit_rows": 150, "seed": 3}),
    ],
)
def test_streamed_build_equals_the_in_memory_build(
    embedded, small_batches, method, params
):
    ds = embedded
    sdk.build_index(
        ds,
        "streamed",
        embeddings_field="emb",
        code_method=method,
        encoder_params=dict(params),
        progress=False,
    )
    reference = _in_memory_index(ds, "memory", method, params)
    _, streamed = sdk.load_index(ds, "streamed")
    _, memory = sdk.load_index(ds, "memory")
    assert np.array_equal(streamed.rowmap.ids, memory.rowmap.ids)
    assert np.array_equal(
        np.asarray(streamed.index.codes), np.asarray(memory.index.codes)
    )
    assert streamed.encoder.quantizer.to_dict() == reference.quantizer.to_dict()
    labels = np.array(ds.values("ground_truth.label"))
    cats = np.array(ds.values("id"))[labels == "cat"].tolist()
    assert _answers(ds, "streamed", cats) == _answers(ds, "memory", cats)


def test_streamed_build_skips_samples_without_a_vector(embedded, small_batches):
    ds = embedded
    ds.select(ds.values("id")[10:80:7]).set_field("emb", None).save()
    info = sdk.build_index(
        ds,
        "streamed",
        embeddings_field="emb",
        code_method="pca",
        encoder_params={"max_fit_rows": 100},
        skip_missing=True,
        progress=False,
    )
    assert info.n_samples == 190
    _in_memory_index(ds, "memory", "pca", {"max_fit_rows": 100})
    _, streamed = sdk.load_index(ds, "streamed")
    _, memory = sdk.load_index(ds, "memory")
    assert np.array_equal(streamed.rowmap.ids, memory.rowmap.ids)
    assert np.array_equal(
        np.asarray(streamed.index.codes), np.asarray(memory.index.codes)
    )
    assert len(streamed.unembeddable) == 10


def test_reader_reads_rows_by_position_and_in_batches(embedded, small_batches):
    ds = embedded
    ids, vectors = ds.values(["id", "emb"])
    vectors = np.stack(vectors).astype(np.float32)
    source = open_embeddings(ds, "emb")
    assert source.id_list() == ids
    rows = np.array([0, 3, 64, 150, 199])
    assert np.array_equal(source.read_rows(rows), vectors[rows])
    batches = list(source.batches())
    assert [start for start, _ in batches] == [0, 64, 128, 192]
    assert np.array_equal(np.concatenate([b for _, b in batches]), vectors)


def test_a_sample_deleted_while_streaming_is_a_clear_error(embedded, small_batches):
    ds = embedded
    source = open_embeddings(ds, "emb")
    ds.delete_samples(ds.values("id")[100])
    with pytest.raises(sdk.StaleIndexError, match="changed while they were read"):
        list(source.batches())


def test_decode_vectors_handles_every_stored_form():
    rng = np.random.default_rng(0)
    f64 = rng.normal(size=(5, 7))
    blobs = [fou.serialize_numpy_array(v) for v in f64]
    assert np.array_equal(decode_vectors(blobs), f64.astype(np.float32))
    assert np.array_equal(
        decode_vectors([list(v) for v in f64]), f64.astype(np.float32)
    )
    f32 = f64.astype(np.float32)
    mixed = [fou.serialize_numpy_array(f32[0]), fou.serialize_numpy_array(f64[1])]
    assert np.array_equal(decode_vectors(mixed), f32[:2])
    ragged = [
        fou.serialize_numpy_array(np.ones(3)),
        fou.serialize_numpy_array(np.ones(4)),
    ]
    with pytest.raises(sdk.MissingEmbeddingsError, match="1-d vectors of one length"):
        decode_vectors(ragged, "emb")
    three = ragged + [fou.serialize_numpy_array(np.ones(3))]
    with pytest.raises(sdk.MissingEmbeddingsError) as err:
        decode_vectors(three, "emb", ["a" * 24, "b" * 24, "c" * 24])
    assert f"1 sample (e.g. {'b' * 24} (length 4)) unlike the others (length 3)" in str(
        err.value
    )


def test_update_index_encodes_the_added_samples_like_a_build(embedded, small_batches):
    ds = embedded
    sdk.build_index(ds, "cb", embeddings_field="emb", code_method="pca", progress=False)
    extra = [
        fo.Sample(filepath=s.filepath, emb=s["emb"], ground_truth=s.ground_truth)
        for s in ds.limit(70)
    ]
    ds.add_samples(extra, progress=False)
    info = sdk.update_index(ds, "cb", progress=False)
    assert info.n_samples == 270 and info.freshness.n_added == 0
    _, bundle = sdk.load_index(ds, "cb")
    added = ds.values("id")[200:]
    rows, found = bundle.rowmap.rows_of(added)
    assert found.all()
    vectors = np.stack(ds.select(added, ordered=True).values("emb"))
    codes = np.asarray(bundle.index.codes)[rows]
    assert np.array_equal(codes, bundle.encoder.encode(vectors))


def test_vectors_of_another_length_in_a_later_batch_are_a_clear_error(
    embedded, small_batches
):
    ds = embedded
    last = ds.values("id")[-1]
    sample = ds[last]
    sample["emb"] = np.ones(16, np.float32)
    sample.save()
    with pytest.raises(
        sdk.MissingEmbeddingsError, match="1-d vectors of one length"
    ) as err:
        sdk.build_index(ds, "ragged", embeddings_field="emb", code_method="pca")
    said = str(err.value)
    assert last in said and "length 16" in said  # the odd sample and its length
    assert "skip_missing" in str(err.value)
    assert sdk.list_indexes(ds) == []
