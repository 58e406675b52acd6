"""Trace context and spans: W3C ``traceparent`` read and written, ids made, spans exported.

A span is one call at one hop, as ``telemetry``'s interceptor sees it on the call
seam. Its trace context travels in the per-call context under ``traceparent`` (and
``tracestate``), in the W3C form, so the TCP frames and the ``nano-context`` header
carry it to every process the trace crosses with no wire change.

Export over OTLP is OpenTelemetry's SDK's job, and happens only when the standard
variables ask for it (``OTEL_TRACES_EXPORTER=otlp``, or an
``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not true. The
SDK is imported then only: a binary whose workspace does not enable tracing does not
carry it, and a process that asks for export without it stops at start (``SetupError``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from nanobuild.runtime.errors import SetupError

TRACEPARENT = "traceparent"  # the per-call context's keys, as the W3C headers are named
TRACESTATE = "tracestate"
REQUEST_ID = "request-id"

_HEX = frozenset("0123456789abcdef")
_getrandbits = random.getrandbits  # ids need to be unique, not secret


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero."""
    return (_getrandbits(128) or 1).to_bytes(16, "big").hex()  # a third of an f-string's time


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero."""
    return (_getrandbits(64) or 1).to_bytes(8, "big").hex()


def new_ids() -> tuple[str, str]:
    """A new trace id and span id at once (one random draw), as the two above make them."""
    bits = _getrandbits(192)
    if not bits >> 64 or not bits & 0xFFFFFFFFFFFFFFFF:  # one part all zero: 2**-64 odds
        return new_trace_id(), new_span_id()
    both = bits.to_bytes(24, "big").hex()
    return both[:32], both[32:]


def parse_traceparent(text: str) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a W3C ``traceparent``; None if it is not one.

    Version ``00`` must be exactly its 55 characters; a later version may append
    fields (which are ignored); ``ff`` and all-zero ids are invalid, as the spec says.
    """
    if len(text) < 55 or text[2] != "-" or text[35] != "-" or text[52] != "-":
        return None
    version, trace_id, span_id, flags = text[:2], text[3:35], text[36:52], text[53:55]
    if version == "ff" or (version == "00" and len(text) != 55):
        return None
    if len(text) > 55 and text[55] != "-":
        return None
    if not _HEX.issuperset(version + trace_id + span_id + flags):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, flags


def traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


@dataclass(slots=True)
class Span:
    """One finished call at one hop: what the in-memory record keeps and OTLP is sent."""

    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str  # server, client or internal
    service: str
    contract: str
    placement: str
    via: str
    process: str
    start_ns: int
    end_ns: int
    outcome: str
    flags: str = "01"
    remote_parent: bool = False  # the parent span is in the process that called this one
    request_id: str | None = None
    tracestate: str | None = None
    # an adopted app's request at its edge: its name ("GET /items/{id}") and HTTP attributes
    title: str | None = None
    http: dict[str, str | int] | None = None

    @property
    def name(self) -> str:
        return self.title or f"{self.service}.{self.contract}"

    def as_dict(self) -> dict[str, object]:
        """The span as ``telemetry.RECORDER.traces()`` shows it."""
        return {
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "kind": self.kind,
            "service": self.service,
            "contract": self.contract,
            "placement": self.placement,
            "process": self.process,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "outcome": self.outcome,
        }

    def attributes(self) -> dict[str, str | int]:
        """Its attributes, by OpenTelemetry's RPC conventions where they fit (by its HTTP
        conventions for a request into an adopted app)."""
        if self.http is not None:
            return {
                **self.http,
                "nanobuild.service": self.service,
                "nanobuild.outcome": self.outcome,
                "nanobuild.request_id": self.request_id or "",
            }
        return {
            "rpc.system": "nanobuild",
            "rpc.service": self.service,
            "rpc.method": self.contract,
            "nanobuild.placement": self.placement,
            "nanobuild.via": self.via,
            "nanobuild.outcome": self.outcome,
            "nanobuild.request_id": self.request_id or "",
        }


SAMPLERS = (
    "parentbased_always_on",  # the default, as OpenTelemetry's
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)
_ALL = 1 << 64


class Sampler:
    """Which new spans are exported (``OTEL_TRACES_SAMPLER``), decided as OpenTelemetry's
    SDK decides: a span that starts a trace is sampled when its trace id's lower 64 bits
    are under the ratio's bound; a span with a parent takes the parent's sampled flag when
    the sampler is parent based, else is decided as a root is. The decision travels in the
    ``traceparent``'s flags, so every process of a trace agrees."""

    __slots__ = ("bound", "parent_based")

    def __init__(self, ratio: float = 1.0, parent_based: bool = True) -> None:
        self.bound = round(ratio * _ALL)
        self.parent_based = parent_based

    def root(self, trace_id: str) -> str:
        """The flags of a span that starts the trace ``trace_id``."""
        if self.bound >= _ALL:
            return "01"
        return "01" if int(trace_id[16:], 16) < self.bound else "00"

    def child(self, trace_id: str, flags: str) -> str:
        """The flags of a span whose parent's flags are ``flags``."""
        return flags if self.parent_based else self.root(trace_id)


def sampler(environ: Mapping[str, str]) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` name;
    ``SetupError`` for one this runtime does not know or a ratio that is not one."""
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or SAMPLERS[0]
    if name not in SAMPLERS:
        raise SetupError(
            f"OTEL_TRACES_SAMPLER={name!r} is not a sampler this runtime knows: "
            f"use one of {', '.join(SAMPLERS)}"
        )
    base = name.removeprefix("parentbased_")
    if base == "traceidratio":
        ratio = _ratio(environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip())
    else:
        ratio = 1.0 if base == "always_on" else 0.0
    return Sampler(ratio, name.startswith("parentbased_"))


def _ratio(text: str) -> float:
    if not text:
        return 1.0  # the SDK's default
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise SetupError(f"OTEL_TRACES_SAMPLER_ARG={text!r} is not a ratio from 0 to 1")
    return ratio


class Exporter(Protocol):
    def export(self, span: Span) -> None: ...

    def shutdown(self) -> None: ...


def exporting(environ: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for traces over OTLP."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    chosen = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if chosen:
        return "otlp" in [name.strip() for name in chosen.split(",")]
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return any(environ.get(name, "").strip() for name in endpoints)


def otlp_exporter(process: str, environ: Mapping[str, str]) -> Exporter | None:
    """The OTLP exporter the OTEL_* variables ask for, or None; ``SetupError`` if the SDK
    is not here to do it."""
    if not exporting(environ):
        return None
    try:
        return _Otlp(process, environ)
    except ImportError as exc:
        raise SetupError(
            "OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT ask for traces over OTLP, but "
            f"{exc.name or 'the OpenTelemetry SDK'} is not installed here: set "
            "`[observe] tracing = true` in nano.toml and lock and bundle again"
        ) from None


class _Otlp:
    """Finished spans handed to the SDK's batch processor and OTLP/HTTP exporter."""

    def __init__(self, process: str, environ: Mapping[str, str]) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        self._readable = ReadableSpan
        self._context, self._flags = SpanContext, TraceFlags
        self._kinds = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT}
        self._internal = SpanKind.INTERNAL
        self._ok, self._error = Status(StatusCode.OK), StatusCode.ERROR
        self._status = Status
        name = environ.get("OTEL_SERVICE_NAME") or process
        self._resource = Resource.create({"service.name": name})
        self._scope = InstrumentationScope("nanobuild")
        self._processor = BatchSpanProcessor(OTLPSpanExporter())

    def export(self, span: Span) -> None:
        flags = self._flags(int(span.flags, 16))
        own = self._context(int(span.trace_id, 16), int(span.span_id, 16), False, flags)
        parent = None
        if span.parent_id is not None:
            parent = self._context(
                int(span.trace_id, 16), int(span.parent_id, 16), span.remote_parent, flags
            )
        failed = span.outcome != "ok"
        readable = self._readable(
            name=span.name,
            context=own,
            parent=parent,
            resource=self._resource,
            attributes=span.attributes(),
            kind=self._kinds.get(span.kind, self._internal),
            instrumentation_scope=self._scope,
            status=self._status(self._error, span.outcome) if failed else self._ok,
            start_time=span.start_ns,
            end_time=span.end_ns,
        )
        self._processor.on_end(readable)

    def shutdown(self) -> None:
        self._processor.shutdown()  # type: ignore[no-untyped-call]  # sends what is still batched
