"""The served page in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by selenium)
uploads a real photo and the label it shows is the one `Predictor` gives.

Skipped when Chromium is absent, except in CI (CI=true): see tests/browser.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .browser import browser_fixture
from .deploy_models import hymenoptera_bundle, start_server, stop_server, val_images

pytestmark = pytest.mark.slow
browser = browser_fixture(window="420,900")  # a phone-sized window


def test_the_page_shows_the_predicted_label_of_an_uploaded_photo(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from transferkit.predict import Predictor

    bundle = hymenoptera_bundle()
    photo = val_images(3)[-1]  # a bee
    expected = Predictor(bundle).predict(photo)
    proc, url = start_server(bundle)
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "file").send_keys(str(photo.resolve()))
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element(By.ID, "label").text or d.find_element(By.ID, "error").text
        )
        assert browser.find_element(By.ID, "error").text == ""
        assert browser.find_element(By.ID, "label").text == expected["label"]
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert len(bars) == 2 and expected["label"] in bars[0].text  # top-k bars, the top one first
        assert f"{100 * expected['probability']:.1f}%" in browser.find_element(By.ID, "probability").text
        assert browser.find_element(By.ID, "preview").is_displayed()
    finally:
        assert stop_server(proc) == 0


@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_the_page_shows_a_value_or_a_set_of_labels(browser, task, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from transferkit.predict import Predictor

    from .deploy_models import tiny_bundle, tiny_images

    bundle, photo = tiny_bundle(task), tiny_images(task)[0]
    expected = Predictor(bundle).predict(photo)
    proc, url = start_server(bundle)
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda d: "Loading" not in d.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "file").send_keys(str(photo.resolve()))
        WebDriverWait(browser, 60).until(
            lambda d: d.find_element(By.ID, "label").text or d.find_element(By.ID, "error").text
        )
        assert browser.find_element(By.ID, "error").text == ""
        shown = browser.find_element(By.ID, "label").text
        if task == "regression":  # the value in the target's units, to 4 significant digits
            assert float(shown) == pytest.approx(expected["value"], rel=1e-3)
        else:  # every label over its threshold, or "(no label)"
            assert shown == (", ".join(t["label"] for t in expected["labels"]) or "(no label)")
            assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .bar")) >= 1
        browser.execute_script("document.getElementById('result').scrollIntoView()")  # the answer, not the photo
        browser.save_screenshot(str(tmp_path / f"{task}.png"))
        assert (tmp_path / f"{task}.png").stat().st_size > 0
        if os.environ.get("TK_SCREENSHOTS"):  # for a person to look at
            (Path(os.environ["TK_SCREENSHOTS"]) / f"{task}.png").write_bytes((tmp_path / f"{task}.png").read_bytes())
    finally:
        assert stop_server(proc) == 0
