"""The App's own similarity and text search on a clipbranches brain run, in Chromium.

A dataset of 40 real CIFAR-10 images embedded by the tiny open_clip checkpoint
gets a brain run from ``fob.compute_similarity(backend="clipbranches")``. In the
browser, with FiftyOne's own "sort by similarity" action of the grid: select the
first image and show similar samples, then type a text query. The App runs both
through ``@voxel51/panels/similarity_search`` (``sort_by_similarity`` on the
run); the ids it records must be the clipbranches index's own answers.

Screenshots go to ``artifacts/browser/``; with ``CLIPBRANCHES_UPDATE_SCREENSHOTS=1``
a compact copy of the text search is written to
``docs/screenshots/app_similarity_search.png``. Skipped without Chromium.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_missing_reason,
    compact_png,
    running_app,
)
from user_path import TINY_CLIP_NAME, images_dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
DOCS_SHOT = REPO / "docs" / "screenshots" / "app_similarity_search.png"
BRAIN_KEY = "clip_sim"
#: the App's similarity search asks for this many samples
APP_K = 25
TEXT = "a photo of a ship"
TIMEOUT_MS = 60_000
#: FiftyOne's own similarity panel, beside the grid (where the App opens it)
APP_PANEL = "similarity_search_panel"


@pytest.fixture(scope="module")
def dataset(cifar_dir, tiny_clip_checkpoint):
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    import fiftyone.brain as fob

    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.similarity import register_similarity_backend

    ds = images_dataset(cifar_dir, 4)
    ds.persistent = True  # the App process loads it by name
    sdk.compute_embeddings(
        ds,
        "emb",
        model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint),
        progress=False,
    )
    register_similarity_backend()
    fob.compute_similarity(
        ds,
        backend="clipbranches",
        embeddings="emb",
        brain_key=BRAIN_KEY,
        code_method="pca",
    )
    yield ds
    ds.delete()


@pytest.fixture
def page(dataset):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "app_similarity.log"
    with (
        running_app(dataset.name, APP_PANEL, log, sizes=(0.7, 0.3)) as url,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url, wait_until="domcontentloaded")
            yield page
            page.screenshot(path=str(ARTIFACTS / "similarity_last.png"))
        finally:
            browser.close()


def app_search_runs(ds) -> list[dict]:
    """The runs the App's similarity search recorded for ``ds``, oldest first."""
    from fiftyone.operators.store import ExecutionStore

    store = ExecutionStore.create("similarity_search_panel", ds._doc.id)
    runs = [store.get(key) for key in store.list_keys()]
    runs = [r for r in runs if isinstance(r, dict) and "status" in r]
    return sorted(runs, key=lambda r: r.get("start_time") or "")


def wait_for_run(ds, n: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = app_search_runs(ds)
        if len(runs) >= n and runs[n - 1]["status"] in ("completed", "failed"):
            return runs[n - 1]
        time.sleep(0.5)
    raise AssertionError(f"the App recorded no finished search #{n}")


def show_results(page, card_text: str) -> None:
    """Wait for the grid to show the finished search; the App applies it on its own
    most of the time, else a click on the search's card in the panel does (what a
    user does)."""
    n = card_text.split()[0]
    grid = page.get_by_text(f"{n} samples", exact=True).first
    try:
        grid.wait_for(timeout=10_000)
    except Exception:  # noqa: BLE001 - playwright's timeout: open the card
        page.get_by_text(card_text, exact=True).first.click(force=True)
        grid.wait_for()


def shot(page, name: str) -> Path:
    page.wait_for_timeout(1500)  # thumbnails paint on canvases after the grid settles
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def test_app_similarity_and_text_search_use_the_clipbranches_run(dataset, page):
    from fiftyone_clipbranches import sdk

    ds = dataset
    ids = ds.values("id")
    page.get_by_text(f"{len(ids)} samples", exact=True).first.wait_for()
    dismiss = page.get_by_text("Dismiss", exact=True)
    if dismiss.count():
        dismiss.first.click()
    tiles = page.locator('[data-cy="looker"]')
    tiles.first.wait_for()

    # image similarity: the first sample selected, the grid's own action
    tiles.nth(0).hover()
    tiles.nth(0).locator('[data-cy="looker-checkbox-"]').click()
    page.wait_for_timeout(1000)  # the action turns to image similarity
    page.locator('[data-cy="action-sort-by-similarity"]').click()
    page.get_by_text("Show similar samples", exact=True).first.click()
    run = wait_for_run(ds, 1)
    assert run["status"] == "completed", run.get("status_details")
    expected, _ = sdk.search_ids(ds, sample_ids=[ids[0]], k=APP_K, index_key=BRAIN_KEY)
    assert run["brain_key"] == BRAIN_KEY and run["result_ids"] == expected
    shown = run["result_ids"]
    show_results(page, f"{APP_K} results")
    shot(page, "similarity_image.png")

    # text search: nothing selected, the same action offers a text box (the App
    # lets go of the selection as it shows the results, at times a moment later:
    # a search made while it still held it was an image search again; CI, once)
    for n in range(2, 5):
        box = _text_box(page)
        box.fill(TEXT)
        box.press("Enter")
        run = wait_for_run(ds, n)
        if run["query_type"] == "text":
            break
        page.wait_for_timeout(1000)
    assert run["status"] == "completed", run.get("status_details")
    # the App searches its current view: the grid shows the image search's results
    ranking, _ = sdk.search_ids(ds, text=TEXT, k=len(ids), index_key=BRAIN_KEY)
    assert run["query_type"] == "text" and run["query"] == TEXT
    assert run["result_ids"] == [i for i in ranking if i in set(shown)]
    page.get_by_text(TEXT, exact=True).first.wait_for()
    done = page.get_by_text("Completed", exact=True)
    page.wait_for_function(
        "() => [...document.querySelectorAll('*')].filter("
        "e => e.childElementCount === 0 && e.textContent.trim() === 'Completed'"
        ").length >= 2"
    )
    assert done.count() >= 2
    page.get_by_text(f"Showing {APP_K} results").first.wait_for()
    page.mouse.move(5, 700)  # no tooltip over the view bar
    tiles.first.wait_for()
    page.wait_for_timeout(3000)
    path = shot(page, "similarity_text.png")

    if os.environ.get("CLIPBRANCHES_UPDATE_SCREENSHOTS") == "1":
        compact_png(path, DOCS_SHOT)


def _text_box(page, tries: int = 6):
    """The similarity action's text box: while the App still holds the selection,
    the action offers an image search instead (it let go, once, only after the
    60 s a fill waits): closed and asked again until the box shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(tries - 1):
        page.locator('[data-cy="action-sort-by-similarity"]').click()
        box = page.get_by_placeholder("Type anything!")
        try:
            box.wait_for(timeout=5000)
            return box
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            page.wait_for_timeout(1000)
    page.locator('[data-cy="action-sort-by-similarity"]').click()
    return page.get_by_placeholder("Type anything!")
