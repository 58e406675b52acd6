"""The built-in page at /_nano/ and the API docs at /docs, in headless Chromium.

The boutique's binary runs fused and split over three processes; orders go through
the front door, and the page must list every service with where it runs, draw the
call graph, show non-zero rates and the orders' traces as waterfalls. The browser
may reach 127.0.0.1 alone (every other host resolves to nothing), and its network
log must show nothing else fetched. The guard is tested without a browser: no secret,
no page; a one-time link printed to a terminal opens it once.

Needs Debian's chromium and chromium-driver, as tests/test_browser.py does
(``NANO_REQUIRE_BROWSER=1`` makes a missing browser fail). ``NANO_PAGE_SCREENSHOT=PATH``
saves the split front door's page there (the README's is made so).
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nanobuild.runtime.page import graph_svg, layers, session_cookie
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from tests import chromium
from tests.conftest import REPO
from tests.servers import BOUTIQUE, Binary, Server, order, start, start_placement

SECRET = "page-test_bi42TwYzWmRSxtjjcwQGw"
SPLIT = [
    ["ad", "cart", "catalog", "currency", "recommendation"],
    ["email", "payment", "shipping"],
    ["checkout"],
]
DEPENDS = {"checkout": 6, "recommendation": 1}  # the boutique's edges, per caller


# -- the layout, without a browser


def _spec(depends: dict[str, tuple[str, ...]]) -> AppSpec:
    services = tuple(
        ServiceSpec(name=n, package=n, handlers={}, depends=d) for n, d in depends.items()
    )
    return AppSpec(name="w", services=services)


def test_the_graph_is_laid_out_in_layers_of_dependency_order() -> None:
    spec = _spec({"db": (), "cache": (), "users": ("db", "cache"), "api": ("users", "db")})
    assert layers(spec) == [["api"], ["users"], ["db", "cache"]]
    svg = graph_svg(spec, {"api": "here", "users": "remote"})
    assert len(re.findall(r'<g class="node ', svg)) == 4
    assert 'class="node remote" data-service="users"' in svg
    assert 'class="node absent" data-service="db"' in svg  # where nothing says
    edges = re.findall(r'data-from="(\w+)" data-to="(\w+)"', svg)
    assert sorted(edges) == [("api", "db"), ("api", "users"), ("users", "cache"), ("users", "db")]


def test_a_column_is_ordered_by_the_rows_of_what_it_calls() -> None:
    spec = _spec({"a": (), "b": (), "x": ("b",), "y": ("a",)})
    assert layers(spec) == [["y", "x"], ["a", "b"]]  # y calls a, in the first row


def test_names_are_escaped_in_the_svg() -> None:
    svg = graph_svg(_spec({"a<b": ()}), {})
    assert "a&lt;b" in svg
    assert "a<b" not in svg


# -- the processes


@pytest.fixture(scope="module", params=["fused", "split"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    binary: Binary = request.getfixturevalue("boutique_binary")
    groups = [BOUTIQUE] if request.param == "fused" else SPLIT
    logs = tmp_path_factory.mktemp(f"page-{request.param}")
    running = start_placement(binary, groups, logs, NANO_SECRET=SECRET, NANO_METRICS="1")
    yield running.servers
    assert running.stop() == [0] * len(running.servers)


def _orders(front: Server, count: int = 3) -> None:
    trusted = {"nano-secret": SECRET}
    for i in range(count):
        user = f"page-{i}"
        item = {"user_id": user, "item": {"product_id": "OLJCESPC7Z", "quantity": 1}}
        assert front.call("cart", "AddItem", item, headers=trusted).status_code == 200
        placed = front.call("checkout", "PlaceOrder", order(user), headers=trusted)
        assert placed.status_code == 200, placed.text


def test_without_the_secret_the_page_and_its_figures_are_refused(cluster: list[Server]) -> None:
    front = cluster[-1]
    page = front.http.get("/_nano/")
    assert page.status_code == 401
    assert 'name="secret"' in page.text  # the sign-in form, and nothing of the system
    assert "data-service" not in page.text
    for path in ("/_nano/stats.json", "/_nano/traces.json"):
        assert front.http.get(path).status_code == 401
        assert front.http.get(path, headers={"nano-secret": "x" + SECRET}).status_code == 401
        assert front.http.get(path, headers={"cookie": "nano-page=" + "0" * 64}).status_code == 401
    wrong = front.http.post("/_nano/login", data={"secret": "not-" + SECRET})
    assert wrong.status_code == 403
    assert "set-cookie" not in wrong.headers
    assert front.http.get("/_nano/", headers={"nano-secret": SECRET}).status_code == 200


def test_signing_in_sets_a_strict_http_only_cookie_that_is_not_the_secret(
    cluster: list[Server],
) -> None:
    front = cluster[-1]
    signed = front.http.post("/_nano/login", data={"secret": SECRET + "\n"})
    assert signed.status_code == 303
    assert signed.headers["location"] == "/_nano/"
    cookie = signed.headers["set-cookie"]
    assert cookie == f"nano-page={session_cookie(SECRET)}; Path=/_nano; HttpOnly; SameSite=Strict"
    assert SECRET not in cookie
    # one sign-in opens the page of every process of the workspace
    for server in cluster:
        opened = server.http.get(
            "/_nano/stats.json", headers={"cookie": f"nano-page={session_cookie(SECRET)}"}
        )
        assert opened.status_code == 200
        assert opened.json()["metrics"] is True


def test_the_page_in_the_browser(cluster: list[Server], browser: Browser, tmp_path: Path) -> None:
    front = cluster[-1]
    _orders(front)
    driver = browser.driver
    browser.sign_in(front.url)
    split = len(cluster) > 1
    rows = driver.find_elements(By.CSS_SELECTOR, "#services tr[data-service]")
    where = {r.get_attribute("data-service"): r.get_attribute("data-where") for r in rows}
    expected = dict.fromkeys(BOUTIQUE, "remote" if split else "here")
    if split:
        expected["checkout"] = "here"
    assert where == expected
    nodes = driver.find_elements(By.CSS_SELECTOR, "#graph-svg g.node")
    assert sorted(n.get_attribute("data-service") for n in nodes) == sorted(BOUTIQUE)
    edges = driver.find_elements(By.CSS_SELECTOR, "#graph-svg path.edge")
    assert len(edges) == sum(DEPENDS.values())
    placed = browser.wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-contract="checkout.PlaceOrder"]')
    )[0]
    assert float(placed.find_element(By.CSS_SELECTOR, ".rate").text) > 0
    assert int(placed.find_element(By.CSS_SELECTOR, ".calls").text) >= 3
    waterfall = browser.wait.until(lambda d: _open_trace(d, "checkout.PlaceOrder"))
    spans = waterfall.find_elements(By.CSS_SELECTOR, ".span-row .bar")
    # the order's hops: its server span, then each call it made (clients, split)
    assert len(spans) >= 1 + sum(DEPENDS.values()) - 1
    kinds = {s.get_attribute("class") for s in spans}
    assert any("kind-client" in k for k in kinds) == split
    shot = tmp_path / "page.png"
    driver.save_screenshot(str(shot))
    target = os.environ.get("NANO_PAGE_SCREENSHOT")
    if target and split:  # the README shows the front door of the split boutique
        shutil.copyfile(shot, target)
    assert browser.outside(front.url) == []


def _open_trace(driver: webdriver.Chrome, root: str) -> WebElement | None:
    for item in driver.find_elements(By.CSS_SELECTOR, "details.trace[open]"):
        if root in item.find_element(By.TAG_NAME, "summary").text:
            return item
    return None


def test_each_process_has_a_page_of_its_own(cluster: list[Server]) -> None:
    first = cluster[0]  # split: the catalog side, which reaches nothing else
    page = first.http.get("/_nano/", headers={"nano-secret": SECRET}).text
    found = dict(re.findall(r'<tr data-service="(\w+)" data-where="(\w+)">', page))
    if len(cluster) == 1:
        assert set(found.values()) == {"here"}
    else:
        assert {s for s, w in found.items() if w == "here"} == set(SPLIT[0])
        assert found["checkout"] == "absent"
        front = cluster[-1].http.get("/_nano/", headers={"nano-secret": SECRET}).text
        # placed by --only and --remote, not by a group: no group, and no address, named
        assert "<td>catalog</td><td>another process, over tcp</td>" in front
        assert "127.0.0.1:" not in front


def test_the_api_docs_render_offline(cluster: list[Server], browser: Browser) -> None:
    front = cluster[-1]
    driver = browser.driver
    driver.get(front.url + "/docs")
    browser.wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    browser.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    shown = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    document = front.http.get("/openapi.json").json()
    assert shown == set(document["paths"])
    assert "/api/checkout/PlaceOrder" in shown
    assert "/api/payment/Charge" not in shown  # not public
    assert browser.outside(front.url) == []
    answer = front.http.get("/docs")
    assert "connect-src 'self'" in answer.headers["content-security-policy"]


def test_with_metrics_off_the_page_says_so_and_still_draws_the_system(
    boutique_binary: Binary, browser: Browser, tmp_path: Path
) -> None:
    environment = {**boutique_binary.env, "NANO_SECRET": SECRET, "NANO_METRICS": "0"}
    server = start(boutique_binary.serve(), tmp_path / "off.log", environment)
    try:
        assert server.http.get("/_nano/stats.json", headers={"nano-secret": SECRET}).json() == {
            "metrics": False
        }
        browser.sign_in(server.url)
        driver = browser.driver
        note = browser.wait.until(lambda d: d.find_element(By.ID, "metrics-note").text)
        assert "Metrics are off" in note
        assert len(driver.find_elements(By.CSS_SELECTOR, "#graph-svg g.node")) == len(BOUTIQUE)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#services tr[data-service]")) == 9
    finally:
        assert server.stop() == 0


# -- the one-time link of a developer's terminal


def test_nanobuild_serve_prints_a_one_time_link_to_its_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NANO_SECRET", "NANO_SECRET_FILE")}
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(REPO), "--port", "0"]
    proc = subprocess.Popen(
        command, stdout=follower, stderr=(tmp_path / "serve.log").open("w"), env=env
    )
    os.close(follower)
    try:
        link = _line(leader, re.compile(r"the page at (http://\S+/_nano/once/\S+)"), proc)
        url = link.split("/_nano/")[0]
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/_nano/").status_code == 401  # no secret here: the link alone
            opened = client.get(link)
            assert opened.status_code == 303
            cookie = opened.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert client.get("/_nano/").status_code == 200  # the client keeps the cookie
            client.cookies.clear()
            assert client.get(link).status_code == 403  # spent
            assert client.get("/_nano/").status_code == 401
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        os.close(leader)


def _line(fd: int, pattern: re.Pattern[str], proc: subprocess.Popen[bytes]) -> str:
    """The first group of the first output line ``pattern`` matches, within 60 s."""
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen += os.read(fd, 4096)
        except OSError:
            break
        found = pattern.search(seen.decode(errors="replace"))
        if found:
            return found.group(1)
    pytest.fail(f"no one-time link in the output:\n{seen.decode(errors='replace')}")


# -- the browser (after the tests that need none, so that they run where it is missing)

if chromium.HAVE_BROWSER:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.ui import WebDriverWait


class Browser:
    """Headless Chromium that can reach 127.0.0.1 alone, and reports what it fetched."""

    def __init__(self, profile: Path) -> None:
        self.driver = chromium.driver(
            profile,
            "1280,1400",
            # any other host resolves to nothing: the pages cannot reach out
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            **{"goog:loggingPrefs": {"performance": "ALL"}},
        )
        # a page being replaced (the sign-in form by the page) leaves stale elements
        self.wait = WebDriverWait(
            self.driver, 20, ignored_exceptions=(StaleElementReferenceException,)
        )

    def sign_in(self, url: str) -> None:
        self.driver.get(url + "/_nano/")
        self.driver.find_element(By.ID, "secret").send_keys(SECRET)
        self.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        self.wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))

    def outside(self, url: str) -> list[str]:
        """The URLs requested since the last look that are not under ``url``."""
        found = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                requested = message["params"]["request"]["url"]
                # the browser's own pages (chrome://) are not the page's
                web = requested.split(":", 1)[0] in ("http", "https", "ws", "wss")
                if web and not requested.startswith(url + "/"):
                    found.append(requested)
        return found


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not chromium.HAVE_BROWSER:
        pytest.skip("chromium and chromium-driver are not installed")
    running = Browser(tmp_path / "profile")
    try:
        yield running
    finally:
        running.driver.quit()
