"""The review and labelling pages in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by selenium) runs a scripted session on each with the keys, and saves a screenshot (/tmp/pages-*.png) to look at.

Skipped when Chromium is absent, except in CI (CI=true): see tests/browser.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from .browser import browser_fixture
from .test_pages import fake_review, open_session, read_csv, truth

SHOTS = Path(os.environ.get("TK_SCREENSHOTS", "/tmp"))  # for a person to look at
browser = browser_fixture(window="1280,900")


def keys(browser, text: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.TAG_NAME, "body").send_keys(text)


def wait(browser, what, timeout=30):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the pages re-render after each answer: an element read mid-render is stale, and read again
    return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(what)


def text(browser, id_: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, id_).text


def card(browser, key: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, f'.card[data-key="{key}"]')


def test_a_review_session_with_the_keys(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from transferkit.pages.review import review_app
    from transferkit.pages.server import start

    result = fake_review(tmp_path / "data")
    out = tmp_path / "out"
    server = start(review_app(result, out))
    try:
        browser.get(server.url + "/")
        wait(browser, lambda d: "decided" in text(d, "progress"))
        cards = browser.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 7 and "focus" in cards[0].get_attribute("class")
        first, second = cards[0].get_attribute("data-key"), cards[1].get_attribute("data-key")
        thumbs = [c.find_element(By.TAG_NAME, "img") for c in cards[:2]]
        wait(browser, lambda d: all(t.get_property("naturalWidth") > 0 for t in thumbs))  # the thumbnails load
        keys(browser, "3")  # relabel the first to the third class (blue); the focus moves on
        wait(browser, lambda d: "d-relabel" in card(d, first).get_attribute("class"))
        keys(browser, "x")  # exclude the second
        wait(browser, lambda d: "d-exclude" in card(d, second).get_attribute("class"))
        keys(browser, Keys.ARROW_RIGHT + Keys.ARROW_LEFT + Keys.ARROW_RIGHT)  # arrows move: on the 4th card
        fourth = browser.find_element(By.CSS_SELECTOR, ".card.focus").get_attribute("data-key")
        assert fourth == browser.find_elements(By.CSS_SELECTOR, ".card")[3].get_attribute("data-key")
        keys(browser, "k")
        wait(browser, lambda d: "d-keep" in card(d, fourth).get_attribute("class"))
        keys(browser, "u")  # undo the keep
        wait(browser, lambda d: "undone" in text(d, "msg"))
        assert "d-keep" not in card(browser, fourth).get_attribute("class")

        browser.refresh()  # a reload (or a closed tab) keeps every decision: they are on the server's disk
        wait(browser, lambda d: "2 of" in text(d, "progress"))
        assert "→ blue" in card(browser, first).text and "d-exclude" in card(browser, second).get_attribute("class")

        browser.find_element(By.ID, "export").click()
        wait(browser, lambda d: "wrote" in text(d, "msg"))
        rows = read_csv(out / "cleaned.csv")
        assert rows[first] == "blue" and second not in rows and rows[fourth] == result.labels[fourth]
        assert len(rows) == len(result.labels) - 1
        browser.save_screenshot(str(SHOTS / "pages-review.png"))
    finally:
        server.stop()


def test_a_click_on_an_image_shows_its_neighbours_and_esc_closes_them(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from transferkit.pages.review import review_app
    from transferkit.pages.server import start

    result = fake_review(tmp_path / "data")
    server = start(review_app(result, tmp_path / "out"))
    try:
        browser.get(server.url + "/")
        wait(browser, lambda d: "decided" in text(d, "progress"))
        panel = browser.find_element(By.ID, "nbrs")
        assert not panel.is_displayed()
        outlier = next(it.key for it in result.items if it.kind == "outlier")  # a green image
        card(browser, outlier).find_element(By.TAG_NAME, "img").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#nbrs li.nb")) == 8)
        assert panel.is_displayed() and "focus" in card(browser, outlier).get_attribute("class")
        hits = browser.find_elements(By.CSS_SELECTOR, "#nbrs li.nb")
        assert outlier not in [h.get_attribute("data-key") for h in hits]  # the image itself is the panel's title
        sims = [float(h.find_element(By.CSS_SELECTOR, ".sim").text.split()[1]) for h in hits]
        assert sims == sorted(sims, reverse=True)
        assert all("green" in h.text for h in hits[:3])  # the other greens first
        thumbs = browser.find_elements(By.CSS_SELECTOR, "#nbrs img")
        wait(browser, lambda d: all(t.get_property("naturalWidth") > 0 for t in thumbs))
        browser.save_screenshot(str(SHOTS / "pages-neighbours.png"))
        keys(browser, Keys.ESCAPE)
        wait(browser, lambda d: not d.find_element(By.ID, "nbrs").is_displayed())

        keys(browser, Keys.ARROW_LEFT + "n")  # the key opens it for the focused card; the other keys still work
        before = browser.find_element(By.CSS_SELECTOR, ".card.focus").get_attribute("data-key")
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#nbrs li.nb")) == 8)
        keys(browser, "x")  # exclude the focused card: saved, the focus (and the open panel) move on
        wait(browser, lambda d: "d-exclude" in card(d, before).get_attribute("class"))
        after = browser.find_element(By.CSS_SELECTOR, ".card.focus").get_attribute("data-key")
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".nb-query .name").get_attribute("title") == after)
        keys(browser, Keys.ESCAPE)
        wait(browser, lambda d: not d.find_element(By.ID, "nbrs").is_displayed())
    finally:
        server.stop()


def test_a_labelling_session_with_the_keys_undo_and_a_restart(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from transferkit.pages.label import label_app
    from transferkit.pages.server import start

    classes = ["red", "green", "blue"]

    def answer_shown(n_before: int) -> str:
        key = browser.find_element(By.ID, "image").get_attribute("data-key")
        keys(browser, str(classes.index(truth(key)) + 1))
        wait(browser, lambda d: f"{n_before + 1} labelled" in text(d, "progress"))
        return key

    server = start(label_app(open_session(tmp_path, background=True)))
    try:
        browser.get(server.url + "/")
        wait(browser, lambda d: "0 labelled" in text(d, "progress"))
        wait(browser, lambda d: d.find_element(By.ID, "image").get_property("naturalWidth") > 0)
        answered = [answer_shown(i) for i in range(4)]
        skipped = browser.find_element(By.ID, "image").get_attribute("data-key")
        keys(browser, "s")
        wait(browser, lambda d: "skip (saved)" in text(d, "msg"))
        assert browser.find_element(By.ID, "image").get_attribute("data-key") != skipped
        keys(browser, "u")  # the skip is undone: that image is asked again
        wait(browser, lambda d: browser.find_element(By.ID, "image").get_attribute("data-key") == skipped)
        answered.append(answer_shown(4))
        assert answered[-1] == skipped
    finally:
        server.stop()  # the server goes away mid-session ...

    server = start(label_app(open_session(tmp_path, background=True)))  # ... and a new one opens the same journal
    try:
        browser.get(server.url + "/")
        wait(browser, lambda d: "5 labelled" in text(d, "progress"))
        counts = [int(e.text) for e in browser.find_elements(By.CSS_SELECTOR, "#counts b")]
        assert sum(counts) == 5
        assert browser.find_element(By.ID, "image").get_attribute("data-key") not in answered
        for i in range(5, 9):
            answered.append(answer_shown(i))
        wait(browser, lambda d: "%" in text(d, "acc") and "again" not in text(d, "acc-note"), timeout=60)
        assert "95% interval" in text(browser, "acc-note")
        assert browser.find_elements(By.CSS_SELECTOR, "#curve circle.point")  # the learning curve has points
        browser.find_element(By.ID, "export").click()
        wait(browser, lambda d: "wrote" in text(d, "msg"))
        rows = read_csv(tmp_path / "out" / "labels.csv")
        assert set(rows) == set(answered) and all(truth(k) == v for k, v in rows.items())
        browser.save_screenshot(str(SHOTS / "pages-label.png"))
    finally:
        server.stop()
