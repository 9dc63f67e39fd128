"""build_index from real CLIP embeddings stored in a VectorField; update_index."""

from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from sdk_testdata import attach_real_embeddings

from fiftyone_clipbranches import sdk


@pytest.fixture
def embedded(make_dataset, clip_embeddings_dir):
    ds = make_dataset(20)
    attach_real_embeddings(ds, clip_embeddings_dir)
    return ds


def test_build_from_a_vector_field_then_search_and_refine(embedded):
    ds = embedded
    info = sdk.build_index(
        ds, "pca", embeddings_field="emb", code_method="pca", progress=False
    )
    assert (info.n_samples, info.code_method, info.embeddings_field) == (
        200,
        "pca",
        "emb",
    )
    assert not info.supports_text
    assert repr(info) == (
        f"IndexInfo('pca' of {ds.name!r}: 200 samples, pca codes, CLIP unknown,"
        " freshness.is_stale: False; .to_dict() for all)"
    )
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    cats = ids[labels == "cat"]
    near = sdk.search(ds, sample_ids=cats[:3].tolist(), k=10, index_key="pca")
    assert near.values("ground_truth.label").count("cat") >= 8
    vec = ds[cats[0]]["emb"]
    assert sdk.search_ids(ds, vector=vec, k=1, index_key="pca")[0] == [cats[0]]
    for bad, message in (
        (np.ones(vec.shape[0] + 1), rf"has {vec.shape[0] + 1} values; .* built from"),
        (np.zeros(vec.shape[0]), "all zeros"),
        (np.full(vec.shape[0], np.nan), "NaN or infinite"),
    ):
        with pytest.raises(ValueError, match=message):
            sdk.search_ids(ds, vector=bad, index_key="pca")
    result = sdk.refine(ds, positives=cats[:10].tolist(), index_key="pca")
    found = set(result.ids)
    assert len(found & set(cats)) >= 10 and len(found - set(cats)) <= 3
    # a notebook shows the result's size, not every id
    shown = repr(result)
    assert shown.startswith(f"RefineResult({len(found)} results, scores ")
    assert f"model {result.stats['model']!r}" in shown and cats[0] not in shown


def test_missing_embeddings_are_clear_errors(embedded):
    ds = embedded
    with pytest.raises(sdk.MissingEmbeddingsError, match="no embeddings field"):
        sdk.build_index(
            ds, "x", embeddings_field="nope", code_method="pca", progress=False
        )
    # vectors that cannot be compared are named by sample, with the way out
    ids = ds.values("id")
    kept = ds.values("emb")
    broken = [np.zeros_like(kept[0]), np.full_like(kept[1], np.nan)]
    ds.select(ids[:2], ordered=True).set_values("emb", broken)
    with pytest.raises(sdk.MissingEmbeddingsError) as err:
        sdk.build_index(ds, "x", embeddings_field="emb", code_method="pca")
    assert f"2 samples in 'emb' (e.g. {ids[0]}, {ids[1]})" in str(err.value)
    assert "set the field to None" in str(err.value)
    ds.select(ids[:2], ordered=True).set_values("emb", kept[:2])
    ds.select(ds.values("id")[:3]).set_field("emb", None).save()
    with pytest.raises(sdk.MissingEmbeddingsError, match="3 samples"):
        sdk.build_index(
            ds, "x", embeddings_field="emb", code_method="pca", progress=False
        )
    with pytest.raises(ValueError, match="code_method"):
        sdk.build_index(ds, "x", embeddings_field="emb", code_method="lsh")
    assert sdk.list_indexes(ds) == []
    info = sdk.build_index(
        ds,
        "x",
        embeddings_field="emb",
        code_method="pca",
        skip_missing=True,
        progress=False,
    )
    assert info.n_samples == 197
    fresh = sdk.index_info(ds, "x").freshness
    # left out for lack of an embedding: reported by name, not as "added"
    assert (fresh.n_added, fresh.n_unreadable) == (0, 3)
    assert set(fresh.unreadable) == set(ds.values("id")[:3])
    assert "no vector in 'emb' when the index was built or updated" in next(
        iter(fresh.unreadable.values())
    )
    # as a label, such a sample is said to lack a vector, not a readable image
    left = ds.values("id")[0]
    with pytest.raises(sdk.SampleIdsError, match="had no vector in 'emb'") as err:
        sdk.refine(ds, positives=[left], index_key="x")
    assert "compute their vectors into 'emb', then run update_index" in str(err.value)
    assert "could not be read" not in str(err.value)
    # nothing to retry: update_index does not rebuild
    assert sdk.update_index(ds, "x", progress=False).index_dir == info.index_dir


def test_update_appends_added_samples_with_the_index_encoder(
    embedded, cifar_dir, capsys
):
    ds = embedded
    sdk.build_index(
        ds, "pca", embeddings_field="emb", code_method="pca", progress=False
    )
    old = sdk.load_index(ds, "pca")[1]
    path = next(p for p in Path(cifar_dir).rglob("*.jpg"))
    cat_vec = ds.match(fo.ViewField("ground_truth.label") == "cat").first()["emb"]
    (new_id,) = ds.add_samples(
        [fo.Sample(filepath=str(path), emb=cat_vec)], progress=False
    )
    ds.delete_samples(ds.values("id")[:2])
    assert sdk.index_info(ds, "pca").freshness.n_added == 1
    info = sdk.update_index(ds, "pca", progress=False)
    assert info.n_samples == 199 and not info.freshness.is_stale
    _, bundle = sdk.load_index(ds, "pca")
    (row,), found = bundle.rowmap.rows_of([new_id])
    assert found.all()
    assert bundle.index.codes[row].tolist() == old.encoder.encode(cat_vec).tolist()
    assert new_id in sdk.search_ids(ds, vector=cat_vec, k=2, index_key="pca")[0]
    # an added sample without a vector (the index's model unknown: nothing can
    # embed it) is named, and with skip_missing left out until it has one
    from fiftyone_clipbranches.cli import main as cli_main

    (bare, other) = ds.add_samples(
        [fo.Sample(filepath=str(path)), fo.Sample(filepath=str(path), emb=cat_vec)],
        progress=False,
    )
    with pytest.raises(sdk.MissingEmbeddingsError) as refused:
        sdk.update_index(ds, "pca", progress=False)
    assert refused.value.ids == [bare] and f"1 added sample (e.g. {bare})" in str(
        refused.value
    )
    assert "--skip-missing" in str(refused.value)
    assert sdk.index_info(ds, "pca").freshness.n_added == 2  # nothing changed
    assert cli_main(["update-index", ds.name, "--key", "pca", "--skip-missing",
                     "--quiet"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "1 sample left out: no vector in 'emb'" in said and "read" not in said
    fresh = sdk.index_info(ds, "pca").freshness
    assert (fresh.n_added, list(fresh.unreadable), fresh.n_no_vector) == (0, [bare], 1)
    assert other in sdk.search_ids(ds, vector=cat_vec, k=3, index_key="pca")[0]
    sample = ds[bare]
    sample["emb"] = cat_vec  # its vector stored: indexed by the next update
    sample.save()
    assert sdk.update_index(ds, "pca", progress=False).freshness.n_unreadable == 0
    assert bare in sdk.search_ids(ds, vector=cat_vec, k=4, index_key="pca")[0]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:load_clip.*RANDOM weights:UserWarning")
def test_compute_embeddings_and_text_search_with_random_clip(make_dataset):
    """Random-weight CLIP (offline): the pipeline runs, meaning is not tested."""
    ds = make_dataset(4)
    calls = []
    out = sdk.compute_embeddings(
        ds,
        "clip",
        model="ViT-B-32",
        pretrained=None,
        progress=lambda f, s: calls.append((f, s)),
    )
    assert out["n_embedded"] == 40 and out["n_failed"] == 0 and calls[-1][0] == 1.0
    # the seconds of loading the model are said before the first image
    assert calls[0] == (0.0, "loading CLIP ViT-B-32 (random weights)")
    assert out["clip_model"]["name"] == "ViT-B-32"
    again = sdk.compute_embeddings(ds, "clip", model="ViT-B-32", pretrained=None)
    assert again["n_embedded"] == 0 and again["n_skipped"] == 40
    vectors = np.stack(ds.values("clip"))
    assert vectors.shape == (40, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    info = sdk.build_index(
        ds, "t", embeddings_field="clip", code_method="pca", progress=False
    )
    assert info.supports_text and info.clip_model["name"] == "ViT-B-32"
    assert "CLIP ViT-B-32 (random weights)" in repr(info)  # not "(None)"
    assert len(sdk.search(ds, text="a photo of a dog", k=4, index_key="t")) == 4
    codes = np.zeros((40, 8), np.uint8)
    given = sdk.build_index_from_codes(ds, codes, ds.values("id"), "given")
    assert ", given codes, CLIP unknown" in repr(given)  # not "None codes"


def test_build_index_uses_the_model_compute_embeddings_recorded(
    cifar_dir, tiny_clip_checkpoint
):
    """The README's order: compute_embeddings(model=..., pretrained=...), then
    build_index(ds, key) with no model: the recorded model fills the missing
    embeddings and embeds text queries (no default weights are looked for)."""
    from user_path import TINY_CLIP_NAME, images_dataset

    ds = images_dataset(cifar_dir, 5)
    try:
        first = ds.values("id")[:30]
        sdk.compute_embeddings(
            ds.select(first), model=TINY_CLIP_NAME,
            pretrained=str(tiny_clip_checkpoint), progress=False,
        )  # fmt: skip
        info = sdk.build_index(ds, "clip", code_method="pca", progress=False)
        assert info.n_samples == 50 and info.embeddings_field == "clip_embedding"
        assert info.freshness.n_unreadable == 0 and not info.freshness.is_stale
        assert info.supports_text and info.clip_model["name"] == TINY_CLIP_NAME
        assert len(ds.exists("clip_embedding")) == 50
        assert len(sdk.search(ds, text="a photo of a cat", k=5, index_key="clip")) == 5
    finally:
        ds.delete()


def test_a_dataset_none_of_whose_images_can_be_read_is_said_so(
    tmp_path, tiny_clip_checkpoint
):
    from user_path import TINY_CLIP_NAME

    ds = fo.Dataset()
    paths = [str(tmp_path / "unmounted" / f"{i}.jpg") for i in range(40)]
    ds.add_samples([fo.Sample(filepath=p) for p in paths], progress=False)
    try:
        with pytest.raises(sdk.MissingEmbeddingsError) as err:
            sdk.build_index(
                ds, "clip", model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint),
                code_method="pca", progress=False,
            )  # fmt: skip
        message = str(err.value)
        assert "none of the 40 images" in message and paths[0] in message
        assert sdk.list_indexes(ds) == []
        # nothing is left behind: no empty embeddings field recording a model
        assert ds.get_field("clip_embedding") is None
        refused = pytest.raises(sdk.MissingEmbeddingsError, match="none of the 40")
        with refused, pytest.warns(UserWarning, match="RANDOM weights"):
            sdk.build_index(
                ds, "clip", model=TINY_CLIP_NAME, pretrained=None,
                code_method="pca", progress=False,
            )  # fmt: skip
    finally:
        ds.delete()


def test_random_weights_are_warned_about_when_chosen_not_at_each_use(
    cifar_dir, tiny_clip_checkpoint
):
    """An index made with random weights (``pretrained=None``) says so when they
    are chosen; its later text searches and updates do not repeat it."""
    import warnings

    import fiftyone as fo
    from user_path import TINY_CLIP_NAME, images_dataset

    from fiftyone_clipbranches.sdk import embeddings

    ds = images_dataset(cifar_dir, 7, name="random-weights-warned")
    embeddings._models.clear()  # loaded here, as in a new process
    with pytest.warns(UserWarning, match="uses RANDOM weights"):
        sdk.build_index(
            ds, "rnd", model=TINY_CLIP_NAME, pretrained=None, progress=False
        )
    embeddings._models.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(sdk.search(ds, text="a cat", k=3, index_key="rnd")) == 3
        ds.add_sample(fo.Sample(filepath=ds.first().filepath))
        assert sdk.update_index(ds, "rnd", progress=False).n_samples == len(ds)
    assert not [w for w in caught if "RANDOM weights" in str(w.message)]
    # chosen again for another field, the model loaded already: said again
    with pytest.warns(UserWarning, match="uses RANDOM weights"):
        sdk.compute_embeddings(
            ds.limit(2), "other", model=TINY_CLIP_NAME, pretrained=None, progress=False
        )


def test_a_field_that_cannot_hold_embeddings_is_named_by_its_type(make_user_index):
    """``tags`` was "not 1-d vectors of one length ... set the field to None" (the
    user's labels), ``filepath`` with a model "vectors of length 1"."""
    from user_path import TINY_CLIP_NAME

    ds = make_user_index(n_per_class=4)
    ds.take(5, seed=0).tag_samples("keep")
    cases = [
        ("tags", {}, "has type ListField of StringField"),
        ("filepath", {"model": TINY_CLIP_NAME, "pretrained": None}, "StringField"),
        ("ground_truth", {"model": TINY_CLIP_NAME, "pretrained": None}, "Embedded"),
    ]
    for field, model, words in cases:
        with pytest.raises(sdk.MissingEmbeddingsError) as err:
            sdk.build_index(ds, "x", embeddings_field=field, code_method="pca", **model)
        assert words in str(err.value), field
        assert "not a VectorField of embeddings" in str(err.value)
        assert "set the field to None" not in str(err.value)
    assert ds.count_sample_tags() == {"keep": 5}
    assert sdk.list_indexes(ds) == ["clip"]
    # a list of numbers holds embeddings: indexed as a VectorField is
    ds.add_sample_field("as_list", fo.ListField, subfield=fo.FloatField)
    ds.set_values("as_list", [v.tolist() for v in ds.values("clip_embedding")])
    info = sdk.build_index(
        ds, "x", embeddings_field="as_list", code_method="pca", progress=False
    )
    assert info.n_samples == len(ds)
    # and so does an ArrayField of 1-d arrays
    ds.add_sample_field("as_array", fo.ArrayField)
    ds.set_values("as_array", ds.values("clip_embedding"))
    info = sdk.build_index(
        ds, "y", embeddings_field="as_array", code_method="pca", progress=False
    )
    assert info.n_samples == len(ds)


def test_weights_not_on_this_machine_are_a_package_error_and_end_the_bar(
    cifar_dir, capsys
):
    """Offline, the README's own model stops the build with the package's error
    (catchable as ``ClipBranchesError``, the embedding layer's chained), nothing
    indexed, and its progress bar closed: an open bar made tqdm draw every later
    bar a line below it, with cursor escapes (found in a notebook)."""
    from tqdm import tqdm
    from user_path import images_dataset

    from fiftyone_clipbranches.embed import WeightsUnavailableError as EmbedError

    ds = images_dataset(cifar_dir, 7, name="weights-offline")
    try:
        with pytest.raises(sdk.ClipBranchesError) as refused:
            sdk.build_index(ds, "vit", model="ViT-B-32", pretrained="laion2b_s34b_b79k")
        assert isinstance(refused.value, sdk.WeightsUnavailableError)
        assert isinstance(refused.value, RuntimeError)  # as the embedding layer's
        assert isinstance(refused.value.__cause__, EmbedError)
        assert "laion2b_s34b_b79k" in str(refused.value)
        assert sdk.list_indexes(ds) == []
        # the traceback (kept, as a notebook keeps it) holds the call's bar
        assert not [b for b in list(tqdm._instances) if b.desc == "clipbranches"]
        assert "loading CLIP ViT-B-32" in capsys.readouterr().err
    finally:
        ds.delete()


def test_vectors_of_any_finite_magnitude_index_as_their_directions(embedded):
    """Vectors scaled far up or down (float32 squares overflowing or underflowing,
    float64 beyond float32's range) index as the plain ones: every row kept its own
    code (1e30 gave every sample one code) and searches answer alike. Arrays of
    shape (1, D) and complex vectors are refused in words."""
    ds = embedded
    ids = ds.values("id")
    plain = np.stack(ds.values("emb")).astype(np.float32)
    sdk.build_index(ds, "plain", embeddings_field="emb", code_method="pca",
                    progress=False)  # fmt: skip
    wanted = [sdk.search_ids(ds, sample_ids=[i], k=8, index_key="plain")[0]
              for i in ids[:40:4]]  # fmt: skip
    for field, values in (
        ("up32", plain * np.float32(1e30)),
        ("down32", plain * np.float32(1e-30)),
        ("up64", plain.astype(np.float64) * 1e40),
        ("down64", plain.astype(np.float64) * 1e-50),
    ):
        ds.set_values(field, dict(zip(ids, values)), key_field="id")
        sdk.build_index(ds, field, embeddings_field=field, code_method="pca",
                        progress=False)  # fmt: skip
        _, bundle = sdk.load_index(ds, field)
        assert np.unique(np.asarray(bundle.index.codes), axis=0).shape[0] == len(ds)
        found = [sdk.search_ids(ds, sample_ids=[i], k=8, index_key=field)[0]
                 for i in ids[:40:4]]  # fmt: skip
        same = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(found, wanted)])
        assert same >= 0.9, (field, same)
        near = sdk.search_ids(ds, vector=values[0], k=1, index_key=field)[0]
        assert near == [ids[0]], field
    # vectors that all point one way index as one code, said
    ds.set_values("same", dict.fromkeys(ids, plain[0] * 2), key_field="id")
    with pytest.warns(UserWarning, match="every one of the 200 samples got the same"):
        sdk.build_index(ds, "same", embeddings_field="same", code_method="pca",
                        progress=False)  # fmt: skip
    ds.set_values("rows", dict(zip(ids, plain[:, None, :])), key_field="id")
    with pytest.raises(sdk.MissingEmbeddingsError, match=r"shape \(1, 512\).*ravel"):
        sdk.build_index(ds, "rows", embeddings_field="rows", code_method="pca",
                        progress=False)  # fmt: skip
    ds.set_values("cplx", dict(zip(ids, plain.astype(np.complex64))), key_field="id")
    with pytest.raises(sdk.MissingEmbeddingsError, match="complex numbers"):
        sdk.build_index(ds, "cplx", embeddings_field="cplx", code_method="pca",
                        progress=False)  # fmt: skip


def test_a_root_that_cannot_take_the_index_is_said_before_embedding(
    cifar_dir, tiny_clip_checkpoint, tmp_path
):
    """An index root under a file failed after every image was embedded, in the
    system's words only; a full disk said "[Errno 28] No space left on device":
    both name the folder and the way out."""
    import errno

    from user_path import TINY_CLIP_NAME, images_dataset

    from fiftyone_clipbranches.sdk.bundle import where_indexes_cannot_go

    (tmp_path / "afile").write_text("")
    ds = images_dataset(cifar_dir, 7, name="root-in-the-way")
    try:
        with pytest.raises(NotADirectoryError, match="cannot write the index under"):
            sdk.build_index(
                ds, "clip", model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint),
                root=tmp_path / "afile" / "sub", progress=False,
            )  # fmt: skip
        assert ds.get_field("clip_embedding") is None  # nothing embedded
    finally:
        ds.delete()
    full = where_indexes_cannot_go(
        OSError(errno.ENOSPC, "No space left on device"), tmp_path
    )
    assert str(full) == (
        f"[Errno 28] cannot write the index under {tmp_path}: No space left on"
        " device (free space there, or set $CLIPBRANCHES_INDEX_ROOT to a folder"
        " that can take it)"
    )


def test_a_broad_concept_is_found_beyond_its_labels(make_dataset, clip_embeddings_dir):
    """ "Any vehicle" on CIFAR images (4 of 10 classes, real CLIP embeddings): the
    default model finds the concept's unlabelled samples (before, with 70
    positives, the random negatives' members confined it to the labels)."""
    ds = make_dataset(30)
    attach_real_embeddings(ds, clip_embeddings_dir)
    sdk.build_index(
        ds, "pca", embeddings_field="emb", code_method="pca", progress=False
    )
    labels = np.array(ds.values("ground_truth.label"))
    ids = np.array(ds.values("id"))
    vehicle = np.isin(labels, ["airplane", "automobile", "ship", "truck"])
    rng = np.random.default_rng(0)
    pos = rng.choice(ids[vehicle], 70, replace=False).tolist()
    neg = rng.choice(ids[~vehicle], 10, replace=False).tolist()
    unlabelled = set(ids[vehicle]) - set(pos)
    found = {}
    for share in (None, 0.1):
        result = sdk.refine(
            ds, positives=pos, negatives=neg, index_key="pca",
            model_params={"broad_share": share},
        )  # fmt: skip
        found[share] = (len(set(result.ids) & unlabelled), result)
    n_found, result = found[0.1]
    assert n_found > 0.8 * len(unlabelled) > found[None][0]
    assert len(set(result.ids) - set(ids[vehicle])) < 0.1 * len(result.ids)
    assert result.stats["n_relabelled"] > found[None][1].stats["n_relabelled"]


def test_the_bar_moves_while_the_head_trains_on_vectors_already_there(embedded):
    """Vectors given (nothing to embed), the bar jumped to 74% at once and sat
    there through the head's whole training, the build's longest step."""
    calls = []
    sdk.build_index(
        embedded, "bar", embeddings_field="emb", encoder_params={"steps": 50},
        progress=lambda f, label: calls.append((f, label)),
    )  # fmt: skip
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    fitting = [f for f, label in calls if label.startswith("fitting the code encoder")]
    assert fitting[0] < 0.3 and max(fitting) > 0.6
    assert len(set(fitting)) >= 10  # it advances as the steps go


def test_the_bar_moves_while_the_head_trains_after_embedding_images(
    make_user_index, tiny_clip_checkpoint
):
    """The user's path (images -> tiny CLIP -> build_index): embedding fills the bar
    to 70%, then the head's training moves it step by step towards 90%."""
    from user_path import TINY_CLIP_NAME

    ds = make_user_index(n_per_class=7)  # the head fits on 64 or more
    calls = []
    sdk.build_index(
        ds, "head", model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint),
        code_method="head", encoder_params={"steps": 40},
        progress=lambda f, label: calls.append((f, label)),
    )  # fmt: skip
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    fitting = [f for f, label in calls if label.startswith("fitting the code encoder")]
    assert min(fitting) >= 0.7 and max(fitting) <= 0.9
    assert len(set(fitting)) >= 10
