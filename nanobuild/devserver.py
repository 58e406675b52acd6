"""``nanobuild serve``: the workspace fused from source, for the edit-and-reload loop.

It runs the services exactly as the bundled binary does: ``describe`` gives the same
``AppSpec`` the binary's generated ingress holds, and a child Python runs the
runtime's own command line on it (``python -m nanobuild.runtime serve``, the spec on
its standard input, the workspace's folders on its ``PYTHONPATH``). So what works
here works there, and the build side imports no more of the runtime than its data.

With ``--reload`` this process watches the services' and libraries' ``.py`` files;
on a change it stops the child, checks the workspace again, and starts a new child
if the check passes (else it shows the problems and waits for the next change).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import msgspec

from nanobuild import checks, describe, source, stage, workspace
from nanobuild.diagnostics import errors, render_text
from nanobuild.errors import BuildError
from nanobuild.runtime.spec import AppSpec, BuildInfo, __version__

POLL = 0.5  # seconds between two looks at the sources, with --reload
# the isolated child: -c puts the current folder first on sys.path, so it goes
_ISOLATED = (
    "import sys; del sys.path[0]; import site; site.addsitedir({site!r}); import runpy; "
    "runpy.run_module('nanobuild.runtime', run_name='__main__', alter_sys=True)"
)
STOP_TIMEOUT = 15.0  # seconds a child may take to shut down before it is killed


def run(
    ws: workspace.Workspace,
    *,
    host: str,
    port: int,
    reload: bool,
    access_log: bool,
    site_packages: Path | None = None,
    distributions: tuple[tuple[str, str], ...] = (),
    log_format: str = "text",
) -> int:
    """Serve until stopped; the process's exit code.

    ``site_packages`` is the stage of the workspace's lock: given it, the child runs
    isolated from this Python's packages (see ``_Child.start``).
    """
    argv = ["serve", "--host", host, "--port", str(port), *(["--access-log"] if access_log else [])]
    argv += ["--log-format", log_format]
    child = _Child(ws, argv, site_packages, distributions)
    _static_notes(ws)
    with _forwarding(child):
        child.start(describe.describe(ws))
        if not reload:
            return child.wait()
        return _reloading(ws, child)


def _static_notes(ws: workspace.Workspace) -> None:
    """Say which entries of the static folder are not served, as ``bundle`` would refuse
    them (``source.static_files``, the one rule of both): serving goes on without them."""
    folder = ws.ingress.static
    if folder is None or not folder.is_dir():
        return
    found = source.static_files(folder)
    notes = [
        f"{ws.rel(link)} links to {ws.rel(real)}, outside the static folder {ws.rel(folder)}"
        for link, real in found.outside
    ]
    notes += [f"{ws.rel(link)} links to nothing" for link in found.dangling]
    notes += [f"cannot read {ws.rel(path)}: {why}" for path, why in found.unreadable]
    for note in notes:
        print(f"nanobuild: {note}: not served (bundle refuses it)", file=sys.stderr)


class _Child:
    """The child Python that serves the workspace; at most one runs at a time."""

    def __init__(
        self,
        ws: workspace.Workspace,
        argv: list[str],
        site_packages: Path | None = None,
        distributions: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.ws = ws
        self.argv = argv
        self.site_packages = site_packages
        self.distributions = distributions
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False  # this process was told to stop

    def start(self, spec: AppSpec) -> None:
        build = BuildInfo(
            workspace=self.ws.name,
            nanobuild=__version__,
            inputs="source",
            host=self.ws.ingress.host,
            port=self.ws.ingress.port,
            distributions=self.distributions,
        )
        launch = msgspec.json.encode({"spec": spec, "build": build})
        paths = [str(folder) for folder in self.ws.import_paths()]
        command = [sys.executable, "-m", "nanobuild.runtime", *self.argv]
        if self.site_packages is not None:
            # As the binary's bootstrap does: no site folder of this Python (-S), the
            # workspace, the runtime alone (not the build side), the user's
            # PYTHONPATH, then the lock's stage last (its .pth files run).
            paths.append(str(stage.runtime_folder()))
            code = _ISOLATED.format(site=str(self.site_packages))
            command = [sys.executable, "-S", "-c", code, *self.argv]
        inherited = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *filter(None, [inherited])])}
        env.setdefault("NANO_METRICS", "1")  # the dev loop records its calls: /metrics, the page
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches it once, through this process
            preexec_fn=_end_with_parent,
        )
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(launch)
            self.proc.stdin.close()
        except BrokenPipeError:  # it died at once; wait() tells how
            pass

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self) -> int:
        """The child's exit code, once it has ended (1 if a signal killed it)."""
        if self.proc is None:
            return 1
        while True:
            try:
                code = self.proc.wait()
                break
            except KeyboardInterrupt:  # forwarded already; keep waiting for its shutdown
                continue
        return code if code >= 0 else 1

    def stop(self) -> None:
        """Stop the child as a signal would, killing it if it will not end."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _forwarding:
    """While serving, SIGINT and SIGTERM go on to the child, which shuts down cleanly."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, child: _Child) -> None:
        self.child = child
        self.previous = {signum: signal.getsignal(signum) for signum in self.SIGNALS}

    def __enter__(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._forward)

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.child.stop()

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.child.stopping = True
        self.child.signal(signum)


def _end_with_parent() -> None:
    """In the child, before it runs: end it if this process dies without stopping it."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _reloading(ws: workspace.Workspace, child: _Child) -> int:
    """Restart the child on every change of a source file, until told to stop."""
    seen = _snapshot(ws)
    while not child.stopping:
        time.sleep(POLL)
        now = _snapshot(ws)
        if now == seen:
            continue
        seen = now
        print("nanobuild: a source file changed; checking and restarting", file=sys.stderr)
        child.stop()
        spec = _checked(ws.root)
        if spec is not None and not child.stopping:
            child.start(spec)
    return child.wait()


def _checked(root: Path) -> AppSpec | None:
    """The workspace's spec, if it passes ``check``; else its problems are shown."""
    try:
        ws = workspace.load(root)
        found = checks.run(ws)
    except BuildError as exc:
        print(render_text(exc.diagnostics, root), file=sys.stderr)
        return None
    if found:
        print(render_text(found, root), file=sys.stderr)
    if errors(found):  # warnings are shown, and serving goes on
        print("nanobuild: not serving until the next change", file=sys.stderr)
        return None
    return describe.describe(ws)


def _snapshot(ws: workspace.Workspace) -> dict[Path, float]:
    """The modification time of every ``.py`` file under the workspace's import folders."""
    return {path: mtime for path, mtime in _sources(ws)}


def _sources(ws: workspace.Workspace) -> Iterator[tuple[Path, float]]:
    for folder in ws.import_paths():
        # the walk check and bundle read by, so a change to what they see is a change
        for path in (p for p in source.walk(folder).files if p.suffix == ".py"):
            try:
                yield path, path.stat().st_mtime
            except OSError:  # removed meanwhile: the next look sees it gone
                continue
