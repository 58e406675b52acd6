"""Spans sent over OTLP/HTTP: the protobuf encoding written out by hand, and a sender thread.

What OpenTelemetry's SDK does for its ``BatchSpanProcessor`` and ``OTLPSpanExporter``,
for the spans ``telemetry`` records, at a tenth of the cost: the SDK builds a
``ReadableSpan`` per call and its encoder a protobuf message per field, where here a
span is a tuple (see ``tracing.Record``) and its bytes are mostly cached per call
site (name, kind and constant attributes) and per outcome (status and attribute).

The wire form is OTLP's ``ExportTraceServiceRequest`` (opentelemetry-proto's
``collector/trace/v1``), POSTed as ``application/x-protobuf``. The standard variables
configure it, read once at start (``config``; a value that cannot be used is a
``SettingsError`` naming it):

    OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT     where (the base URL + /v1/traces, or the whole URL)
    OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL     http/protobuf (the only one spoken here)
    OTEL_EXPORTER_OTLP[_TRACES]_HEADERS      k=v,k2=v2 (percent-encoded values)
    OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT      ms per export (10000)
    OTEL_EXPORTER_OTLP[_TRACES]_COMPRESSION  gzip or none
    OTEL_EXPORTER_OTLP[_TRACES]_CERTIFICATE  a CA bundle for https (and _CLIENT_KEY/_CERTIFICATE)
    OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE
                                             the batching, as the SDK's processor reads them
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES  the resource every span is sent with

The event loop only adds finished spans to a bounded queue, many at a time (a full
queue drops them, counted); the thread wakes when a batch is full or the delay is up
(then it asks for the spans recorded since to be queued), encodes and sends. A
collector that fails is retried with back-off within the export's timeout (429, 502,
503, 504, or no connection), then the batch is dropped and said once a minute on the
``nanobuild.telemetry`` logger: export never stops a call.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.spec import __version__
from nanobuild.runtime.tracing import Record, Site

log = logging.getLogger("nanobuild.telemetry")

DEFAULT_ENDPOINT = "http://localhost:4318"
PROTOCOL = "http/protobuf"
_RETRIED = frozenset({429, 502, 503, 504})
_SAY_EVERY = 60.0  # seconds between two lines about failed exports
_FOLD_WAIT = 0.01  # seconds the event loop is given to queue what it recorded
_MOST = 86_400_000  # the largest number an OTEL_* setting here may be (a day, in ms)
_MAX_ANSWER = 64 * 1024  # bytes of a collector's answer read; a longer one ends the connection

# -- the protobuf encoding (https://protobuf.dev/programming-guides/encoding/)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _BYTES[value]
    if value < 0x4000:  # a span's length, most often
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_BYTES = [bytes([n]) for n in range(0x80)]


def _field(key: int, payload: bytes) -> bytes:
    """A length-delimited field: its key byte (field number << 3 | 2), length, payload."""
    return _BYTES[key] + _varint(len(payload)) + payload


def _any_value(value: str | int | bool) -> bytes:
    """An ``AnyValue``: string_value (1), bool_value (2) or int_value (3)."""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64, two's complement
    return _field(0x0A, value.encode("utf-8", "replace"))


def key_value(key: str, value: str | int | bool) -> bytes:
    """A ``KeyValue`` message's body: key (1), value (2)."""
    return _field(0x0A, key.encode()) + _field(0x12, _any_value(value))


def _attribute(key: str, value: str | int | bool) -> bytes:
    """A span's attribute: its field 9, a ``KeyValue``."""
    return _field(0x4A, key_value(key, value))


_KIND = {"internal": b"\x30\x01", "server": b"\x30\x02", "client": b"\x30\x03"}
_TIMES = struct.Struct("<BQBQ")  # start (7) and end (8), fixed64 each
_FLAGS = struct.Struct("<BBI")  # flags (16), fixed32: its key is two bytes, 0x85 0x01
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags: whether the parent is in another process
_REQUEST_ID_KEY = _field(0x0A, b"nanobuild.request_id")
# (site, outcome, flags, whether a parent) -> the span's bytes after its times: name,
# kind, attributes but the request id, status and flags, the same for every such span
_tails: dict[tuple[Site, str, str, bool], bytes] = {}


def _tail(site: Site, outcome: str, flags: str, parented: bool) -> bytes:
    # STATUS_CODE_OK, or STATUS_CODE_ERROR with the outcome as its message
    error = _field(0x12, outcome.encode()) + b"\x18\x02"
    status = b"\x18\x01" if outcome == "ok" else error
    bits = int(flags, 16) | _HAS_IS_REMOTE
    if parented and site.kind == "server":
        bits |= _IS_REMOTE
    # an adopted app's site names no contract: each of its spans has a name of its own
    parts = [_field(0x2A, site.name.encode())] if site.contract else []
    parts.append(_KIND[site.kind])
    parts += [_attribute(k, v) for k, v in site.attributes.items()]
    parts += [_attribute("nanobuild.outcome", outcome), _field(0x7A, status)]
    parts.append(_FLAGS.pack(0x85, 0x01, bits))
    return b"".join(parts)


def _request_id(request_id: str) -> bytes:
    """The ``nanobuild.request_id`` attribute: its bytes before the id are the same for
    every id of one length."""
    value = request_id.encode("utf-8", "replace")
    head = _heads.get(len(value))
    if head is None:
        whole = _field(0x4A, _REQUEST_ID_KEY + _field(0x12, _field(0x0A, value)))
        head = _heads[len(value)] = whole[: -len(value)] if value else whole
    return head + value


_heads: dict[int, bytes] = {}  # a request id's length -> its attribute's bytes before it


def encode_span(record: Record) -> bytes:
    """One span as a field of its ``ScopeSpans`` (2): a ``Span`` message
    (opentelemetry-proto's trace/v1), its key and length before it.

    The fields are in the order that makes the fewest pieces: trace id (1), span id (2)
    and parent span id (4) as one hex string, the times (7, 8), then what every span of
    its site and outcome shares, cached; protobuf takes fields in any order."""
    site, trace_id, span_id, parent_id, flags, start, end, outcome, request_id = record[:9]
    state, name, http = record[9:]
    if parent_id is None:
        ids = bytes.fromhex(f"0a10{trace_id}1208{span_id}")
    else:
        ids = bytes.fromhex(f"0a10{trace_id}1208{span_id}2208{parent_id}")
    key = (site, outcome, flags, parent_id is not None)
    tail = _tails.get(key)
    if tail is None:
        tail = _tails[key] = _tail(*key)
    times = _TIMES.pack(0x39, start, 0x41, end)
    rest = _request_id(request_id) if request_id else b""
    if state:
        rest += _field(0x1A, state.encode("utf-8", "replace"))
    if name is not None:  # a request into an adopted app: its own name and attributes
        rest += _field(0x2A, name.encode("utf-8", "replace"))
        rest += b"".join([_attribute(k, v) for k, v in (http or {}).items()])
    size = len(ids) + 18 + len(tail) + len(rest)
    return b"\x12" + _varint(size) + ids + times + tail + rest


# (site, outcome, flags, whether a parent, the request id's length) -> a span's bytes
# before its ids, and after its times up to its request id: for a span with no
# tracestate and no name of its own (a contract call's), most of its bytes
_frames: dict[tuple[Site, str, str, bool, int], tuple[bytes, bytes]] = {}


def encode_spans(records: Iterable[Record]) -> bytes:
    """``records`` as fields of their ``ScopeSpans``, one after another: ``encode_span``'s
    bytes, in one pass with what a contract call's span shares cached (its key, length,
    site's fields and request id's key), so that a span costs a few calls in C."""
    parts: list[bytes] = []
    append = parts.append
    frames, pack, fromhex = _frames, _TIMES.pack, bytes.fromhex
    for record in records:
        site, trace_id, span_id, parent_id, flags, start, end, outcome, request_id = record[:9]
        if record[9] is not None or record[10] is not None or not request_id:
            append(encode_span(record))  # a tracestate, an adopted app's span, no request id
            continue
        value = request_id.encode("utf-8", "replace")
        key = (site, outcome, flags, parent_id is not None, len(value))
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = _frame(key)
        append(frame[0])
        if parent_id is None:
            append(fromhex(f"0a10{trace_id}1208{span_id}"))
        else:
            append(fromhex(f"0a10{trace_id}1208{span_id}2208{parent_id}"))
        append(pack(0x39, start, 0x41, end))
        append(frame[1])
        append(value)
    return b"".join(parts)


def _frame(key: tuple[Site, str, str, bool, int]) -> tuple[bytes, bytes]:
    """The cached bytes of a contract call's span (see ``_frames``): its key and length,
    then its site's and outcome's fields and its request id's key and length."""
    site, outcome, flags, parented, length = key
    tail = _tail(site, outcome, flags, parented)
    attribute = _request_id("x" * length)  # its bytes before the id, then the id
    ids = 38 if parented else 28  # the ids' fields: trace (18), span (10), parent (10)
    size = ids + len(_TIMES.pack(0, 0, 0, 0)) + len(tail) + len(attribute)
    return b"\x12" + _varint(size), tail + attribute[: len(attribute) - length]


def encode_request(resource: bytes, records: Iterable[Record]) -> bytes:
    """An ``ExportTraceServiceRequest`` of ``records``, all from the one ``resource`` (a
    ``Resource`` message's body, as ``resource_of`` makes it) and the scope ``nanobuild``."""
    spans = encode_spans(records)
    scope = _field(0x0A, _field(0x0A, b"nanobuild") + _field(0x12, __version__.encode()))
    resource_spans = _field(0x0A, resource) + _field(0x12, scope + spans)
    return _field(0x0A, resource_spans)


def resource_of(attributes: Mapping[str, str]) -> bytes:
    """A ``Resource`` message's body: its attributes, field 1 each."""
    return b"".join(_field(0x0A, key_value(k, v)) for k, v in attributes.items())


# -- what the OTEL_* variables ask for


@dataclass(frozen=True)
class Config:
    url: str
    headers: dict[str, str]
    timeout: float  # seconds per export, retries included
    gzip: bool
    cafile: str | None
    client_cert: str | None
    client_key: str | None
    delay: float  # seconds between exports of a batch that is not full
    max_queue: int
    batch: int
    resource: dict[str, str]


def config(process: str, environ: Mapping[str, str]) -> Config:
    """The exporter the OTEL_* variables configure; ``SettingsError`` naming a bad one."""

    def traces(name: str) -> tuple[str, str] | None:
        """The trace-specific variable, else the general one: (its name, its value)."""
        for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
            value = environ.get(variable, "").strip()
            if value:
                return variable, value
        return None

    protocol = traces("PROTOCOL")
    if protocol is not None and protocol[1] != PROTOCOL:
        raise SettingsError(
            f"{protocol[0]}={protocol[1]!r}: this runtime sends traces over OTLP/HTTP as "
            f"protobuf: use {PROTOCOL} (a collector's port 4318)"
        )
    specific = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    url = specific or base.rstrip("/") + "/v1/traces"
    variable = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if specific else "OTEL_EXPORTER_OTLP_ENDPOINT"
    if not _url(url):
        given = specific or base
        raise SettingsError(f"{variable}={given!r} is not an http:// or https:// URL")
    compression = traces("COMPRESSION")
    if compression is not None and compression[1] not in ("gzip", "none"):
        raise SettingsError(f"{compression[0]}={compression[1]!r}: use gzip or none")
    resource = _resource(environ, process)
    return Config(
        url=url,
        headers=_headers(traces("HEADERS")),
        timeout=_number(traces("TIMEOUT"), 10_000) / 1000,
        gzip=compression is not None and compression[1] == "gzip",
        cafile=_file(traces("CERTIFICATE")),
        client_cert=_file(traces("CLIENT_CERTIFICATE")),
        client_key=_file(traces("CLIENT_KEY")),
        delay=_number(_named(environ, "OTEL_BSP_SCHEDULE_DELAY"), 5000) / 1000,
        max_queue=int(_number(_named(environ, "OTEL_BSP_MAX_QUEUE_SIZE"), 2048, whole=True)),
        batch=int(_number(_named(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), 512, whole=True)),
        resource=resource,
    )


def _url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host (and a port that is a number)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # a port that is not a number raises here
    except ValueError:  # a bracket left open, a port out of range
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _named(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    value = environ.get(name, "").strip()
    return (name, value) if value else None


def _file(found: tuple[str, str] | None) -> str | None:
    """A file the exporter reads (a certificate or key): it must be one, readable."""
    if found is None:
        return None
    name, path = found
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise SettingsError(f"{name}={path!r} is not a file this process can read")
    return path


def _number(found: tuple[str, str] | None, default: float, *, whole: bool = False) -> float:
    if found is None:
        return default
    name, text = found
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = -1
    if not 0 < value <= _MOST:  # nan, inf and a day's worth of milliseconds are not either
        kind = "a whole number" if whole else "a number of milliseconds"
        raise SettingsError(f"{name}={text!r} is not {kind} above 0 and up to {_MOST:,}")
    return value


def _pairs(found: tuple[str, str] | None) -> dict[str, str]:
    """``k=v,k2=v2`` (the W3C baggage form the OTEL_* lists use), percent-decoded."""
    if found is None:
        return {}
    name, text = found
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{name}: {item!r} is not key=value")
        pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


def _headers(found: tuple[str, str] | None) -> dict[str, str]:
    headers = _pairs(found)
    for key, value in headers.items():
        if not key.isascii() or any(c in key + value for c in "\r\n\0"):
            raise SettingsError(f"{found and found[0]}: the header {key!r} cannot be sent")
    return headers


def _resource(environ: Mapping[str, str], process: str) -> dict[str, str]:
    """The resource's attributes: OTEL_RESOURCE_ATTRIBUTES, and ``service.name`` from
    OTEL_SERVICE_NAME, else from those, else the process's name (its group, or the
    workspace)."""
    attributes = {
        "telemetry.sdk.name": "nanobuild",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
    }
    attributes |= _pairs(_named(environ, "OTEL_RESOURCE_ATTRIBUTES"))
    name = environ.get("OTEL_SERVICE_NAME", "").strip()
    attributes["service.name"] = name or attributes.get("service.name") or process
    return attributes


# -- the sender


class Exporter:
    """Finished spans batched on a thread of their own and sent to the collector."""

    def __init__(self, settings: Config, fold: Callable[[], None] = lambda: None) -> None:
        self.config = settings
        self._fold = fold  # asks for the calls recorded, not yet queued, to be queued
        self.dropped = 0  # spans not sent: the queue was full, or the collector failed
        self.sent = 0
        # oldest first; the loop extends its end while this thread cuts batches off its
        # head, each one step under the GIL
        self._queue: list[Record] = []
        self._wake = threading.Event()
        self._stopping = False
        self._resource = resource_of(settings.resource)
        parts = urlsplit(settings.url)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._connection: http.client.HTTPConnection | None = None
        self._host, self._port = parts.hostname or "localhost", parts.port
        self._tls = _tls(settings) if parts.scheme == "https" else None
        self._said = float("-inf")  # when a failure was last said
        self._unsaid = 0  # spans dropped since
        self._thread = threading.Thread(target=self._run, name="nano-otlp", daemon=True)
        self._thread.start()

    def extend(self, records: list[Record]) -> None:
        """Queue ``records`` to be sent (the event loop's only part: no I/O, no encoding)."""
        queue = self._queue
        room = self.config.max_queue - len(queue)
        if len(records) > room:  # a full queue takes what fits, and drops the rest
            self.dropped += len(records) - max(room, 0)
            records = records[: max(room, 0)]
        queue.extend(records)
        if len(queue) >= self.config.batch and not self._wake.is_set():
            self._wake.set()

    def shutdown(self) -> None:
        """Send what is queued (within the export timeout), then stop."""
        self._stopping = True
        self._wake.set()
        self._thread.join(self.config.timeout + 1)
        if self._connection is not None:
            self._connection.close()

    def _run(self) -> None:
        while not self._stopping:
            woken = self._wake.wait(self.config.delay)
            self._wake.clear()
            if not woken:  # the delay is up: what is recorded goes too, the batch not full
                self._fold()
                time.sleep(_FOLD_WAIT)
            self._drain(everything=not woken)
        self._drain(everything=True)

    def _drain(self, *, everything: bool) -> None:
        """Send the queue in batches: its full ones, or with ``everything`` all of it."""
        queue, size = self._queue, self.config.batch
        while len(queue) >= size or (everything and queue):
            batch = queue[:size]
            del queue[: len(batch)]
            try:
                body = encode_request(self._resource, batch)
            except Exception as exc:  # a span the encoder cannot take is dropped, not the thread
                self._failed(len(batch), f"cannot encode: {exc!r}")
                continue
            self._send(body, len(batch))

    def _send(self, body: bytes, count: int) -> None:
        settings = self.config
        headers = {**settings.headers, "Content-Type": "application/x-protobuf"}
        if settings.gzip:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        deadline = time.monotonic() + settings.timeout
        pause = 0.1
        while True:
            status, reason = self._post(body, headers, deadline)
            if status is not None and 200 <= status < 300:
                self.sent += count
                return
            final = status is not None and status not in _RETRIED
            if final or self._stopping or time.monotonic() + pause >= deadline:
                self._failed(count, reason)
                return
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _post(
        self, body: bytes, headers: Mapping[str, str], deadline: float
    ) -> tuple[int | None, str]:
        """The collector's answer to ``body`` (None: no answer), and what to say of it."""
        try:
            connection = self._connection or self._connect()
            connection.timeout = max(0.01, deadline - time.monotonic())
            if connection.sock is not None:
                connection.sock.settimeout(connection.timeout)
            connection.request("POST", self._path, body, dict(headers))
            answer = connection.getresponse()
            answer.read(_MAX_ANSWER)  # an ExportTraceServiceResponse: a few bytes
        except (OSError, http.client.HTTPException) as exc:
            self._close()
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if answer.will_close or not answer.isclosed():  # closing, or it says more than that
            self._close()
        return answer.status, f"the collector answered {answer.status} {answer.reason}"

    def _connect(self) -> http.client.HTTPConnection:
        settings = self.config
        host, port = self._host, self._port
        if self._tls is not None:
            made: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, context=self._tls, timeout=settings.timeout
            )
        else:
            made = http.client.HTTPConnection(host, port, timeout=settings.timeout)
        self._connection = made
        return made

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _failed(self, count: int, reason: str) -> None:
        self.dropped += count
        self._unsaid += count
        now = time.monotonic()
        if now - self._said >= _SAY_EVERY or self._stopping:
            log.warning(
                "nanobuild: %d spans not exported to %s: %s", self._unsaid, self.config.url, reason
            )
            self._said, self._unsaid = now, 0


def _tls(settings: Config) -> ssl.SSLContext:
    """The TLS context of an https:// collector, made once; ``SettingsError`` naming the
    variable whose file cannot be used."""
    try:
        context = ssl.create_default_context(cafile=settings.cafile)
    except (OSError, ssl.SSLError) as exc:
        said = f"the CA bundle {settings.cafile!r} (OTEL_EXPORTER_OTLP_CERTIFICATE)"
        raise SettingsError(f"{said} cannot be used: {exc}") from None
    if settings.client_cert:
        try:
            context.load_cert_chain(settings.client_cert, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            said = f"the client certificate {settings.client_cert!r} and its key"
            raise SettingsError(
                f"{said} (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, _CLIENT_KEY) cannot be used: {exc}"
            ) from None
    return context


def exporter(
    process: str, environ: Mapping[str, str], fold: Callable[[], None] = lambda: None
) -> Exporter:
    """The exporter the OTEL_* variables configure, running; ``fold`` asks for the spans
    recorded and not yet queued (see ``telemetry.Recorder``)."""
    return Exporter(config(process, environ), fold)
