"""The relevance-feedback panel in the real FiftyOne App, in headless Chromium.

A dataset of 300 real CIFAR-10 images (airplane, automobile, bird, ship) gets
synthetic codes with the class planted in 12 of the 32 dimensions and noise in the
others, so a nearest-neighbour search by one airplane returns mostly airplanes with a
few wrong samples among them. In the browser: select the first airplane, Search, mark
six airplanes of the results positive and three wrong results negative with the
panel's buttons, Refine, and check that the grid shows exactly the samples the SDK
finds for the same labels and that the panel reports the round.

Screenshots of every step go to ``artifacts/browser/``; with
``CLIPBRANCHES_UPDATE_SCREENSHOTS=1`` compact copies of the best ones are written to
``docs/screenshots/`` for the README. Skipped without ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_missing_reason,
    compact_png,
    running_app,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
DOCS_SHOTS = REPO / "docs" / "screenshots"
#: screenshot of a step -> its compact copy for the README
README_SHOTS = {
    "2_search.png": "panel_search.png",
    "3_labelled.png": "panel_labels.png",
    "4_refined.png": "panel_refined.png",
}

CLASSES = ("airplane", "automobile", "bird", "ship")
PER_CLASS = 75
TARGET = "airplane"
INDEX_KEY = "cb"
K = 60
N_POSITIVES = 6
N_NEGATIVES = 3
#: the first rows of the grid that are on screen without scrolling
VISIBLE_TILES = 30
#: a few random negatives suit a 300-sample catalogue (the default 500 would make
#: every unlabelled sample a negative and the model could only return the labels);
#: set on the panel's slider, whose step is 20
RANDOM_NEGATIVES = 20
TIMEOUT_MS = 60_000


def planted_codes(labels, n_signal=12, spread=30.0, noise=50.0, seed=0) -> np.ndarray:
    """uint8 ``(N, 32)`` codes: dims ``< n_signal`` hold a per-class centre plus
    ``spread`` noise, the others class-independent noise around 128."""
    rng = np.random.default_rng(seed)
    classes, idx = np.unique(np.asarray(labels), return_inverse=True)
    centres = rng.integers(40, 216, size=(len(classes), 32)).astype(np.float64)
    centres[:, n_signal:] = 128.0
    scale = np.where(np.arange(32) < n_signal, spread, noise)
    x = centres[idx] + rng.normal(size=(len(idx), 32)) * scale
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_dataset(cifar_dir: Path):
    import fiftyone as fo

    samples = []
    for name in CLASSES:
        for path in sorted((cifar_dir / name).iterdir())[:PER_CLASS]:
            label = fo.Classification(label=name)
            samples.append(fo.Sample(filepath=str(path), ground_truth=label))
    ds = fo.Dataset()
    ds.add_samples(samples, progress=False)
    ds.persistent = True  # the App process loads it by name
    return ds


@pytest.fixture(scope="module")
def indexed(cifar_dir):
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    from fiftyone_clipbranches import sdk

    ds = make_dataset(cifar_dir)
    codes = planted_codes(ds.values("ground_truth.label"))
    sdk.build_index_from_codes(ds, codes, ds.values("id"), INDEX_KEY)
    yield ds
    ds.delete()


@pytest.fixture(scope="module")
def app_url(indexed):
    from fiftyone_clipbranches.panels.constants import PANEL_NAME

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with running_app(
        indexed.name,
        PANEL_NAME,
        ARTIFACTS / "app.log",
        sizes=(0.55, 0.45),
    ) as url:
        yield url


@pytest.fixture
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url, wait_until="domcontentloaded")
            yield page
            page.screenshot(path=str(ARTIFACTS / "last.png"))  # where a failure stopped
        finally:
            browser.close()


def shot(page, name: str) -> None:
    # thumbnails are painted on canvases after the grid settles: nothing to wait on
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / name))


def wait_text(page, text: str, exact: bool = False) -> None:
    page.get_by_text(text, exact=exact).first.wait_for()


def select_tiles(page, positions) -> None:
    tiles = page.locator('[data-cy="looker"]')
    for i in positions:
        tiles.nth(i).hover()
        tiles.nth(i).locator('[data-cy="looker-checkbox-"]').click()
    wait_text(page, f"{len(positions)} selected")


def click_button(page, label: str) -> None:
    page.get_by_role("button", name=label, exact=True).first.click()


def set_random_negatives(page, value: int) -> None:
    """Type ``value`` into the panel's random-negatives field (empty by default:
    the selected model's own default)."""
    from playwright.sync_api import expect

    # the App renders the label as a sibling text, not a <label> of the input
    field = page.locator("xpath=//*[text()='Random negatives']/following::input[1]")
    field.click()
    field.fill(str(value))
    field.press("Tab")  # the panel stores the value when the field loses focus
    expect(field).to_have_value(str(value))


def filter_sidebar(page, field: str, attribute: str, value: str) -> None:
    """Keep only samples whose ``field.attribute`` is ``value``, in the sidebar as a
    user does (the App's query-performance mode types it, the other ticks it)."""
    page.keyboard.press("Escape")  # a tip's popover may cover the sidebar
    page.locator(f'[data-cy="sidebar-field-arrow-enabled-{field}"]').first.click()
    typed = page.get_by_placeholder(f"+ filter by {attribute}")
    box = page.locator(f'[data-cy="categorical-filter-{field}.{attribute}"]').first
    box.wait_for()
    if typed.count():
        typed.first.click()
        typed.first.type(value)
        page.wait_for_timeout(1000)
        typed.first.press("Enter")
    else:
        box.get_by_text(value, exact=True).first.click()


def test_a_search_by_selection_keeps_the_sidebar_filter(indexed, page):
    """Selecting a sample set the panel's state, which makes the App drop its
    sidebar filters: a search by example inside a filter ran over every sample."""
    wait_text(page, "Saved view name")
    wait_text(page, f"{len(indexed)} samples", exact=True)
    labels = page.locator('[data-cy="categorical-filter-ground_truth.label"]')
    filter_sidebar(page, "ground_truth", "label", "ship")
    wait_text(page, f"{PER_CLASS} samples", exact=True)
    select_tiles(page, [0])
    page.wait_for_timeout(3000)  # a user's moment: the App acts on state changes late
    click_button(page, "Search")
    wait_text(page, f"{K} nearest samples to 1 selected sample")
    wait_text(page, f"{K} samples", exact=True)
    assert labels.first.inner_text().split() == ["label", "ship", str(K)]
    shot(page, "0_search_in_filter.png")
    page.locator('[data-cy="btn-clear-view-bar"]').first.click()  # as it was
    wait_text(page, f"{len(indexed)} samples", exact=True)


def test_marking_keeps_the_sidebar_filter(indexed, page):
    """Mark reloaded the App's dataset, which drops the sidebar's filters: the grid
    jumped to every sample, and the next search ran over all of them."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.panels.constants import DEFAULTS

    tags = (DEFAULTS["positive_tag"], DEFAULTS["negative_tag"])
    wait_text(page, "Saved view name")
    wait_text(page, f"{len(indexed)} samples", exact=True)
    filter_sidebar(page, "ground_truth", "label", "ship")
    wait_text(page, f"{PER_CLASS} samples", exact=True)
    select_tiles(page, [0])
    page.wait_for_timeout(3000)  # a user's moment: the App acts on state changes late
    try:
        click_button(page, "Mark positive")
        wait_text(page, "Marked 1 positive, 0 negative")
        page.wait_for_timeout(3000)  # the reload and the view that follows it
        wait_text(page, f"{PER_CLASS} samples", exact=True)
        assert not page.get_by_text(f"{len(indexed)} samples", exact=True).count()
        shot(page, "0_mark_in_filter.png")
        marked = indexed.match_tags(tags[0]).values("ground_truth.label")
        assert marked == ["ship"]
    finally:
        sdk.clear_labels(indexed, tags=tags)
    page.locator('[data-cy="btn-clear-view-bar"]').first.click()  # as it was
    wait_text(page, f"{len(indexed)} samples", exact=True)


def test_search_label_refine_in_the_app(indexed, page):
    from playwright.sync_api import expect

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.panels.constants import DEFAULTS

    ds = indexed
    ids = ds.values("id")
    labels = dict(zip(ids, ds.values("ground_truth.label")))
    n = len(ids)

    wait_text(page, "Saved view name")
    dismiss = page.get_by_text("Dismiss", exact=True)
    if dismiss.count():
        dismiss.first.click()
    wait_text(page, f"{n} samples", exact=True)
    page.locator('[data-cy="looker"]').first.wait_for()
    set_random_negatives(page, RANDOM_NEGATIVES)
    shot(page, "1_loaded.png")

    # search by example: the first sample (an airplane) selected in the grid
    query = ids[0]
    assert labels[query] == TARGET
    select_tiles(page, [0])
    click_button(page, "Search")
    wait_text(page, f"{K} samples", exact=True)
    wait_text(page, f"{K} nearest samples to 1 selected sample")
    shot(page, "2_search.png")

    expected, _ = sdk.search_ids(ds, sample_ids=[query], k=K, index_key=INDEX_KEY)
    on_screen = expected[:VISIBLE_TILES]
    hits = [i for i, sid in enumerate(on_screen) if labels[sid] == TARGET]
    misses = [i for i, sid in enumerate(on_screen) if labels[sid] != TARGET]
    assert expected[0] == query and len(hits) > N_POSITIVES and misses
    pos_at, neg_at = hits[1 : N_POSITIVES + 1], misses[:N_NEGATIVES]

    # a Mark with nothing selected fails in words; the next Mark clears the error
    click_button(page, "Mark positive")
    wait_text(page, "Last action failed")
    wait_text(page, "select samples in the grid first")
    select_tiles(page, pos_at)
    click_button(page, "Mark positive")
    wait_text(page, f"Marked {len(pos_at)} positive, 0 negative")
    page.wait_for_timeout(1500)  # the App calls the panel again for the selection
    assert not page.get_by_text("Last action failed").count()
    select_tiles(page, neg_at)
    click_button(page, "Mark negative")
    wait_text(page, f"Marked 0 positive, {len(neg_at)} negative")
    wait_text(page, f"{len(neg_at)} negative (")
    shot(page, "3_labelled.png")

    positives = sorted(ds.match_tags(DEFAULTS["positive_tag"]).values("id"))
    negatives = sorted(ds.match_tags(DEFAULTS["negative_tag"]).values("id"))
    assert positives == sorted(expected[i] for i in pos_at)
    assert negatives == sorted(expected[i] for i in neg_at)

    same = sdk.refine(
        ds,
        random_negatives=RANDOM_NEGATIVES,
        score_field=None,
        index_key=INDEX_KEY,
    )
    m = same.stats["n_results"]
    assert m != K and set(positives) <= set(same.ids)
    assert not set(negatives) & set(same.ids)

    click_button(page, "Refine")
    wait_text(
        page, f"{m} matches from {len(pos_at)} positives / {len(neg_at)} negatives"
    )
    wait_text(page, f"{m} samples", exact=True)
    wait_text(page, f"{m} matches of {n} indexed samples")
    wait_text(page, f"{RANDOM_NEGATIVES} random negatives")
    page.get_by_role("cell", name="refine", exact=True).first.wait_for()  # history
    shot(page, "4_refined.png")

    ds.reload()
    scored = ds.exists(DEFAULTS["score_field"])
    assert sorted(scored.values("id")) == sorted(same.ids)
    found = scored.values("ground_truth.label")
    assert found.count(TARGET) > len(found) / 2

    # save the round: one success, no error from the App looking the name up
    field = page.locator("xpath=//*[text()='Saved view name']/following::input[1]")
    field.fill("airplanes")
    field.press("Tab")
    click_button(page, "Save view")
    wait_text(page, "Saved view 'airplanes'")
    page.wait_for_timeout(1500)
    shot(page, "5_saved.png")
    assert not page.get_by_text("does not exist").count()
    ds.reload()
    assert ds.load_saved_view("airplanes").values("id") == list(same.ids)

    # Reset labels asks first, then removes every label
    click_button(page, "Reset labels")
    wait_text(page, f"Remove the {len(pos_at)} positive and {len(neg_at)} negative")
    assert ds.count_sample_tags()
    tiles = page.locator('[data-cy="looker"]')
    expect(tiles.get_by_text(DEFAULTS["positive_tag"], exact=True)).not_to_have_count(0)
    click_button(page, "Remove labels")
    wait_text(page, f"Removed {len(pos_at) + len(neg_at)} labels")
    assert ds.count_sample_tags() == {}
    # the tiles of the saved view shown lose their tags too
    expect(tiles.get_by_text(DEFAULTS["positive_tag"], exact=True)).to_have_count(0)
    shot(page, "6_reset.png")

    if os.environ.get("CLIPBRANCHES_UPDATE_SCREENSHOTS") == "1":
        for src, dst in README_SHOTS.items():
            compact_png(ARTIFACTS / src, DOCS_SHOTS / dst)


def test_a_search_in_a_saved_view_then_refine_stays_in_it(indexed, page):
    """A saved view of an ordered selection (as the panel saves its results),
    opened in the App's selector: the search's result replaces the view's name in the App,
    and the Refine that follows still answers within the saved view."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.panels.constants import DEFAULTS

    ds = indexed
    labels = ds.values("ground_truth.label")
    ships = [i for i, label in zip(ds.values("id"), labels) if label == "ship"][:40]
    sdk.save_view(ds, "ship round", ds.select(ships, ordered=True))
    page.reload(wait_until="domcontentloaded")  # the App lists the new view
    wait_text(page, "Saved view name")
    page.keyboard.press("Escape")  # a tip's popover may cover the selector
    page.get_by_text("Unsaved view", exact=True).first.click()
    page.get_by_text("ship round", exact=True).first.click()
    wait_text(page, f"{len(ships)} samples", exact=True)
    select_tiles(page, [0])
    click_button(page, "Search")
    wait_text(page, f"{len(ships)} nearest samples to 1 selected sample in the current")
    # labels as Mark positive gives them (the buttons are the other test's): the
    # query, which may stay selected, and three more
    ds.select(ships[:4]).tag_samples(DEFAULTS["positive_tag"])
    page.wait_for_timeout(1500)
    click_button(page, "Refine")
    wait_text(page, f"of {len(ships)} indexed samples in the current view")
    shot(page, "7_refined_in_saved_view.png")
    ds.reload()
    scored = ds.exists(DEFAULTS["score_field"]).values("id")
    assert scored and set(scored) <= set(ships)
    ds.untag_samples(ds.distinct("tags"))


def test_look_further_after_a_refinement(indexed, page):
    """Refine, then Look further: the grid shows the samples nearest the
    positives that are neither labelled nor in the result."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.panels.constants import DEFAULTS

    ds = indexed
    ids = ds.values("id")
    airplanes = [i for i, x in zip(ids, ds.values("ground_truth.label")) if x == TARGET]
    ds.select(airplanes[:5]).tag_samples(DEFAULTS["positive_tag"])
    page.reload(wait_until="domcontentloaded")
    wait_text(page, "Saved view name")
    dismiss = page.get_by_text("Dismiss", exact=True)
    if dismiss.count():  # the App's promotion covers the panel
        dismiss.first.click()
    clear = page.locator('[data-cy="btn-clear-view-bar"]')
    if clear.count():  # the saved view of the test before
        clear.first.click()
    wait_text(page, f"{len(ids)} samples", exact=True)
    click_button(page, "Refine")
    wait_text(page, "matches from 5 positives")
    click_button(page, "Look further")
    wait_text(page, f"{K} samples nearest the positives, neither labelled nor in")
    wait_text(page, f"{K} samples", exact=True)
    shot(page, "8_look_further.png")
    sdk.wait_for_writes(ds, DEFAULTS["score_field"])
    ds.reload()
    result = ds.exists(DEFAULTS["score_field"]).values("id")
    further = sdk.next_to_label(ds, exclude=result, k=K, index_key=INDEX_KEY)
    assert len(further) == K and not set(further.values("id")) & set(result)
    ds.untag_samples(ds.distinct("tags"))
