"""Logs: one line per call that failed by the server's fault, with its request id and
trace id, text or JSON; a caller's mistake (a 4xx) is counted, not logged.

The boutique runs from source with NANO_METRICS=1, catalog placed at an address where
nothing listens, so its calls fail unavailable; the request id comes back in
``x-request-id``: the caller's own when it is a sane one, else one made at the door.
"""

from __future__ import annotations

import json
from pathlib import Path

from nanobuild.runtime import tracing
from tests.test_tracing import launch

SECRET = "logs-test-secret-F3kWq9LmZr2xVt8yN1cBsA"
PRODUCT = {"id": "66VCHSJNUP"}
# every service here but catalog, which is placed where nothing listens
ELSEWHERE = [
    "--only",
    "ad,cart,checkout,currency,email,payment,recommendation,shipping",
    "--remote",
    "catalog=tcp://127.0.0.1:9",
]


def test_a_failed_call_is_one_json_line_with_its_ids(tmp_path: Path) -> None:
    env = {"NANO_SECRET": SECRET, "NANO_METRICS": "1"}
    server = launch(["--log-format", "json", *ELSEWHERE], tmp_path / "serve.log", env)
    trace_id = tracing.new_trace_id()
    parent = tracing.traceparent(trace_id, tracing.new_span_id())
    try:
        headers = {"x-request-id": "order-42:a", "traceparent": parent}
        failed = server.call("catalog", "GetProduct", PRODUCT, headers=headers)
        answered = server.call("currency", "GetSupportedCurrencies", {})
        refused = server.call("cart", "GetCart", {"user_id": 7})  # the caller's mistake
    finally:
        assert server.stop() == 0
    assert failed.status_code == 503 and failed.headers["x-request-id"] == "order-42:a"
    assert answered.status_code == 200 and len(answered.headers["x-request-id"]) == 32
    assert refused.status_code == 400
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    [line] = [entry for entry in lines if entry["logger"] == "nanobuild.calls"]
    assert (line["request_id"], line["trace_id"], line["level"]) == (
        "order-42:a",
        trace_id,
        "warning",
    )
    assert "catalog.GetProduct unavailable" in line["message"]
    assert "GetProduct was not sent (it did not run)" in line["message"]


def test_text_lines_name_the_ids_and_a_bad_request_id_is_replaced(tmp_path: Path) -> None:
    env = {"NANO_SECRET": SECRET, "NANO_METRICS": "1"}
    server = launch(ELSEWHERE, tmp_path / "serve.log", env)
    try:
        # a request id that would forge a log line of its own is not taken
        forged = server.call("catalog", "GetProduct", PRODUCT, headers={"x-request-id": "a b=c"})
    finally:
        assert server.stop() == 0
    made = forged.headers["x-request-id"]
    assert made != "a b=c" and len(made) == 32
    [line] = [entry for entry in server.log().splitlines() if "call failed" in entry]
    assert f"request_id={made} trace_id=" in line
    assert "catalog.GetProduct unavailable (inbound, remote, via http)" in line
