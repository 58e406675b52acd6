"""The build side's exception tree. The CLI turns these into messages and exit codes.

    BuildError              anything the build side reports to the user
     ├── WorkspaceError     nano.toml cannot be used (exit 2)
     ├── CheckFailed        the workspace was read, and checks found problems (exit 1)
     └── PackError          the binary cannot be packed: staging, reading, writing (exit 1)

Library code raises these and never calls ``sys.exit``; only ``cli.py`` decides how a
process ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from nanobuild.diagnostics import Diagnostic


class BuildError(Exception):
    """A problem the user can fix; the message says what and where."""

    exit_code = 1

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(f"{d.path}: {d.code} {d.message}" for d in diagnostics))


class WorkspaceError(BuildError):
    """``nano.toml`` is missing, unreadable or invalid: nothing else can be checked."""

    exit_code = 2


class CheckFailed(BuildError):
    """The workspace loaded, but checks found problems."""

    exit_code = 1


class PackError(BuildError):
    """``bundle`` cannot pack the binary: a requirement that will not install, a file that
    cannot be read, an output that cannot be written. ``dist/`` is left as it was."""

    exit_code = 1
