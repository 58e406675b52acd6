"""Serve a workspace over HTTP: wire its services, build the app, run uvicorn.

``run`` is what ``nanobuild serve`` and the bundled binary call. It returns an exit
code instead of exiting, so its caller decides what the process does.
"""

from __future__ import annotations

import copy
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
import uvicorn.config

from nanobuild.runtime.app import App, Settings, SettingsError, build_app
from nanobuild.runtime.wiring import AppSpec, WiringError, wire

# exit codes, as DESIGN §5 uses them
OK = 0
FAILED = 1  # the services could not be wired or started, or the port could not be bound
BAD_INPUT = 2  # a setting (environment variable) has a value that cannot be used


def run(
    spec: AppSpec,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    access_log: bool = False,
    max_body: int | None = None,
) -> int:
    """Serve ``spec`` until SIGINT or SIGTERM; the exit code for the process.

    ``max_body`` (bytes) overrides NANO_MAX_BODY; NANO_SECRET opens the contracts
    that are not public. Problems are reported in one line, never a traceback.
    """
    try:
        settings = Settings.from_env(max_body=max_body)
        node = wire(spec)
    except SettingsError as exc:
        return _complain(str(exc), BAD_INPUT)
    except WiringError as exc:
        return _complain(f"cannot wire {spec.name}: {exc}", FAILED)
    app = build_app(node, settings)
    server = _Server(spec.name, _config(app, host, port, access_log=access_log))
    with _quiet_after_signals():
        try:
            server.run()
        except SystemExit:  # uvicorn's way out when start-up fails or the port is taken
            return FAILED
    return OK if server.started else FAILED


def _config(app: App, host: str, port: int, *, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=access_log,
        log_level="info",
        log_config=log_config(),
    )


def log_config() -> dict[str, Any]:
    """uvicorn's logging, extended to nanobuild's and the services' own loggers."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # the root logger catches nanobuild.http (tracebacks of 500s) and every
    # service's logging.getLogger(__name__); uvicorn's loggers do not propagate
    config["root"] = {"handlers": ["default"], "level": "INFO"}
    return config


class _Server(uvicorn.Server):
    """uvicorn's server, saying where it serves once it really does."""

    def __init__(self, name: str, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.name = name

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]  # the real port, if 0
            print(f"nanobuild: serving {self.name} at http://{_host(host)}:{port}", flush=True)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextmanager
def _quiet_after_signals() -> Iterator[None]:
    """Let SIGINT and SIGTERM end the process through a clean shutdown, exit code 0.

    uvicorn catches both signals, shuts down gracefully, then raises the signal again
    for the handler that was there before it. With Python's defaults that second
    delivery would kill the process (SIGTERM) or raise KeyboardInterrupt (SIGINT)
    after the shutdown is done; the handler installed here lets it pass.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals belong to the main thread; uvicorn skips them here too
        return
    previous = {sig: signal.signal(sig, _served) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _served(signum: int, frame: FrameType | None) -> None:
    """The signal already stopped the server; nothing is left to do."""


def _complain(message: str, code: int) -> int:
    print(f"nanobuild: {message}", file=sys.stderr)
    return code
