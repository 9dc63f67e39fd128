"""Caption variants: every variant is true of its scene and names what it asserts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fiftyone_clipbranches.demo.captions import (
    atom_vocabulary,
    atoms_matrix,
    caption_variants,
    scene_atoms,
    text_matches,
)
from fiftyone_clipbranches.demo.generator import make_scene
from fiftyone_clipbranches.demo.train import multi_positive_loss, positives_mask

_WORDS = {
    "purple": ("purple", "violet"),
    "gray": ("gray", "grey"),
    "circle": ("circle", "disc", "disk"),
    "square": ("square", "box"),
    "cross": ("cross", "plus"),
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "mid-sized"),
    "large": ("large", "big"),
    "checkered": ("checkered", "checked", "chequered"),
    "dotted": ("dotted", "spotted", "polka-dot"),
    "noisy": ("noisy", "grainy", "speckled"),
    "plain": ("plain", "solid", "uniform"),
    "striped": ("striped", "stripy"),
}


def _mentions(text: str, value: str) -> bool:
    return any(w in text for w in _WORDS.get(value, (value,)))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), index=st.integers(0, 10_000))
def test_variants_are_true_of_their_scene_and_mention_their_atoms(seed, index):
    scene = make_scene(seed, index)
    objects = scene.object_dicts()
    atoms = scene_atoms(objects, scene.background, scene.texture)
    rng = np.random.default_rng(seed)
    variants = caption_variants(objects, scene.background, scene.texture, rng, 12)
    assert len(variants) == 12
    assert variants[0][1] >= {("bg", scene.background), ("tex", scene.texture)}
    vocab = atom_vocabulary()
    for text, text_atoms in variants:
        assert text_atoms and text_matches(text_atoms, atoms)
        assert all(a in vocab for a in text_atoms)
        for atom in text_atoms:
            if atom[0] == "obj":
                assert all(_mentions(text, v) for v in atom[1:] if v is not None)
            elif atom[0] in ("bg", "tex"):
                assert _mentions(text, atom[1])


def test_scene_atoms_hold_every_partial_description():
    objects = [{"colour": "red", "shape": "circle", "size": "small"}]
    atoms = scene_atoms(objects, "blue", "striped")
    assert ("obj", "red", "circle", None) in atoms
    assert ("obj", "red", None, None) in atoms
    assert ("obj", None, None, "small") in atoms
    assert ("obj", "blue", "circle", None) not in atoms
    assert not text_matches(frozenset({("obj", "red", "square", None)}), atoms)
    assert len(atoms) == 7 + 3


def test_positives_mask_matches_set_inclusion():
    scenes = [make_scene(3, i) for i in range(24)]
    image_sets = [
        scene_atoms(s.object_dicts(), s.background, s.texture) for s in scenes
    ]
    rng = np.random.default_rng(0)
    text_sets = [
        caption_variants(s.object_dicts(), s.background, s.texture, rng, 3)[2][1]
        for s in scenes
    ]
    mask = positives_mask(
        torch.from_numpy(atoms_matrix(text_sets).astype(np.float32)),
        torch.from_numpy(atoms_matrix(image_sets).astype(np.float32)),
    ).numpy()
    expected = np.array([[t <= i for i in image_sets] for t in text_sets])
    np.testing.assert_array_equal(mask, expected)
    assert mask.diagonal().all()


def test_loss_is_clip_loss_for_one_positive_per_row_and_rewards_alignment():
    torch.manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    i = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    scale = torch.tensor(np.log(10.0))
    eye = torch.eye(6, dtype=torch.bool)
    logits = 10.0 * t @ i.T
    labels = torch.arange(6)
    clip = 0.5 * (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.T, labels)
    )
    assert multi_positive_loss(t, i, scale, eye).item() == pytest.approx(clip.item())
    assert multi_positive_loss(t, t, scale, eye) < multi_positive_loss(t, i, scale, eye)


_CAPTIONS_DIGEST = """
import hashlib, numpy as np
from fiftyone_clipbranches.demo.captions import caption_variants
rng = np.random.default_rng(4)
objects = [{"colour": c, "shape": "circle", "size": "small"} for c in
           ("red", "green", "blue")]
digest = hashlib.sha256()
for _ in range(200):
    for text, _ in caption_variants(objects, "white", "plain", rng, 16):
        digest.update(text.encode())
print(digest.hexdigest())
"""


def test_captions_do_not_depend_on_the_string_hash_seed():
    outputs = {
        subprocess.run(
            [sys.executable, "-c", _CAPTIONS_DIGEST],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
