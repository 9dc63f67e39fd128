"""The first index of a dataset, built from the panel in the real FiftyOne App
(headless Chromium): on a dataset of images with CLIP embeddings and no index, the
panel's "Build index" opens the build operator's form; once it has run, the panel
shows its search controls in place of the no-index screen, and the index
searches.

Skipped without ``/usr/bin/chromium``. A screenshot of where a failure stopped goes
to ``artifacts/browser/build_last.png``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_missing_reason,
    running_app,
)
from user_path import TINY_CLIP_NAME, images_dataset

from fiftyone_clipbranches import sdk

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
TIMEOUT_MS = 60_000


@pytest.fixture
def embedded(cifar_dir, tiny_clip_checkpoint):
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    ds = images_dataset(cifar_dir, 8, name="cb-browser-build")
    ds.persistent = True  # the App's process opens it by name
    sdk.compute_embeddings(
        ds, "clip_embedding", model=TINY_CLIP_NAME,
        pretrained=str(tiny_clip_checkpoint), progress=False,
    )  # fmt: skip
    yield ds
    ds.delete()


def test_the_first_index_is_built_from_the_panel(embedded):
    from playwright.sync_api import sync_playwright

    from fiftyone_clipbranches.panels.constants import PANEL_NAME

    ds = embedded
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "build_app.log"
    with running_app(ds.name, PANEL_NAME, log) as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("No clipbranches index").first.wait_for()
            # the App's own welcome popup hides the page from the accessibility tree
            page.get_by_text("Dismiss", exact=True).first.click()
            page.get_by_role("button", name="Build index", exact=True).first.click()
            page.get_by_text("Build a clipbranches index").first.wait_for()
            form = page.get_by_role("dialog").first
            form.get_by_text("PCA", exact=True).first.click()
            form.get_by_role("button", name="Execute", exact=True).first.click()
            # the progress dialog stays until Done; the panel redraws behind it
            page.get_by_text(f"built over {len(ds)} samples").first.wait_for()
            page.locator("button", has_text="Search").first.wait_for()
            assert page.get_by_text("No clipbranches index").count() == 0
            page.get_by_role("button", name="Done", exact=True).first.click()
        finally:
            page.screenshot(path=str(ARTIFACTS / "build_last.png"))
            browser.close()
    ds.reload()
    info = sdk.index_info(ds, "clipbranches")
    assert info.n_samples == len(ds) and info.code_method == "pca"
    assert len(sdk.search_ids(ds, text="a cat", k=5, index_key="clipbranches")[0]) == 5
