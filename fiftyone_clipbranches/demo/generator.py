"""Deterministic generator of captioned synthetic images for the offline demo.

Every image shows one to three coloured shapes of three sizes on a coloured, textured
background, and comes with a caption such as ``"a small red circle on a striped blue
background"`` and its ground-truth attributes. Image ``i`` of seed ``s`` depends on
``(s, i)`` only, so any prefix of a larger set is identical to a smaller one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .paths import write_json_atomic

#: Bumped whenever the images or captions a (seed, index) pair produces change.
GENERATOR_VERSION = 3

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (35, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 205, 25),
    "purple": (135, 45, 175),
    "orange": (245, 125, 20),
}
#: Object diameter as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.24, "medium": 0.33, "large": 0.44}
BACKGROUNDS: tuple[str, ...] = ("white", "gray", "black", *COLOURS)
TEXTURES: tuple[str, ...] = ("plain", "striped", "checkered", "dotted", "noisy")
MAX_OBJECTS = 3

MANIFEST_NAME = "manifest.json"
_MANIFEST_FORMAT = "clipbranches-demo-images"
_SUPERSAMPLE = 2


def _background_rgb(name: str) -> np.ndarray:
    neutral = {"white": (242, 242, 238), "gray": (128, 128, 128), "black": (22, 22, 24)}
    if name in neutral:
        return np.array(neutral[name], dtype=np.float32)
    pale = 0.45 * np.array(COLOURS[name], dtype=np.float32) + 0.55 * 255.0
    return pale


@dataclass(frozen=True)
class ImageRecord:
    """One generated image and its ground truth.

    Attributes:
        filepath: absolute path of the PNG file ("" for images rendered in memory).
        caption: canonical caption, e.g. ``"a small red circle on a plain white
            background"``.
        objects: one dict per object, ``{"shape", "colour", "size", "bbox"}``, where
            ``bbox`` is ``[x, y, w, h]`` relative to the image side (FiftyOne format).
        background: background colour name, one of :data:`BACKGROUNDS`.
        texture: background texture, one of :data:`TEXTURES`.
    """

    filepath: str
    caption: str
    objects: list[dict] = field(default_factory=list)
    background: str = "white"
    texture: str = "plain"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _ObjectLayout:
    shape: str
    colour: str
    size: str
    centre: tuple[float, float]
    diameter: float
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """Attributes and layout of one image, everything needed to render it."""

    index: int
    image_size: int
    objects: tuple[_ObjectLayout, ...]
    background: str
    texture: str
    texture_params: tuple[float, ...]
    noise_seed: int

    @property
    def caption(self) -> str:
        return describe_scene(
            [o.__dict__ for o in self.objects], self.background, self.texture
        )

    def object_dicts(self) -> list[dict]:
        """Objects as ``{"shape", "colour", "size", "bbox"}`` dicts (bbox relative)."""
        side = float(self.image_size)
        out = []
        for o in self.objects:
            r = o.diameter / 2.0
            x0 = max(0.0, o.centre[0] - r) / side
            y0 = max(0.0, o.centre[1] - r) / side
            x1 = min(side, o.centre[0] + r) / side
            y1 = min(side, o.centre[1] + r) / side
            bbox = [round(x0, 4), round(y0, 4), round(x1 - x0, 4), round(y1 - y0, 4)]
            out.append(
                {"shape": o.shape, "colour": o.colour, "size": o.size, "bbox": bbox}
            )
        return out

    def record(self, filepath: str = "") -> ImageRecord:
        return ImageRecord(
            filepath=filepath,
            caption=self.caption,
            objects=self.object_dicts(),
            background=self.background,
            texture=self.texture,
        )

    def render(self) -> Image.Image:
        """The scene as an ``image_size x image_size`` RGB image."""
        return _render(self)


def article(word: str) -> str:
    """``"an"`` before a vowel, else ``"a"``."""
    return "an" if word[:1] in "aeiou" else "a"


def describe_object(obj: dict) -> str:
    """``"a small red circle"`` for ``{"size": "small", "colour": "red", ...}``."""
    return f"{article(obj['size'])} {obj['size']} {obj['colour']} {obj['shape']}"


def join_phrases(phrases: list[str]) -> str:
    """``"x"``, ``"x and y"``, ``"x, y and z"``."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def describe_scene(objects: list[dict], background: str, texture: str) -> str:
    """The canonical caption of a scene."""
    things = join_phrases([describe_object(o) for o in objects])
    return f"{things} on {article(texture)} {texture} {background} background"


def make_scene(seed: int, index: int, image_size: int = 96) -> Scene:
    """Sample the attributes and layout of image ``index`` of ``seed``."""
    rng = np.random.default_rng([GENERATOR_VERSION, seed, index])
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    n_objects = int(rng.integers(1, MAX_OBJECTS + 1))
    side = float(image_size)
    cells = rng.permutation(4)[:n_objects]
    colour_names = [c for c in COLOURS if c != background]
    size_names = list(SIZES)
    objects = []
    for cell in cells:
        shape = SHAPES[rng.integers(len(SHAPES))]
        colour = colour_names[rng.integers(len(colour_names))]
        size = size_names[rng.integers(len(size_names))]
        diameter = SIZES[size] * side
        if n_objects == 1:
            lo, hi = np.full(2, diameter / 2), np.full(2, side - diameter / 2)
        else:
            half = side / 2
            origin = np.array([cell % 2, cell // 2], dtype=np.float64) * half
            slack = max(0.0, (half - diameter) / 2)
            lo = origin + half / 2 - slack
            hi = origin + half / 2 + slack
        centre = lo + rng.random(2) * (hi - lo)
        jitter = rng.integers(-18, 19, size=3)
        rgb = np.clip(np.array(COLOURS[colour]) + jitter, 0, 255)
        objects.append(
            _ObjectLayout(
                shape=shape,
                colour=colour,
                size=size,
                centre=(float(centre[0]), float(centre[1])),
                diameter=float(diameter),
                rgb=tuple(int(v) for v in rgb),
            )
        )
    texture_params = tuple(float(v) for v in rng.random(3))
    noise_seed = int(rng.integers(2**31))
    return Scene(
        index=index,
        image_size=image_size,
        objects=tuple(objects),
        background=background,
        texture=texture,
        texture_params=texture_params,
        noise_seed=noise_seed,
    )


def make_scenes(n: int, seed: int = 0, image_size: int = 96) -> list[Scene]:
    """Scenes ``0 .. n-1`` of ``seed`` (see :func:`make_scene`)."""
    n, seed, image_size = _check_params(n, seed, image_size)
    return [make_scene(seed, i, image_size) for i in range(n)]


def _background(scene: Scene, side: int) -> np.ndarray:
    base = _background_rgb(scene.background)
    dark = base.mean() > 80
    second = base * 0.84 if dark else base + 36.0
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    p0, p1, p2 = scene.texture_params
    scale = side / 96.0
    mask = None
    if scene.texture == "striped":
        period = (8 + 8 * p0) * scale
        coord = (xx, yy, xx + yy)[int(p1 * 3)]
        mask = (coord // (period / 2)) % 2 == 1
    elif scene.texture == "checkered":
        cell = (7 + 6 * p0) * scale
        mask = ((xx // cell) + (yy // cell)) % 2 == 1
    elif scene.texture == "dotted":
        gap = (10 + 5 * p0) * scale
        dx = xx % gap - gap / 2
        dy = yy % gap - gap / 2
        mask = dx * dx + dy * dy < (gap * (0.22 + 0.08 * p1)) ** 2
    img = np.broadcast_to(base, (side, side, 3)).copy()
    if mask is not None:
        img[mask] = second
    if scene.texture == "noisy":
        noise_rng = np.random.default_rng(scene.noise_seed)
        img += noise_rng.normal(0.0, 20.0, size=(side, side, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else 0.45 * r
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_object(draw: ImageDraw.ImageDraw, o: _ObjectLayout, scale: float) -> None:
    cx, cy = o.centre[0] * scale, o.centre[1] * scale
    r = o.diameter * scale / 2
    if o.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=o.rgb)
    elif o.shape == "square":
        h = 0.86 * r
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=o.rgb)
    elif o.shape == "triangle":
        pts = [
            (cx, cy - r),
            (cx - 0.95 * r, cy + 0.8 * r),
            (cx + 0.95 * r, cy + 0.8 * r),
        ]
        draw.polygon(pts, fill=o.rgb)
    elif o.shape == "star":
        draw.polygon(_star(cx, cy, r), fill=o.rgb)
    elif o.shape == "cross":
        t = 0.34 * r
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=o.rgb)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=o.rgb)
    else:
        raise ValueError(f"unknown shape {o.shape!r}")


def _render(scene: Scene) -> Image.Image:
    big = scene.image_size * _SUPERSAMPLE
    img = Image.fromarray(_background(scene, big), mode="RGB")
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        _draw_object(draw, o, float(_SUPERSAMPLE))
    return img.resize((scene.image_size, scene.image_size), Image.Resampling.BOX)


def _check_params(n, seed, image_size) -> tuple[int, int, int]:
    for name, value in (("n", n), ("seed", seed), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 32 <= image_size <= 1024:
        raise ValueError(f"image_size must be in [32, 1024], got {image_size}")
    return int(n), int(seed), int(image_size)


def _load_manifest(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        return None
    return manifest


def _save_png_atomic(img: Image.Image, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, format="PNG", compress_level=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_images(
    out_dir: str | os.PathLike,
    n: int = 3000,
    seed: int = 0,
    progress: bool = True,
    image_size: int = 96,
) -> list[ImageRecord]:
    """Write ``n`` captioned PNG images and a ``manifest.json`` to ``out_dir``.

    Idempotent: files already listed with identical ground truth in an existing
    manifest of the same generator version, seed and image size are kept as they are;
    the rest are rendered. The manifest is rewritten atomically only when it changes.

    Args:
        out_dir: destination folder (created if missing).
        n: number of images, >= 1.
        seed: data seed, >= 0; image ``i`` depends on ``(seed, i)`` only.
        progress: show a tqdm progress bar.
        image_size: side of the square RGB images in pixels.

    Returns:
        One :class:`ImageRecord` per image, in index order, with absolute file paths.
    """
    n, seed, image_size = _check_params(n, seed, image_size)
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    manifest_path = out / MANIFEST_NAME
    old = _load_manifest(manifest_path)
    same_key = old is not None and (
        old.get("version"),
        old.get("seed"),
        old.get("image_size"),
    ) == (GENERATOR_VERSION, seed, image_size)
    old_entries = {}
    if same_key:
        old_entries = {
            e.get("filename"): e for e in old.get("records", []) if isinstance(e, dict)
        }

    from tqdm.auto import tqdm

    entries, records = [], []
    for i in tqdm(range(n), desc="demo images", unit="img", disable=not progress):
        scene = make_scene(seed, i, image_size)
        filename = f"{i:05d}.png"
        path = out / filename
        rec = scene.record(str(path))
        entry = {"filename": filename, **rec.to_dict()}
        del entry["filepath"]
        if old_entries.get(filename) != entry or not path.is_file():
            _save_png_atomic(scene.render(), path)
        entries.append(entry)
        records.append(rec)

    manifest = {
        "format": _MANIFEST_FORMAT,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "n": n,
        "records": entries,
    }
    if old != manifest:
        write_json_atomic(manifest_path, manifest)
    return records
