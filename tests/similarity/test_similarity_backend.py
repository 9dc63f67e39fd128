"""``backend="clipbranches"`` through FiftyOne's brain, checked against brute force.

Real images embedded by the tiny open_clip checkpoint (random weights), a real
FiftyOne dataset, the real fiftyone-brain ``compute_similarity`` and
``sort_by_similarity``; the expected answers are brute-force k-NN over the codes.
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.brain as fob
import numpy as np
import pytest
from user_path import TINY_CLIP_NAME, images_dataset

import fiftyone_clipbranches as cb
from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.embeddings import get_clip_model
from fiftyone_clipbranches.sdk.errors import IndexNotFoundError, UnknownModelError
from fiftyone_clipbranches.similarity import (
    ClipBranchesSimilarityConfig,
    register_similarity_backend,
)


@pytest.fixture
def embedded(cifar_dir, tiny_clip_checkpoint):
    """A dataset of 80 real images with tiny-CLIP embeddings in ``emb``."""
    ds = images_dataset(cifar_dir, 8)
    sdk.compute_embeddings(
        ds,
        "emb",
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        progress=False,
    )
    yield ds
    ds.delete()


@pytest.fixture
def similarity(embedded):
    register_similarity_backend()
    index = fob.compute_similarity(
        embedded,
        backend="clipbranches",
        embeddings="emb",
        brain_key="sim",
        code_method="pca",
    )
    return embedded, index


def _codes(ds, key):
    _, bundle = sdk.load_index(ds, key)
    ids = bundle.rowmap.ids_of(np.arange(len(bundle.rowmap)))
    return np.asarray(bundle.index.codes), ids, bundle.encoder


def _brute(codes, ids, query, k=None):
    sq = ((codes.astype(np.int64) - query.astype(np.int64)) ** 2).sum(axis=1)
    order = np.lexsort((np.arange(len(codes)), sq))
    if k is not None:
        order = order[:k]
    return [ids[r] for r in order], np.sqrt(sq[order]).tolist()


def _check(ds, query, expected_ids, expected_dists, k):
    view = ds.sort_by_similarity(query, k=k, brain_key="sim", dist_field="dist")
    assert view.values("id") == expected_ids
    assert view.values("dist") == pytest.approx(expected_dists)


def test_sort_by_ids_vectors_and_text_is_brute_force_knn_over_codes(
    similarity, tiny_clip_checkpoint
):
    ds, index = similarity
    codes, ids, encoder = _codes(ds, "sim")
    assert index.total_index_size == len(ds) == len(ids)
    assert index.config.supports_prompts and index.supports_prompts

    query_ids = [ids[3], ids[40]]
    mean = np.rint(codes[[3, 40]].astype(np.float64).mean(axis=0)).astype(np.uint8)
    _check(ds, query_ids, *_brute(codes, ids, mean, 25), k=25)

    vector = ds.values("emb")[7] + 0.05
    _check(ds, np.asarray(vector), *_brute(codes, ids, encoder.encode(vector)), k=None)

    clip = get_clip_model(TINY_CLIP_NAME, str(tiny_clip_checkpoint))
    text_code = encoder.encode(clip.embed_texts(["a photo of a cat"]))[0]
    _check(ds, "a photo of a cat", *_brute(codes, ids, text_code, 10), k=10)

    assert len(ds.sort_by_similarity(query_ids, k=0, brain_key="sim")) == 0
    for bad in (-1, 2.5):  # -1 returned a few samples
        with pytest.raises(ValueError, match="k must be a whole number >= 0"):
            ds.sort_by_similarity(query_ids, k=bad, brain_key="sim")

    far_ids, far_dists = _brute(codes, ids, mean)
    view = ds.sort_by_similarity(query_ids, k=5, reverse=True, brain_key="sim")
    assert view.values("id") == far_ids[::-1][:5]
    assert far_dists[-1] >= far_dists[0]


def test_same_index_is_cb_refine_and_cb_search(similarity):
    ds, _ = similarity
    ids = ds.values("id")
    labels = ds.values("ground_truth.label")
    cls = labels[0]
    positives = [i for i, lab in zip(ids, labels) if lab == cls][:4]
    negatives = [i for i, lab in zip(ids, labels) if lab != cls][:4]
    result = cb.refine(
        ds, positives=positives, negatives=negatives, model="linear", index_key="sim"
    )
    assert set(positives) <= set(result.ids)
    view = ds.sort_by_similarity(positives[0], k=7, brain_key="sim")
    assert (
        view.values("id")
        == sdk.search_ids(ds, sample_ids=[positives[0]], k=7, index_key="sim")[0]
    )


def test_view_restricts_results_and_runs_reload_in_a_new_session(similarity):
    ds, _ = similarity
    codes, ids, _ = _codes(ds, "sim")
    cats = ds.match(fo.ViewField("ground_truth.label") == "cat")
    ranked = cats.sort_by_similarity(ids[0], brain_key="sim").values("id")
    expected, _ = _brute(codes, ids, codes[0])
    assert ranked == [i for i in expected if i in set(cats.values("id"))]

    ds.clear_cache()
    reloaded = ds.load_brain_results("sim")
    assert type(reloaded).__name__ == "ClipBranchesSimilarityIndex"
    assert reloaded.total_index_size == len(ids)
    assert ds.get_brain_info("sim").config.method == "clipbranches"
    assert ds.list_brain_runs(type=fob.Similarity, supports_prompts=True) == ["sim"]


def test_add_and_remove_keep_the_index_in_step(similarity):
    ds, index = similarity
    codes, ids, _ = _codes(ds, "sim")
    vectors, got_ids, _ = index.get_embeddings(sample_ids=ids[:3])
    assert list(got_ids) == ids[:3]
    assert np.allclose(
        vectors, np.stack(ds.select(ids[:3], ordered=True).values("emb"))
    )
    before = ds.sort_by_similarity(ids[10], k=None, brain_key="sim").values("id")

    index.remove_from_index(sample_ids=ids[:3])
    assert index.total_index_size == len(ids) - 3
    after = ds.sort_by_similarity(ids[10], k=None, brain_key="sim").values("id")
    assert after == [i for i in before if i not in set(ids[:3])]
    with pytest.raises(cb.sdk.errors.StaleIndexError, match="removed from it"):
        ds.sort_by_similarity(ids[0], k=3, brain_key="sim")  # a removed query

    index.add_to_index(vectors, ids[:3])
    assert index.total_index_size == len(ids)
    again = ds.sort_by_similarity(ids[10], k=None, brain_key="sim").values("id")
    assert again == before

    index.cleanup()
    assert "sim" not in cb.list_indexes(ds)


def test_embeddings_array_builds_codes_only_index_without_text(embedded):
    ids, vectors = embedded.values(["id", "emb"])
    index = fob.compute_similarity(
        embedded,
        backend=ClipBranchesSimilarityConfig,
        embeddings=np.stack(vectors),
        brain_key="arr",
        code_method="pca",
    )
    codes, index_ids, _ = _codes(embedded, "arr")
    assert index_ids == ids and not index.supports_prompts
    ranked = embedded.sort_by_similarity(ids[5], k=4, brain_key="arr").values("id")
    assert ranked == _brute(codes, index_ids, codes[5], 4)[0]
    with pytest.raises(
        UnknownModelError, match="compute_similarity again .*clip_model="
    ):
        embedded.sort_by_similarity("a dog", k=4, brain_key="arr")
    with pytest.raises(ValueError, match="keeps 32-byte codes"):
        index.get_embeddings()
    # a sample added since: the run's own way to add it, not update_index
    (added,) = embedded.add_samples([fo.Sample(filepath=embedded.first().filepath)])
    with pytest.raises(cb.sdk.errors.StaleIndexError) as err:
        embedded.sort_by_similarity(added, k=4, brain_key="arr")
    assert "load_brain_results('arr').add_to_index(" in str(err.value)
    assert "update_index" not in str(err.value)


def test_an_index_made_empty_says_how_to_fill_it(embedded):
    ids, vectors = embedded.values(["id", "emb"])
    index = fob.compute_similarity(
        embedded,
        backend=ClipBranchesSimilarityConfig,
        embeddings=False,
        brain_key="empty",
        code_method="pca",
    )
    assert index.total_index_size == 0
    with pytest.raises(IndexNotFoundError, match=r"add_to_index\(embeddings"):
        embedded.sort_by_similarity(ids[0], k=3, brain_key="empty")
    with pytest.raises(  # too few to fit the codes: said as the build says it
        ValueError, match=r"add_to_index was given 20 embeddings .*needs at least 33"
    ):
        index.add_to_index(np.stack(vectors[:20]), ids[:20])
    assert index.total_index_size == 0
    index.add_to_index(np.stack(vectors), ids)
    ranked = embedded.sort_by_similarity(ids[0], k=3, brain_key="empty")
    assert ranked.first().id == ids[0]
    # every sample removed: empty again, and filled again the same way
    index.remove_from_index(sample_ids=ids)
    assert index.total_index_size == 0
    index.add_to_index(np.stack(vectors), ids)
    assert index.total_index_size == len(ids)
    index.cleanup()
    embedded.delete_brain_run("empty")


def test_brain_key_is_required(embedded):
    with pytest.raises(ValueError, match="needs a brain_key"):
        fob.compute_similarity(
            embedded, backend=ClipBranchesSimilarityConfig, embeddings="emb"
        )


def test_options_it_would_ignore_are_refused_before_any_work(embedded):
    """metric= was recorded and ignored (a run saying "cosine" that ranks by the
    codes' euclidean distance); patches_field= was refused only after FiftyOne had
    embedded every patch (roi_field= too, averaging them): the backend's
    initialize refuses both, which the brain calls before embedding (after loading
    its model: offline, FiftyOne's download error). A config recording either
    still loads (runs of older versions)."""
    from fiftyone_clipbranches.sdk import ClipBranchesError
    from fiftyone_clipbranches.similarity.config import ClipBranchesSimilarity

    register_similarity_backend()
    with pytest.raises(ClipBranchesError, match="metric='cosine' is not one it has"):
        fob.compute_similarity(
            embedded, backend="clipbranches", embeddings="emb", brain_key="x",
            code_method="pca", metric="cosine",
        )  # fmt: skip
    assert "x" not in embedded.list_brain_runs()
    old = ClipBranchesSimilarityConfig(patches_field="ground_truth", metric="cosine")
    assert ClipBranchesSimilarityConfig.from_dict(old.serialize()).metric == "cosine"
    with pytest.raises(ClipBranchesError, match="not patches or labels"):
        ClipBranchesSimilarity(
            ClipBranchesSimilarityConfig(patches_field="ground_truth")
        ).initialize(embedded, "x")
    with pytest.raises(ClipBranchesError, match="leave roi_field out"):
        ClipBranchesSimilarity(
            ClipBranchesSimilarityConfig(roi_field="ground_truth")
        ).initialize(embedded, "x")
    assert sdk.list_indexes(embedded) == []
    fob.compute_similarity(
        embedded, backend="clipbranches", embeddings="emb", brain_key="x",
        code_method="pca", metric="euclidean",
    )  # fmt: skip
    assert sdk.list_indexes(embedded) == ["x"]
    embedded.load_brain_results("x").cleanup()
    embedded.delete_brain_run("x")


def test_an_index_the_user_built_is_adopted_never_deleted(embedded):
    ds = embedded
    cb.build_index(
        ds, "mine", embeddings_field="emb", code_method="pca", progress=False
    )
    register_similarity_backend()
    ds.clone_sample_field("emb", "other")
    with pytest.raises(ValueError, match="already exists over embeddings field 'emb'"):
        fob.compute_similarity(
            ds, backend="clipbranches", embeddings="other", brain_key="mine"
        )
    index = fob.compute_similarity(
        ds, backend="clipbranches", embeddings="emb", brain_key="mine"
    )
    first = ds.values("id")[0]
    assert ds.sort_by_similarity(first, k=1, brain_key="mine").values("id") == [first]
    index.cleanup()
    ds.delete_brain_run("mine")
    assert cb.list_indexes(ds) == ["mine"]
    assert cb.search(ds, sample_ids=[first], k=1, index_key="mine").values("id") == [
        first
    ]


def test_an_index_answering_a_brain_run_is_not_deleted_or_renamed_under_it(
    similarity,
):
    """``cb.delete_index`` / ``rename_index`` left the brain run loading an empty
    index and failing on every query; they are refused, the brain run's own
    deletion still deletes the index it built."""
    from fiftyone_clipbranches.cli import main as cli_main

    ds, _ = similarity
    first = ds.values("id")[0]
    with pytest.raises(cb.sdk.IndexInUseError, match="delete_brain_run") as refused:
        cb.delete_index(ds, "sim")
    assert "rename_brain_run" not in str(refused.value)  # renaming would not help
    with pytest.raises(cb.sdk.IndexInUseError, match="rename_brain_run"):
        cb.rename_index(ds, "sim", "other")
    with pytest.raises(cb.sdk.IndexInUseError, match="building it again would"):
        cb.build_index(ds, "sim", embeddings_field="emb", overwrite=True)
    assert cli_main(["delete-index", ds.name, "--key", "sim"]) == 1
    assert cb.list_indexes(ds) == ["sim"]
    assert ds.sort_by_similarity(first, k=1, brain_key="sim").values("id") == [first]
    # an id that is no sample of the dataset is named as such, not as stale
    with pytest.raises(ValueError, match="not (a sample|samples) of dataset"):
        ds.sort_by_similarity("0123456789abcdef01234567", k=3, brain_key="sim")
    ds.load_brain_results("sim").cleanup()  # as the refusal says
    ds.delete_brain_run("sim")
    assert cb.list_indexes(ds) == [] and ds.list_brain_runs() == []


def test_images_none_of_which_can_be_read_are_said_so_after_one_pass(
    tiny_clip_checkpoint, tmp_path, monkeypatch
):
    from fiftyone_clipbranches.sdk import indexes

    register_similarity_backend()
    ds = fo.Dataset()
    paths = [str(tmp_path / "unmounted" / f"{i}.jpg") for i in range(40)]
    ds.add_samples([fo.Sample(filepath=p) for p in paths], progress=False)
    second_pass = []
    monkeypatch.setattr(
        indexes, "compute_embeddings", lambda *a, **k: second_pass.append(a)
    )
    try:
        with pytest.raises(sdk.MissingEmbeddingsError, match="none of the 40"):
            fob.compute_similarity(
                ds, backend="clipbranches", brain_key="sim", embeddings=False,
                code_method="pca",
                clip_model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint),
            )  # fmt: skip
        assert not second_pass and ds.get_field("clip_embedding") is None
    finally:
        ds.delete()


def test_one_index_answers_one_brain_run(similarity):
    """A renamed run keeps its index's key: a new run of the old brain key (or one
    naming that index) adopted it, and the owner's cleanup() deleted it under the
    new run. Adoption is refused; the renamed run keeps answering."""
    ds, _ = similarity
    first = ds.values("id")[0]
    ds.rename_brain_run("sim", "renamed")
    with pytest.raises(ValueError, match="already answers the similarity brain run"):
        fob.compute_similarity(
            ds, backend="clipbranches", embeddings="emb", brain_key="sim"
        )
    with pytest.raises(ValueError, match="'renamed'"):
        fob.compute_similarity(
            ds, backend="clipbranches", embeddings="emb", brain_key="b",
            index_key="sim",
        )  # fmt: skip
    assert sorted(ds.list_brain_runs()) == ["renamed"]
    assert cb.list_indexes(ds) == ["sim"]
    with pytest.raises(IndexNotFoundError, match="answers from index 'sim'"):
        cb.index_info(ds, "renamed")
    ranked = ds.sort_by_similarity(first, k=1, brain_key="renamed")
    assert ranked.values("id") == [first]
    ds.load_brain_results("renamed").cleanup()
    ds.delete_brain_run("renamed")
    assert cb.list_indexes(ds) == []


def test_index_keys_and_other_brain_keys_never_meet(embedded):
    """An index named as a brain run of another method was listed beside it as an
    unrelated thing, and no clipbranches run could take that key."""
    ds = embedded
    fob.compute_similarity(ds, embeddings="emb", backend="sklearn", brain_key="sk")
    with pytest.raises(cb.sdk.IndexExistsError, match="brain run with key 'sk'"):
        cb.build_index(ds, "sk", embeddings_field="emb", code_method="pca")
    cb.build_index(
        ds, "mine", embeddings_field="emb", code_method="pca", progress=False
    )
    with pytest.raises(cb.sdk.IndexExistsError, match="sklearn"):
        cb.rename_index(ds, "mine", "sk")
    assert cb.list_indexes(ds) == ["mine"]
    assert sdk.runs.key_taken(ds, "sk") == "A brain run (sklearn) has key 'sk'"
    assert sdk.runs.key_taken(ds, "mine") == "A run with key 'mine' already exists"
    assert sdk.runs.key_taken(ds, "free") is None


def test_an_emptied_index_filled_again_holds_what_was_added(embedded):
    """add_to_index after every sample was removed rebuilt from the whole
    embeddings field, bringing back what had just been removed."""
    ids, vectors = embedded.values(["id", "emb"])
    index = fob.compute_similarity(
        embedded, backend="clipbranches", embeddings="emb", brain_key="sim",
        code_method="pca",
    )  # fmt: skip
    index.remove_from_index(sample_ids=ids)
    assert index.total_index_size == 0
    index.add_to_index(np.stack(vectors[:50]), ids[:50])
    assert index.total_index_size == 50
    assert sorted(index.sample_ids) == sorted(ids[:50])
    ranked = embedded.sort_by_similarity(ids[3], k=None, brain_key="sim")
    assert sorted(ranked.values("id")) == sorted(ids[:50])
    info = cb.index_info(embedded, "sim", check=False)
    assert info.embeddings_field == "emb" and info.clip_model["name"] == TINY_CLIP_NAME
    index.cleanup()
    embedded.delete_brain_run("sim")


def test_an_adopted_index_records_its_own_code_method(embedded):
    cb.build_index(
        embedded, "mine", embeddings_field="emb", code_method="pca", progress=False
    )
    register_similarity_backend()
    index = fob.compute_similarity(
        embedded, backend="clipbranches", embeddings="emb", brain_key="mine",
        code_method="head",
    )  # fmt: skip
    assert index.config.code_method == "pca"
    assert embedded.get_brain_info("mine").config.code_method == "pca"
    for search in (index.find_duplicates, index.find_unique):
        with pytest.raises(ValueError, match="backend='sklearn' offers"):
            search(thresh=0.1)


def test_a_refused_add_writes_nothing_to_the_shared_field(similarity):
    ds, index = similarity
    ids = ds.values("id")
    before = ds.select(ids[:2], ordered=True).values("emb")
    width = len(before[0])
    wide = np.ones((1, width + 3), np.float32)
    with pytest.raises(ValueError, match=f"{width} columns"):
        index.add_to_index(wide, ids[:1])
    nan = np.full((1, width), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN or infinite .*nothing was written"):
        index.add_to_index(nan, ids[1:2])
    with pytest.raises(ValueError, match="one embedding per sample id"):
        index.add_to_index(np.ones((3, width), np.float32), ids[:2])
    with pytest.raises(cb.sdk.errors.SampleIdsError, match="xyz"):
        index.add_to_index(np.ones((1, width), np.float32), ["xyz"])
    after = ds.select(ids[:2], ordered=True).values("emb")
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # a run not built yet given vectors of another width than its field holds
    # for other samples (put there since by other means)
    empty = fob.compute_similarity(
        ds, backend="clipbranches", embeddings=False, brain_key="other",
        embeddings_field="emb2", code_method="pca",
    )  # fmt: skip
    assert empty.total_index_size == 0
    ds.add_sample_field("emb2", fo.VectorField)
    ds.select(ids[:10]).set_values("emb2", before[:1] * 10)
    with pytest.raises(ValueError, match=f"holds {width}-dim vectors"):
        empty.add_to_index(np.ones((40, width + 1), np.float32), ids[20:60])
    assert ds.exists("emb2").count() == 10  # nothing written


def test_a_first_build_that_fails_in_the_brain_leaves_no_run(embedded):
    register_similarity_backend()
    few = embedded.limit(20)
    with pytest.raises(ValueError, match="add_to_index was given 20 embeddings"):
        fob.compute_similarity(
            few, backend="clipbranches", brain_key="few", code_method="pca",
            embeddings=np.random.default_rng(0).random((20, 64), np.float32),
        )  # fmt: skip
    assert "few" not in embedded.list_brain_runs()
    assert "few" not in cb.list_indexes(embedded)


def test_a_view_in_use_follows_the_index_edited_elsewhere(similarity):
    ds, index = similarity
    codes, ids, _ = _codes(ds, "sim")
    cats = ds.match(fo.ViewField("ground_truth.label") == "cat")
    cat_ids = set(cats.values("id"))
    query = sorted(cat_ids)[0]
    index.use_view(cats)
    assert len(cats.sort_by_similarity(query, k=5, brain_key="sim")) == 5
    others = [i for i in ids if i not in cat_ids][:50]
    ds.load_brain_results("sim", cache=False).remove_from_index(others)
    for ranked in (  # through the results in use, and through the view
        index.sort_by_similarity(query, k=5).values("id"),
        cats.sort_by_similarity(query, k=5, brain_key="sim").values("id"),
    ):
        assert len(ranked) == 5 and set(ranked) <= cat_ids


def test_a_first_build_that_fails_puts_the_field_back(similarity, monkeypatch):
    from fiftyone_clipbranches.similarity import index as backend_index

    ds, index = similarity
    ids, vectors = ds.values(["id", "emb"])
    empty = fob.compute_similarity(
        ds, backend="clipbranches", embeddings=False, brain_key="third",
        embeddings_field="emb3", code_method="pca",
    )  # fmt: skip

    def full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(backend_index, "_build_from_field", full)
    with pytest.raises(OSError, match="disk full"):
        empty.add_to_index(np.stack(vectors), ids)
    assert ds.exists("emb3").count() == 0  # as it was: no vector


def test_a_run_whose_files_are_gone_says_the_way_out_that_works(similarity):
    """Its index's files gone, the run told to build the index again in place,
    which is refused while the run answers from it."""
    import shutil

    ds, _ = similarity
    ids = ds.values("id")
    from fiftyone_clipbranches.sdk.bundle import forget_bundle

    index_dir = sdk.index_info(ds, "sim").index_dir
    shutil.rmtree(index_dir)
    forget_bundle(index_dir)  # as another process, which never loaded it, finds it
    ds.clear_cache()
    with pytest.raises(sdk.IndexFilesMissingError) as err:
        ds.sort_by_similarity(ids[0], k=3, brain_key="sim")
    said = str(err.value)
    assert "compute the brain run again: dataset.load_brain_results('sim')" in said
    assert "overwrite" not in said
    # followed as said
    ds.load_brain_results("sim").cleanup()
    ds.delete_brain_run("sim")
    fob.compute_similarity(
        ds, backend="clipbranches", embeddings="emb", brain_key="sim",
        code_method="pca",
    )  # fmt: skip
    assert len(ds.sort_by_similarity(ids[0], k=3, brain_key="sim")) == 3
    # a run that answered from an index of the user's: cleanup() leaves that
    # index, so the way out builds it again (computing the run again adopted the
    # same damaged index, and said the same)
    sdk.build_index(
        ds, "own", embeddings_field="emb", code_method="pca", progress=False
    )
    fob.compute_similarity(
        ds, backend="clipbranches", embeddings="emb", brain_key="own"
    )
    index_dir = sdk.index_info(ds, "own").index_dir
    shutil.rmtree(index_dir)
    forget_bundle(index_dir)
    ds.clear_cache()
    with pytest.raises(sdk.IndexFilesMissingError) as err:
        ds.sort_by_similarity(ids[0], k=3, brain_key="own")
    assert "compute the brain run again: dataset.delete_brain_run('own')" in str(
        err.value
    )
    ds.delete_brain_run("own")
    sdk.build_index(
        ds, "own", embeddings_field="emb", code_method="pca", overwrite=True,
        progress=False,
    )  # fmt: skip
    fob.compute_similarity(
        ds, backend="clipbranches", embeddings="emb", brain_key="own"
    )
    assert len(ds.sort_by_similarity(ids[0], k=3, brain_key="own")) == 3
