"""Traces: one boutique PlaceOrder is one trace, fused and split over three processes.

The processes run from source (``python -m nanobuild.runtime``, as ``nanobuild serve``
runs its child) with the OpenTelemetry SDK of this Python, and export over OTLP/HTTP
to a receiver in this test, which decodes the protobuf requests with opentelemetry-proto.
"""

from __future__ import annotations

import os
import shutil
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
import tomllib

from nanobuild import describe, workspace
from nanobuild.errors import WorkspaceError
from nanobuild.requirements import TRACING_REQUIRES
from nanobuild.runtime import telemetry, tracing
from nanobuild.runtime.asgi import Adopted
from nanobuild.runtime.errors import SetupError
from nanobuild.runtime.spec import BuildInfo, ServiceSpec, __version__
from tests.conftest import REPO, SAMPLES, Sample
from tests.packing import bare_python, repack_installed, runtime_closure
from tests.servers import Server, free_port, order, output, start

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

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
    """An OTLP/HTTP trace receiver on 127.0.0.1: every span it was sent, as dicts."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                receiver.take(request)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
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


def launch(argv: list[str], log: Path, env: Mapping[str, str], root: Path = REPO) -> Server:
    """The boutique (or the workspace at ``root``) from source, as ``nanobuild serve``'s
    child runs it, with ``argv``."""
    ws = workspace.load(root)
    build = BuildInfo(workspace=ws.name, nanobuild=__version__, inputs="source")
    paths = [str(folder) for folder in ws.import_paths()]
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
    internal = None
    for line in output(proc):
        if line.startswith("nanobuild: internal transport at "):
            internal = line.rsplit(" at ", 1)[1].strip()
        if line.startswith("nanobuild: serving"):
            return Server(proc, line.rsplit(" at ", 1)[1].strip(), log, internal)
    proc.kill()
    proc.wait()
    pytest.fail(f"the server did not start:\n{log.read_text()}")


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


def test_export_without_the_sdk_is_refused_in_one_line(tmp_path: Path) -> None:
    """A Python without the OpenTelemetry SDK, asked to export, stops at start."""
    blocker = tmp_path / "opentelemetry"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('no sdk here', name='opentelemetry')\n")
    ws = workspace.load(REPO)
    build = BuildInfo(workspace=ws.name, nanobuild=__version__, inputs="source")
    paths = [str(tmp_path), *(str(folder) for folder in ws.import_paths())]
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild.runtime", "serve", "--port", "0"],
        input=msgspec.json.encode({"spec": describe.describe(ws), "build": build}),
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OTEL_TRACES_EXPORTER": "otlp"},
    )
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode != 0 and "Traceback" not in done.stderr.decode()
    assert "[observe] tracing = true" in lines[-1], lines
    time.sleep(0)  # nothing left running: run() returned


# -- a bundled binary: `[observe] tracing = true` packs the SDK, and it exports


@pytest.fixture(scope="module")
def tracing_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of the tracing group's closure, repacked from this environment (the
    runtime's come from the ``wheelhouse`` fixture)."""
    folder = tmp_path_factory.mktemp("tracing-wheels")
    for name in runtime_closure(TRACING_REQUIRES):
        repack_installed(name, folder)
    return folder


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


def packed_otel(binary: Path) -> list[str]:
    with zipfile.ZipFile(binary) as archive:
        return [n for n in archive.namelist() if n.startswith("site-packages/opentelemetry")]


def test_tracing_packs_the_sdk_only_when_nano_toml_asks_and_the_binary_exports(
    mini: Sample, wheelhouse: Path, tracing_wheels: Path, tmp_path: Path, receiver: Receiver
) -> None:
    plain = bundled(mini.root, wheelhouse, tracing_wheels)
    assert packed_otel(plain) == []  # not asked for: nothing of OpenTelemetry packed
    assert "tracing" not in tomllib.loads((mini.root / "nano.lock").read_text())["requires"]

    mini.edit("nano.toml", "[services.users]", "[observe]\ntracing = true\n\n[services.users]")
    stale = subprocess.run(
        [sys.executable, "-m", "nanobuild", "bundle", "--offline", "--find-links", str(wheelhouse)],
        cwd=mini.root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert stale.returncode != 0 and "`observe.tracing` adds opentelemetry-sdk" in stale.stderr
    traced = bundled(mini.root, wheelhouse, tracing_wheels)
    names = packed_otel(traced)
    assert any("opentelemetry/sdk/trace/" in n for n in names), names
    assert any("opentelemetry/exporter/otlp/proto/http/" in n for n in names), names
    locked = tomllib.loads((mini.root / "nano.lock").read_text())["requires"]
    assert locked["tracing"] == sorted(TRACING_REQUIRES)

    python = bare_python(tmp_path / "venv")  # only what the binary carries
    env = {
        "HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "mini-binary",
    }
    server = start([str(python), str(traced), "serve", "--port", "0"], tmp_path / "log", env)
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


def test_observe_tracing_must_be_a_boolean_and_spelt_right(mini: Sample) -> None:
    mini.edit("nano.toml", "[services.users]", '[observe]\ntracing = "yes"\n\n[services.users]')
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild", "check", "--workspace", str(mini.root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in said
    assert "nano.toml:6: E003 `observe.tracing`: expected `bool`" in said, said
    mini.edit("nano.toml", 'tracing = "yes"', "trace = true")
    with pytest.raises(WorkspaceError) as refused:
        mini.load()
    misspelt = refused.value.diagnostics
    assert [(d.code, d.line) for d in misspelt] == [("E002", 6)], misspelt
    assert "observe.trace" in misspelt[0].message and "tracing" in str(misspelt[0].hint)


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

    bad = subprocess.run(
        [sys.executable, "-m", "nanobuild.runtime", "serve", "--port", "0"],
        input=msgspec.json.encode({"spec": describe.describe(workspace.load(REPO)), "build": {
            "workspace": "boutique", "nanobuild": __version__, "inputs": "source"}}),
        capture_output=True, timeout=60,
        env={**os.environ, **env, "OTEL_TRACES_SAMPLER": "sometimes",
             "PYTHONPATH": os.pathsep.join(str(f) for f in workspace.load(REPO).import_paths())},
    )  # fmt: skip
    said = bad.stderr.decode()
    assert bad.returncode != 0 and "Traceback" not in said
    assert "OTEL_TRACES_SAMPLER='sometimes'" in said.strip().splitlines()[-1], said
