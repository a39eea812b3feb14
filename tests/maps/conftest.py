"""Browser fixture for the maps tests: Debian's /usr/bin/chromium driven by Python Playwright.

Playwright's own browser download does not work here, so the system Chromium is launched with
SwiftShader for WebGL. Tests that need it skip, saying what to install, when it is missing.
"""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Playwright Browser), shared by the session."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: run `apt-get install -y chromium fonts-wqy-microhei` (make setup does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Python Playwright missing: run `.venv/bin/pip install playwright` (make setup does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots():
    """gis_data/screenshots (created), where the browser tests leave pictures to look at."""
    from gridserver.settings import get_settings

    out = get_settings().gis_data_dir / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out
