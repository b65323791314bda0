"""review.html in a real headless Chromium: accept one candidate by click and one by keyboard, export, check JSON.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``)
and selenium (``pip install selenium``, in the ``test`` extra); skipped otherwise.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softsampling.evaluation.audit import Candidates, candidates_to_json
from softsampling.evaluation.review import DECISIONS_FORMAT, render_review_html, review_items
from softsampling.structures.records import Category, DetectionDataset

INSTALL = "install Chromium to run it: apt-get install chromium chromium-driver (Debian), pip install selenium"


def _driver(download_dir: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium is missing; {INSTALL}")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip(f"Chromium or chromedriver not found; {INSTALL}")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
    )
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _page(tmp_path: Path) -> Path:
    Image.new("RGB", (60, 40), (120, 60, 30)).save(tmp_path / "a.png")
    gt = DetectionDataset.from_lists(
        images=[{"id": 7, "file_name": "a.png", "width": 60, "height": 40}],
        boxes=[{"image_index": 0, "bbox": [1, 1, 10, 10], "label": 1}],
        categories=[Category(1, "cat"), Category(2, "dog")],
        image_root=tmp_path,
    )
    cands = Candidates(
        np.zeros(3, np.int64),
        np.array([[20, 5, 30, 15], [40, 20, 50, 35], [5, 20, 15, 30]]),
        np.array([2, 1, 2]),
        np.array([0.9, 0.8, 0.7]),
        np.array([0.9, 0.8, 0.7]),
        np.ones(3, np.int64),
        np.zeros(3, np.int64),
    )
    entries = candidates_to_json(gt, cands)
    page = tmp_path / "review.html"
    page.write_text(
        render_review_html(
            review_items(gt, entries), gt.category_names, title="test", candidates_sha256="abc", total=3
        ),
        encoding="utf-8",
    )
    return page


def test_accept_by_click_and_keyboard_then_export(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page = _page(tmp_path)
    driver = _driver(downloads)
    try:
        from selenium.webdriver.common.by import By

        driver.get(page.as_uri())
        # click: accept candidate 2
        driver.find_element(By.CSS_SELECTOR, "#c2 .acc").click()
        # keyboard: move to candidate 3 and accept it; candidate 1 is rejected with 'r' after moving back
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("j")
        body.send_keys("a")
        body.send_keys("k", "k", "r")
        assert "accept" in driver.find_element(By.ID, "c3").get_attribute("class")
        # the class filter hides the other class
        driver.find_element(By.CSS_SELECTOR, "#cls option[value='1']").click()
        assert not driver.find_element(By.ID, "c1").is_displayed() and driver.find_element(By.ID, "c2").is_displayed()
        driver.find_element(By.ID, "export").click()
        target = downloads / "decisions.json"
        for _ in range(100):
            if target.exists() and target.stat().st_size > 0:
                break
            time.sleep(0.05)
        document = json.loads(target.read_text())
    finally:
        driver.quit()
    assert document["format"] == DECISIONS_FORMAT and document["candidates_sha256"] == "abc"
    decided = {d["rank"]: d for d in document["decisions"]}
    assert {r: d["decision"] for r, d in decided.items()} == {1: "reject", 2: "accept", 3: "accept"}
    assert decided[3] == {
        "rank": 3,
        "decision": "accept",
        "image_id": 7,
        "file_name": "a.png",
        "category_id": 2,
        "bbox": [5.0, 20.0, 10.0, 10.0],
    }
