"""``compute_similarity(..., clip_model=...)``: the images are embedded with the
declared CLIP when the brain gives no vectors, an array given is indexed instead
(the model then only embeds text prompts), and ``"demo"`` is the small CLIP the
package ships, as everywhere else. Real images, the real brain."""

from __future__ import annotations

import fiftyone.brain as fob
import numpy as np
import pytest
from user_path import images_dataset

import fiftyone_clipbranches as cb
from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.demo.model import ensure_demo_model
from fiftyone_clipbranches.similarity import register_similarity_backend


@pytest.fixture
def images(cifar_dir):
    register_similarity_backend()
    ds = images_dataset(cifar_dir, 5)
    yield ds
    ds.delete()


def test_the_shipped_clip_embeds_the_images(images):
    shipped = ensure_demo_model(progress=False).name
    fob.compute_similarity(
        images, backend="clipbranches", brain_key="clip", embeddings=False,
        clip_model="demo", code_method="pca",
    )  # fmt: skip
    assert cb.index_info(images, "clip").clip_model["name"] == shipped
    assert len(images.exists("clip_embedding")) == len(images)
    assert len(images.sort_by_similarity("a red circle", k=4, brain_key="clip")) == 4


def test_an_array_is_indexed_and_the_declared_clip_embeds_text(images):
    vectors = sdk.compute_embeddings(images, "kept", model="demo", progress=False)
    assert vectors["n_embedded"] == len(images)
    ids, array = images.values("id"), np.stack(images.values("kept"))
    array = array + np.float32(0.01)  # not the field's vectors: the array's
    fob.compute_similarity(
        images, backend="clipbranches", brain_key="arr", embeddings=array,
        clip_model="demo", code_method="pca",
    )  # fmt: skip
    # the images were not embedded again, into a field nobody named
    assert not images.has_sample_field("clip_embedding")
    info = cb.index_info(images, "arr")
    assert info.n_samples == len(ids) and info.supports_text
    first = images.sort_by_similarity(ids[3], k=1, brain_key="arr")
    assert first.values("id") == [ids[3]]
    assert len(images.sort_by_similarity("a red circle", k=3, brain_key="arr")) == 3


def test_embeddings_of_deleted_samples_are_left_out(images):
    sdk.compute_embeddings(images, "emb", model="demo", progress=False)
    fob.compute_similarity(
        images, backend="clipbranches", brain_key="sim", embeddings="emb",
        code_method="pca",
    )  # fmt: skip
    ids = images.values("id")
    images.delete_samples(ids[:2])
    results = images.load_brain_results("sim")
    matrix, kept, _ = results.get_embeddings()
    assert len(matrix) == len(kept) == len(ids) - 2 and ids[0] not in kept
    matrix, kept, _ = results.get_embeddings(sample_ids=[ids[0], ids[5], ids[3]])
    assert list(kept) == [ids[5], ids[3]] and len(matrix) == 2
    np.testing.assert_array_equal(matrix[0], images[ids[5]]["emb"])
    # an id asked twice: its row twice, each row beside its id (the rows were
    # one short, every later row beside the wrong id)
    matrix, kept, _ = results.get_embeddings(sample_ids=[ids[5], ids[5], ids[3]])
    assert list(kept) == [ids[5], ids[5], ids[3]] and len(matrix) == 3
    np.testing.assert_array_equal(matrix[2], images[ids[3]]["emb"])
    # a vector cleared since the build: left out, or named (a numpy error before)
    sample = images[ids[4]]
    sample["emb"] = None
    sample.save()
    matrix, kept, _ = results.get_embeddings(sample_ids=[ids[4], ids[3]])
    assert list(kept) == [ids[3]] and len(matrix) == 1
    with pytest.raises(
        sdk.ClipBranchesError, match=f"no vector in field 'emb'.*{ids[4]}"
    ):
        results.get_embeddings(sample_ids=[ids[4], ids[3]], allow_missing=False)
