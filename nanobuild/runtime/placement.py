"""Placement: which services run in this process, and where the others are (DESIGN §8).

Fused, every service a binary carries runs here. Split (``serve --only a,b``), the
named services run here, serve each other in memory and serve the rest of the world
over HTTP and over the internal transport (``--internal-port``); every other service
they call must have an address: ``--remote name=tcp://host:port`` (or
``http://host:port``), or ``NANO_REMOTE_<NAME>`` in the environment. A process that
lacks one refuses to start and says which. Service code never knows the difference.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence

import msgspec

from nanobuild.runtime.spec import AppSpec

# Calls to a remote service may take this long unless told otherwise (kept in step
# with the transports' own default, which fused processes never need to import).
DEFAULT_TIMEOUT = 5.0


class PlacementError(ValueError):
    """The command line or environment does not make a placement that can run."""


class Placement(msgspec.Struct, frozen=True):
    """Where each service runs, as this process sees it."""

    local: tuple[str, ...]  # run here, in start-up order
    remotes: dict[str, str] = {}  # service -> address of the process that runs it
    timeouts: dict[str, float] = {}  # service -> seconds a call to it may take
    internal_port: int | None = None  # where local services answer other processes

    def timeout(self, service: str) -> float:
        return self.timeouts.get(service, DEFAULT_TIMEOUT)


def place(
    spec: AppSpec,
    *,
    only: Sequence[str] = (),
    remotes: Sequence[str] = (),
    timeouts: Sequence[str] = (),
    internal_port: int | None = None,
    environ: Mapping[str, str] = os.environ,
    complete: bool = True,
) -> Placement:
    """The placement the options and ``environ`` describe, or ``PlacementError`` saying why not.

    ``complete=False`` accepts a placement that could not start yet (a called service
    without an address, no secret): enough to show what is where.
    """
    packed = spec.packed or tuple(s.name for s in spec.services)
    local = tuple(name for name in packed if not only or name in only)
    for name in only:
        if name not in packed:
            raise PlacementError(f"--only names {name}, {_not_here(name, packed)}")
    addresses = _addresses(spec, local, remotes, environ)
    missing = [name for name in needed(spec, local) if name not in addresses]
    if missing and complete:
        raise PlacementError(_missing_message(local, missing))
    split = bool(addresses) or internal_port is not None
    if split and complete and not environ.get("NANO_SECRET"):
        raise PlacementError(
            "split services prove to each other that they belong together with NANO_SECRET: "
            "set it, to the same value, in every process"
        )
    return Placement(
        local=local,
        remotes=addresses,
        timeouts=_timeouts(spec, timeouts, environ),
        internal_port=internal_port,
    )


def needed(spec: AppSpec, local: Sequence[str]) -> list[str]:
    """The services that ``local`` services call and that do not run here, in spec order."""
    called = {dep for s in spec.services if s.name in local for dep in s.depends}
    return [s.name for s in spec.services if s.name in called and s.name not in local]


def _addresses(
    spec: AppSpec, local: Sequence[str], remotes: Sequence[str], environ: Mapping[str, str]
) -> dict[str, str]:
    names = [s.name for s in spec.services]
    found = {
        name: environ[_env(name)]
        for name in names
        if name not in local and environ.get(_env(name), "").strip()
    }
    for given in remotes:
        name, sep, address = given.partition("=")
        if not sep or not name or not address:
            raise PlacementError(f"--remote {given!r}: write NAME=tcp://HOST:PORT")
        if name not in names:
            raise PlacementError(f"--remote names {name}, {_not_here(name, names)}")
        if name in local:
            raise PlacementError(f"--remote {name}: {name} runs in this process")
        found[name] = address
    if not found:
        return found
    # only a split process pays for importing the transports
    from nanobuild.runtime.transports.base import AddressError, parse_address

    for name, address in found.items():
        try:
            parse_address(address)
        except AddressError as exc:
            raise PlacementError(f"the address of {name}: {exc}") from None
    return found


def _timeouts(spec: AppSpec, given: Sequence[str], environ: Mapping[str, str]) -> dict[str, float]:
    names = [s.name for s in spec.services]
    pairs = [(name, environ.get(f"NANO_TIMEOUT_{name.upper()}", "")) for name in names]
    pairs = [(name, text) for name, text in pairs if text.strip()]
    for item in given:
        name, _, text = item.partition("=")
        pairs.append((name, text))
    timeouts = {}
    for name, text in pairs:
        if name not in names:
            raise PlacementError(f"--timeout names {name}, {_not_here(name, names)}")
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise PlacementError(f"the timeout of {name} must be a positive number of seconds")
        timeouts[name] = seconds
    return timeouts


def _env(service: str) -> str:
    return f"NANO_REMOTE_{service.upper()}"


def _not_here(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"which is not a service of this binary{hint}"


def _missing_message(local: Sequence[str], missing: Sequence[str]) -> str:
    them = ", ".join(missing)
    flags = " ".join(f"--remote {name}=tcp://HOST:PORT" for name in missing)
    env = ", ".join(_env(name) for name in missing)
    return (
        f"cannot start {', '.join(local)}: {'they call' if len(local) > 1 else 'it calls'} "
        f"{them}, which {'do' if len(missing) > 1 else 'does'} not run here; "
        f"give {'each' if len(missing) > 1 else 'it'} an address: {flags} (or {env})"
    )
