"""Caption variants of a generated scene, each with the facts it asserts.

A variant is a short text (``"a red circle"``, ``"something red"``, ``"circles on a
striped background"``, the full caption with its clauses shuffled and synonyms) and
the set of *atoms* it asserts. A text matches an image when every atom of the text is
an atom of the image, which lets training treat every matching pair in a batch as a
positive rather than only the pair it was drawn from.

Atoms are tuples: ``("obj", colour | None, shape | None, size | None)`` (some object
has these attributes), ``("bg", colour)``, ``("tex", texture)`` and ``("count", n)``.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import product

import numpy as np

from .generator import (
    BACKGROUNDS,
    COLOURS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    TEXTURES,
    article,
)

_SHAPE_WORDS = {
    "circle": ("circle", "circle", "disc", "disk"),
    "square": ("square", "square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "cross": ("cross", "cross", "plus sign"),
}
_PLURALS = {"box": "boxes", "cross": "crosses"}
_SIZE_WORDS = {
    "small": ("small", "small", "little", "tiny"),
    "medium": ("medium", "medium", "medium-sized", "mid-sized"),
    "large": ("large", "large", "big"),
}
_COLOUR_WORDS = {"purple": ("purple", "purple", "violet"), "gray": ("gray", "grey")}
_TEXTURE_WORDS = {
    "plain": ("plain", "plain", "solid", "uniform"),
    "striped": ("striped", "striped", "stripy"),
    "checkered": ("checkered", "checkered", "checked", "chequered"),
    "dotted": ("dotted", "dotted", "spotted", "polka-dot"),
    "noisy": ("noisy", "noisy", "grainy", "speckled"),
}
_THING_WORDS = ("shape", "object", "thing")
_PREFIXES = ("", "", "", "a photo of ", "an image of ", "a picture of ")
_COUNT_WORDS = {1: ("one", "a single"), 2: ("two",), 3: ("three",)}

# Variant kinds and their sampling weights.
_KINDS = (
    ("full", 0.22),
    ("object", 0.38),
    ("objects", 0.1),
    ("object_background", 0.1),
    ("background", 0.1),
    ("colours", 0.05),
    ("count", 0.05),
)


@lru_cache(maxsize=1)
def atom_vocabulary() -> dict[tuple, int]:
    """Every atom a scene or text can hold, mapped to a column index."""
    atoms: list[tuple] = []
    for c, s, z in product((None, *COLOURS), (None, *SHAPES), (None, *SIZES)):
        if (c, s, z) != (None, None, None):
            atoms.append(("obj", c, s, z))
    atoms += [("bg", b) for b in BACKGROUNDS]
    atoms += [("tex", t) for t in TEXTURES]
    atoms += [("count", n) for n in range(1, MAX_OBJECTS + 1)]
    return {a: i for i, a in enumerate(atoms)}


def scene_atoms(objects: list[dict], background: str, texture: str) -> frozenset:
    """All atoms true of a scene: each object under every subset of its attributes."""
    atoms = {("bg", background), ("tex", texture), ("count", len(objects))}
    for o in objects:
        for keep in product((False, True), repeat=3):
            if any(keep):
                atoms.add(
                    (
                        "obj",
                        o["colour"] if keep[0] else None,
                        o["shape"] if keep[1] else None,
                        o["size"] if keep[2] else None,
                    )
                )
    return frozenset(atoms)


def atoms_matrix(atom_sets: list[frozenset]) -> np.ndarray:
    """Multi-hot bool matrix of shape ``(len(atom_sets), n_atoms)``."""
    vocab = atom_vocabulary()
    out = np.zeros((len(atom_sets), len(vocab)), dtype=bool)
    for i, atoms in enumerate(atom_sets):
        out[i, [vocab[a] for a in atoms]] = True
    return out


def text_matches(text_atoms: frozenset, image_atoms: frozenset) -> bool:
    """True when an image with ``image_atoms`` satisfies every atom of a text."""
    return text_atoms <= image_atoms


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _colour(rng, colour: str) -> str:
    return _pick(rng, _COLOUR_WORDS.get(colour, (colour,)))


def _plural(noun: str) -> str:
    words = noun.split(" ")
    words[-1] = _PLURALS.get(words[-1], words[-1] + "s")
    return " ".join(words)


def _with_article(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def phrase_object(rng, colour=None, shape=None, size=None, plural=False) -> str:
    """A noun phrase for an object with the given (possibly missing) attributes."""
    if colour is not None and shape is None and size is None and rng.random() < 0.4:
        return f"something {_colour(rng, colour)}"
    adjectives = []
    if size is not None:
        adjectives.append(_pick(rng, _SIZE_WORDS[size]))
    if colour is not None:
        adjectives.append(_colour(rng, colour))
    noun = _pick(rng, _SHAPE_WORDS[shape]) if shape else _pick(rng, _THING_WORDS)
    if plural:
        return " ".join([*adjectives, _plural(noun)])
    return _with_article(" ".join([*adjectives, noun]))


def phrase_background(rng, background=None, texture=None) -> str:
    """``"a striped blue background"`` with either part optional (not both)."""
    words = []
    if texture is not None:
        words.append(_pick(rng, _TEXTURE_WORDS[texture]))
    if background is not None:
        words.append(_colour(rng, background))
    words.append(_pick(rng, ("background", "background", "backdrop")))
    return _with_article(" ".join(words))


def _full(rng, objects, background, texture):
    order = rng.permutation(len(objects))
    things = [
        phrase_object(rng, o["colour"], o["shape"], o["size"])
        for o in (objects[i] for i in order)
    ]
    joined = (
        things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    )
    bg = phrase_background(rng, background, texture)
    if rng.random() < 0.25:
        text = f"{bg} with {joined}"
    else:
        text = f"{joined} {_pick(rng, ('on', 'on', 'over'))} {bg}"
    atoms = {("bg", background), ("tex", texture), ("count", len(objects))}
    atoms |= {("obj", o["colour"], o["shape"], o["size"]) for o in objects}
    return text, atoms


def _partial_pattern(rng, obj):
    # Colour + shape is what users type most; weight it up.
    keep = _pick(
        rng,
        (
            (True, True, False),
            (True, True, False),
            (True, True, False),
            (True, True, True),
            (True, False, False),
            (False, True, False),
            (False, True, True),
            (True, False, True),
        ),
    )
    return (
        obj["colour"] if keep[0] else None,
        obj["shape"] if keep[1] else None,
        obj["size"] if keep[2] else None,
    )


def _object(rng, objects, background, texture):
    c, s, z = _partial_pattern(rng, _pick(rng, objects))
    plural = s is not None and z is None and rng.random() < 0.2
    return phrase_object(rng, c, s, z, plural=plural), {("obj", c, s, z)}


def _objects(rng, objects, background, texture):
    if len(objects) < 2:
        return _object(rng, objects, background, texture)
    order = rng.permutation(len(objects))[: int(rng.integers(2, len(objects) + 1))]
    full = rng.random() < 0.3
    atoms, things = set(), []
    for i in order:
        o = objects[i]
        z = o["size"] if full else None
        atoms.add(("obj", o["colour"], o["shape"], z))
        things.append(phrase_object(rng, o["colour"], o["shape"], z))
    return " and ".join(things), atoms


def _object_background(rng, objects, background, texture):
    c, s, z = _partial_pattern(rng, _pick(rng, objects))
    which = int(rng.integers(3))
    bg = background if which != 1 else None
    tex = texture if which != 0 else None
    text = f"{phrase_object(rng, c, s, z)} on {phrase_background(rng, bg, tex)}"
    atoms = {("obj", c, s, z)}
    if bg is not None:
        atoms.add(("bg", bg))
    if tex is not None:
        atoms.add(("tex", tex))
    return text, atoms


def _background_only(rng, objects, background, texture):
    which = int(rng.integers(3))
    bg = background if which != 1 else None
    tex = texture if which != 0 else None
    atoms = set()
    if bg is not None:
        atoms.add(("bg", bg))
    if tex is not None:
        atoms.add(("tex", tex))
    return phrase_background(rng, bg, tex), atoms


def _colours(rng, objects, background, texture):
    distinct = sorted({o["colour"] for o in objects})  # a set's order varies by run
    colours = [distinct[i] for i in rng.permutation(len(distinct))]
    names = [_colour(rng, c) for c in colours]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    noun = _pick(rng, ("shapes", "objects", "things"))
    return f"{text} {noun}", {("obj", c, None, None) for c in colours}


def _count(rng, objects, background, texture):
    n = len(objects)
    word = _pick(rng, _COUNT_WORDS[n])
    noun = _pick(rng, ("shape", "object")) + ("" if n == 1 else "s")
    return f"{word} {noun}", {("count", n)}


def atom_phrase(atom: tuple, rng: np.random.Generator) -> str:
    """A random short text asserting exactly ``atom``, e.g. ``"a red circle"``."""
    kind = atom[0]
    if kind == "obj":
        _, c, s, z = atom
        plural = s is not None and z is None and rng.random() < 0.2
        text = phrase_object(rng, c, s, z, plural=plural)
    elif kind == "bg":
        text = phrase_background(rng, atom[1], None)
    elif kind == "tex":
        text = phrase_background(rng, None, atom[1])
    elif kind == "count":
        n = atom[1]
        noun = _pick(rng, ("shape", "object")) + ("" if n == 1 else "s")
        return f"{_pick(rng, _COUNT_WORDS[n])} {noun}"
    else:
        raise ValueError(f"unknown atom {atom!r}")
    return _pick(rng, _PREFIXES) + text


_BUILDERS = {
    "full": _full,
    "object": _object,
    "objects": _objects,
    "object_background": _object_background,
    "background": _background_only,
    "colours": _colours,
    "count": _count,
}


def caption_variants(
    objects: list[dict],
    background: str,
    texture: str,
    rng: np.random.Generator,
    k: int,
) -> list[tuple[str, frozenset]]:
    """``k`` random caption variants of a scene as ``(text, atoms)`` pairs.

    The first variant is always a full description of the scene.
    """
    if not objects:
        raise ValueError("a scene needs at least one object")
    names = [name for name, _ in _KINDS]
    weights = np.array([w for _, w in _KINDS])
    kinds = ["full"] + list(rng.choice(names, size=k - 1, p=weights / weights.sum()))
    out = []
    for kind in kinds:
        text, atoms = _BUILDERS[kind](rng, objects, background, texture)
        prefix = _pick(rng, _PREFIXES) if kind != "count" else ""
        out.append((prefix + text, frozenset(atoms)))
    return out
