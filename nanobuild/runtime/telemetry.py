"""What this process saw of its calls: counts, errors, latency, in-flight calls and traces.

The call seam's observer (``observer``) records every call once in the process it
passes — inbound where it arrived from outside, outbound where it was made — into
``RECORDER``: its counts and latency, and its span, a ``tracing.Record`` kept for
the page and queued for export over OTLP (``otlp``) when sampled. It is installed
only when telemetry is on (``NANO_METRICS=1``, which ``nanobuild serve`` sets by
default, or OTLP export asked for by the OTEL_* variables); off, nothing is on the
seam and nothing is recorded.

``RECORDER.snapshot()`` and ``RECORDER.traces()`` are the JSON-ready views a page
reads; ``prometheus()`` is ``GET /metrics``' body. The counters are exact (every
finished call); rates and percentiles are over a recent window (``RATE_WINDOW``,
``LATENCY_WINDOW``, at most ``LATENCY_SAMPLES`` calls per contract).

A transport may say how its remote stands by a method ``replica_states()``
returning one state name per replica (``"ready"`` counts as ready); one without it
is reported from whether it holds a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from functools import partial
from operator import itemgetter, sub
from typing import TYPE_CHECKING, Any

from nanobuild.runtime import context, faults, tracing
from nanobuild.runtime.errors import NanoError
from nanobuild.runtime.seam import Direction, Observer, Route, Run, Seam
from nanobuild.runtime.spec import __version__
from nanobuild.runtime.tracing import REQUEST_ID, TRACEPARENT, TRACESTATE, Record, Site, Span

if TYPE_CHECKING:
    from nanobuild.runtime import otlp

log = logging.getLogger("nanobuild.calls")

RATE_WINDOW = 10  # seconds a rate is taken over
LATENCY_WINDOW = 60  # seconds percentiles are taken over
LATENCY_SAMPLES = 4096  # per contract and direction, the newest kept
MAX_SPANS = 8192  # the newest spans kept, for the page's traces
MAX_TRACE_SPANS = 256  # per trace, as the page shows it
FOLD_EVERY = 256  # finished calls recorded before they are counted (see Recorder)
# the histogram's upper bounds, in seconds: from a fused call (microseconds) to a timeout
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
)
BUCKETS += (0.5, 1.0, 2.5, 5.0, 10.0)


_BOUNDS_NS = tuple(round(bound * 1e9) for bound in BUCKETS)  # the same, in ns
_NS = 1_000_000_000


class _Stats:
    """One (service, contract, direction): exact counters, and a recent window (ns)."""

    __slots__ = ("buckets", "in_flight", "outcomes", "recent", "seconds", "sum")

    def __init__(self) -> None:
        self.in_flight = 0
        self.outcomes: dict[str, int] = {}  # ok or an error's kind -> calls
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bound, not cumulative; last: +Inf
        self.sum = 0  # ns
        self.recent: deque[tuple[int, int]] = deque(maxlen=LATENCY_SAMPLES)  # (end, took)
        self.seconds: dict[int, list[int]] = {}  # whole second -> [calls, errors]

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> dict[str, int]:
        return {kind: n for kind, n in self.outcomes.items() if kind != "ok"}

    def add(self, records: Sequence[Record]) -> None:
        """Count finished calls, each a ``Record``: a pass over each of their columns, in C
        as far as it goes (``Recorder.fold`` gives them by the hundred)."""
        starts, ends, outcomes = _TIMES_AND_OUTCOME(tuple(zip(*records, strict=True)))
        tooks = list(map(sub, ends, starts))
        self.sum += sum(tooks)
        kept = self.outcomes
        counted = Counter(outcomes)
        for outcome, n in counted.items():
            kept[outcome] = kept.get(outcome, 0) + n
        buckets = self.buckets
        for index, n in Counter(map(_bucket, tooks)).items():
            buckets[index] += n
        seconds = self.seconds
        for second, n in Counter(map(_NS.__rfloordiv__, ends)).items():
            found = seconds.get(second)
            if found is None:
                seconds[second] = [n, 0]
            else:
                found[0] += n
        if counted.get("ok", 0) != len(tooks):  # some failed
            for end, outcome in zip(ends, outcomes, strict=True):
                if outcome != "ok":
                    seconds[end // _NS][1] += 1
        while len(seconds) > RATE_WINDOW + 2:  # a bounded map: drop the oldest
            del seconds[min(seconds)]
        self.recent.extend(zip(ends, tooks, strict=True))


_TIMES_AND_OUTCOME = itemgetter(5, 6, 7)  # a record's start, end and outcome (columns)
_bucket = partial(bisect_left, _BOUNDS_NS)  # a duration's bucket


_FLAGS = itemgetter(4)  # a record's flags


def _by_site(batch: list[Record]) -> Iterable[tuple[Site, Sequence[Record]]]:
    """``batch``'s records by their site: under load most batches are of one or a few."""
    if len(set(map(_SITE, batch))) == 1:
        return [(batch[0][0], batch)]
    grouped: dict[Site, list[Record]] = {}
    for record in batch:
        grouped.setdefault(record[0], []).append(record)
    return grouped.items()


_SITE = itemgetter(0)  # a record's site


def _trace(trace_id: str, kept: list[Span]) -> dict[str, object]:
    """One trace as ``Recorder.traces()`` shows it: its spans here in start order, and its
    root (the span whose parent is not here)."""
    spans = sorted(kept, key=lambda s: s.start_ns)
    ids = {s.span_id for s in spans}
    root = next((s for s in spans if s.parent_id not in ids), spans[0])
    start = spans[0].start_ns
    end = max(s.end_ns for s in spans)
    return {
        "trace_id": trace_id,
        "root": root.name,
        "start_ns": start,
        "duration_ms": (end - start) / 1e6,
        "outcome": root.outcome,
        "spans": [s.as_dict() for s in spans],
    }


class Recorder:
    """Every call this process saw since start, and its newest traces.

    A finished call is one ``Record`` appended to ``pending``: that is all a call pays
    as it finishes. ``fold`` counts the pending records into their stats, keeps them
    among the newest spans and queues the sampled ones for export, in one pass over
    ``FOLD_EVERY`` of them (or fewer: every reader folds first, and the exporter asks
    for a fold when its delay is up)."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str, str], _Stats] = {}
        self.spans: deque[Record] = deque(maxlen=MAX_SPANS)  # the newest, oldest first
        self.pending: list[Record] = []  # finished, not yet folded
        self.counted: dict[Site, _Stats] = {}  # a contract call's site -> its stats
        self.loop: asyncio.AbstractEventLoop | None = None  # where calls are observed
        self.started = time.time()
        self.process = {"name": "", "group": None, "build": "", "workspace": ""}
        self.services: list[str] = []
        self.remotes: dict[str, Any] = {}  # service -> the transport that reaches it
        # HTTP answers by status, at the door: refusals that never reach the seam too
        self.http: dict[int, int] = {}

    def reset(self) -> None:
        """Forget every call and trace (a new node in this process starts afresh)."""
        self.stats.clear()
        self.http.clear()
        self.spans.clear()
        self.pending.clear()
        self.counted.clear()
        self.started = time.time()

    def stats_of(self, service: str, contract: str, direction: str) -> _Stats:
        key = (service, contract, direction)
        found = self.stats.get(key)
        if found is None:
            found = self.stats[key] = _Stats()
        return found

    def fold(self) -> None:
        """Count, keep and queue for export every pending record (see the class)."""
        pending = self.pending
        if not pending:
            return
        batch = pending.copy()
        pending.clear()
        counted = self.counted
        for site, records in _by_site(batch):
            stats = counted.get(site)
            if stats is not None:  # None: a request into an adopted app, not a call
                stats.add(records)
        self.spans.extend(batch)
        if _exporter is not None:
            if all(flags[1] in _SAMPLED for flags in set(map(_FLAGS, batch))):
                _exporter.extend(batch)
            else:
                _exporter.extend([r for r in batch if r[4][1] in _SAMPLED])

    def fold_soon(self) -> None:
        """Fold on the event loop calls are observed on (from any thread)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self.fold)

    # -- what a page reads

    def snapshot(self) -> dict[str, object]:
        """The process, each contract's counters and recent rates, and each remote."""
        self.fold()
        return {
            "process": {
                "name": self.process["name"],
                "group": self.process["group"],
                "pid": os.getpid(),
                "started": self.started,
                "build": self.process["build"],
                "services": list(self.services),
            },
            "contracts": self._contracts(time.time()),
            "remotes": [_remote(name, t) for name, t in sorted(self.remotes.items())],
        }

    def traces(self, limit: int = 200) -> list[dict[str, object]]:
        """The newest ``limit`` traces this process saw a span of, newest first (those of
        the newest ``MAX_SPANS`` spans, at most ``MAX_TRACE_SPANS`` each)."""
        self.fold()
        kept: dict[str, list[Span]] = {}  # trace id -> its spans, newest trace first
        for record in reversed(self.spans):
            spans = kept.get(record[1])
            if spans is None:
                if len(kept) >= limit:
                    continue
                spans = kept[record[1]] = []
            if len(spans) < MAX_TRACE_SPANS:
                spans.append(Span.of(record))
        return [_trace(trace_id, spans) for trace_id, spans in kept.items()]

    def _contracts(self, now: float) -> list[dict[str, object]]:
        merged: dict[tuple[str, str], list[_Stats]] = {}
        for (service, contract, _), stats in sorted(self.stats.items()):
            merged.setdefault((service, contract), []).append(stats)
        return [
            _contract(service, contract, both, now) for (service, contract), both in merged.items()
        ]


def _contract(service: str, contract: str, stats: list[_Stats], now: float) -> dict[str, object]:
    errors: dict[str, int] = {}
    for one in stats:
        for kind, count in one.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    since = int(now) - RATE_WINDOW
    window = [c for one in stats for s, c in one.seconds.items() if since < s <= int(now)]
    oldest = (now - LATENCY_WINDOW) * _NS
    latencies = sorted(took / _NS for one in stats for end, took in one.recent if end >= oldest)
    return {
        "service": service,
        "contract": contract,
        "calls": sum(one.calls for one in stats),
        "errors": errors,
        "in_flight": sum(one.in_flight for one in stats),
        "rate": sum(c[0] for c in window) / RATE_WINDOW,
        "error_rate": sum(c[1] for c in window) / RATE_WINDOW,
        "p50_ms": _percentile(latencies, 0.50),
        "p90_ms": _percentile(latencies, 0.90),
        "p99_ms": _percentile(latencies, 0.99),
    }


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _remote(service: str, transport: Any) -> dict[str, object]:
    """How one remote stands: its replicas and how many are ready (no addresses)."""
    states_of = getattr(transport, "replica_states", None)
    if callable(states_of):
        states = list(states_of())
    else:
        states = ["ready" if getattr(transport, "_connection", None) is not None else "idle"]
    ready = states.count("ready")
    if not states:
        state = "none"
    elif ready == len(states):
        state = "ready"
    else:
        state = "degraded" if ready else states[0]
    return {"service": service, "replicas": len(states), "ready": ready, "state": state}


RECORDER = Recorder()
_on = False
_exporter: otlp.Exporter | None = None
_sampler = tracing.Sampler()  # which new spans are exported (OTEL_TRACES_SAMPLER)
_SAMPLED = frozenset("13579bdf")  # a flags byte's second hex digit with the sampled bit
_time_ns = time.time_ns
_current, _bind, _unbind = context.current, context.bind, context.unbind
_new_trace_id, _new_span_id = tracing.new_trace_id, tracing.new_span_id
_pending = RECORDER.pending
_pending_append = _pending.append


def enabled() -> bool:
    """Whether calls are recorded in this process (see the module's docstring)."""
    return _on


def configure(
    *,
    metrics: bool,
    environ: Mapping[str, str] | None = None,
    name: str = "",
    workspace: str = "",
    group: str | None = None,
    build: str | None = None,
    services: Sequence[str] = (),
    remotes: Mapping[str, Any] | None = None,
) -> Observer | None:
    """Turn telemetry on or off for the node about to be wired; the seam's observer then
    (None while it is off).

    ``group`` and ``build`` default to what ``describe`` said. ``SetupError`` if the
    OTEL_* variables ask for an export that cannot be made, or name a sampler that
    cannot be used.
    """
    global _on, _exporter, _sampler
    group = group or RECORDER.process["group"]
    name = group or name
    build = build if build is not None else RECORDER.process["build"] or ""
    shutdown()
    otel = environ or {}  # the OTEL_* variables, as the settings read them
    if tracing.exporting(otel):
        from nanobuild.runtime import otlp  # only a process that exports loads its sender

        sampler = tracing.sampler(otel)  # refused before a thread starts
        _exporter, _sampler = otlp.exporter(name or workspace, otel, RECORDER.fold_soon), sampler
    else:
        _sampler = tracing.Sampler()
    _on = metrics or _exporter is not None
    faults.OBSERVED = _on  # its failure lines, with their ids, are this module's then
    RECORDER.reset()
    RECORDER.process.update(name=name or workspace, group=group, build=build, workspace=workspace)
    RECORDER.services = list(services)
    RECORDER.remotes = dict(remotes or {})
    return observer if _on else None


def describe(*, group: str | None = None, build: str = "") -> None:
    """Say which placement group this process runs and its build (the binary, before it
    wires its node): the process's name in spans, the page and ``nanobuild_build_info``."""
    RECORDER.process.update(group=group, build=build)


def shutdown() -> None:
    """Send the spans still batched for export, and stop exporting."""
    global _exporter
    RECORDER.fold()
    if _exporter is not None:
        _exporter.shutdown()
        _exporter = None


# -- the observer on the call seam


def _open(parent: str | None) -> tuple[str, str, str | None, str]:
    """A new span's trace id, span id, parent span id and flags: a child of ``parent``
    (a W3C ``traceparent``) when it is a valid one, else the first span of a new trace."""
    found = tracing.parse_traceparent(parent) if parent else None
    if found is None:  # the trace starts here
        trace_id = _new_trace_id()
        return trace_id, _new_span_id(), None, _sampler.root(trace_id)
    trace_id, parent_id, flags = found
    return trace_id, _new_span_id(), parent_id, _sampler.child(trace_id, flags)


def _kind(direction: str, placement: str) -> str:
    if direction == "inbound":
        return "server"
    return "client" if placement == "remote" else "internal"


class Watched:
    """Telemetry's watch on one seam (``observer`` makes it): the seam's run with each call
    recorded, counted, timed and made a span, once in each process it passes (see the
    module's docstring); ``arrived`` the same for a face that observes an inbound call
    inline. ``chain`` is the run of the seam's interceptors, which see this call's trace
    context as theirs."""

    __slots__ = ("chain", "contract", "placement", "service", "sites", "via")

    def __init__(self, seam: Seam, chain: Run | None) -> None:
        self.service, self.contract, self.placement = seam.service, seam.contract, seam.placement
        self.via = seam.via
        self.chain = chain
        # (direction, how an inbound call arrived) -> its site and stats, made at first use
        self.sites: dict[tuple[str, str | None], tuple[Site, _Stats]] = {}

    async def run(
        self, route: Route, request: object, direction: Direction, via: str | None = None
    ) -> object:
        where, stats = self.sites.get((direction, via)) or self._site(direction, via)
        call = Recording(where, stats, _current())
        error = None
        try:
            if self.chain is None:
                return await route(request)
            return await self.chain(route, request, direction, via)
        except BaseException as exc:
            error = exc
            raise
        finally:
            call.close(error)

    def arrived(self, via: str, given: context.Context) -> Recording:
        where, stats = self.sites.get(("inbound", via)) or self._site("inbound", via)
        return Recording(where, stats, given)

    def _site(self, direction: Direction, via: str | None) -> tuple[Site, _Stats]:
        kind = _kind(direction, self.placement)
        process = RECORDER.process["name"] or ""
        service, contract = self.service, self.contract
        where = Site.call(service, contract, kind, self.placement, via or self.via, process)
        stats = RECORDER.counted[where] = RECORDER.stats_of(service, contract, direction)
        RECORDER.loop = asyncio.get_running_loop()  # the loop a fold is asked of
        found = self.sites[direction, via] = (where, stats)
        return found


observer: Observer = Watched  # the seam's observer while telemetry is on


class Recording:
    """One call being recorded: its span's ids, bound as the call's trace context from now
    until ``close``, which keeps its record (see ``Recorder``). ``given`` is the context
    the call came with: its ``traceparent`` (if any) is the span's parent; a context one
    entry short of the limit is refused (``BadRequest``), as the callee could not take it."""

    __slots__ = (
        "flags",
        "parent_id",
        "span_id",
        "start",
        "stats",
        "token",
        "trace_id",
        "values",
        "where",
    )

    def __init__(self, where: Site, stats: _Stats, given: context.Context) -> None:
        trace_id, span_id, parent_id, flags = _open(given.get(TRACEPARENT))
        values = {**given, TRACEPARENT: f"00-{trace_id}-{span_id}-{flags}"}
        if len(values) > context.MAX_ENTRIES:
            context.check(values)  # this entry more is one too many: the caller is told
        self.where, self.stats, self.values = where, stats, values
        self.trace_id, self.span_id = trace_id, span_id
        self.parent_id, self.flags = parent_id, flags
        stats.in_flight += 1
        self.token = _bind(values)
        self.start = _time_ns()

    def close(self, error: BaseException | None) -> None:
        end = _time_ns()
        _unbind(self.token)
        self.stats.in_flight -= 1
        if error is None:
            outcome = "ok"
        else:
            outcome = error.kind if isinstance(error, NanoError) else "internal"
        values = self.values
        where, trace_id, span_id = self.where, self.trace_id, self.span_id
        _keep(
            (
                where,
                trace_id,
                span_id,
                self.parent_id,
                self.flags,
                self.start,
                end,
                outcome,
                values.get(REQUEST_ID),
                values.get(TRACESTATE),
                None,
                None,
            )
        )
        if error is not None:
            _failed(where, values, trace_id, span_id, outcome, error)


def _keep(record: Record) -> None:
    """A finished span, for ``RECORDER`` to fold in (every ``FOLD_EVERY``)."""
    _pending_append(record)
    if len(_pending) >= FOLD_EVERY:
        RECORDER.fold()


def _failed(
    where: Site,
    values: Mapping[str, str],
    trace_id: str,
    span_id: str,
    outcome: str,
    error: BaseException,
) -> None:
    """One line for a call that failed by the server's fault (a caller's mistake is no news)."""
    if not faults.server_fault(error):
        return
    request_id = values.get(REQUEST_ID)
    direction = "inbound" if where.kind == "server" else "outbound"
    log.warning(
        "call failed: %s.%s %s (%s, %s, via %s) request_id=%s trace_id=%s: %s",
        where.service,
        where.contract,
        outcome,
        direction,
        where.placement,
        where.via,
        request_id or "-",
        trace_id,
        _reason(error, outcome),
        extra={"request_id": request_id, "trace_id": trace_id, "span_id": span_id},
    )


def _reason(error: BaseException | None, outcome: str) -> str:
    """The error's own message, on one line (a message is the callee's text)."""
    if error is None:
        return outcome
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object on one line (``--log-format json``), with the
    request and trace ids of a failed call as fields of their own."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


LOG_FORMATS = ("text", "json")


# -- the HTTP edge: request ids and W3C trace context in


REQUEST_ID_HEADER = b"x-request-id"
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")


def request_id_of(given: bytes | None) -> str:
    """The caller's ``x-request-id`` when it is a sane one (up to 128 of ``[A-Za-z0-9._:-]``),
    else a new one: an id that lands in logs must not carry a log line of its own."""
    if given:
        text = given.decode("latin-1")
        if len(text) <= 128 and _ID_CHARS.issuperset(text):
            return text
    return tracing.new_trace_id()  # 32 random hex digits, as uuid4().hex at a tenth its cost


def door(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The context an HTTP request brings to the door, from its headers: its request id
    (from ``x-request-id``, see ``request_id_of``) and its W3C trace context
    (``traceparent``, ``tracestate``) when that is valid."""
    given = parent = state = None
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            given = value
        elif name == b"traceparent":
            parent = value
        elif name == b"tracestate":
            state = value
    values = {REQUEST_ID: request_id_of(given)}
    _trace_context(values, parent, state)
    return values


def answered(values: context.Context, status: int) -> tuple[bytes, bytes]:
    """Count an answer of ``status`` to a request the door gave ``values``; the header that
    returns its request id."""
    http = RECORDER.http
    http[status] = http.get(status, 0) + 1
    return REQUEST_ID_HEADER, values[REQUEST_ID].encode()


def answering(send: Any, values: context.Context) -> Any:
    """``send`` with ``answered`` applied to the answer it starts."""

    def sending(message: dict[str, Any]) -> Any:  # send's own awaitable: no frame more
        if message["type"] == "http.response.start":
            header = answered(values, message["status"])
            message = {**message, "headers": [*message.get("headers", ()), header]}
        return send(message)

    return sending


class Edge:
    """ASGI middleware: each HTTP request gets a request id (its ``x-request-id`` or a new
    one, returned in the answer's ``x-request-id``) and its W3C trace context, both put in
    the per-call context of the calls it makes. The HTTP face does the same for its
    contract calls itself (``door``, ``answered``), with no middleware between."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        values = {**_current(), **door(scope["headers"])}
        token = _bind(values)
        try:
            return await self.app(scope, receive, answering(send, values))
        finally:
            _unbind(token)


class AppSpans:
    """ASGI middleware for an adopted app: a server span per HTTP request into it, named
    ``METHOD route`` (the route's template when the app's router says it, else the path),
    with OpenTelemetry's HTTP attributes, a child of the trace context ``Edge`` bound; the
    app's own calls carry this span as their parent. Wrapped round the app only when
    telemetry is on."""

    def __init__(self, service: str, app: Any) -> None:
        self.service = service
        self.app = app
        self._routes: dict[Any, str] | None = None  # endpoint -> its route's template
        self._site: Site | None = None  # made at the first request: the process is named then

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        values = dict(context.current())
        trace_id, span_id, parent_id, flags = _open(values.get(TRACEPARENT))
        values[TRACEPARENT] = tracing.traceparent(trace_id, span_id, flags)
        status = 500  # unless the app answers

        def sending(message: dict[str, Any]) -> Any:  # send's own awaitable: no frame more
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        token = context.bind(values)
        start = time.time_ns()
        try:
            await self.app(scope, receive, sending)
        finally:
            context.unbind(token)
            ids = (trace_id, span_id, parent_id, flags)
            self._finish(scope, values, ids, status, start, time.time_ns())

    def _finish(
        self,
        scope: dict[str, Any],
        values: Mapping[str, str],
        ids: tuple[str, str, str | None, str],
        status: int,
        start: int,
        end: int,
    ) -> None:
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        route = self._route(scope)
        http: dict[str, str | int] = {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": scope.get("scheme", "http"),
            "http.response.status_code": status,
        }
        if isinstance(route, str):
            http["http.route"] = route
        trace_id, span_id, parent_id, flags = ids
        if self._site is None:
            self._site = Site.app(self.service, RECORDER.process["name"] or "")
        record: Record = (
            self._site,
            trace_id,
            span_id,
            parent_id,
            flags,
            start,
            end,
            "ok" if status < 500 else "internal",  # a 4xx is the caller's, not ours
            values.get(REQUEST_ID),
            values.get(TRACESTATE),
            f"{method} {route if isinstance(route, str) else path}",
            http,
        )
        _keep(record)

    def _route(self, scope: dict[str, Any]) -> str | None:
        """The template of the route that answered: FastAPI's router leaves the route in
        the scope, Starlette's its endpoint, looked up among the app's own routes."""
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return None
        if self._routes is None:
            routes = getattr(self.app, "routes", None) or ()
            self._routes = {
                r.endpoint: r.path
                for r in routes
                if isinstance(getattr(r, "path", None), str) and hasattr(r, "endpoint")
            }
        try:
            return self._routes.get(endpoint)
        except TypeError:  # an endpoint that cannot be hashed
            return None


def _trace_context(values: dict[str, str], parent: bytes | None, state: bytes | None) -> None:
    """Put a valid ``traceparent`` (and its ``tracestate``) in ``values``; ignore a bad one,
    as the W3C spec says: the trace then starts here."""
    if parent is None:
        return
    text = parent.decode("latin-1").strip().lower()
    if tracing.parse_traceparent(text) is None:
        return
    values[TRACEPARENT] = text
    if state is not None and len(state) <= 512:
        values[TRACESTATE] = state.decode("latin-1").strip()


# -- GET /metrics: Prometheus' text format (version 0.0.4)

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def prometheus(recorder: Recorder = RECORDER) -> bytes:
    """Every metric, in Prometheus' text exposition format."""
    recorder.fold()
    lines: list[str] = []
    _calls(lines, recorder)
    _durations(lines, recorder)
    _family(lines, "nanobuild_in_flight_calls", "gauge", "Calls started and not yet finished.")
    for (service, contract, direction), stats in sorted(recorder.stats.items()):
        labels = _labels(service=service, contract=contract, direction=direction)
        lines.append(f"nanobuild_in_flight_calls{labels} {stats.in_flight}")
    _http(lines, recorder)
    _remotes(lines, recorder)
    _family(lines, "process_start_time_seconds", "gauge", "Start time since unix epoch in seconds.")
    lines.append(f"process_start_time_seconds {recorder.started:.3f}")
    _family(lines, "nanobuild_build_info", "gauge", "The build this process runs; always 1.")
    info = recorder.process
    labels = _labels(
        workspace=info["workspace"] or "",
        build=info["build"] or "",
        version=__version__,
        group=info["group"] or "",
    )
    lines.append(f"nanobuild_build_info{labels} 1")
    return ("\n".join(lines) + "\n").encode()


def _calls(lines: list[str], recorder: Recorder) -> None:
    _family(lines, "nanobuild_calls_total", "counter", "Calls finished, by outcome (ok or a kind).")
    for (service, contract, direction), stats in sorted(recorder.stats.items()):
        for outcome, count in sorted(stats.outcomes.items()):
            labels = _labels(
                service=service, contract=contract, direction=direction, outcome=outcome
            )
            lines.append(f"nanobuild_calls_total{labels} {count}")


def _durations(lines: list[str], recorder: Recorder) -> None:
    name = "nanobuild_call_duration_seconds"
    _family(lines, name, "histogram", "How long calls took, as the call seam saw them.")
    for (service, contract, direction), stats in sorted(recorder.stats.items()):
        base = {"service": service, "contract": contract, "direction": direction}
        running = 0
        for bound, count in zip((*map(repr, BUCKETS), "+Inf"), stats.buckets, strict=True):
            running += count
            lines.append(f"{name}_bucket{_labels(**base, le=bound)} {running}")
        lines.append(f"{name}_sum{_labels(**base)} {stats.sum / _NS!r}")
        lines.append(f"{name}_count{_labels(**base)} {running}")


def _http(lines: list[str], recorder: Recorder) -> None:
    name = "nanobuild_http_requests_total"
    _family(lines, name, "counter", "HTTP requests answered at this process's face, by status.")
    for status, count in sorted(recorder.http.items()):
        lines.append(f"{name}{_labels(status=str(status))} {count}")


def _remotes(lines: list[str], recorder: Recorder) -> None:
    remotes = [_remote(name, t) for name, t in sorted(recorder.remotes.items())]
    for name, field, help_text in (
        ("nanobuild_remote_replicas", "replicas", "Processes known to run a remote service."),
        ("nanobuild_remote_ready_replicas", "ready", "Of those, the ones ready for calls."),
    ):
        _family(lines, name, "gauge", help_text)
        for one in remotes:
            lines.append(f"{name}{_labels(service=str(one['service']))} {one[field]}")


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _labels(**values: str) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in values.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
