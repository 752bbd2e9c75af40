"""Headless Chromium for the browser tests (Debian's chromium + chromium-driver, driven by selenium).

    browser = browser_fixture(window="1280,900")   # in a test module: a `browser` fixture, that window size

Skipped when Chromium or selenium is absent, except in CI (CI=true), where .ci/run installs them and a skip would
hide a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def need(ok: bool, why: str) -> None:
    """Skip the test when `ok` is false, or fail it under CI=true."""
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; in CI .ci/run installs it (apt-get install -y chromium chromium-driver)")
        pytest.skip(why)


def chromium(profile: Path, window: str):
    """A headless Chrome driver with its own profile folder; `window`: "width,height" in CSS px."""
    need(
        CHROMIUM.exists() and CHROMEDRIVER.exists(),
        f"no Chromium at {CHROMIUM} with {CHROMEDRIVER} (apt-get install -y chromium chromium-driver)",
    )
    try:
        from selenium import webdriver
    except ImportError:
        need(False, "selenium is not installed (pip install -e '.[dev]')")
    pytest.importorskip("uvicorn")  # every page under test is served by it
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={window}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))


def browser_fixture(window: str):
    """A `browser` fixture for a test module: a fresh Chromium per test, quit after it."""

    @pytest.fixture
    def browser(tmp_path, monkeypatch):
        monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not try to download a browser or driver
        driver = chromium(tmp_path / "chromium-profile", window)
        yield driver
        driver.quit()

    return browser
