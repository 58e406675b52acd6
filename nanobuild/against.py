"""``nanobuild check --against REF``: what changed in the contracts since an older build.

REF is a git ref of the workspace's repository, or the path of an older binary
(``.pyz``). Both builds' contracts are read as *shapes* (``runtime.spec.ContractShape``)
and compared with ``runtime.spec.compare_tables``, taking the older build as the
caller and this one as the callee: can this build serve what callers built from
REF send, and answer what they read? Breaking changes are diagnostics (E601-E606,
E608); compatible ones are listed beside them.

Shapes come from a child program, as kernels do for ``check``: for this tree and
for REF's (exported with ``git archive`` into a temporary folder, removed after),
``python -m nanobuild.runtime.shapes`` imports the kernels and prints their shapes;
an older binary prints its own with ``contracts --json``. So the build side imports
nothing of the runtime beyond its plain data. The two children run side by side,
and beside ``check``'s own.
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec

from nanobuild import codes
from nanobuild.diagnostics import Diagnostic, errors
from nanobuild.diagnostics import render_text as render_diagnostics
from nanobuild.errors import WorkspaceError
from nanobuild.runtime.spec import Change, ContractTable, compare_tables, describe
from nanobuild.workspace import Workspace, load

CHILD_TIMEOUT = 120.0

# rule -> the code of a breaking change
CODES = {
    "contract-removed": codes.E601,
    "request-field-removed": codes.E602,
    "request-field-required": codes.E603,
    "type-changed": codes.E604,
    "response-field-removed": codes.E605,
    "tag-changed": codes.E606,
    "layout-changed": codes.E606,
    "response-field-refused": codes.E608,
}


class ContractChange(msgspec.Struct, frozen=True, omit_defaults=True):
    """One change to one contract, where it is, and what it means for older callers."""

    contract: str  # service.Contract
    rule: str
    breaking: bool
    message: str
    path: str
    line: int | None = None
    code: str | None = None  # for a breaking change


class Report(msgspec.Struct, frozen=True):
    against: str
    old: str  # the builds, as the runtime names them
    new: str
    changes: list[ContractChange]

    def diagnostics(self) -> list[Diagnostic]:
        """The breaking changes, as diagnostics."""
        return [
            Diagnostic(c.path, codes.Code(c.code), f"{c.contract}: {c.message}", c.line)
            for c in self.changes
            if c.code is not None
        ]


def unusable(message: str, hint: str | None = None) -> WorkspaceError:
    """REF cannot be read: nothing can be compared (exit 2)."""
    return WorkspaceError([Diagnostic("nano.toml", codes.E607, message, hint=hint)])


# -- the two builds


class Reading:
    """A child describing one build's contracts; ``table()`` waits for it."""

    def __init__(self, process: subprocess.Popen[bytes], what: str, request: bytes = b"") -> None:
        self.process = process
        self.what = what  # names the build in messages
        self.request = request

    def table(self) -> ContractTable:
        try:
            stdout, stderr = self.process.communicate(self.request, timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            took = f"reading the contracts of {self.what} took over {CHILD_TIMEOUT:.0f} s"
            raise unusable(took) from None
        said = stderr.decode(errors="replace").strip()
        if self.process.returncode != 0:
            raise self._failed(said)
        try:
            table = msgspec.json.decode(stdout, type=ContractTable)
        except msgspec.DecodeError as exc:
            raise unusable(f"the contracts of {self.what} are unreadable: {exc}") from None
        if table.errors:
            service, error = next(iter(sorted(table.errors.items())))
            raise unusable(f"the kernel of {service} in {self.what} fails to import: {error}")
        return table

    def _failed(self, said: str) -> WorkspaceError:
        if "invalid choice: 'contracts'" in said:
            return unusable(
                f"{self.what} is too old to describe its contracts (it has no `contracts` command)",
                hint="compare against the git ref it was built from, or rebuild it",
            )
        last = said.splitlines()[-1] if said else f"exit status {self.process.returncode}"
        return unusable(f"cannot read the contracts of {self.what}: {last}")


def _child(ws: Workspace, what: str) -> Reading:
    """``python -m nanobuild.runtime.shapes`` on the kernels of ``ws``."""
    request = {
        "packages": {name: str(folder) for name, folder in ws.package_folders().items()},
        "kernels": {name: service.kernel_module for name, service in ws.services.items()},
    }
    package_parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    path = os.pathsep.join([package_parent, *filter(None, [os.environ.get("PYTHONPATH")])])
    process = subprocess.Popen(
        [sys.executable, "-m", "nanobuild.runtime.shapes"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
    )
    return Reading(process, what, msgspec.json.encode(request))


def _binary(pyz: Path) -> Reading:
    process = subprocess.Popen(
        [sys.executable, str(pyz), "contracts", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return Reading(process, str(pyz))


def _git(root: Path, *args: str) -> bytes:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise unusable(f"git {args[0]}: {said[-1] if said else 'failed'}")
    return done.stdout


def _export(ws: Workspace, ref: str, into: Path) -> Workspace:
    """The workspace as it was at ``ref``, written under ``into``."""
    if shutil.which("git") is None:
        raise unusable(f"--against {ref}: git is not installed, and {ref} is not a .pyz file")
    try:
        top = Path(_git(ws.root, "rev-parse", "--show-toplevel").decode().strip())
    except WorkspaceError:
        raise unusable(
            f"--against {ref}: {ws.root} is not in a git repository, and {ref} is not a .pyz file"
        ) from None
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=ws.root,
        capture_output=True,
        check=False,
    )
    if commit.returncode != 0:
        raise unusable(f"--against {ref}: no such commit, branch or tag in {top}")
    rel = ws.root.resolve().relative_to(top.resolve()).as_posix()
    archive = _git(top, "archive", "--format=tar", commit.stdout.decode().strip(), "--", rel)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # nothing may land outside the folder
            tar.extractall(into, filter="data")
        else:  # a Python without extraction filters: the archive is git's own
            tar.extractall(into)
    old_root = into / rel
    if not (old_root / "nano.toml").is_file():
        raise unusable(f"--against {ref}: there was no {Path(rel, 'nano.toml')} at {ref}")
    try:
        return load(old_root)
    except WorkspaceError as exc:
        first = exc.diagnostics[0]
        raise unusable(f"--against {ref}: its nano.toml cannot be used: {first.message}") from None


# -- comparing


class Comparison:
    """The two children reading the two builds, started; ``report()`` waits for both."""

    def __init__(self, ws: Workspace, ref: str) -> None:
        self.ws, self.ref = ws, ref
        self._folder = tempfile.TemporaryDirectory(prefix="nanobuild-against-")
        self._readings: list[Reading] = []
        try:
            self._readings.append(self._older(Path(self._folder.name)))
            self._readings.append(_child(ws, "this tree"))
        except BaseException:
            self.close()
            raise

    def _older(self, folder: Path) -> Reading:
        ref = self.ref
        if ref.endswith(".pyz") or Path(ref).is_file():
            if not Path(ref).is_file():
                raise unusable(f"--against {ref}: no such file")
            return _binary(Path(ref))
        return _child(_export(self.ws, ref, folder), ref)

    def report(self) -> Report:
        try:
            old, new = (reading.table() for reading in self._readings)
        finally:
            self.close()
        found = compare_tables(old.contracts, new.contracts)
        ws, ref = self.ws, self.ref
        changes = [_located(ws, name, c, ref) for name, listed in found.items() for c in listed]
        return Report(ref, old.build or ref, new.build or "this tree", changes)

    def close(self) -> None:
        """Stop the children still running, remove the exported tree."""
        for reading in self._readings:
            if reading.process.poll() is None:
                reading.process.kill()
                reading.process.communicate()
        self._folder.cleanup()


def compare(ws: Workspace, ref: str) -> Report:
    """The contract changes from ``ref`` (a git ref or a .pyz) to ``ws`` as it is now."""
    return Comparison(ws, ref).report()


def _located(ws: Workspace, contract: str, change: Change, ref: str) -> ContractChange:
    service_name, _, name = contract.partition(".")
    service = ws.services.get(service_name)
    path, line = "nano.toml", None
    if service is not None:
        path = ws.rel(service.kernel_file)
        line = _class_line(service.kernel_file, name)
    message = describe(change, f"callers built from {ref}", "this build")
    code = CODES.get(change.rule) if change.breaking else None
    return ContractChange(contract, change.rule, change.breaking, message, path, line, code)


def _class_line(kernel: Path, name: str) -> int | None:
    try:
        tree = ast.parse(kernel.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    found = (n.lineno for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return next(found, None)


# -- showing


def render_text(report: Report, found: Sequence[Diagnostic], root: Path) -> str:
    """The check's own diagnostics, then each change, compiler-style."""
    lines = [render_diagnostics(found, root)] if found else []
    shown = os.path.relpath(root, Path.cwd())
    prefix = "" if shown == "." else shown + os.sep
    for c in report.changes:
        where = prefix + c.path + (f":{c.line}" if c.line else "")
        label = c.code if c.code is not None else "compatible:"
        lines.append(f"{where}: {label} {c.contract}: {c.message}")
    return "\n".join(lines)


def summary(report: Report, name: str) -> str:
    """``mini against main: 3 changes to 2 contracts, 1 breaking``."""
    contracts = len({c.contract for c in report.changes})
    breaking = sum(c.breaking for c in report.changes)
    if not report.changes:
        return f"{name} against {report.against}: no contract changed"
    return (
        f"{name} against {report.against}: {_count(len(report.changes), 'change')} to "
        f"{_count(contracts, 'contract')}, {breaking} breaking"
    )


def render_json(report: Report, found: Sequence[Diagnostic]) -> str:
    """``{"ok", "against", "builds", "changes", "diagnostics"}`` for CI."""
    diagnostics = [*found, *report.diagnostics()]
    doc = {
        "ok": not errors(diagnostics),
        "against": report.against,
        "builds": {"old": report.old, "new": report.new},
        "changes": report.changes,
        "diagnostics": diagnostics,
    }
    return msgspec.json.format(msgspec.json.encode(doc)).decode()


def _count(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else word + 's'}"
