"""Every ``NANO_*`` variable the runtime reads, parsed once into one ``Settings``.

Like shiv's ``Environment``: the entry point (the binary's command line, ``serve``)
calls ``Settings.from_env()`` once and passes the object down; nothing below it
reads the environment. A value that cannot be used is one ``SettingsError`` naming
the variable. ``VARIABLES`` is the table of them all, which the README shows and a
deployment generator reads, so no copy of a variable's name lives anywhere else.

The bootstrap is the exception that proves the rule: it runs before any package of
the binary can be imported, so it reads its one variable (``NANO_APP_CACHE``) itself,
with the standard library; the table still lists it.
"""

from __future__ import annotations

import math
import os
import secrets
import string
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import msgspec

from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.spec import (
    DISCOVERY_VARIABLE,
    SECRET_FILE_VARIABLE,
    SECRET_VARIABLE,
    pattern_problem,
)

DEFAULT_MAX_BODY = 1024 * 1024  # bytes
DEFAULT_TIMEOUT = 5.0  # seconds a call to a remote service may take, connecting included
DEFAULT_THREADS = 32  # worker threads for ``def`` handlers: enough for blocking I/O, bounded
# the servers' limits (``Limits``)
DEFAULT_HEADER_TIMEOUT = 10.0  # seconds: a slow mobile link sends a head in well under one
DEFAULT_BODY_TIMEOUT = 30.0  # seconds: NANO_MAX_BODY (1 MiB) at 35 KB/s
DEFAULT_KEEP_ALIVE = 5.0  # seconds idle between requests (uvicorn's own default)
DEFAULT_HANDSHAKE_TIMEOUT = 5.0  # seconds: two processes on one network need far less
DEFAULT_MAX_CONNECTIONS = 4096  # per listening port
DEFAULT_RESOLVE_EVERY = 5.0  # seconds between look-ups of a remote's host name (replicas)
DEFAULT_DRAIN_SECONDS = 10.0  # seconds a stopping process gives the calls it has taken

REMOTE_PREFIX = "NANO_REMOTE_"
TIMEOUT_PREFIX = "NANO_TIMEOUT_"
SERVER_STACKS = ("auto", "asyncio", "uvloop")  # NANO_SERVER_STACK's values
SECRET_BITS = 128  # the least NANO_SECRET may hold, by ``secret_bits``: past offline guessing


class Variable(NamedTuple):
    """One environment variable: its name, what it is, and its default."""

    name: str
    meaning: str
    default: str
    reader: str = "runtime"  # "runtime", or "bootstrap" (before any package is importable)


VARIABLES: tuple[Variable, ...] = (
    Variable(
        SECRET_VARIABLE,
        "the workspace secret: opens non-public contracts over HTTP "
        "(the `nano-secret` header), and split processes prove it to each other; "
        "at least 128 bits (see The secret; `secret` prints one)",
        "unset",
    ),
    Variable(
        SECRET_FILE_VARIABLE,
        f"a file holding the workspace secret, read at start instead of {SECRET_VARIABLE} "
        "(a Compose or Kubernetes secret mounted as a file); setting both is refused",
        "unset",
    ),
    Variable(
        DISCOVERY_VARIABLE,
        "where `serve --group` finds the other placement groups: a pattern such as "
        "`tcp://{group}:{port}` (in place of nano.toml's `deploy.discovery`)",
        "`deploy.discovery`",
    ),
    Variable(
        f"{REMOTE_PREFIX}<SERVICE>",
        "where a service that does not run here is: `tcp://host:port` or "
        "`http://host:port` (as `--remote`)",
        "unset",
    ),
    Variable(
        f"{TIMEOUT_PREFIX}<SERVICE>",
        "seconds a call to that remote service may take (as `--timeout`)",
        f"{DEFAULT_TIMEOUT:g}",
    ),
    Variable("NANO_MAX_BODY", "the largest HTTP request body, in bytes", str(DEFAULT_MAX_BODY)),
    Variable(
        "NANO_STRICT",
        "`1`: every in-memory call crosses the wire encoding, as if split",
        "0",
    ),
    Variable(
        "NANO_INTERCEPTORS",
        "interceptors to install, `module:name` separated by commas",
        "none",
    ),
    Variable(
        "NANO_METRICS",
        "`1`: record every call (counts, errors, latency, traces) for `/metrics` and the "
        "page; `0`: record nothing, nothing on the call seam (see Observing)",
        "0 (`nanobuild serve`: 1)",
    ),
    Variable(
        "NANO_SERVER_STACK",
        "the server's event loop and HTTP parser: `uvloop` (uvloop and httptools), "
        "`asyncio` (asyncio and h11), or `auto`: each of uvloop and httptools where installed",
        "auto",
    ),
    Variable(
        "NANO_THREADS",
        "worker threads that run sync (`def`) handlers, so that one that blocks never "
        "stalls the event loop",
        str(DEFAULT_THREADS),
    ),
    # the servers' limits (``Limits``): what one peer may hold, and for how long
    Variable(
        "NANO_HEADER_TIMEOUT",
        "seconds a connection to the HTTP face has to send a request's head (from its "
        "first byte, or from the connection's opening): past it the connection is closed",
        f"{DEFAULT_HEADER_TIMEOUT:g}",
    ),
    Variable(
        "NANO_BODY_TIMEOUT",
        "seconds a request's body has to arrive in full after its head: past it the "
        "answer is 408 and the connection is closed",
        f"{DEFAULT_BODY_TIMEOUT:g}",
    ),
    Variable(
        "NANO_KEEP_ALIVE",
        "seconds an HTTP connection may sit idle between requests before it is closed",
        f"{DEFAULT_KEEP_ALIVE:g}",
    ),
    Variable(
        "NANO_HANDSHAKE_TIMEOUT",
        "seconds a connection to the internal TCP port has to complete its handshake",
        f"{DEFAULT_HANDSHAKE_TIMEOUT:g}",
    ),
    Variable(
        "NANO_MAX_CONNECTIONS",
        "the most connections each listening port keeps open; past it a connection still "
        "sending its first request head is closed to make room, else the newcomer is refused",
        str(DEFAULT_MAX_CONNECTIONS),
    ),
    Variable(
        "NANO_RESOLVE_EVERY",
        "seconds between look-ups of a `tcp://` remote's host name: each address it "
        "resolves to is a replica, adopted or retired as the name's addresses change",
        f"{DEFAULT_RESOLVE_EVERY:g}",
    ),
    Variable(
        "NANO_DRAIN_SECONDS",
        "seconds a process stopping on SIGTERM gives the calls it has already taken "
        "(HTTP and TCP) before it exits; new ones go elsewhere",
        f"{DEFAULT_DRAIN_SECONDS:g}",
    ),
    Variable(
        "NANO_DATA_DIR",
        "the folder under which each service gets its writable data folder, "
        "`<NANO_DATA_DIR>/<service>` (`data_dir()`), made on first use",
        "`<NANO_APP_CACHE>/<app>-data`",
    ),
    Variable(
        "NANO_APP_CACHE",
        "where the binary unpacks itself",
        "`$XDG_CACHE_HOME/nanobuild/apps`",
        reader="bootstrap",
    ),
)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def remote_variable(service: str) -> str:
    """The variable that gives the address of ``service``: ``NANO_REMOTE_CATALOG``."""
    return f"{REMOTE_PREFIX}{service.upper()}"


def timeout_variable(service: str) -> str:
    """The variable that bounds calls to ``service``: ``NANO_TIMEOUT_CATALOG``."""
    return f"{TIMEOUT_PREFIX}{service.upper()}"


# -- the servers' limits: every peer gets a deadline and a place in a bounded set


class Limits(msgspec.Struct, frozen=True):
    """What a peer of the HTTP face or of the internal TCP port may take: time for its
    request head, its body and its handshake, idle time, and a place among at most
    ``max_connections`` (per listening port)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    keep_alive: float = DEFAULT_KEEP_ALIVE
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS


def _limits(environ: Mapping[str, str]) -> Limits:
    return Limits(
        header_timeout=_seconds(environ, "NANO_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT),
        body_timeout=_seconds(environ, "NANO_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT),
        keep_alive=_seconds(environ, "NANO_KEEP_ALIVE", DEFAULT_KEEP_ALIVE),
        handshake_timeout=_seconds(environ, "NANO_HANDSHAKE_TIMEOUT", DEFAULT_HANDSHAKE_TIMEOUT),
        max_connections=_positive_int(
            environ, "NANO_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, "connections"
        ),
    )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    return seconds(text, name) if text else default


class Settings(msgspec.Struct, frozen=True):
    """What the runtime takes from its environment; ``from_env`` reads it."""

    secret: str | None = None  # never empty: an empty secret is no secret
    max_body: int = DEFAULT_MAX_BODY
    strict: bool = False
    remotes: dict[str, str] = {}  # NANO_REMOTE_<SERVICE>: by the upper-case service name
    timeouts: dict[str, float] = {}  # NANO_TIMEOUT_<SERVICE>: likewise
    interceptors: tuple[str, ...] = ()  # module:name of each, in order
    metrics: bool = False  # NANO_METRICS: telemetry records every call
    otel: dict[str, str] = {}  # the OTEL_* variables: OpenTelemetry's own, for export
    server_stack: str = "auto"  # one of SERVER_STACKS; the server resolves "auto"
    threads: int = DEFAULT_THREADS  # NANO_THREADS: the pool ``def`` handlers run on
    data_dir: str | None = None  # NANO_DATA_DIR; None: beside the app cache (``data``)
    limits: Limits = Limits()  # NANO_HEADER_TIMEOUT and the other limits of the servers
    discovery: str | None = None  # NANO_DISCOVERY; None: the build's ``deploy.discovery``
    resolve_every: float = DEFAULT_RESOLVE_EVERY  # NANO_RESOLVE_EVERY: replicas' look-ups
    drain_seconds: float = DEFAULT_DRAIN_SECONDS  # NANO_DRAIN_SECONDS: the bound of a drain

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings ``environ`` gives; ``SettingsError`` naming a variable it cannot use."""
        return cls(
            secret=_secret_of(environ),
            max_body=_positive_int(environ, "NANO_MAX_BODY", DEFAULT_MAX_BODY),
            strict=_flag(environ, "NANO_STRICT"),
            remotes={
                name[len(REMOTE_PREFIX) :]: value.strip()
                for name, value in environ.items()
                if name.startswith(REMOTE_PREFIX) and value.strip()
            },
            timeouts={
                name[len(TIMEOUT_PREFIX) :]: seconds(value, name)
                for name, value in environ.items()
                if name.startswith(TIMEOUT_PREFIX) and value.strip()
            },
            interceptors=_targets(environ, "NANO_INTERCEPTORS"),
            metrics=_flag(environ, "NANO_METRICS"),
            otel={name: value for name, value in environ.items() if name.startswith("OTEL_")},
            server_stack=_choice(environ, "NANO_SERVER_STACK", SERVER_STACKS),
            threads=_positive_int(environ, "NANO_THREADS", DEFAULT_THREADS, "threads"),
            data_dir=_folder(environ, "NANO_DATA_DIR"),
            limits=_limits(environ),
            discovery=_pattern(environ, DISCOVERY_VARIABLE),
            resolve_every=_seconds(environ, "NANO_RESOLVE_EVERY", DEFAULT_RESOLVE_EVERY),
            drain_seconds=_seconds(environ, "NANO_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS),
        )

    def remote(self, service: str) -> str | None:
        """The address ``NANO_REMOTE_<SERVICE>`` gives, if any."""
        return self.remotes.get(service.upper())

    def timeout(self, service: str) -> float | None:
        """The seconds ``NANO_TIMEOUT_<SERVICE>`` gives, if any."""
        return self.timeouts.get(service.upper())


def export(variables: Mapping[str, str]) -> None:
    """Set ``variables`` in this process's environment, for code that reads its settings
    there (an adopted app's base URLs, set before its modules are imported). The one
    place the runtime writes the environment, as ``Settings.from_env`` is where it reads."""
    os.environ.update(variables)


def saved(names: Iterable[str]) -> dict[str, str | None]:
    """The environment's values of ``names`` (``None``: unset), for ``restore``."""
    return {name: os.environ.get(name) for name in names}


def restore(values: Mapping[str, str | None]) -> None:
    """Put ``values`` (what ``saved`` found) back in the environment, after an ``export``."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def seconds(text: str, what: str) -> float:
    """``text`` as a positive number of seconds; ``SettingsError`` naming ``what`` if not."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise SettingsError(f"{what} must be a positive number of seconds, not {text!r}")
    return value


def new_secret() -> str:
    """A strong secret: 32 random bytes as 43 URL-safe characters (256 bits)."""
    return secrets.token_urlsafe(32)


# the alphabets a secret is estimated over, smallest first: its characters' smallest
_ALPHABETS = (
    ("digits", string.digits),
    ("hex digits", "0123456789abcdef"),
    ("hex digits", "0123456789ABCDEF"),
    ("lowercase letters", string.ascii_lowercase),
    ("uppercase letters", string.ascii_uppercase),
    ("lowercase letters and digits", string.ascii_lowercase + string.digits),
    ("uppercase letters and digits", string.ascii_uppercase + string.digits),
    ("letters", string.ascii_letters),
    ("letters and digits", string.ascii_letters + string.digits),
    ("URL-safe characters", string.ascii_letters + string.digits + "-_"),
    ("base64 characters", string.ascii_letters + string.digits + "+/="),
    ("printable characters", string.ascii_letters + string.digits + string.punctuation + " "),
)


def secret_bits(secret: str) -> tuple[float, str]:
    """An estimate of the bits ``secret`` holds, and the alphabet it is counted over.

    Its length times the bits of the smallest alphabet its characters fit: what a
    guesser who knows that alphabet must search if the characters were random. It
    measures short secrets and small alphabets, not randomness: "sunshine" is 38
    bits, and 32 hex digits are 128; a word repeated to length would pass.
    """
    chars = set(secret)
    for name, alphabet in _ALPHABETS:
        if chars <= set(alphabet):
            return len(secret) * math.log2(len(alphabet)), name
    return len(secret) * math.log2(len(_ALPHABETS[-1][1])), "any characters"


def check_secret(secret: str, what: str) -> str:
    """``secret``, if it holds ``SECRET_BITS``; ``SettingsError`` naming ``what`` if not.

    The message never shows the secret: it may be the real one, mistyped.
    """
    bits, alphabet = secret_bits(secret)
    if bits < SECRET_BITS:
        raise SettingsError(
            f"{what} is too weak: {len(secret)} characters of {alphabet} hold about "
            f"{bits:.0f} bits, and at least {SECRET_BITS} are wanted (22 random URL-safe "
            "characters, or 32 hex digits); `nanobuild secret` or `python <app>.pyz secret` "
            "prints a strong one"
        )
    return secret


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    # an empty secret would make an empty header a valid credential: treat it as unset
    text = environ.get(name)
    return check_secret(text, name) if text else None


def _secret_of(environ: Mapping[str, str]) -> str | None:
    """NANO_SECRET, or the text of the file NANO_SECRET_FILE names (a secret that
    containers mount as a file, kept out of the environment that ``ps e`` shows)."""
    path = environ.get(SECRET_FILE_VARIABLE, "").strip()
    if not path:
        return _secret(environ, SECRET_VARIABLE)
    if environ.get(SECRET_VARIABLE):
        raise SettingsError(
            f"both {SECRET_VARIABLE} and {SECRET_FILE_VARIABLE} are set: set one of them"
        )
    what = f"{SECRET_FILE_VARIABLE}={path!r}"
    try:
        if not os.path.isfile(path):  # a FIFO or a folder would block or fail the read
            raise SettingsError(f"{what} names no file")
        with open(path, encoding="utf-8") as file:
            text = file.read(4096).strip()  # a secret is short; `secret > file` adds a newline
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"{what} cannot be read: {reason}") from None
    if not text:
        raise SettingsError(f"{what} is empty: write the secret into it")
    return check_secret(text, f"the secret in {what}")


def _pattern(environ: Mapping[str, str], name: str) -> str | None:
    """A discovery pattern (``spec.pattern_problem`` judges it), or None when unset."""
    text = environ.get(name, "").strip()
    if not text:
        return None
    why = pattern_problem(text)
    if why:
        raise SettingsError(f"{name}={text!r} {why}")
    return text


def _positive_int(environ: Mapping[str, str], name: str, default: int, unit: str = "bytes") -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingsError(f"{name} must be a positive number of {unit}, not {text!r}")
    return value


def _folder(environ: Mapping[str, str], name: str) -> str | None:
    """An absolute folder path (``~`` expanded), or None when unset or blank."""
    text = environ.get(name, "").strip()
    if not text:
        return None
    path = os.path.expanduser(text)
    if not os.path.isabs(path):
        # a relative folder would move with the working directory of each start
        raise SettingsError(f"{name} must be an absolute path, not {text!r}")
    return path


def _flag(environ: Mapping[str, str], name: str) -> bool:
    text = environ.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{name} must be 1 or 0, not {environ[name]!r}")


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """The value of ``name`` among ``choices`` (case aside); unset or blank is the first."""
    text = environ.get(name, "").strip().lower()
    if not text:
        return choices[0]
    if text not in choices:
        options = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise SettingsError(f"{name} must be {options}, not {environ[name]!r}")
    return text


def _targets(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    targets = tuple(t.strip() for t in environ.get(name, "").split(",") if t.strip())
    for target in targets:
        module, sep, attribute = target.partition(":")
        if not (sep and module and attribute.isidentifier()):
            raise SettingsError(f"{name}: {target!r} is not module:name")
    return targets
