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
from collections.abc import Mapping, Sequence

import msgspec

from nanobuild.runtime.addresses import AddressError, parse_address
from nanobuild.runtime.errors import PlacementError, SettingsError
from nanobuild.runtime.settings import (
    DEFAULT_TIMEOUT,
    Settings,
    remote_variable,
    seconds,
)
from nanobuild.runtime.spec import AppSpec, ServiceSpec, discovered


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
    derived: Mapping[str, str] | None = None,
) -> Placement:
    """The placement the options and ``settings`` describe, or ``PlacementError`` saying why not.

    ``complete=False`` accepts a placement that could not start yet (a called service
    without an address, no secret): enough to show what is where. ``derived`` are
    addresses found by discovery (``for_group``): NANO_REMOTE_* and ``remotes`` win.
    """
    settings = Settings.from_env() if settings is None else settings
    packed = spec.carried
    local = tuple(name for name in packed if not only or name in only)
    for name in only:
        if name not in packed:
            raise PlacementError(f"--only names {name}, {_not_here(name, packed)}")
    addresses = _addresses(spec, local, remotes, settings, derived or {})
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
    spec: AppSpec,
    local: Sequence[str],
    remotes: Sequence[str],
    settings: Settings,
    derived: Mapping[str, str],
) -> dict[str, str]:
    names = [s.name for s in spec.services]
    found = {name: address for name, address in derived.items() if name not in local}
    found |= {
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


class GroupPlacement(msgspec.Struct, frozen=True):
    """What ``serve --group NAME`` stands for: ``--only`` its services, a ``--remote``
    for every other service, at its group's address, and the internal port its own
    group's address names."""

    services: tuple[str, ...]
    remotes: dict[str, str]
    internal_port: int


def for_group(spec: AppSpec, name: str, settings: Settings, *, http_port: int) -> GroupPlacement:
    """The placement of group ``name``, found by the discovery pattern (NANO_DISCOVERY,
    else the build's ``deploy.discovery``); ``PlacementError`` for an unknown group.

    The services the group calls get an address, and in the front group (``deploy.front``)
    every service does, so that its HTTP face answers for them all: the one the world
    is sent to. An adopted app elsewhere is reached over
    HTTP at its group's host: on its own port, or through that group's face, which
    listens on ``http_port`` as this one does (containers share one port layout).
    """
    groups = spec.placement_groups()
    chosen = next((g for g in groups if g.name == name), None)
    if chosen is None:
        known = [g.name for g in groups]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else f"; its groups: {', '.join(known)}"
        raise PlacementError(f"--group {name}: {spec.name} has no such placement group{hint}")
    absent = [s for s in chosen.services if s not in spec.carried]
    if absent:
        raise PlacementError(
            f"--group {name}: this binary does not carry {', '.join(absent)}; "
            "serve a group from a binary built without --only"
        )
    pattern = settings.discovery or spec.discovery
    reached = set(needed(spec, chosen.services)) if name != spec.front else None
    remotes = {
        service: _reached(spec.service(service), discovered(pattern, group), http_port)
        for group in groups
        if group is not chosen
        for service in group.services
        if reached is None or service in reached
    }
    try:
        own = parse_address(discovered(pattern, chosen), ("tcp",))
    except AddressError as exc:
        raise PlacementError(f"the address of group {name}: {exc}") from None
    return GroupPlacement(chosen.services, remotes, own.port)


def _reached(service: ServiceSpec, address: str, http_port: int) -> str:
    """Where ``service`` is reached, its group being at ``address`` (``tcp://host:port``)."""
    if service.asgi is None:
        return address
    host = address.partition("://")[2].rpartition(":")[0]
    return f"http://{host}:{service.port or http_port}"


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
