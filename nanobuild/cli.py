"""The ``nanobuild`` command line: parse, call, and turn domain errors into exit codes.

Exit codes: 0 all good; 1 problems found (the workspace was read); 2 unusable input
(no workspace, or a nano.toml that cannot be used, or a wrong command line).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from nanobuild import __version__, checks, codes, graph, workspace
from nanobuild.diagnostics import Diagnostic, errors, render_json, render_text
from nanobuild.errors import BuildError, WorkspaceError

app = typer.Typer(
    help="Fuse a monorepo of Python services into one self-contained executable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs wrap as paragraphs
)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="The workspace folder (or its nano.toml). Default: the nearest folder, "
        "from here up, that holds a nano.toml.",
        show_default=False,
    ),
]


class CheckFormat(str, enum.Enum):
    text = "text"
    json = "json"


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


class GraphFormat(str, enum.Enum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


class DeployTarget(str, enum.Enum):
    compose = "compose"
    k8s = "k8s"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nanobuild {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Fuse a monorepo of Python services into one self-contained executable."""


def _load(location: Path | None) -> workspace.Workspace:
    if location is None:
        return workspace.load(workspace.find(Path.cwd()))
    if not location.exists():
        raise WorkspaceError(
            [Diagnostic(str(location), codes.E000, "no such workspace folder or nano.toml")]
        )
    # said here, by the name given: read as nano.toml, another file's problems would
    # be shown as nano.toml's
    if location.is_dir() and not (location / workspace.FILENAME).exists():
        raise WorkspaceError(
            [Diagnostic(str(location), codes.E000, f"no {workspace.FILENAME} in this folder")]
        )
    if not location.is_dir() and location.name != workspace.FILENAME:
        raise WorkspaceError(
            [
                Diagnostic(
                    str(location),
                    codes.E000,
                    f"not a workspace folder or its {workspace.FILENAME}",
                    hint="pass the folder that holds nano.toml",
                )
            ]
        )
    return workspace.load(location)


@app.command()
def check(
    workspace_path: WorkspaceOption = None,
    format: Annotated[
        CheckFormat, typer.Option("--format", "-f", help="text for people, json for CI.")
    ] = CheckFormat.text,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="REF",
            help="Also list what changed in the contracts since REF (a git ref, or an older "
            ".pyz), and fail on changes that break its callers.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Prove the workspace sound: dependencies, imports, contracts, handlers, fusion.

    Exit 0 when clean (warnings, if any, are shown), 1 when problems were found, 2
    when nano.toml cannot be used.
    """
    with _reported(format=format):
        ws = _load(workspace_path)
    if against is not None:
        raise typer.Exit(_check_against(ws, against, format))
    with _reported(ws.root, format):
        found = checks.run(ws)
    problems = errors(found)
    warned = _warned(len(found) - len(problems))
    if format is CheckFormat.json:
        typer.echo(render_json(found))
    elif found:
        typer.echo(render_text(found, ws.root))
    if problems:
        if format is CheckFormat.text:
            typer.echo(f"\n{ws.name}: {_count(len(problems), 'problem')} found{warned}", err=True)
        raise typer.Exit(1)
    if format is CheckFormat.text:
        typer.echo(
            f"{ws.name}: {_count(len(ws.services), 'service')}, "
            f"{_count(len(ws.libraries), 'library', 'libraries')}: all checks passed{warned}"
        )


def _check_against(ws: workspace.Workspace, ref: str, format: CheckFormat) -> int:
    """``check --against REF``: the checks, then the contract changes since REF; the exit code."""
    from nanobuild import against

    with _reported(ws.root, format):
        comparison = against.Comparison(ws, ref)  # its children run while the checks do
        try:
            found = checks.run(ws)
        except BaseException:
            comparison.close()
            raise
        report = comparison.report()
    failed = errors([*found, *report.diagnostics()])
    if format is CheckFormat.json:
        typer.echo(against.render_json(report, found))
    elif found or report.changes:
        typer.echo(against.render_text(report, found, ws.root))
    if format is CheckFormat.text:
        typer.echo(("\n" if found or report.changes else "") + against.summary(report, ws.name))
    return 1 if failed else 0


@app.command()
def serve(
    workspace_path: WorkspaceOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on. Default: ingress.host.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on. Default: ingress.port.", min=0, max=65535)
    ] = None,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart when a service's source changes.")
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request (off by default).")
    ] = False,
    find_links: Annotated[
        list[Path] | None,
        typer.Option("--find-links", help="A folder of wheels to install from (repeatable)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="No network: local wheels or the cache only.")
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="json: one JSON object per log line.")
    ] = LogFormat.text,
) -> None:
    """Run the whole workspace fused in one process, from source (the dev loop).

    Runs on the packages of nano.toml's lock (made on the first run if there is none),
    installed as the binary gets them, never this Python's. Checks the workspace first
    and refuses to serve one with problems. Stop with Ctrl-C.
    """
    from nanobuild import devserver, lock

    with _reported():
        ws = _load(workspace_path)
        made, staged = lock.prepare(
            ws,
            create=True,
            find_links=find_links or [],
            offline=offline,
            notify=lambda line: typer.echo(line, err=True),
        )
        found = checks.run(ws)
    if found:
        typer.echo(render_text(found, ws.root), err=True)
    if errors(found):
        problems = _count(len(errors(found)), "problem")
        typer.echo(f"\n{ws.name}: {problems} found: not serving", err=True)
        raise typer.Exit(1)
    with _reported(ws.root):
        code = devserver.run(
            ws,
            host=host or ws.ingress.host,
            port=ws.ingress.port if port is None else port,
            reload=reload,
            access_log=access_log,
            site_packages=staged.site_packages,
            distributions=made.distributions(),
            log_format=log_format.value,
        )
    raise typer.Exit(code)


@app.command("bundle")
def bundle_command(
    workspace_path: WorkspaceOption = None,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help="Pack just these services (a,b); the binary is dist/NAME-a-b.pyz and "
            "reaches the others over the network.",
            show_default=False,
        ),
    ] = None,
    find_links: Annotated[
        list[Path] | None,
        typer.Option("--find-links", help="A folder of wheels to install from (repeatable)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use only local wheels (--find-links), no index.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the package installer's log.")
    ] = False,
) -> None:
    """Check the workspace, generate its ingress and pack dist/NAME.pyz.

    The binary runs anywhere with just a Python: `python dist/NAME.pyz`. A failed
    build leaves dist/ as it was.
    """
    from rich.console import Console

    from nanobuild import bundle

    console = Console(stderr=True, quiet=quiet, highlight=False)

    def progress(step: str, seconds: float) -> None:
        console.print(f"  [green]done[/green] {step:<15} {seconds:6.2f} s")

    names = [name.strip() for name in (only or "").split(",") if name.strip()]
    with _reported():
        ws = _load(workspace_path)
        out = bundle.bundle(
            ws,
            only=names,
            find_links=find_links or [],
            offline=offline,
            verbose=verbose,
            progress=progress,
        )
    size = out.stat().st_size / 2**20
    rel = os.path.relpath(out)
    console.print(f"[bold]{rel}[/bold] ({size:.1f} MiB): run it with `python {rel}`")


@app.command("lock")
def lock_command(
    workspace_path: WorkspaceOption = None,
    upgrade: Annotated[
        bool, typer.Option("--upgrade", help="Move every package to its newest allowed version.")
    ] = False,
    python: Annotated[
        str | None,
        typer.Option("--python", help="The Python version to lock for. Default: this one's."),
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option(
            "--platform", help="linux, macos, windows (or a uv target). Default: this machine's."
        ),
    ] = None,
    find_links: Annotated[
        list[Path] | None,
        typer.Option("--find-links", help="A folder of wheels to resolve from (repeatable)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="No network: local wheels or the cache only.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the resolver's and installer's log.")
    ] = False,
) -> None:
    """Pin every third-party package of the workspace, with hashes, in nano.lock.

    Resolves the requires of every service and library, and the runtime's, together;
    keeps the versions already locked unless --upgrade. A lock for this Python is
    also installed into the build cache, for check, serve and bundle.
    """
    from nanobuild import lock

    links = find_links or []
    with _reported():
        ws = _load(workspace_path)
        made = lock.lock(
            ws, upgrade=upgrade, python=python, platform=platform, find_links=links,
            offline=offline, verbose=verbose,
        )  # fmt: skip
        staged = ""
        if lock.fits_here(made):
            lock.stage_of(made, find_links=links, offline=offline, verbose=verbose)
            staged = ", installed in the build cache"
    typer.echo(
        f"{lock.FILENAME}: {_count(len(made.package), 'package')} for Python {made.python} "
        f"on {made.platform}{staged}",
        err=True,
    )


@app.command()
def new(
    name: Annotated[
        str, typer.Argument(help="The service's (or library's) name: a Python identifier.")
    ],
    workspace_path: WorkspaceOption = None,
    path: Annotated[
        str | None,
        typer.Option(
            help="Its project folder, relative to the workspace. Default: services/NAME "
            "(libs/NAME for a library).",
            show_default=False,
        ),
    ] = None,
    package: Annotated[
        str | None,
        typer.Option(
            help="The package inside its folder, when it should not be NAME (a service "
            "named email needs one: a package email would shadow the standard library's).",
            show_default=False,
        ),
    ] = None,
    library: Annotated[
        bool,
        typer.Option("--library", help="Make a library (plain shared code, no contracts) instead."),
    ] = False,
) -> None:
    """Create a service from the template and add it to nano.toml.

    The service (a kernel with one contract, its handler, its tests) passes `check`,
    and its tests pass; they run it in process with
    `nanobuild.runtime.testing.service`, so they keep passing once it calls another
    service. With `--library`, a library instead: its folder and package, an empty
    test, and its `[libraries.NAME]` table. Nothing is written if a name is taken.
    """
    from nanobuild import scaffold

    kind = scaffold.LIBRARY if library else scaffold.SERVICE
    try:
        with _reported():
            ws = _load(workspace_path)
            folder = scaffold.new(ws, kind, name, path, package)
    except OSError as exc:
        typer.echo(f"nanobuild: cannot create {name}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {ws.rel(folder)}/ and [{kind.section}.{name}] in nano.toml")


@app.command()
def init(
    name: Annotated[
        Path | None,
        typer.Argument(
            help="The folder to make the workspace in (made if missing); it names the "
            "workspace. Default: the current folder.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start a workspace: nano.toml, a README and one service, `hello`, with its tests.

    The result passes `check` and its tests pass (`pytest`). It is written into a
    folder that may already hold other code (the services to adopt: a README or
    .gitignore already there is kept as it is), but never over an existing nano.toml
    or any other file: then nothing is written and the exit code is 2.
    """
    from nanobuild.scaffold import init_workspace

    folder = Path.cwd() if name is None else name
    try:
        with _reported():
            workspace_name, files, kept = init_workspace(folder)
    except OSError as exc:
        typer.echo(f"nanobuild: cannot write the workspace in {folder}: {exc}", err=True)
        raise typer.Exit(1) from None
    shown = os.path.relpath(folder)
    typer.echo(f"created the workspace {workspace_name} in {shown}: {_count(len(files), 'file')}")
    for path in kept:
        typer.echo(f"kept your {path.name} as it is")
    typer.echo("next: `nanobuild check`, `pytest`, `nanobuild serve`")


@app.command("graph")
def graph_command(
    workspace_path: WorkspaceOption = None,
    format: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="text tree, mermaid or dot.")
    ] = GraphFormat.text,
) -> None:
    """Print the service dependency graph (an edge goes from a service to what it calls)."""
    with _reported():
        ws = _load(workspace_path)
    edges = graph.of(ws)
    if format is GraphFormat.mermaid:
        typer.echo(graph.render_mermaid(edges))
    elif format is GraphFormat.dot:
        typer.echo(graph.render_dot(edges, ws.name))
    else:
        typer.echo(graph.render_text(edges, ws.name))


@app.command("deploy")
def deploy_command(
    target: Annotated[
        DeployTarget, typer.Argument(help="compose (a compose.yaml) or k8s (Kubernetes manifests).")
    ],
    workspace_path: WorkspaceOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The folder to write. Default: deploy/ in the workspace."),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            "--base-image",
            help="The Containerfile's default base. Default: this Python's slim image.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a Containerfile and compose.yaml or Kubernetes manifests, one service per
    placement group of nano.toml.

    Checks the workspace first. The folder is written whole or not at all, and never
    over a file this command did not write. Build the binary (`nanobuild bundle`) before
    building the image.
    """
    from nanobuild import deploy

    with _reported():
        ws = _load(workspace_path)
    with _reported(ws.root):
        found = checks.run(ws)
    if errors(found):
        typer.echo(render_text(found, ws.root), err=True)
        typer.echo(
            f"\n{ws.name}: {_count(len(errors(found)), 'problem')} found: not deploying", err=True
        )
        raise typer.Exit(1)
    folder = out if out is not None else ws.root / "deploy"
    with _reported(ws.root):
        written = deploy.deploy(ws, target.value, folder, base_image=base_image)
    typer.echo(
        f"wrote {_count(len(written), 'file')} into {os.path.relpath(folder)}: {', '.join(written)}"
    )


@app.command("secret")
def secret_command() -> None:
    """Print a strong random NANO_SECRET (32 random bytes, URL-safe: 256 bits).

    Set the same value in every process of the workspace; the runtime refuses one
    under 128 bits (see "The secret" in the README).
    """
    import secrets

    # as the binary's own `secret` command: the build side imports no runtime settings
    typer.echo(secrets.token_urlsafe(32))


@contextmanager
def _reported(root: Path | None = None, format: CheckFormat = CheckFormat.text) -> Iterator[None]:
    """A ``BuildError`` raised in the block ends the command: its diagnostics are
    printed (JSON on stdout, or text on stderr with paths shown from ``root``) and the
    process exits with the error's exit code. Library code never exits itself."""
    try:
        yield
    except BuildError as exc:
        if format is CheckFormat.json:
            typer.echo(render_json(exc.diagnostics))
        else:
            typer.echo(render_text(exc.diagnostics, root), err=True)
        raise typer.Exit(exc.exit_code) from None


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _warned(n: int) -> str:
    """What the summary line adds for ``n`` warnings (they never count as problems)."""
    return f" ({_count(n, 'warning')})" if n else ""


def main() -> None:
    """The console script's entry point."""
    app(prog_name="nanobuild")


if __name__ == "__main__":
    main()
