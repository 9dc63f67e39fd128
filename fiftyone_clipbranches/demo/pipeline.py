"""``clipbranches demo``: the whole product, end to end, on a world it makes itself.

Generated captioned images (or the user's own folder), a CLIP model (the demo model
trained here, or any open_clip model), a FiftyOne dataset, an index, one text search,
one simulated round of relevance feedback from the ground truth, a saved view and
the App with the panel open. Every step reuses what an earlier run left behind.
"""

from __future__ import annotations

import logging
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.sdk import settings
from fiftyone_clipbranches.sdk.messages import counted

from .model import SHIPPED_MODEL

DEMO_DATASET = "clipbranches-demo"
DEMO_INDEX_KEY = "demo"
DEMO_QUERY = "a red circle"
DEMO_VIEW = "clipbranches-demo-refined"
#: Key of the ``info`` of the datasets the demo makes: what it made them from.
DEMO_INFO_KEY = "clipbranches_demo"
#: The demo refines with the query ball: the text query already ranks the matches
#: first, and the labelled top of its ranking tells how far down they go. The
#: classifiers on the codes alone recover less of a class from 60 labels
#: (docs/quality.md, "Demo refinement").
DEMO_REFINE_MODEL = "ball"


@dataclass
class DemoReport:
    """What one demo run measured. Figures are ``None`` when there is no ground truth."""

    dataset: str
    n_samples: int
    query: str
    k: int
    model: str
    precision_at_20: float | None = None
    topk_f1: float | None = None
    refined_f1: float | None = None
    refined_precision: float | None = None
    refined_recall: float | None = None
    n_relevant: int | None = None
    n_refined: int = 0
    saved_view: str | None = None
    top_files: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def format(self) -> str:
        def fig(value):
            return "n/a" if value is None else f"{value:.3f}"

        rows = [
            ("dataset", f"{self.dataset} ({self.n_samples} samples)"),
            ("text query", f"{self.query!r}, k = {self.k}"),
        ]
        if self.top_files:
            shown = len(self.top_files)
            rows.append((f"top {shown}", ", ".join(self.top_files)))
        if self.n_relevant is None:
            rows.append(
                (
                    "feedback",
                    "not simulated: nothing says which of these images match the"
                    " query (the generated images queried by a colour and a shape"
                    " do, and a folder per class queried by one class's name); tag"
                    " results in the App's panel, then Refine",
                )
            )
        else:
            rows += [
                ("precision@20", fig(self.precision_at_20)),
                (f"F1 of the top {self.k}", fig(self.topk_f1)),
                (
                    f"refined ({self.model})",
                    f"{self.n_refined} samples, F1 {fig(self.refined_f1)} (precision"
                    f" {fig(self.refined_precision)}, recall"
                    f" {fig(self.refined_recall)}; {self.n_relevant} relevant)",
                ),
            ]
        if self.topk_f1 and self.refined_f1 is not None:
            rows.append(("F1 gain", f"{self.refined_f1 / self.topk_f1:.2f}x"))
        if self.saved_view:
            rows.append(("saved view", self.saved_view))
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
        rows.append(("timings", steps))
        rows += [("note", note) for note in self.notes]
        width = max(len(name) for name, _ in rows) + 2
        return "\n".join(f"{name:<{width}}{value}" for name, value in rows)


def run_demo(
    *,
    images: str | Path | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    n_images: int = 3000,
    query: str = DEMO_QUERY,
    k: int = 60,
    refine_model: str = DEMO_REFINE_MODEL,
    dataset_name: str | None = None,
    data_dir: str | Path | None = None,
    train_minutes: float | None = None,
    train_config=None,
    retrain: bool = False,
    progress: bool = True,
) -> DemoReport:
    """Prepare (or reuse) the demo dataset and index, search, refine once, report.

    Args:
        images: a folder of the user's own images; default: generated images with
            ground truth.
        model, pretrained: open_clip model and pretrained tag or checkpoint path
            (``"none"``: random weights); default: the demo model (the shipped
            checkpoint for the default ``train_config``, else trained here on
            first use), and with ``images`` ViT-B-32 / laion2b_s34b_b79k;
            ``model="demo"`` (:data:`SHIPPED_MODEL`) is the demo model with
            ``images`` too (offline; it knows generated shapes, not photos);
            the demo model takes no ``pretrained`` (refused).
        n_images: number of generated images (ignored with ``images``).
        query: the text query.
        k: number of results shown for the text query and labelled by the
            simulated user.
        refine_model: one of ``sdk.models.model_names()`` (default ``"ball"``).
        dataset_name: FiftyOne dataset to create or reuse.
        data_dir: where generated images and the demo model are cached.
        train_minutes: time budget for training the demo model, None for none;
            running past it raises ``demo.train.DemoTrainingBudgetError``.
        train_config: a ``demo.train.DemoTrainConfig`` (default: the standard one).
        retrain: train the demo model from scratch instead of reusing it.
        progress: show progress bars.
    """
    settings.quiet_bundled_database_validation()
    from fiftyone_clipbranches import sdk

    timings: dict[str, float] = {}
    notes: list[str] = []
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    shipped = model == SHIPPED_MODEL or (model is None and images is None)
    if shipped and pretrained is not None:
        raise ValueError(
            f"the demo's model is {SHIPPED_MODEL!r}, the small CLIP this package"
            " ships, with its own weights: leave the pretrained weights empty, or"
            " name the open_clip model they are for (--model ViT-B-32"
            " --pretrained ...)"
        )
    if images is None:
        from fiftyone_clipbranches.sdk.stream_encode import fit_rows_needed

        if n_images < fit_rows_needed("pca"):  # before the images are made
            raise ValueError(
                f"the demo needs at least {fit_rows_needed('pca')} images to build"
                f" an index: --n-images {n_images} is too few"
            )
        records = _generated_records(n_images, data_dir, progress)
        lap("images")
    if shipped:
        model, pretrained = _demo_model(
            data_dir, progress, train_minutes, train_config, retrain, notes
        )
        lap("demo model")
        if images is not None:
            notes.append(
                f"the shipped CLIP ({SHIPPED_MODEL!r}) knows only generated shapes and"
                " colours, not photos: low figures on your images are its own; with"
                " the real CLIP's weights, pass --model ViT-B-32 --pretrained"
                " laion2b_s34b_b79k (or a local checkpoint file)"
            )
    else:
        model = model or "ViT-B-32"
        pretrained = _weights(pretrained)
    if images is None:
        name = dataset_name or DEMO_DATASET
        dataset, made_now = _generated_dataset(name, records, model, pretrained)
    else:
        name = dataset_name or f"{DEMO_DATASET}-{Path(images).resolve().name}"
        dataset, made_now = _folder_dataset(name, Path(images), model, pretrained)
    lap("dataset")

    try:
        _ensure_index(dataset, model, pretrained, progress)
    except BaseException:
        if made_now:
            dataset.delete()  # no half-made dataset is left behind
        raise
    lap("index")

    ids, _ = sdk.search_ids(dataset, text=query, k=k, index_key=DEMO_INDEX_KEY)
    lap("search")
    unread = sdk.index_info(dataset, DEMO_INDEX_KEY).freshness
    if unread is not None and unread.n_unreadable:
        notes.append(
            f"{counted(unread.n_unreadable, 'image')} could not be read and"
            f" {'was' if unread.n_unreadable == 1 else 'were'} left out (`clipbranches"
            f" indexes {shlex.quote(dataset.name)} --json` lists them)"
        )
    if pretrained is None:
        notes.append(
            "random weights (--pretrained none): the model knows nothing of images,"
            " so the results and figures carry no meaning"
        )

    report = DemoReport(
        dataset=dataset.name,
        n_samples=len(dataset),
        query=query,
        k=k,
        model=refine_model,
        timings=timings,
        notes=notes,
    )
    truth = relevant_ids(dataset, query)
    if truth is None:  # no figures: the nearest files, to look at
        paths = dict(zip(*dataset.select(ids[:5]).values(["id", "filepath"])))
        nearest = [Path(paths[i]) for i in ids[:5] if i in paths]
        report.top_files = [f"{p.parent.name}/{p.name}" for p in nearest]
        return report
    _, bundle = sdk.load_index(dataset, DEMO_INDEX_KEY)
    wanted = sorted(truth)
    unindexed = {
        i for i, held in zip(wanted, bundle.rowmap.contains(wanted)) if not held
    }
    if unindexed:  # no search can find them: not held against it
        truth -= unindexed
        notes.append(
            f"{counted(len(unindexed), 'relevant image')} could not be read: not"
            " counted as relevant"
        )
    shown = list(ids)
    report.n_relevant = len(truth)
    report.precision_at_20 = _precision(shown[:20], truth)
    report.topk_f1 = f1_score(shown, truth)

    positives, negatives = label_shown(shown, truth)
    if not positives:
        return report
    _release_old_demo_view(dataset)
    result = sdk.refine(
        dataset,
        positives=positives,
        negatives=negatives,
        model=refine_model,
        index_key=DEMO_INDEX_KEY,
        saved_view=DEMO_VIEW,
        query=query,
    )
    lap("refine")
    found = set(result.ids)
    report.n_refined = len(found)
    report.refined_f1 = f1_score(result.ids, truth)
    report.refined_precision = _precision(result.ids, truth)
    report.refined_recall = len(found & truth) / len(truth) if truth else None
    report.saved_view = DEMO_VIEW
    return report


def link_plugin() -> None:
    """Link the plugin into FiftyOne's plugins folder (idempotent), so that the App,
    opened now or later, has the panel; a foreign file there is reported, not
    replaced."""
    from fiftyone_clipbranches.plugin_install import PluginInstallError, install_plugin

    try:
        install_plugin()
    except PluginInstallError as e:
        print(f"warning: {e}")


def check_app_port(port: int, address: str = "127.0.0.1") -> None:
    """Refuse a ``port`` another program holds (an App already there is fine:
    FiftyOne serves this session through it), before minutes of work.

    Raises:
        ValueError: the port is taken by something that is no FiftyOne App.
    """
    import json
    import urllib.request

    if _port_is_free(address, port):
        return
    host = f"[{address}]" if ":" in address else address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/fiftyone", timeout=3) as r:
            if "version" in json.loads(r.read().decode()):
                return
    except (OSError, ValueError):
        pass
    free = next(
        (p for p in range(port + 1, port + 50) if _port_is_free(address, p)), None
    )
    instead = f", e.g. --port {free}" if free else ""
    raise ValueError(
        f"port {port} on {address} is taken by another program (no FiftyOne App"
        f" answers there): pass a free one{instead}"
    )


def _port_is_free(address: str, port: int) -> bool:
    """Whether a server could listen on ``address:port`` now (as the App's does:
    connections of a server just stopped, waiting to close, do not hold it)."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def launch_demo_app(dataset_name: str, port: int = 5151, address: str = "127.0.0.1"):
    """Open the App on the whole demo dataset with the panel beside the grid (the
    demo's refined result is the saved view :data:`DEMO_VIEW`, in the App's view
    menu: opened on it, a first search would look only inside it); blocks."""
    check_app_port(port, address)
    settings.quiet_bundled_database_validation()
    import fiftyone as fo

    from fiftyone_clipbranches.panels.constants import PANEL_NAME

    link_plugin()
    dataset = fo.load_dataset(dataset_name)
    spaces = fo.Space(
        children=[
            fo.Panel(type="Samples", pinned=True),
            fo.Panel(type=PANEL_NAME),
        ],
        orientation="horizontal",
    )
    # FiftyOne's own lines are for a remote machine (ssh port forwarding, with
    # its default port) and its welcome banner: the line below says where it is
    session_log = logging.getLogger("fiftyone.core.session.session")
    level = session_log.level
    session_log.setLevel(logging.WARNING)
    try:
        session = fo.launch_app(
            dataset, port=port, address=address, remote=True, auto=False,
            spaces=spaces,
        )  # fmt: skip
    finally:
        session_log.setLevel(level)
    print(f"App: http://{address}:{port}/  (Ctrl-C to stop)")
    if dataset.has_saved_view(DEMO_VIEW):
        print(
            f"the refined result is the saved view '{DEMO_VIEW}' (the App's view menu)"
        )
    session.wait(-1)


def _generated_records(n_images, data_dir, progress):
    from fiftyone_clipbranches.demo import generate_images
    from fiftyone_clipbranches.demo.paths import demo_images_dir

    return generate_images(demo_images_dir(data_dir), n=n_images, progress=progress)


def _weights(pretrained):
    """``pretrained`` as given, its default for ViT-B-32 when None, and None
    (random weights) for ``"none"`` (the CLI's spelling)."""
    if pretrained is None:
        return "laion2b_s34b_b79k"
    if str(pretrained).lower() == "none":
        return None
    return pretrained


def _demo_model(data_dir, progress, train_minutes, train_config, retrain, notes):
    from fiftyone_clipbranches.demo import ensure_demo_model

    demo = ensure_demo_model(
        data_dir,
        progress=progress,
        max_minutes=train_minutes,
        config=train_config,
        force=retrain,
    )
    if retrain:
        same = demo.identity.get("matches_shipped")
        verdict = {
            True: "bit-identical to the shipped checkpoint",
            False: "differs from the shipped checkpoint",
            None: "no shipped checkpoint for this configuration",
        }[same]
        notes.append(
            f"demo model retrained: sha256 {demo.identity['compact_sha256'][:16]},"
            f" {verdict}"
        )
    return demo.name, demo.checkpoint_path


def _generated_dataset(name, records, model, pretrained):
    """``(dataset, made now)``: the dataset of generated images, made again only
    when the images or the model changed."""
    import fiftyone as fo

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.indexes import discard_index

    wanted = {
        "images": [r.filepath for r in records],
        "model": model,
        "pretrained": str(pretrained),
    }
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
        made = dataset.info.get(DEMO_INFO_KEY)
        if made == wanted:
            return dataset, False
        _refuse_unless_made_here(dataset, made is not None and "images" in made)
        for key in sdk.list_indexes(dataset):  # the demo's own: nothing left behind
            discard_index(dataset, key)
        dataset.delete()
    with _new_dataset(name) as dataset:
        _add_generated(dataset, records)
        dataset.info[DEMO_INFO_KEY] = wanted
        dataset.save()
    return dataset, True


def _add_generated(dataset, records) -> None:
    import fiftyone as fo

    samples = []
    for r in records:
        detections = [
            fo.Detection(
                label=f"{o['colour']} {o['shape']}",
                bounding_box=list(o["bbox"]),
                colour=o["colour"],
                shape=o["shape"],
                size=o["size"],
            )
            for o in r.objects
        ]
        samples.append(
            fo.Sample(
                filepath=r.filepath,
                caption=r.caption,
                objects=fo.Detections(detections=detections),
                background=fo.Classification(label=r.background),
                texture=fo.Classification(label=r.texture),
            )
        )
    dataset.add_samples(samples, progress=False)


@contextmanager
def _new_dataset(name: str):
    """A new persistent dataset ``name``, deleted if the block fails (no
    half-made dataset is left to be refused by the next run)."""
    import fiftyone as fo

    dataset = fo.Dataset(name, persistent=True)
    try:
        yield dataset
    except BaseException:
        dataset.delete()
        raise


def _folder_dataset(name, folder: Path, model, pretrained):
    """``(dataset, made now)``: the dataset of the images under ``folder``."""
    import fiftyone as fo

    from fiftyone_clipbranches.sdk.search import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise ValueError(f"--images {folder} is not a folder of images")
    wanted = {"folder": str(folder.resolve())}
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
        made = dataset.info.get(DEMO_INFO_KEY)
        if made is None and _earlier_demo_of(dataset, folder):
            made = dataset.info[DEMO_INFO_KEY] = wanted
            dataset.save()
        _refuse_unless_made_here(dataset, made == wanted)
        return dataset, False
    paths = sorted(
        str(p)
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p.relative_to(folder))
    )
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    classes = _folder_classes(folder, paths)
    samples = [fo.Sample(filepath=p) for p in paths]
    if classes is not None:  # a folder per class: its name is the ground truth
        for sample, label in zip(samples, classes):
            sample["ground_truth"] = fo.Classification(label=label)
    with _new_dataset(name) as dataset:
        dataset.add_samples(samples, progress=False)
        dataset.info[DEMO_INFO_KEY] = wanted
        dataset.save()
    return dataset, True


#: Folders of thumbnails and metadata that tools leave beside images.
TOOL_FOLDERS = frozenset({"__MACOSX", "@eaDir"})


def _hidden(relative: Path) -> bool:
    """Whether a path under the images folder is hidden (a part starting with a
    dot) or in a tool's folder (``__MACOSX``, ``@eaDir``): no image of the user's."""
    return any(part.startswith(".") or part in TOOL_FOLDERS for part in relative.parts)


def _earlier_demo_of(dataset, folder: Path) -> bool:
    """Whether ``dataset`` is what an earlier version of the demo made from
    ``folder`` (it recorded nothing): its default name, images under the folder."""
    if dataset.name != f"{DEMO_DATASET}-{folder.resolve().name}":
        return False
    root = str(folder.resolve())
    return all(p.startswith(root + "/") for p in dataset.values("filepath"))


def _refuse_unless_made_here(dataset, made_by_the_demo: bool) -> None:
    """A dataset the demo did not make (for these images) is never changed."""
    if made_by_the_demo:
        return
    raise ValueError(
        f"dataset {dataset.name!r} exists ({len(dataset)} samples) and the demo did"
        " not make it from these images, so it leaves it as it is: pass another"
        f" --dataset name (or, if it is of no use to you, delete it: fiftyone"
        f" datasets delete {shlex.quote(dataset.name)})"
    )


def _folder_classes(folder: Path, paths: list[str]) -> list[str] | None:
    """The class of each image of a class tree (``folder/<class>/<image>``, as
    ``ImageClassificationDirectoryTree``), or None when the images are not all one
    level down in two or more folders."""
    parents = [Path(p).relative_to(folder).parent for p in paths]
    if any(len(parent.parts) != 1 for parent in parents):
        return None
    classes = [parent.parts[0] for parent in parents]
    return classes if len(set(classes)) > 1 else None


def _ensure_index(dataset, model, pretrained, progress):
    """The demo's index of ``dataset`` (which the demo made), built with this
    model: one of an earlier run with another model goes, with its embeddings."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.sdk.clip_names import resolve_clip
    from fiftyone_clipbranches.sdk.embeddings import get_clip_model
    from fiftyone_clipbranches.sdk.identity import same_identity
    from fiftyone_clipbranches.sdk.settings import DEFAULT_EMBEDDINGS_FIELD
    from fiftyone_clipbranches.sdk.stream_encode import fit_rows_needed

    # the learned head where there are images enough to fit it, else PCA (the demo
    # has no --code-method); too few for either are refused before anything goes
    n, at_least = dataset.count(), fit_rows_needed("pca")
    if n < at_least:
        raise ValueError(
            f"the demo needs at least {at_least} images to build an index,"
            f" {dataset.name!r} holds {n}: give a folder of more images"
        )
    code_method = "head" if n >= fit_rows_needed("head") else "pca"
    if DEMO_INDEX_KEY in sdk.list_indexes(dataset):
        info = sdk.index_info(dataset, DEMO_INDEX_KEY)
        wanted = {"name": model, "pretrained": pretrained}
        same_model = info.clip_model is not None and same_identity(
            info.clip_model, wanted
        )
        fresh = info.freshness
        if same_model and (fresh is None or not (fresh.n_added or fresh.n_deleted)):
            return
        if not same_model:  # an earlier run's index and vectors go once it loads
            get_clip_model(*resolve_clip(model, pretrained))
        sdk.delete_index(dataset, DEMO_INDEX_KEY)
        if not same_model and dataset.has_field(DEFAULT_EMBEDDINGS_FIELD):
            dataset.delete_sample_field(DEFAULT_EMBEDDINGS_FIELD)

    def build(method: str) -> None:
        sdk.build_index(
            dataset, DEMO_INDEX_KEY, model=model, pretrained=pretrained,
            code_method=method, progress=progress,
        )  # fmt: skip

    try:
        build(code_method)
    except ValueError:
        # images that could not be read left too few vectors for the head: the
        # vectors made are kept, and PCA fits on them
        n_vectors = len(dataset.exists(DEFAULT_EMBEDDINGS_FIELD))
        if code_method != "head" or not (
            fit_rows_needed("pca") <= n_vectors < fit_rows_needed("head")
        ):
            raise
        build("pca")


def relevant_ids(dataset, query: str) -> set[str] | None:
    """Samples holding an object of the query's colour and shape (generated data),
    or of the one class the query names (a class tree of the user's images); None
    when nothing says."""
    schema = dataset.get_field_schema()
    if "ground_truth" in schema and "objects" not in schema:
        return _class_named_by(dataset, query)
    if "objects" not in schema:
        return None
    parsed = parse_colour_shape(query)
    if parsed is None:
        return None
    colour, shape = parsed
    ids = dataset.values("id")
    labels = dataset.values("objects.detections.label")
    wanted = f"{colour} {shape}"
    return {i for i, ls in zip(ids, labels) if ls and wanted in ls}


def _class_named_by(dataset, query: str) -> set[str] | None:
    """Samples of the one ground-truth class whose name (``_`` or ``-`` read as
    spaces, a plural ``s`` allowed) the query holds as words, else None."""
    ids, labels = dataset.values(["id", "ground_truth.label"])
    text = f" {' '.join(w.strip('.,!?') for w in query.lower().split())} "

    def mentioned(label: str) -> bool:
        name = label.lower().replace("_", " ").replace("-", " ")
        return any(f" {form} " in text for form in (name, f"{name}s", f"{name}es"))

    named = {label for label in set(labels) - {None} if mentioned(label)}
    if len(named) != 1:
        return None
    (wanted,) = named
    return {i for i, label in zip(ids, labels) if label == wanted}


def parse_colour_shape(query: str) -> tuple[str, str] | None:
    """``("red", "circle")`` for queries naming one colour and one shape, else None."""
    from fiftyone_clipbranches.demo.generator import COLOURS, SHAPES

    words = {w.strip(".,!?") for w in query.lower().split()}
    colours = [c for c in COLOURS if c in words]
    shapes = [s for s in SHAPES if words & {s, f"{s}s", f"{s}es"}]
    if len(colours) != 1 or len(shapes) != 1:
        return None
    return colours[0], shapes[0]


def _precision(ids, truth: set[str]) -> float | None:
    ids = list(ids)
    return float(np.mean([i in truth for i in ids])) if ids else None


def label_shown(shown, truth: set[str]) -> tuple[list[str], list[str]]:
    """``(positives, negatives)``: the shown ids a user would tag, from the truth."""
    return [i for i in shown if i in truth], [i for i in shown if i not in truth]


def f1_score(ids, truth: set[str]) -> float:
    """F1 of the id set ``ids`` against the relevant ids ``truth``."""
    found = set(ids)
    hits = len(found & truth)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(found), hits / len(truth)
    return 2 * precision * recall / (precision + recall)


def _release_old_demo_view(dataset) -> None:
    """The demo's dataset, its view and its score field are the demo's own; a view
    an earlier version saved there (without the mark refine now replaces) goes, so
    refine saves anew, and a score field an earlier version made (without the mark
    refine now writes only under) is marked."""
    from fiftyone_clipbranches.sdk.settings import DEFAULT_SCORE_FIELD
    from fiftyone_clipbranches.sdk.views import SCORE_FIELD_MARK, saved_by_clipbranches

    dataset._doc.reload("saved_views")
    for doc in dataset._doc.get_saved_views():
        if doc.name == DEMO_VIEW and not saved_by_clipbranches(doc):
            dataset.delete_saved_view(DEMO_VIEW)
    field = dataset.get_field(DEFAULT_SCORE_FIELD)
    if field is not None and not (field.info or {}).get(SCORE_FIELD_MARK):
        field.info = {**(field.info or {}), SCORE_FIELD_MARK: "scores"}
        field.save()
