"""Placement: which services run in this process, and where the others are.

Fused, every service a binary carries runs here. Split (``serve --only a,b``), the
named services run here, serve each other in memory and serve the rest of the world
over HTTP and over the internal transport (``--internal-port``); every other service
they call must have an address: ``--remote name=tcp://host:port`` (or
``http://host:port``), or ``NANO_REMOTE_<NAME>`` in the environment. A process that
lacks one refuses to start and says which. Service code never knows the difference.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import msgspec

from nanobuild.runtime.addresses import AddressError, parse_address
from nanobuild.runtime.errors import PlacementError, SettingsError
from nanobuild.runtime.settings import (
    DEFAULT_TIMEOUT,
    Settings,
    remote_variable,
    seconds,
)
from nanobuild.runtime.spec import AppSpec


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
    settings: Settings | None = None,
    complete: bool = True,
) -> Placement:
    """The placement the options and ``settings`` describe, or ``PlacementError`` saying why not.

    ``complete=False`` accepts a placement that could not start yet (a called service
    without an address, no secret): enough to show what is where.
    """
    settings = Settings.from_env() if settings is None else settings
    packed = spec.carried
    local = tuple(name for name in packed if not only or name in only)
    for name in only:
        if name not in packed:
            raise PlacementError(f"--only names {name}, {_not_here(name, packed)}")
    addresses = _addresses(spec, local, remotes, settings)
    missing = [name for name in needed(spec, local) if name not in addresses]
    if missing and complete:
        raise PlacementError(_missing_message(local, missing))
    split = bool(addresses) or internal_port is not None
    if split and complete and not settings.secret:
        raise PlacementError(
            "split services prove to each other that they belong together with NANO_SECRET: "
            "set it, to the same value, in every process"
        )
    return Placement(
        local=local,
        remotes=addresses,
        timeouts=_timeouts(spec, timeouts, settings),
        internal_port=internal_port,
    )


def needed(spec: AppSpec, local: Sequence[str]) -> list[str]:
    """The services that ``local`` services call and that do not run here, in spec order."""
    called = {dep for s in spec.services if s.name in local for dep in s.depends}
    return [s.name for s in spec.services if s.name in called and s.name not in local]


def _addresses(
    spec: AppSpec, local: Sequence[str], remotes: Sequence[str], settings: Settings
) -> dict[str, str]:
    names = [s.name for s in spec.services]
    found = {
        name: address
        for name in names
        if name not in local and (address := settings.remote(name)) is not None
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
    for name, address in found.items():
        try:
            parse_address(address)
        except AddressError as exc:
            raise PlacementError(f"the address of {name}: {exc}") from None
    return found


def _timeouts(spec: AppSpec, given: Sequence[str], settings: Settings) -> dict[str, float]:
    names = [s.name for s in spec.services]
    timeouts = {name: t for name in names if (t := settings.timeout(name)) is not None}
    for item in given:
        name, _, text = item.partition("=")
        if name not in names:
            raise PlacementError(f"--timeout names {name}, {_not_here(name, names)}")
        try:
            timeouts[name] = seconds(text, f"--timeout {name}")
        except SettingsError as exc:
            raise PlacementError(str(exc)) from None
    return timeouts


def _not_here(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"which is not a service of this binary{hint}"


def _missing_message(local: Sequence[str], missing: Sequence[str]) -> str:
    them = ", ".join(missing)
    flags = " ".join(f"--remote {name}=tcp://HOST:PORT" for name in missing)
    env = ", ".join(remote_variable(name) for name in missing)
    return (
        f"cannot start {', '.join(local)}: {'they call' if len(local) > 1 else 'it calls'} "
        f"{them}, which {'do' if len(missing) > 1 else 'does'} not run here; "
        f"give {'each' if len(missing) > 1 else 'it'} an address: {flags} (or {env})"
    )
