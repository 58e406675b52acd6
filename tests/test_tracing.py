"""Traces: one boutique PlaceOrder is one trace, fused and split over three processes.

The processes run from source (``python -m nanobuild.runtime``, as ``nanobuild serve``
runs its child), or as a bundled binary, and export over OTLP/HTTP to a receiver in
this test, which decodes the protobuf requests with opentelemetry-proto's messages.
"""

from __future__ import annotations

import gzip
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from nanobuild import describe, workspace
from nanobuild.errors import WorkspaceError
from nanobuild.runtime import telemetry, tracing
from nanobuild.runtime.asgi import Adopted
from nanobuild.runtime.errors import SetupError
from nanobuild.runtime.spec import BuildInfo, ServiceSpec, __version__
from tests.conftest import REPO, SAMPLES, Sample
from tests.packing import bare_python
from tests.servers import Server, free_port, order, serving, start

SECRET = "tracing-test-secret-8VQmH1xkKq0oVb3TQvyXfg"
# three processes: the front door runs checkout, the others what it calls
GROUPS = [
    ["ad", "cart", "catalog", "currency", "recommendation"],
    ["email", "payment", "shipping"],
    ["checkout"],
]
# what PlaceOrder calls, each from checkout (as tests/test_seam.py has it)
CALLED = {
    "cart.GetCart", "catalog.GetProduct", "currency.Convert", "shipping.GetQuote",
    "payment.Charge", "shipping.ShipOrder", "cart.EmptyCart", "email.SendOrderConfirmation",
}  # fmt: skip


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: every span it was sent, as dicts (over
    TLS with ``tls``, a server context)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.spans: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # what to answer the next exports (then 200)
        self.headers: list[dict[str, str]] = []  # each export's headers
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    if self.headers.get("content-encoding") == "gzip":
                        body = gzip.decompress(body)
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    receiver.take(request)
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, request: Any) -> None:
        for resource_spans in request.resource_spans:
            process = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes = {
                        a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                        for a in span.attributes
                    }
                    self.spans.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex() or None,
                            "name": span.name,
                            "kind": span.kind,
                            "process": process,
                            "attributes": attributes,
                        }
                    )

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def launch(
    argv: list[str], log: Path, env: Mapping[str, str], root: Path = REPO, also: Path | None = None
) -> Server:
    """The boutique (or the workspace at ``root``) from source, as ``nanobuild serve``'s
    child runs it, with ``argv`` (and ``also`` importable too)."""
    ws = workspace.load(root)
    build = BuildInfo(workspace=ws.name, nanobuild=__version__, inputs="source")
    paths = [str(folder) for folder in ws.import_paths()] + ([str(also)] if also else [])
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanobuild.runtime", "serve", "--port", "0", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), **env},
    )
    assert proc.stdin is not None
    proc.stdin.write(msgspec.json.encode({"spec": describe.describe(ws), "build": build}).decode())
    proc.stdin.close()
    return serving(proc, log)


def placed(groups: list[list[str]], logs: Path, env: Mapping[str, str]) -> list[Server]:
    """One process per group, each told where the groups before it are (the last: front)."""
    servers: list[Server] = []
    where: dict[str, str] = {}
    try:
        for i, group in enumerate(groups):
            argv = [] if len(groups) == 1 else ["--only", ",".join(group), "--internal-port", "0"]
            argv += [f"--remote={name}={address}" for name, address in where.items()]
            server = launch(argv, logs / f"{i}.log", env)
            servers.append(server)
            if server.internal:
                where |= dict.fromkeys(group, server.internal)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def place_order(groups: list[list[str]], logs: Path, receiver: Receiver) -> tuple[str, list[Any]]:
    """Place one order through the front door with a W3C ``traceparent``; the caller's
    trace and parent ids, and every span the receiver got of that trace."""
    env = {
        "NANO_SECRET": SECRET,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    servers = placed(groups, logs, env)
    trace_id, parent_id = tracing.new_trace_id(), tracing.new_span_id()
    try:
        front = servers[-1]
        user = f"u-{trace_id[:8]}"
        item = {"product_id": "66VCHSJNUP", "quantity": 1}
        assert front.call("cart", "AddItem", {"user_id": user, "item": item}).status_code == 200
        headers = {"traceparent": tracing.traceparent(trace_id, parent_id), "tracestate": "k=v"}
        response = front.call("checkout", "PlaceOrder", order(user), headers=headers)
        assert response.status_code == 200, response.text
        assert len(response.headers["x-request-id"]) == 32  # made here: none was sent
    finally:
        codes = [server.stop() for server in reversed(servers)]  # the exporters flush
    assert codes == [0] * len(servers), [s.log() for s in servers]
    spans = [s for s in receiver.spans if s["trace_id"] == trace_id]
    return parent_id, spans


def shape(spans: list[dict[str, Any]]) -> Counter[tuple[str, str | None]]:
    """Each span's name and its caller's, a client span and its server span as one hop."""
    by_id = {s["span_id"]: s for s in spans}

    def caller(span: dict[str, Any]) -> str | None:
        parent = by_id.get(span["parent_id"])
        if parent is not None and parent["kind"] == 3:  # SPAN_KIND_CLIENT: the same hop
            parent = by_id.get(parent["parent_id"])
        return None if parent is None else str(parent["name"])

    return Counter((s["name"], caller(s)) for s in spans if s["kind"] != 3)


def test_one_order_is_one_trace_split_over_three_processes_and_fused(
    tmp_path: Path, receiver: Receiver
) -> None:
    (tmp_path / "split").mkdir()
    (tmp_path / "fused").mkdir()
    outer, split = place_order(GROUPS, tmp_path / "split", receiver)
    by_id = {s["span_id"]: s for s in split}
    assert len(by_id) == len(split)  # every span once
    [root] = [s for s in split if s["parent_id"] == outer]  # the caller's traceparent kept
    assert (root["name"], root["kind"], root["process"]) == ("checkout.PlaceOrder", 2, "boutique")
    clients = [s for s in split if s["kind"] == 3]  # SPAN_KIND_CLIENT, in the front door
    assert {s["name"] for s in clients} == CALLED
    for client in clients:  # both ends of every TCP call, the server's parent the client
        [server] = [s for s in split if s["parent_id"] == client["span_id"]]
        assert server["name"] == client["name"] and server["kind"] == 2  # SERVER
        assert client["attributes"]["nanobuild.placement"] == "remote"
        assert server["attributes"]["nanobuild.via"] == "tcp"
    for span in split:
        assert span["attributes"]["rpc.system"] == "nanobuild"
        assert (
            span["name"]
            == f"{span['attributes']['rpc.service']}.{span['attributes']['rpc.method']}"
        )
        assert span["parent_id"] == outer or span["parent_id"] in by_id  # parents all here

    receiver.spans.clear()
    outer, fused = place_order(
        [[name for group in GROUPS for name in group]], tmp_path / "fused", receiver
    )
    assert not [s for s in fused if s["kind"] == 3]  # in memory: no client ends
    assert {s["attributes"]["nanobuild.placement"] for s in fused} == {"local"}
    assert shape(fused) == shape(split)
    assert shape(fused)[("checkout.PlaceOrder", None)] == 1


def test_traceparent_is_read_as_the_w3c_spec_says() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.parse_traceparent(good) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "01",
    )
    assert tracing.parse_traceparent(good.replace("00-", "01-", 1) + "-later") is not None
    for bad in (
        good + "-x",  # version 00 has exactly four fields
        "ff" + good[2:],  # the invalid version
        good.replace("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32),
        good.replace("00f067aa0ba902b7", "0" * 16),
        good.upper(),
        good[:-1],
    ):
        assert tracing.parse_traceparent(bad) is None, bad


def serve_from_source(env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    """The boutique served from source with ``env``, for a start that is refused."""
    ws = workspace.load(REPO)
    build = BuildInfo(workspace=ws.name, nanobuild=__version__, inputs="source")
    paths = os.pathsep.join(str(folder) for folder in ws.import_paths())
    return subprocess.run(
        [sys.executable, "-m", "nanobuild.runtime", "serve", "--port", "0"],
        input=msgspec.json.encode({"spec": describe.describe(ws), "build": build}),
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": paths, **env},
    )


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "use http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector:21", "not an http:// or https://"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:port", "not an http:// or https://"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "not a number of milliseconds"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nowhere/ca.pem", "not a file this process can read"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key", "is not key=value"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "use gzip or none"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "not a whole number above 0"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1", "not an http:// or https://"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http:// collector", "not an http:// or https://"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "inf", "not a number of milliseconds"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "use otlp, or none"),
        ("OTEL_TRACES_EXPORTER", "otlp,console", "not 'console'"),
    ],
)
def test_export_settings_that_cannot_be_used_stop_the_start_in_one_line(
    variable: str, value: str, said: str
) -> None:
    done = serve_from_source({"OTEL_TRACES_EXPORTER": "otlp", variable: value})
    stderr = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in stderr, stderr  # a setting: exit 2
    last = stderr.strip().splitlines()[-1]
    assert variable in last and said in last, stderr


def test_a_contract_call_s_span_from_the_cache_is_the_span_encoded_whole() -> None:
    """``encode_spans`` caches what a contract call's spans share: its bytes are
    ``encode_span``'s, for every mix of parent, outcome, flags and request id."""
    from nanobuild.runtime import otlp

    sites = [
        tracing.Site.call("catalog", "GetProduct", "server", "local", "http", "front"),
        tracing.Site.call("cart", "GetCart", "client", "remote", "tcp", "front"),
    ]
    records: list[tracing.Record] = []
    for i, request_id in enumerate(["r", tracing.new_trace_id(), "é" * 90, "x" * 127, None]):
        for site, parent, outcome, flags in [
            (sites[0], None, "ok", "01"),
            (sites[1], tracing.new_span_id(), "unavailable", "00"),
            (sites[0], tracing.new_span_id(), "internal", "01"),
        ]:
            ids = (tracing.new_trace_id(), tracing.new_span_id(), parent, flags)
            records.append((site, *ids, 10**18 + i, 10**18 + 2 * i, outcome, request_id, None,
                            None, None))  # fmt: skip
    records.append((*records[0][:9], "k=v", None, None))  # a tracestate: encoded whole
    whole = b"".join(otlp.encode_span(r) for r in records)
    assert otlp.encode_spans(records) == whole
    assert otlp.encode_spans(records) == whole  # and again, from the cache
    resource = otlp.resource_of({"service.name": "front"})
    decoded = trace_service_pb2.ExportTraceServiceRequest.FromString(
        otlp.encode_request(resource, records)
    )
    spans = decoded.resource_spans[0].scope_spans[0].spans
    assert [s.span_id.hex() for s in spans] == [r[2] for r in records]
    got = [next((a.value.string_value for a in s.attributes if a.key.endswith("request_id")), None)
           for s in spans]  # fmt: skip
    assert got == [r[8] for r in records]


def test_spans_are_sent_as_opentelemetry_s_protobuf_messages_say() -> None:
    """The runtime's own encoding, decoded field by field by opentelemetry-proto."""
    from nanobuild.runtime import otlp

    served = tracing.Site.call("catalog", "GetProduct", "server", "remote", "tcp", "back")
    called = tracing.Site.call("cart", "GetCart", "internal", "local", "memory", "back")
    app = tracing.Site.app("legacy", "back")
    trace_id, parent, one, two, three = (
        tracing.new_trace_id(), tracing.new_span_id(), tracing.new_span_id(),
        tracing.new_span_id(), tracing.new_span_id(),
    )  # fmt: skip
    records: list[tracing.Record] = [
        (served, trace_id, one, parent, "01", 10**18, 10**18 + 5, "not_found", "r-1", "k=v",
         None, None),
        (called, trace_id, two, one, "01", 10**18 + 1, 10**18 + 2, "ok", None, None, None, None),
        (app, trace_id, three, None, "00", 7, 9, "ok", "é" * 200, None, "GET /items/{id}",
         {"http.request.method": "GET", "http.response.status_code": 404}),
    ]  # fmt: skip
    resource = otlp.resource_of({"service.name": "back"})
    decoded = trace_service_pb2.ExportTraceServiceRequest.FromString(
        otlp.encode_request(resource, records)
    )
    [resource_spans] = decoded.resource_spans
    assert [(a.key, a.value.string_value) for a in resource_spans.resource.attributes] == [
        ("service.name", "back")
    ]
    [scope] = resource_spans.scope_spans
    assert scope.scope.name == "nanobuild" and scope.scope.version == __version__
    first, second, third = scope.spans
    assert (first.trace_id.hex(), first.span_id.hex(), first.parent_span_id.hex()) == (
        trace_id, one, parent,
    )  # fmt: skip
    assert (first.name, first.kind, first.trace_state) == ("catalog.GetProduct", 2, "k=v")
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (10**18, 10**18 + 5)
    assert first.flags == 0x301  # sampled, and its parent is in another process
    assert (first.status.code, first.status.message) == (2, "not_found")  # STATUS_CODE_ERROR

    def attributes(span: Any) -> dict[str, Any]:
        return {
            a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
            for a in span.attributes
        }

    assert attributes(first) == {
        "rpc.system": "nanobuild", "rpc.service": "catalog", "rpc.method": "GetProduct",
        "nanobuild.placement": "remote", "nanobuild.via": "tcp",
        "nanobuild.outcome": "not_found", "nanobuild.request_id": "r-1",
    }  # fmt: skip
    assert (second.kind, second.flags, second.status.code) == (1, 0x101, 1)  # INTERNAL, OK
    assert second.parent_span_id.hex() == one and "nanobuild.request_id" not in attributes(second)
    assert (third.name, third.kind, third.parent_span_id, third.flags) == (
        "GET /items/{id}", 2, b"", 0x100,
    )  # fmt: skip
    assert attributes(third)["http.response.status_code"] == 404
    assert attributes(third)["nanobuild.request_id"] == "é" * 200  # a long, non-ASCII one


def test_an_https_collector_is_reached_with_the_ca_bundle_it_is_given(tmp_path: Path) -> None:
    from nanobuild.runtime import otlp

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    receiver = Receiver(tls)
    site = tracing.Site.call("catalog", "GetProduct", "server", "local", "http", "front")
    trace_id, span_id = tracing.new_trace_id(), tracing.new_span_id()
    record: tracing.Record = (
        site, trace_id, span_id, None, "01", 1, 2, "ok", None, None, None, None
    )  # fmt: skip
    try:
        for trusted in (False, True):  # the system's CAs do not know it; the bundle does
            env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url}
            if trusted:
                env["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"] = str(cert)
            exporter = otlp.exporter("front", env)
            exporter.extend([record])
            exporter.shutdown()  # sends what is queued
            assert (exporter.sent, exporter.dropped) == ((1, 0) if trusted else (0, 1))
    finally:
        receiver.close()
    assert [(s["trace_id"], s["span_id"]) for s in receiver.spans] == [(trace_id, span_id)]


def test_every_binary_exports_its_traces_with_nothing_of_opentelemetry_packed(
    mini: Sample, wheelhouse: Path, tmp_path: Path, receiver: Receiver
) -> None:
    binary = bundled(mini.root, wheelhouse)
    with zipfile.ZipFile(binary) as archive:
        assert not [n for n in archive.namelist() if n.startswith("site-packages/opentelemetry")]
    python = bare_python(tmp_path / "venv")  # only what the binary carries
    env = {
        "HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url.removesuffix("/v1/traces"),
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t0ken,x-tenant=acme",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "mini-binary",
    }
    receiver.statuses = [503]  # the collector is busy at first: the batch is sent again
    server = start([str(python), str(binary), "serve", "--port", "0"], tmp_path / "log", env)
    trace_id = tracing.new_trace_id()
    try:
        headers = {"traceparent": tracing.traceparent(trace_id, tracing.new_span_id())}
        body = {"user_id": "u1", "quantity": {"amount": 2}}
        answer = server.call("orders", "PlaceOrder", body, headers=headers)
        assert answer.status_code == 200, answer.text
    finally:
        assert server.stop() == 0, server.log()  # the exporter flushes on the way out
    spans = {s["name"]: s for s in receiver.spans if s["trace_id"] == trace_id}
    assert set(spans) == {"orders.PlaceOrder", "users.GetUser"}, receiver.spans
    assert spans["users.GetUser"]["parent_id"] == spans["orders.PlaceOrder"]["span_id"]
    assert {s["process"] for s in spans.values()} == {"mini-binary"}
    sent = receiver.headers[-1]
    assert sent["authorization"] == "Bearer t0ken" and sent["x-tenant"] == "acme"
    assert sent["content-type"] == "application/x-protobuf"
    assert sent["content-encoding"] == "gzip"


def bundled(root: Path, *folders: Path) -> Path:
    """``lock`` and ``bundle`` of the workspace at ``root``, offline from ``folders``."""
    links = [arg for folder in folders for arg in ("--find-links", str(folder))]
    env = {**os.environ, "NANO_CACHE_DIR": str(root.parent / "cache")}
    for step in ("lock", "bundle"):
        done = subprocess.run(
            [sys.executable, "-m", "nanobuild", step, "--offline", *links],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return root / "dist" / "mini.pyz"


def test_a_collector_that_fails_costs_no_call_and_is_said_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.statuses = [400] * 1000  # refuses every export, for good
    env = {
        "NANO_SECRET": SECRET,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    server = launch([], tmp_path / "serve.log", env)
    try:
        for _ in range(5):
            answer = server.call("catalog", "GetProduct", {"id": "66VCHSJNUP"})
            assert answer.status_code == 200
            time.sleep(0.1)  # an export between calls
    finally:
        assert server.stop() == 0, server.log()
    said = [line for line in server.log().splitlines() if "spans not exported" in line]
    assert 1 <= len(said) <= 2, server.log()  # the first failure; what is left at the stop
    assert "the collector answered 400" in said[0] and receiver.url in said[0]
    assert len(receiver.headers) >= 2 and not receiver.spans


def test_an_observe_table_is_refused_with_what_to_do_instead(mini: Sample) -> None:
    mini.edit("nano.toml", "[services.users]", "[observe]\ntracing = true\n\n[services.users]")
    with pytest.raises(WorkspaceError) as refused:
        mini.load()
    [problem] = refused.value.diagnostics
    assert (problem.code, problem.line) == ("E002", 5), problem  # the table's own line
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in str(problem.hint)


# -- adopted ASGI apps: a server span per request at their edge


def test_adopted_apps_get_a_server_span_per_request_with_http_attributes(
    tmp_path: Path, receiver: Receiver
) -> None:
    adopt = tmp_path / "adopt"
    shutil.copytree(SAMPLES / "adopt", adopt)
    users_port = free_port()
    toml = adopt / "nano.toml"
    toml.write_text(toml.read_text().replace("port = 18401", f"port = {users_port}"))
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "NANO_SECRET": SECRET,
    }
    server = launch([], tmp_path / "serve.log", env, root=adopt)
    trace_id, outer = tracing.new_trace_id(), tracing.new_span_id()
    try:
        headers = {"traceparent": tracing.traceparent(trace_id, outer), "x-request-id": "adopt-1"}
        profile = server.http.get("/profile/u1", headers=headers)
        assert profile.status_code == 200, profile.text
        assert profile.headers["x-request-id"] == "adopt-1"  # once, from the door
        missing = server.http.get("/orders/nowhere", headers=headers)
        own = httpx.get(f"http://127.0.0.1:{users_port}/users/u1", timeout=10)
    finally:
        assert server.stop() == 0, server.log()
    assert missing.status_code == 404
    assert own.status_code == 200 and len(own.headers["x-request-id"]) == 32  # its own port
    spans = [s for s in receiver.spans if s["trace_id"] == trace_id]
    [gateway] = [s for s in spans if s["name"] == "GET /profile/{id}"]
    assert gateway["parent_id"] == outer and gateway["kind"] == 2  # SERVER
    assert gateway["attributes"] == {
        "http.request.method": "GET",
        "url.path": "/profile/u1",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "http.route": "/profile/{id}",
        "nanobuild.service": "gateway",
        "nanobuild.outcome": "ok",
        "nanobuild.request_id": "adopt-1",
    }
    [nowhere] = [s for s in spans if s["attributes"]["url.path"] == "/orders/nowhere"]
    assert nowhere["name"] == "GET /orders/nowhere"  # no route answered: the path
    assert nowhere["attributes"]["http.response.status_code"] == 404
    assert nowhere["attributes"]["nanobuild.service"] == "orders"
    # on its own port: the gateway's call (httpx sends no traceparent) and this test's
    users = [s for s in receiver.spans if s["attributes"].get("url.path") == "/users/u1"]
    assert len(users) == 2 and {s["name"] for s in users} == {"GET /users/{id}"}
    [user] = [
        s for s in users if s["attributes"]["nanobuild.request_id"] == own.headers["x-request-id"]
    ]
    assert user["parent_id"] is None and user["trace_id"] != trace_id


def test_adopted_apps_are_left_unwrapped_while_telemetry_is_off() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    service = ServiceSpec(name="plain", package="plain", handlers={}, asgi="main:app", mount="/p")
    try:
        telemetry.configure(metrics=False, environ={})
        assert Adopted([(service, app)], "h11").mounts()[0][1] is app  # off: nothing between
        telemetry.configure(metrics=True, environ={})
        [(_, spanned, _)] = Adopted([(service, app)], "h11").mounts()
        assert isinstance(spanned, telemetry.AppSpans) and spanned.app is app
    finally:
        telemetry.configure(metrics=False, environ={})


def test_the_sampler_decides_as_opentelemetry_s_sdk() -> None:
    low, high = "0" * 16 + "0" * 15 + "1", "0" * 16 + "f" * 16  # lower 64 bits: tiny, all
    assert tracing.sampler({}).root(high) == "01"  # the default: parent based, always on
    assert tracing.sampler({}).child(high, "00") == "00"  # an unsampled parent is followed
    half = tracing.sampler(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    )
    assert (half.root(low), half.root(high), half.child(low, "00")) == ("01", "00", "01")
    off = tracing.sampler({"OTEL_TRACES_SAMPLER": "parentbased_always_off"})
    assert (off.root(low), off.child(high, "01")) == ("00", "01")
    for environ, said in (
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER='jaeger_remote'"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "from 0 to 1"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"}, "'x'"),
    ):
        with pytest.raises(SetupError, match=said):
            tracing.sampler(environ)


def test_unsampled_traces_are_not_exported_and_a_bad_sampler_stops_the_start(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {
        "NANO_SECRET": SECRET,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    server = launch([], tmp_path / "serve.log", env)
    sampled, unsampled = tracing.new_trace_id(), tracing.new_trace_id()
    try:
        for trace_id, flags in ((sampled, "01"), (unsampled, "00")):
            parent = tracing.traceparent(trace_id, tracing.new_span_id(), flags)
            answer = server.call(
                "catalog", "GetProduct", {"id": "66VCHSJNUP"}, headers={"traceparent": parent}
            )
            assert answer.status_code == 200
    finally:
        assert server.stop() == 0, server.log()
    traces = {s["trace_id"] for s in receiver.spans}
    assert sampled in traces and unsampled not in traces  # the caller's decision kept

    bad = serve_from_source({**env, "OTEL_TRACES_SAMPLER": "sometimes"})
    said = bad.stderr.decode()
    assert bad.returncode != 0 and "Traceback" not in said
    assert "OTEL_TRACES_SAMPLER='sometimes'" in said.strip().splitlines()[-1], said


SPY = """
import logging

log = logging.getLogger("spy")


async def spy(call, proceed):
    log.warning("spy %s %s %s %s", call.direction, call.via, call.context.get("traceparent"),
                call.context.get("request-id"))
    return await proceed()
"""


def test_an_interceptor_runs_inside_the_span_the_face_makes(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The HTTP face observes a contract call inline, around the interceptors' chain: an
    interceptor sees the inbound span's trace context (a child of the caller's), and the
    span exported is the one whose id it saw."""
    (tmp_path / "spy.py").write_text(SPY)
    env = {
        "NANO_METRICS": "1",
        "NANO_INTERCEPTORS": "spy:spy",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    server = launch([], tmp_path / "serve.log", env, also=tmp_path)
    trace_id, caller = tracing.new_trace_id(), tracing.new_span_id()
    headers = {"traceparent": tracing.traceparent(trace_id, caller), "x-request-id": "spied-1"}
    try:
        answer = server.call("catalog", "GetProduct", {"id": "66VCHSJNUP"}, headers=headers)
    finally:
        assert server.stop() == 0, server.log()
    assert answer.status_code == 200
    [line] = [line for line in server.log().splitlines() if "spy inbound" in line]
    direction, via, parent, request_id = line.split("spy ", 1)[1].split()
    assert (direction, via, request_id) == ("inbound", "http", "spied-1")
    found = tracing.parse_traceparent(parent)
    assert found is not None and found[0] == trace_id and found[1] != caller
    [span] = [s for s in receiver.spans if s["name"] == "catalog.GetProduct"]
    assert (span["trace_id"], span["span_id"], span["parent_id"]) == (trace_id, found[1], caller)
