"""The system benchmark's load generator: the mix of ``mix.py`` sent to one front door.

It runs in a process of its own, on one event loop (uvloop when installed: it is the
client, not a system under test), and speaks raw HTTP/1.1 over keep-alive connections
from a pool that opens one more whenever every open one is busy. Two ways to load:

- open loop: actions start on a fixed schedule, ``rate`` per second, whatever the
  system's answers do; an action's latency runs from its *scheduled* start to its last
  answer, so a slow answer is never hidden by sending later (no coordinated omission).
  Each user runs one action at a time, as one page does: an action scheduled while its
  user's previous one runs waits, and the wait counts;
- closed loop: ``users`` users run actions back to back; the completed actions per
  second are the system's saturation throughput.

Driven by ``system.py`` over its standard input, one JSON command a line, one JSON
answer a line. ``--serve-floor`` instead runs the floor server this client is measured
against: raw asyncio HTTP answering every request with a fixed small answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from mix import Action, Call, Shopper

MAX_CONNECTIONS = 512
REQUEST_TIMEOUT = 30.0  # seconds an answer may take before the request counts as failed
DRAIN_SECONDS = 20.0  # how long an open-loop run waits for late answers before it counts errors


def raw(call: Call) -> bytes:
    """``call`` as the bytes of an HTTP/1.1 request."""
    head = f"{call.method} {call.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if call.method == "GET":
        return (head + "\r\n").encode()
    length = len(call.body)
    head += f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    return head.encode() + call.body


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            answer = _parse(self.buffer)
            if answer is not None:
                self.waiter.set_result(answer[:2])
                del self.buffer[: answer[2]]
                self.usable = answer[3]

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self.waiter = waiter
        timer = loop.call_later(REQUEST_TIMEOUT, self._expire, waiter)
        self.transport.write(data)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        if not waiter.done():
            self.usable = False  # a late answer would be read as the next one's
            waiter.set_exception(TimeoutError(f"no answer in {REQUEST_TIMEOUT:g} s"))


def _parse(buffer: bytearray) -> tuple[int, bytes, int, bool] | None:
    """(status, body, bytes used, keep-alive) of a whole response in ``buffer``, or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    keep = b"\r\nconnection: close" not in head
    start = end + 4
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        stop = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : stop if stop >= 0 else len(head)])
        if len(buffer) < start + length:
            return None
        return status, bytes(buffer[start : start + length]), start + length, keep
    if b"\r\ntransfer-encoding: chunked" in head:
        return _chunked(buffer, start, status, keep)
    return status, b"", start, keep  # no body (204, 304)


def _chunked(
    buffer: bytearray, start: int, status: int, keep: bool
) -> tuple[int, bytes, int, bool] | None:
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        if len(buffer) < line_end + 2 + size + 2:
            return None
        body += buffer[line_end + 2 : line_end + 2 + size]
        at = line_end + 2 + size + 2
        if size == 0:
            return status, bytes(body), at, keep


class Pool:
    """Keep-alive connections to one port: an idle one if there is one, else a new one."""

    def __init__(self, port: int, limit: int = MAX_CONNECTIONS) -> None:
        self.port = port
        self.limit = limit
        self.idle: list[Connection] = []
        self.open = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.opened = 0  # connections made over the pool's life

    async def request(self, data: bytes) -> tuple[int, bytes]:
        conn = await self._acquire()
        try:
            answer = await conn.request(data)
        except BaseException:
            self._discard(conn)
            raise
        if conn.usable:
            self.idle.append(conn)
            self._wake()
        else:
            self._discard(conn)
        return answer

    async def _acquire(self) -> Connection:
        while not self.idle and self.open >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            await waiter
        if self.idle:
            return self.idle.pop()
        self.open += 1
        self.opened += 1
        try:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(Connection, "127.0.0.1", self.port)
        except BaseException:
            self.open -= 1
            self._wake()
            raise
        return conn

    def _discard(self, conn: Connection) -> None:
        self.open -= 1
        if conn.transport is not None:
            conn.transport.close()
        self._wake()

    def _wake(self) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


@dataclass
class Prepared:
    """An action as the bytes of its requests, phase by phase."""

    task: str
    user: str
    phases: list[list[bytes]]

    @classmethod
    def of(cls, action: Action) -> Prepared:
        return cls(action.task, action.user, [[raw(c) for c in phase] for phase in action.phases])

    @property
    def requests(self) -> int:
        return sum(len(phase) for phase in self.phases)


async def perform(pool: Pool, action: Prepared) -> bool:
    """Send ``action`` phase by phase; whether every answer was a 200."""
    ok = True
    for phase in action.phases:
        if len(phase) == 1:
            answers = [await pool.request(phase[0])]
        else:
            answers = await asyncio.gather(*(pool.request(data) for data in phase))
        ok = ok and all(status == 200 for status, _ in answers)
    return ok


@dataclass
class Tally:
    """What one run saw: latencies of the actions that succeeded, and the failures."""

    latencies: list[float] = field(default_factory=list)  # seconds
    by_task: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    requests: int = 0
    last_done: float = 0.0

    def record(self, task: str, latency: float, ok: bool, requests: int) -> None:
        self.requests += requests
        self.last_done = time.perf_counter()
        if ok:
            self.latencies.append(latency)
            self.by_task.setdefault(task, []).append(latency)
        else:
            self.errors += 1


class Session:
    """Users (one ``Shopper`` each) and a pool to one port, kept from warm-up to run."""

    def __init__(self, port: int, prefix: str, users: int, seed: int) -> None:
        rng = random.Random(seed)
        self.shoppers = [
            Shopper(f"{prefix}-u{i}", random.Random(rng.random())) for i in range(users)
        ]
        self.locks = [asyncio.Lock() for _ in range(users)]
        self.pool = Pool(port)
        self.turn = 0

    def schedule(self, count: int) -> list[tuple[int, Prepared]]:
        """The next ``count`` actions, users taking turns."""
        plan = []
        for _ in range(count):
            user = self.turn % len(self.shoppers)
            self.turn += 1
            plan.append((user, Prepared.of(self.shoppers[user].next())))
        return plan

    async def open_loop(self, rate: float, seconds: float) -> Tally:
        plan = self.schedule(max(1, round(rate * seconds)))
        tally = Tally()
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.005
        for i, (user, action) in enumerate(plan):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._scheduled(user, action, due, tally)))
        _, late = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        for task in late:
            task.cancel()
        tally.errors += len(late)
        tally.last_done = max(tally.last_done, start)
        tally.latencies.sort()
        return tally

    async def _scheduled(self, user: int, action: Prepared, due: float, tally: Tally) -> None:
        async with self.locks[user]:
            try:
                ok = await perform(self.pool, action)
            except (OSError, ConnectionError):
                ok = False
        tally.record(action.task, time.perf_counter() - due, ok, action.requests)

    async def closed_loop(self, seconds: float) -> tuple[Tally, float]:
        """Every user runs actions back to back; the tally of those done in time."""
        tally = Tally()
        start = time.perf_counter()
        stop = start + seconds

        async def user(index: int) -> None:
            while time.perf_counter() < stop:
                action = Prepared.of(self.shoppers[index].next())
                began = time.perf_counter()
                try:
                    ok = await perform(self.pool, action)
                except (OSError, ConnectionError):
                    ok = False
                if time.perf_counter() <= stop:
                    tally.record(action.task, time.perf_counter() - began, ok, action.requests)

        await asyncio.gather(*(user(i) for i in range(len(self.shoppers))))
        tally.latencies.sort()
        return tally, seconds


def summary(tally: Tally, elapsed: float) -> dict[str, Any]:
    """The run's figures; latencies in milliseconds, all of them (the caller pools rounds)."""
    done = len(tally.latencies)
    return {
        "actions": done,
        "errors": tally.errors,
        "requests": tally.requests,
        "elapsed": elapsed,
        "achieved": done / elapsed if elapsed > 0 else 0.0,
        "latencies_ms": [round(x * 1000, 4) for x in tally.latencies],
        "task_p50_ms": {
            task: round(sorted(values)[len(values) // 2] * 1000, 4)
            for task, values in sorted(tally.by_task.items())
        },
    }


class Driver:
    """Answers ``system.py``'s commands; sessions live from one command to the next."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "close":
            session = self.sessions.pop(command["session"])
            session.pool.close()
            return {"closed": True}
        session = self.sessions.get(command["session"]) or Session(
            command["port"], command["session"], command["users"], command["seed"]
        )
        self.sessions[command["session"]] = session
        cpu = os.times()
        begun = time.perf_counter()
        if op == "open":
            tally = await session.open_loop(command["rate"], command["seconds"])
            # a system that keeps up achieves the offered rate; one that falls behind
            # finishes late, and its achieved rate is what it finished in that time
            elapsed = max(command["seconds"], tally.last_done - begun)
        else:
            tally, elapsed = await session.closed_loop(command["seconds"])
        spent = os.times()
        result = summary(tally, elapsed)
        result["loadgen_cpu"] = (spent.user - cpu.user) + (spent.system - cpu.system)
        result["connections"] = session.pool.opened
        return result


def new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """uvloop's event loop when installed (the fastest client), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def drive(lines: Iterable[str]) -> None:
    loop, kind = new_loop()
    asyncio.set_event_loop(loop)
    driver = Driver()
    print(json.dumps({"ready": True, "loop": kind}), flush=True)
    for line in lines:
        if line.strip():
            print(json.dumps(loop.run_until_complete(driver.run(json.loads(line)))), flush=True)
    loop.close()


# -- the floor this client is measured against


class FloorServer(asyncio.Protocol):
    """Answers every whole request in the buffer with the same small JSON answer."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            marker = head.find(b"\r\ncontent-length:")
            length = 0
            if marker >= 0:
                stop = head.find(b"\r\n", marker + 2)
                length = int(head[marker + 17 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                break
            del self.buffer[: end + 4 + length]
            answers += 1
        if answers and self.transport is not None:
            self.transport.write(self.ANSWER * answers)


async def serve_floor() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening at http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        loop, _ = new_loop()
        loop.run_until_complete(serve_floor())
        return
    drive(sys.stdin)


if __name__ == "__main__":
    main()
