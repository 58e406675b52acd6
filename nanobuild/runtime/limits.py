"""What every server of the runtime keeps to, whoever connects: a bounded set of
connections per listening port, and log lines about hostile peers in bursts.

A peer that floods a port (thousands of connections, each holding half a request)
must cost neither a log line per connection nor the process's file descriptors.
``Gate`` holds one port's connections, at most ``cap``; ``Burst`` logs the first of a
burst of like events at once and, once the burst is over, how many there were;
``Bursts`` does the same for the records of a logger that would otherwise repeat
per peer (uvicorn's "Invalid HTTP request received.", the TCP server's refusals);
``quiet_accept_errors`` turns asyncio's traceback per failed ``accept()`` (out of
file descriptors: EMFILE) into such a burst; ``fit_file_limit`` raises the process's
own open-file limit so that the caps are reached before the descriptors run out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import time
from collections.abc import Iterable
from typing import Any, Protocol

log = logging.getLogger("nanobuild.limits")

QUIET = 10.0  # seconds without another like event that end a burst
RESERVED_FILES = 256  # descriptors kept for everything but connections: modules, logs, data
PORTS = 2  # listening ports the caps are fitted for: the HTTP face and the internal one
# asyncio's message for a failed accept() (selector_events: EMFILE, ENFILE, ENOBUFS, ENOMEM)
ACCEPT_FAILED = "socket.accept() out of system resource"
OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
ACCEPT_PAUSE = 0.9  # seconds: under asyncio's own pause after such a failure (1 s)


class Burst:
    """One log line for the first of a burst of like events, one when it is over.

    A burst is over once ``quiet`` seconds pass without another event; its closing
    line says how many there were and over how long (there is none for a lone one).
    """

    def __init__(self, logger: logging.Logger, what: str, quiet: float = QUIET) -> None:
        self.logger = logger
        self.what = what
        self.quiet = quiet
        self.count = 0  # events in the burst under way
        self.first = self.last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, detail: str) -> None:
        """Note one event; the first of a burst is logged with ``detail``."""
        if self.admit():
            self.logger.warning("%s: %s (more are counted, not logged)", self.what, detail)

    def admit(self) -> bool:
        """Count one event; whether it is the first of a burst (the one to log)."""
        now = time.monotonic()
        if self.count and now - self.last >= self.quiet:
            self._over()  # no loop timer closed the last one
        self.last = now
        self.count += 1
        if self.count > 1:
            return False
        self.first = now
        self._watch(self.quiet)
        return True

    def _watch(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # off the loop: the next event closes the burst instead
            return
        self._timer = loop.call_later(delay, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self.count:
            return
        idle = time.monotonic() - self.last
        if idle >= self.quiet:
            self._over()
        else:
            self._watch(self.quiet - idle)

    def _over(self) -> None:
        count, span = self.count, self.last - self.first
        self.count = 0
        if count > 1:
            self._closing_line(count, span)

    def _closing_line(self, count: int, span: float) -> None:
        self.logger.warning("%s: %d in all over %.1f s", self.what, count, span)


class Bursts(logging.Filter):
    """A filter that lets a logger's records through once per burst of each message.

    A record whose unformatted message (``record.msg``) is one of ``messages`` (all of
    them, for ``messages=None``) is let through if it is the first of a burst of that
    message, and counted if not; the others pass untouched.
    """

    def __init__(self, messages: Iterable[str] | None = None, quiet: float = QUIET) -> None:
        super().__init__()
        self.messages = None if messages is None else frozenset(messages)
        self.quiet = quiet
        self.bursts: dict[str, Burst] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.msg
        if not isinstance(key, str) or key == _CLOSING or record.levelno < logging.WARNING:
            return True
        if self.messages is not None and key not in self.messages:
            return True
        burst = self.bursts.get(key)
        if burst is None:
            what = f"more like {record.getMessage()!r}"
            burst = self.bursts[key] = _Closing(logging.getLogger(record.name), what, self.quiet)
        return burst.admit()


_CLOSING = "%s (counted, not logged): %d in all over %.1f s"


class _Closing(Burst):
    """A ``Bursts`` burst: the first record passes as it is; the closing line is its own."""

    def _closing_line(self, count: int, span: float) -> None:
        self.logger.warning(_CLOSING, self.what, count - 1, span)  # the first was let through


def filter_bursts(logger: str, messages: Iterable[str] | None = None) -> None:
    """Give ``logger`` a ``Bursts`` filter (once: a second call changes nothing)."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, Bursts) for f in target.filters):
        target.addFilter(Bursts(messages))


class Member(Protocol):
    """A connection a ``Gate`` holds: it can be told to go."""

    def evict(self) -> None:
        """Close at once: the gate needs the place for a newcomer."""


class Gate:
    """The connections of one listening port: at most ``cap`` open at a time.

    ``admit`` takes a newcomer: at once below the cap; at the cap, in the place of
    the connection that has been ``waiting`` longest (it has not sent a whole request
    head, or handshake: a slow peer, a slowloris) or, if none waits, of the one
    ``idle`` longest (kept alive after a response: closing it is what its keep-alive
    timeout would do), which is evicted. A member ``busy`` with a request is never
    evicted; if every one is, the newcomer is not admitted (the caller refuses it).
    Evictions and refusals are logged in bursts.
    """

    def __init__(self, cap: int, where: str) -> None:
        self.cap = cap
        self.where = where
        self.members: set[Member] = set()
        # each in the order its members came into it: the first gives way first
        self.waiting: dict[Member, None] = {}
        self.idle: dict[Member, None] = {}
        self.evictions = Burst(log, f"{where}: closed connections to make room")
        self.refusals = Burst(log, f"{where}: refused connections")

    def admit(self, member: Member) -> bool:
        """Take ``member`` (waiting); whether there was room for it."""
        if len(self.members) >= self.cap and not self._make_room():
            self.refusals(f"all {self.cap} places are busy with requests (NANO_MAX_CONNECTIONS)")
            return False
        self.members.add(member)
        self.waiting[member] = None
        return True

    def _make_room(self) -> bool:
        for kind, members in (("waiting for a request head", self.waiting), ("idle", self.idle)):
            if members:
                oldest = next(iter(members))
                self.leave(oldest)
                self.evictions(
                    f"{self.cap} were open (NANO_MAX_CONNECTIONS): the one {kind} longest"
                )
                oldest.evict()
                return True
        return False

    def wait(self, member: Member) -> None:
        """``member`` waits again (the first bytes of a new head): it may be evicted."""
        if member in self.members:
            self.idle.pop(member, None)
            self.waiting[member] = None

    def rest(self, member: Member) -> None:
        """``member`` is idle (kept alive after a response): it goes if no one waits."""
        if member in self.members:
            self.waiting.pop(member, None)
            self.idle[member] = None

    def busy(self, member: Member) -> None:
        """``member`` has work under way (a whole request head, a handshake): it stays."""
        self.waiting.pop(member, None)
        self.idle.pop(member, None)

    def leave(self, member: Member) -> None:
        """``member`` closed: its place is free."""
        self.members.discard(member)
        self.busy(member)


def fit_file_limit(cap: int) -> int:
    """Raise this process's soft open-file limit toward what ``cap`` connections on
    each of ``PORTS`` ports need (up to the hard limit); the cap that fits in it.

    A process at its limit fails every ``accept()``, its own files too; a cap it can
    keep lets the gate evict or refuse first.
    """
    if sys.platform == "win32":  # no such limit to fit
        return cap
    import resource

    wanted = cap * PORTS + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (OSError, ValueError):
            raised = soft
        soft = raised
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return cap
    return max(16, (soft - RESERVED_FILES) // PORTS)


class _Listener(socket.socket):
    """A listening socket whose ``accept()``, once out of resources, fails once per
    pause and in between says only that nothing is waiting.

    asyncio's selector loop, on such a failure, pauses accepting for a second, but
    first keeps calling ``accept()`` up to the backlog (2,048 times under uvicorn), and
    each failure schedules one more resumption: thousands of errors a second, growing.
    uvloop never calls this (libuv accepts on its own, and closes what it cannot keep).
    """

    _resume = 0.0  # monotonic time before which accept() does not try again

    def accept(self) -> tuple[socket.socket, Any]:
        now = time.monotonic()
        if now < self._resume:
            raise BlockingIOError(errno.EAGAIN, "accepting is paused")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                self._resume = now + ACCEPT_PAUSE
            raise


def guarded_listener(sock: socket.socket) -> socket.socket:
    """``sock``, bound, as a socket whose failed accepts come once per pause."""
    listener = _Listener(fileno=sock.detach())
    listener.set_inheritable(False)  # a child process must not hold the port open
    return listener


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log the loop's failed ``accept()``s (asyncio's: a traceback per failure) as one
    burst per listening socket; every other error goes where it went before."""
    previous = loop.get_exception_handler()
    bursts: dict[str, Burst] = {}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if context.get("message") == ACCEPT_FAILED and isinstance(error, OSError):
            where = _socket_name(context.get("socket"))
            burst = bursts.get(where)
            if burst is None:
                burst = bursts[where] = Burst(log, f"cannot accept connections on {where}")
            burst(f"{error.strerror or error} (open files: {_file_limit()}); they wait")
        elif isinstance(error, ValueError) and _retries_accept(context):
            return  # a resumption of accept() on a socket closed since: nothing to resume
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _retries_accept(context: dict[str, Any]) -> bool:
    callback = getattr(context.get("handle"), "_callback", None)
    return getattr(callback, "__name__", "") == "_start_serving"


def _socket_name(sock: Any) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except (AttributeError, OSError, TypeError, ValueError):
        return "a listening socket"
    return f"{host}:{port}"


def _file_limit() -> str:
    if sys.platform == "win32":
        return "no limit known"
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return "no limit" if soft == resource.RLIM_INFINITY else f"at most {soft}"
