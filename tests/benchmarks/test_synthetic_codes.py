"""The synthetic catalogue generator of the speed benchmarks: its rare classes."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import synthetic_codes  # noqa: E402

N = 50_000


@pytest.fixture(autouse=True)
def _needs_embeddings(clip_embeddings_dir):
    return clip_embeddings_dir


@pytest.mark.parametrize("classes", synthetic_codes.CLASS_KINDS)
def test_rare_classes_have_their_share_and_the_same_arguments_give_the_same_bytes(
    classes, tmp_path
):
    codes, labels, meta = synthetic_codes.generate(
        N, 0, tmp_path / "a", progress=False, classes=classes
    )
    assert codes.shape == (N, synthetic_codes.N_DIMS) and codes.dtype == np.uint8
    assert meta["classes"] == classes
    counts = np.bincount(np.asarray(labels), minlength=meta["n_components"])
    for name, share in synthetic_codes.TARGETS.items():
        expected = share * N
        assert abs(counts[meta["target_components"][name]] - expected) <= 5 * np.sqrt(
            expected
        ), name
    again, again_labels, _ = synthetic_codes.generate(
        N, 0, tmp_path / "b", progress=False, classes=classes
    )
    assert np.array_equal(codes, again) and np.array_equal(labels, again_labels)
    if classes == "real":
        assert len(set(meta["real_classes"])) == len(synthetic_codes.TARGETS)
    else:
        assert meta["real_classes"] is None


def test_real_classes_are_centred_where_their_embeddings_are(tmp_path):
    model = synthetic_codes.CodeMixture(0, "real")
    emb, class_of = synthetic_codes.load_embeddings()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    z = (emb - model.mean) @ model.basis
    for name, cls in zip(synthetic_codes.TARGETS, model.real_classes):
        mu = model.mus[model.target_ids[name]]
        assert np.allclose(mu, z[class_of == cls].mean(0))
        # and no background component was fitted to that class's rows alone
        assert not any(np.allclose(mu, other) for other in model.mus[:-3])


def test_an_unknown_kind_of_class_is_refused():
    with pytest.raises(ValueError, match="classes must be one of"):
        synthetic_codes.CodeMixture(0, "bogus")
