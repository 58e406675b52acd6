"""The bundled binary's own command line: ``python app.pyz [serve|services|call|...|secret]``.

The generated ingress calls ``main(SPEC, BUILD)``. Only ``serve`` and ``call`` wire
the services (importing their handlers); ``services`` and ``info`` read the table,
so they answer at once. Exit codes: 0 ok, 1 the call or the server failed, 2 a wrong
command line or request.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import difflib
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from nanobuild.runtime.errors import NanoError, PlacementError, SettingsError
from nanobuild.runtime.placement import Placement, for_group, needed, place
from nanobuild.runtime.settings import Settings, new_secret, remote_variable, timeout_variable
from nanobuild.runtime.spec import AppSpec, BuildInfo, ServiceSpec


def main(spec: AppSpec, build: BuildInfo, argv: Sequence[str] | None = None) -> None:
    """Run the command line; exits the process with the command's code."""
    args = _parser(spec, build).parse_args(argv)
    command = args.command or "serve"
    if command == "secret":  # before the settings: it is how a weak NANO_SECRET is replaced
        print(new_secret())
        sys.exit(0)
    try:
        settings = Settings.from_env()  # once, for the whole process
    except SettingsError as exc:
        print(f"{_prog()}: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        if command == "serve":
            code = _serve(spec, build, args, settings)
        elif command == "services":
            code = _services(spec, build, args, settings)
        elif command == "call":
            code = _call(spec, args.contract, args.body, settings)
        elif command == "contracts":
            code = _contracts(spec, build, as_json=args.json)
        else:
            code = _info(spec, build, as_json=args.json)
    except BrokenPipeError:  # `app.pyz call ... | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def _parser(spec: AppSpec, build: BuildInfo) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description=f"{spec.name}: {len(spec.services)} services fused in one binary "
        f"(nanobuild {build.nanobuild}). With no command, serve.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the services over HTTP (the default)")
    _serve_options(parser, build)  # `app.pyz --port 9000` serves too
    _serve_options(serve, build, keep_parent=True)
    services = commands.add_parser(
        "services", help="list the services, their contracts and placement"
    )
    _placement_options(services)
    call = commands.add_parser("call", help="run one contract and print its answer as JSON")
    call.add_argument("contract", help="service.Contract, e.g. catalog.GetProduct")
    call.add_argument(
        "body", nargs="?", default="{}", help="the request as JSON ('-' reads stdin; default {})"
    )
    contracts = commands.add_parser(
        "contracts", help="each contract's shape fingerprint (--json: the shapes themselves)"
    )
    contracts.add_argument("--json", action="store_true", help="print every shape as JSON")
    info = commands.add_parser("info", help="build metadata: version, inputs hash, build time")
    info.add_argument("--json", action="store_true", help="print it as JSON")
    commands.add_parser("secret", help="print a strong random NANO_SECRET (256 bits)")
    return parser


def _placement_options(parser: argparse.ArgumentParser, *, keep_parent: bool = False) -> None:
    unset: Any = argparse.SUPPRESS
    parser.add_argument(
        "--only",
        default=unset if keep_parent else "",
        metavar="A,B",
        help="run just these services here (split mode); the rest are remote",
    )
    parser.add_argument(
        "--group",
        default=unset if keep_parent else "",
        metavar="NAME",
        help="run this placement group of nano.toml here; every other service is "
        "remote, at the address the discovery pattern gives its group",
    )
    parser.add_argument(
        "--remote",
        action="append",
        default=unset if keep_parent else [],
        metavar="NAME=ADDRESS",
        help="where a service that does not run here is: tcp://host:port or "
        f"http://host:port (repeatable; or {remote_variable('<name>')})",
    )
    parser.add_argument(
        "--timeout",
        action="append",
        default=unset if keep_parent else [],
        metavar="NAME=SECONDS",
        help="how long a call to a remote service may take "
        f"(default 5; or {timeout_variable('<name>')})",
    )


def _serve_options(
    parser: argparse.ArgumentParser, build: BuildInfo, *, keep_parent: bool = False
) -> None:
    # on the `serve` subcommand, an option not given must not overwrite the same
    # option given before the subcommand (`app.pyz --port 9000 serve`)
    unset: Any = argparse.SUPPRESS
    parser.add_argument(
        "--host", default=unset if keep_parent else build.host, help=f"default: {build.host}"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=unset if keep_parent else build.port,
        help=f"default: {build.port}",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=unset if keep_parent else False,
        help="log every request",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=unset if keep_parent else "text",
        help="`json`: every log line one JSON object, for machines (default: text)",
    )
    parser.add_argument(
        "--internal-port",
        type=int,
        default=unset if keep_parent else None,
        help="where this process's services answer other nanobuild processes (TCP); "
        "split mode default: the next port after the HTTP port that no service's own `port` takes",
    )
    _placement_options(parser, keep_parent=keep_parent)


def _prog() -> str:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "app.pyz"
    return f"python {argv0}" if argv0.endswith(".pyz") else argv0


def _serve(spec: AppSpec, build: BuildInfo, args: argparse.Namespace, settings: Settings) -> int:
    from nanobuild.runtime import server  # the HTTP stack loads only when serving

    for option, port in (("--port", args.port), ("--internal-port", args.internal_port)):
        if port is not None and not 0 <= port <= 65535:
            print(f"{_prog()}: {option} {port} is not a TCP port", file=sys.stderr)
            return 2
    placement = _placement(spec, args, settings, http_port=args.port)
    if placement is None:
        return 2
    from nanobuild.runtime.shapes import name_build

    name_build(build)  # the TCP handshake names it to the processes this one meets
    from nanobuild.runtime import telemetry

    telemetry.describe(group=getattr(args, "group", "") or None, build=build.inputs[:12])
    return server.run(
        spec,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        placement=placement,
        settings=settings,
        log_format=args.log_format,
    )


def _placement(
    spec: AppSpec,
    args: argparse.Namespace,
    settings: Settings,
    *,
    http_port: int,
    complete: bool = True,
) -> Placement | None:
    """The placement the options ask for; None (after saying why) if there is none."""
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    internal = getattr(args, "internal_port", None)
    derived: dict[str, str] = {}
    try:
        if args.group:  # --only and every --remote, from nano.toml's placement
            if only:
                raise PlacementError("--group and --only both say what runs here: give one")
            group = for_group(spec, args.group, settings, http_port=http_port)
            only, derived = list(group.services), group.remotes
            internal = group.internal_port if internal is None else internal
        elif internal is None and (only or len(spec.carried) < len(spec.services)):
            # split: other processes must reach this one; next to the HTTP port by default
            internal = _beside(args.port, {s.port for s in spec.services if s.port is not None})
        return place(
            spec,
            only=only,
            remotes=args.remote,
            timeouts=args.timeout,
            internal_port=internal,
            settings=settings,
            complete=complete,
            derived=derived,
        )
    except PlacementError as exc:
        print(f"{_prog()}: {exc}", file=sys.stderr)
        return None


def _beside(port: int, taken: set[int]) -> int:
    """The first port after ``port`` that no adopted service claims (0: let the OS pick)."""
    if not 0 < port < 65535:
        return 0
    candidate = port + 1
    while candidate in taken:
        candidate += 1
    return candidate if candidate <= 65535 else 0


def _services(spec: AppSpec, build: BuildInfo, args: argparse.Namespace, settings: Settings) -> int:
    args.port, args.internal_port = 0, None
    placement = _placement(spec, args, settings, http_port=build.port, complete=False)
    if placement is None:
        return 2
    width = max((len(s.name) for s in spec.services), default=7)
    where = {name: "local" for name in placement.local}
    where |= {name: "remote: no address" for name in needed(spec, placement.local)}
    where |= {name: f"remote: {address}" for name, address in placement.remotes.items()}
    column = max(len(w) for w in [*where.values(), "placement"])
    print(f"{'service':<{width}}  {'placement':<{column}}  contracts (* public)")
    for service in spec.services:
        contracts = " ".join(
            name + ("*" if name in service.public else "") for name in service.handlers
        )
        placed = where.get(service.name, "-")
        print(f"{service.name:<{width}}  {placed:<{column}}  {contracts}")
    return 0


def _info(spec: AppSpec, build: BuildInfo, *, as_json: bool) -> int:
    facts = {
        "workspace": build.workspace,
        "nanobuild": build.nanobuild,
        "inputs": build.inputs,
        **_binary_facts(),
        "built_at": _built_at(build),
        "python": platform.python_version(),
        "services": [s.name for s in spec.services],
        "distributions": {name: version for name, version in build.distributions},
    }
    if as_json:
        print(msgspec.json.encode(facts).decode())
        return 0
    for key, value in facts.items():
        if isinstance(value, dict):  # the distributions: name version, comma-separated
            value = [f"{name} {version}" for name, version in value.items()]
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"{key:<10} {shown}")
    return 0


def _binary_facts() -> dict[str, str]:
    """The binary this process started from, the sha256 of its file (what `sha256sum`
    prints) and its build id (the sha256 of its manifest, which names its extraction),
    as its bootstrap recorded them; nothing when the runtime runs from source."""
    booted = getattr(sys.modules.get("_nano_bootstrap"), "booted", None)
    if not booted:
        return {}
    import hashlib

    archive = booted["archive"]
    digest = hashlib.sha256()
    try:
        with open(archive, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        sha256 = digest.hexdigest()
    except OSError as exc:
        sha256 = f"unknown ({exc.strerror or exc})"
    return {"binary": archive, "sha256": sha256, "build": booted["build"]}


def _built_at(build: BuildInfo) -> str:
    """The recorded build time; otherwise (a reproducible build) the binary file's mtime."""
    when = build.built_at
    if when is None:
        try:
            when = int(os.path.getmtime(sys.argv[0]))
        except (OSError, IndexError):
            return "unknown"
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat()


def _contracts(spec: AppSpec, build: BuildInfo, *, as_json: bool) -> int:
    """Every contract's shape (what ``nanobuild check --against app.pyz`` compares)."""
    from nanobuild.runtime.shapes import describe_spec, label
    from nanobuild.runtime.spec import fingerprint

    table = describe_spec(spec, label(build))
    if as_json:
        print(msgspec.json.encode(table).decode())
        return 0
    for name, shape in table.contracts.items():
        print(f"{fingerprint(shape)}  {name}")
    for service, error in table.errors.items():
        print(f"{_prog()}: cannot describe {service}: {error}", file=sys.stderr)
    return 1 if table.errors else 0


def _call(spec: AppSpec, name: str, body: str, settings: Settings) -> int:
    service, contract = _find(spec, name)
    if service is None:
        return 2
    # bytes, as the HTTP face gets them: a body that is not UTF-8 is the decoder's to
    # refuse (a bad request), not an encoding error (fsencode undoes what the command
    # line's decoding did to such bytes)
    raw = sys.stdin.buffer.read() if body == "-" else os.fsencode(body)
    return asyncio.run(_call_once(spec, service, contract, raw, settings))


def _find(spec: AppSpec, name: str) -> tuple[ServiceSpec | None, str]:
    packed = spec.carried
    known = {f"{s.name}.{c}": s for s in spec.services if s.name in packed for c in s.handlers}
    if name in known:
        return known[name], name.partition(".")[2]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else "; see the `services` command"
    print(f"{_prog()}: no contract {name} runs in this binary{hint}", file=sys.stderr)
    return None, ""


async def _call_once(
    spec: AppSpec, service: ServiceSpec, contract: str, raw: bytes, settings: Settings
) -> int:
    """Wire only ``service``, run its start-up hooks, call, print the answer as JSON."""
    import logging

    from nanobuild.runtime.codecs import JSON
    from nanobuild.runtime.errors import SetupError, WiringError
    from nanobuild.runtime.serving import Served
    from nanobuild.runtime.wiring import wire

    logging.basicConfig(format="%(message)s")  # a handler's traceback goes to stderr
    try:
        # the whole packed placement: the contract may call the other services
        node = wire(spec, Placement(local=spec.carried), settings=settings)
    except WiringError as exc:
        print(f"{_prog()}: cannot wire {spec.name}: {exc}", file=sys.stderr)
        return 1
    served = Served(node.endpoints[(service.name, contract)], thorough=True)
    try:
        served.codec(JSON).decode(raw)
    except NanoError as exc:
        print(f"{_prog()}: bad request for {service.name}.{contract}: {exc}", file=sys.stderr)
        return 2
    try:
        await node.startup()
    except SetupError as exc:
        print(f"{_prog()}: {exc}", file=sys.stderr)
        return 1
    try:
        answer = await served.answer(raw, JSON)
    except Exception as exc:
        return _failed(served.failure(exc))
    finally:
        try:
            await node.shutdown()
        except Exception as exc:
            print(
                f"{_prog()}: a shutdown hook failed: {type(exc).__name__}: {exc}", file=sys.stderr
            )
    print(msgspec.json.format(answer).decode())
    return 0


def _failed(exc: NanoError) -> int:
    print(f"{_prog()}: {exc.service}.{exc.contract}: {exc.kind}: {exc.message}", file=sys.stderr)
    return 1
