"""``GET /metrics``: Prometheus' text format, exact counts under load, behind the secret.

The boutique runs fused from source with NANO_METRICS=1; a load of known calls (some
answered, some failing with known kinds) runs against its front door while another
thread scrapes, and every scrape must parse with prometheus_client's own parser.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.test_tracing import launch

parser = pytest.importorskip("prometheus_client.parser")

SECRET = "metrics-test-secret-Zc0dN2GxPq7s1vYw4bTQmA"
# the load: (contract, body, the outcome it must have), each sent COUNT times
LOAD = [
    ("GetProduct", {"id": "66VCHSJNUP"}, "ok"),
    ("GetProduct", {"id": "no-such-product"}, "not_found"),
    ("SearchProducts", {"query": ""}, "bad_request"),
    ("GetProduct", b'{"id": ', "undecodable"),  # refused at the door: it never reaches the seam
]
COUNT = {"ok": 150, "not_found": 40, "bad_request": 25, "undecodable": 20}


def scrape(url: str, **headers: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, by name and labels, as prometheus_client parses it."""
    answer = httpx.get(f"{url}/metrics", headers={"nano-secret": SECRET, **headers}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in parser.text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def calls(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], contract: str, outcome: str
) -> float:
    labels = {
        "service": "catalog",
        "contract": contract,
        "direction": "inbound",
        "outcome": outcome,
    }
    return samples.get(("nanobuild_calls_total", frozenset(labels.items())), 0)


def answered(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], status: int) -> float:
    key = ("nanobuild_http_requests_total", frozenset({"status": str(status)}.items()))
    return samples.get(key, 0)


def test_metrics_agree_with_the_load_generator_exactly(tmp_path: Path) -> None:
    server = launch([], tmp_path / "serve.log", {"NANO_SECRET": SECRET, "NANO_METRICS": "1"})
    sent: dict[str, int] = {}
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    done = threading.Event()
    scrapes: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []

    def one(job: tuple[str, dict[str, str] | bytes, str]) -> None:
        contract, body, expected = job
        with httpx.Client(base_url=server.url, timeout=10) as client:
            if isinstance(body, bytes):
                json_type = {"content-type": "application/json"}
                answer = client.post(f"/api/catalog/{contract}", content=body, headers=json_type)
            else:
                answer = client.post(f"/api/catalog/{contract}", json=body)
        kind = "ok" if answer.status_code == 200 else answer.json()["error"]["kind"]
        if isinstance(body, bytes) and kind == "bad_request":
            kind = "undecodable"
        assert kind == expected
        with lock:
            sent[kind] = sent.get(kind, 0) + 1
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    def scraping() -> None:
        while not done.is_set():
            scrapes.append(scrape(server.url))

    jobs = [(c, b, o) for c, b, o in LOAD for _ in range(COUNT[o])]
    scraper = threading.Thread(target=scraping)
    try:
        scraper.start()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, jobs))
        done.set()
        scraper.join()
        final = scrape(server.url)
        refused = httpx.get(f"{server.url}/metrics", timeout=10)
        bearer = scrape(server.url, **{"nano-secret": "", "authorization": f"Bearer {SECRET}"})
    finally:
        done.set()
        assert server.stop() == 0, server.log()
    assert sent == COUNT  # the generator's own counts
    assert len(scrapes) >= 2  # scraped while the load ran, and each scrape parsed
    ok_seen = [calls(s, "GetProduct", "ok") for s in scrapes]
    assert ok_seen == sorted(ok_seen)  # a counter never goes down
    assert calls(final, "GetProduct", "ok") == COUNT["ok"]
    assert calls(final, "GetProduct", "not_found") == COUNT["not_found"]
    assert calls(final, "SearchProducts", "bad_request") == COUNT["bad_request"]
    product = frozenset(
        {"service": "catalog", "contract": "GetProduct", "direction": "inbound"}.items()
    )
    assert (
        final[("nanobuild_call_duration_seconds_count", product)]
        == COUNT["ok"] + COUNT["not_found"]
    )
    assert final[("nanobuild_in_flight_calls", product)] == 0
    assert [v for (name, _), v in final.items() if name == "nanobuild_build_info"] == [1]
    [started] = [v for (name, _), v in final.items() if name == "process_start_time_seconds"]
    assert started > 1.6e9
    assert refused.status_code == 401 and "nano-secret" in refused.text
    assert calls(bearer, "GetProduct", "ok") == COUNT["ok"]
    # at the door, every answer by status: the load's, the refused bodies among them, and
    # the scrapes before the last (a scrape's answer is counted after its body is made)
    assert statuses[400] == COUNT["bad_request"] + COUNT["undecodable"]
    assert calls(final, "GetProduct", "bad_request") == 0  # refused before the seam
    for status, count in statuses.items():
        assert answered(final, status) == count + (len(scrapes) if status == 200 else 0)
    assert sum(v for (name, _), v in final.items() if name.startswith("nanobuild_http_req")) == (
        len(jobs) + len(scrapes)
    )


def test_metrics_off_answer_404_saying_how_to_turn_them_on(tmp_path: Path) -> None:
    server = launch([], tmp_path / "serve.log", {"NANO_SECRET": SECRET, "NANO_METRICS": "0"})
    try:
        answer = httpx.get(f"{server.url}/metrics", headers={"nano-secret": SECRET}, timeout=10)
        plain = server.call("catalog", "GetProduct", {"id": "66VCHSJNUP"})
    finally:
        assert server.stop() == 0
    assert answer.status_code == 404 and "NANO_METRICS=1" in answer.text
    assert "x-request-id" not in plain.headers  # off: nothing at the door either


def test_every_answer_at_the_door_has_its_request_id_and_is_counted(tmp_path: Path) -> None:
    """Contract calls get their ids in the face's own pass over the headers, every other
    path through the door's middleware: both return the id and count the answer."""
    server = launch([], tmp_path / "serve.log", {"NANO_SECRET": SECRET, "NANO_METRICS": "1"})
    product = "/api/catalog/GetProduct"
    json_type = {"content-type": "application/json"}
    try:
        http = server.http
        answers = [
            (http.post(product, json={"id": "66VCHSJNUP"}, headers={"x-request-id": "d-1"}), 200),
            (http.post("/api/catalog/NoSuch", json={}, headers={"x-request-id": "d-2"}), 404),
            (http.get(product, headers={"x-request-id": "d-3"}), 405),
            (http.post(product, content=b"{}", headers={"content-type": "text/plain"}), 415),
            (http.post(product, content=b'{"id": ', headers=json_type), 400),
            (http.post(product, json={"id": "no-such-product"}), 404),  # ran: not_found
            (http.get("/healthz", headers={"x-request-id": "d-7"}), 200),
            (http.get("/openapi.json"), 200),
            (http.get("/metrics"), 401),  # no secret
        ]
        final = scrape(server.url)
    finally:
        assert server.stop() == 0, server.log()
    statuses: dict[int, int] = {}
    for answer, status in answers:
        assert answer.status_code == status, (answer.request.url, answer.text)
        given = answer.request.headers.get("x-request-id")
        made = answer.headers.get_list("x-request-id")
        assert made == [given] if given else len(made) == 1 and len(made[0]) == 32
        statuses[status] = statuses.get(status, 0) + 1
    assert len({a.headers["x-request-id"] for a, _ in answers}) == len(answers)
    for status, count in statuses.items():  # the scrape's own answer is counted after it
        assert answered(final, status) == count
    assert calls(final, "GetProduct", "ok") == 1 and calls(final, "GetProduct", "not_found") == 1
