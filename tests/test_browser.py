"""The boutique's page in headless Chromium, served by ``nanobuild serve``: add a
product, place an order, see the confirmation.

Needs Debian's chromium and chromium-driver (see ``tests/chromium.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import chromium
from tests.conftest import REPO
from tests.servers import PLACEMENTS, Binary, Server, serve, start, start_placement

if not chromium.HAVE_BROWSER:
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait


@pytest.fixture(scope="module", params=["serve", "fused", "split", "mixed"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("browser")
    if request.param == "serve":
        running = start(serve(REPO), logs / "server.log")
        yield running
        assert running.stop() == 0, running.log()
        return
    binary: Binary = request.getfixturevalue("boutique_binary")
    cluster = start_placement(
        binary, PLACEMENTS[request.param], logs, NANO_SECRET="browser-bi_42TwYzWmRSxtjjcwQGw"
    )
    yield cluster.front
    assert cluster.stop() == [0] * len(cluster.servers)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    chrome = chromium.driver(tmp_path / "profile", "1280,1600")
    try:
        yield chrome
    finally:
        chrome.quit()


def test_add_a_product_and_place_an_order(server: Server, browser: webdriver.Chrome) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(server.url + "/")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert browser.find_element(By.ID, "error").text == ""

    add = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "button[data-add]")))
    add.click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "cart-count"), "1"))

    wait.until(ready.element_to_be_clickable((By.ID, "place-order"))).click()
    confirmation = wait.until(ready.visibility_of_element_located((By.ID, "confirmation")))
    order_id = browser.find_element(By.ID, "order-id").text
    assert order_id, confirmation.text
    assert browser.find_element(By.ID, "error").text == ""
    wait.until(ready.text_to_be_present_in_element((By.ID, "cart-count"), "0"))
