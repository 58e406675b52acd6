"""Logs: one line per failed call with its request id and trace id, text or JSON.

The boutique runs fused from source with NANO_METRICS=1; the request id comes back in
``x-request-id``: the caller's own when it is a sane one, else one made at the door.
"""

from __future__ import annotations

import json
from pathlib import Path

from nanobuild.runtime import tracing
from tests.test_tracing import launch

SECRET = "logs-test-secret-F3kWq9LmZr2xVt8yN1cBsA"
MISSING = {"id": "no-such-product"}


def test_a_failed_call_is_one_json_line_with_its_ids(tmp_path: Path) -> None:
    env = {"NANO_SECRET": SECRET, "NANO_METRICS": "1"}
    server = launch(["--log-format", "json"], tmp_path / "serve.log", env)
    trace_id = tracing.new_trace_id()
    parent = tracing.traceparent(trace_id, tracing.new_span_id())
    try:
        headers = {"x-request-id": "order-42:a", "traceparent": parent}
        failed = server.call("catalog", "GetProduct", MISSING, headers=headers)
        answered = server.call("catalog", "GetProduct", {"id": "66VCHSJNUP"})
    finally:
        assert server.stop() == 0
    assert failed.status_code == 404 and failed.headers["x-request-id"] == "order-42:a"
    assert answered.status_code == 200 and len(answered.headers["x-request-id"]) == 32
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    [line] = [entry for entry in lines if entry["logger"] == "nanobuild.calls"]
    assert (line["request_id"], line["trace_id"], line["level"]) == (
        "order-42:a",
        trace_id,
        "warning",
    )
    assert "catalog.GetProduct not_found" in line["message"]
    assert "no product 'no-such-product'" in line["message"]


def test_text_lines_name_the_ids_and_a_bad_request_id_is_replaced(tmp_path: Path) -> None:
    server = launch([], tmp_path / "serve.log", {"NANO_SECRET": SECRET, "NANO_METRICS": "1"})
    try:
        # a request id that would forge a log line of its own is not taken
        forged = server.call("catalog", "GetProduct", MISSING, headers={"x-request-id": "a b=c"})
    finally:
        assert server.stop() == 0
    made = forged.headers["x-request-id"]
    assert made != "a b=c" and len(made) == 32
    [line] = [entry for entry in server.log().splitlines() if "call failed" in entry]
    assert f"request_id={made} trace_id=" in line
    assert "catalog.GetProduct not_found (inbound, local, via http)" in line
