"""``nanobuild serve``: the workspace fused from source, for the edit-and-reload loop.

It wires the services exactly as the bundled binary does — ``describe.describe`` gives the
same ``AppSpec`` the binary's generated ingress holds — so what works here works there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nanobuild import checks, describe, workspace
from nanobuild.diagnostics import render_text
from nanobuild.errors import BuildError, CheckFailed
from nanobuild.runtime import server
from nanobuild.runtime.app import App, SettingsError, build_app
from nanobuild.runtime.spec import AppSpec
from nanobuild.runtime.wiring import WiringError, wire

_WORKSPACE_ENV = "NANO_WORKSPACE"


def prepare(ws: workspace.Workspace) -> AppSpec:
    """Make the workspace's packages importable, and describe what to wire."""
    for folder in reversed(ws.import_paths()):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return describe.describe(ws)


def run(ws: workspace.Workspace, *, host: str, port: int, reload: bool, access_log: bool) -> int:
    """Serve until stopped; the process's exit code."""
    spec = prepare(ws)
    if not reload:
        return server.run(spec, host=host, port=port, access_log=access_log)
    import uvicorn  # only the reloading loop needs uvicorn's own runner

    # The reloader re-imports the app in a fresh process on every change, so it
    # needs an import string; the workspace travels in the environment.
    os.environ[_WORKSPACE_ENV] = str(ws.root)
    uvicorn.run(
        f"{__name__}:reloading_app",
        factory=True,
        host=host,
        port=port,
        reload=True,
        reload_dirs=[str(folder) for folder in ws.import_paths()],
        access_log=access_log,
        log_config=server.log_config(),
    )
    return 0


def reloading_app() -> App:
    """The app factory the reloader imports in each fresh process.

    Each reload checks the workspace again; a problem is shown as ``check`` shows it,
    and this round of the reloader ends there until the next edit.
    """
    ws_root = Path(os.environ[_WORKSPACE_ENV])
    try:
        ws = workspace.load(ws_root)
        found = checks.run(ws)
        if found:
            raise CheckFailed(found)
        return build_app(wire(prepare(ws)))
    except BuildError as exc:
        print(render_text(exc.diagnostics, ws_root), file=sys.stderr)
    except (WiringError, SettingsError) as exc:
        print(f"nanobuild: {exc}", file=sys.stderr)
    raise SystemExit(1)
