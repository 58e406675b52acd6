"""Trace context and spans: W3C ``traceparent`` read and written, ids made, sampling.

A span is one call at one hop, as ``telemetry``'s observer sees it on the call seam.
Its trace context travels in the per-call context under ``traceparent`` (and
``tracestate``), in the W3C form, so the TCP frames and the ``nano-context`` header
carry it to every process the trace crosses with no wire change.

Spans are exported over OTLP (``otlp``) when the standard variables ask for it
(``OTEL_TRACES_EXPORTER=otlp``, or an ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``) and
``OTEL_SDK_DISABLED`` is not true; which ones is the sampler's choice
(``OTEL_TRACES_SAMPLER``), decided as OpenTelemetry's SDK decides.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from nanobuild.runtime.errors import SettingsError

TRACEPARENT = "traceparent"  # the per-call context's keys, as the W3C headers are named
TRACESTATE = "tracestate"
REQUEST_ID = "request-id"

_getrandbits = random.getrandbits  # ids need to be unique, not secret


def new_trace_id() -> str:
    """32 lowercase hex digits, never all zero."""
    return (_getrandbits(128) or 1).to_bytes(16, "big").hex()  # a third of an f-string's time


def new_span_id() -> str:
    """16 lowercase hex digits, never all zero."""
    return (_getrandbits(64) or 1).to_bytes(8, "big").hex()


# version, trace id, parent span id, flags; a later version may append fields
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def parse_traceparent(text: str) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a W3C ``traceparent``; None if it is not one.

    Version ``00`` must be exactly its 55 characters; a later version may append
    fields (which are ignored); ``ff`` and all-zero ids are invalid, as the spec says.
    """
    found = _TRACEPARENT.fullmatch(text)
    if found is None:
        return None
    version, trace_id, span_id, flags, more = found.groups()
    if version == "ff" or (more is not None and version == "00"):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


class Site:
    """Where spans are made: one contract's calls in one direction, arrived one way (or
    the requests into one adopted app). What every span made there shares: its name,
    kind and attributes but the call's own (outcome, request id)."""

    __slots__ = ("attributes", "contract", "kind", "name", "placement", "process", "service", "via")

    def __init__(
        self,
        service: str,
        contract: str,
        kind: str,  # server, client or internal
        placement: str,
        via: str,
        process: str,
        attributes: dict[str, str],
    ) -> None:
        self.service, self.contract, self.kind = service, contract, kind
        self.placement, self.via, self.process = placement, via, process
        self.name = f"{service}.{contract}" if contract else service
        self.attributes = attributes

    @classmethod
    def call(
        cls, service: str, contract: str, kind: str, placement: str, via: str, process: str
    ) -> Site:
        """A contract's calls: OpenTelemetry's RPC attributes."""
        attributes = {
            "rpc.system": "nanobuild",
            "rpc.service": service,
            "rpc.method": contract,
            "nanobuild.placement": placement,
            "nanobuild.via": via,
        }
        return cls(service, contract, kind, placement, via, process, attributes)

    @classmethod
    def app(cls, service: str, process: str) -> Site:
        """An adopted app's requests (each span has its own name and HTTP attributes)."""
        return cls(service, "", "server", "local", "http", process, {"nanobuild.service": service})


# One finished span, as the seam records it: a tuple, the cheapest thing to make once
# per call. ``name`` and ``http`` are None but for a request into an adopted app
# ("GET /items/{id}", and its HTTP attributes). ``Span.of`` reads it.
Record = tuple[
    Site,  # where
    str,  # trace id
    str,  # span id
    "str | None",  # parent span id
    str,  # flags
    int,  # start, ns since the epoch
    int,  # end
    str,  # outcome: ok or the error's kind
    "str | None",  # request id
    "str | None",  # tracestate
    "str | None",  # name
    "dict[str, str | int] | None",  # HTTP attributes
]


@dataclass(slots=True)
class Span:
    """One finished call at one hop, as the page reads a ``Record``."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    service: str
    contract: str
    placement: str
    process: str
    start_ns: int
    end_ns: int
    outcome: str

    @classmethod
    def of(cls, record: Record) -> Span:
        site, trace_id, span_id, parent_id, _, start, end, outcome = record[:8]
        name = record[10] or site.name
        return cls(
            trace_id,
            span_id,
            parent_id,
            name,
            site.kind,
            site.service,
            site.contract,
            site.placement,
            site.process,
            start,
            end,
            outcome,
        )

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
    ``SettingsError`` for one this runtime does not know or a ratio that is not one."""
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or SAMPLERS[0]
    if name not in SAMPLERS:
        raise SettingsError(
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
        raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG={text!r} is not a ratio from 0 to 1")
    return ratio


EXPORTERS = ("otlp", "none")  # the OTEL_TRACES_EXPORTER values this runtime takes


def exporting(environ: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for traces over OTLP; ``SettingsError``
    for an ``OTEL_TRACES_EXPORTER`` this runtime has not (only ``otlp`` and ``none``)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    chosen = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if chosen:
        names = [name.strip() for name in chosen.split(",")]
        unknown = [name for name in names if name not in EXPORTERS]
        if unknown:
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER={chosen!r}: this runtime exports traces over OTLP "
                f"alone, not {', '.join(map(repr, unknown))}: use otlp, or none"
            )
        return "otlp" in names
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return any(environ.get(name, "").strip() for name in endpoints)
