"""Diagnostics: what every check reports, and how it is shown.

A diagnostic reads like a compiler's::

    services/checkout/checkout/handlers.py:3: E104 checkout imports cart.store.CARTS,
        which is not the kernel of cart
        hint: use only what cart.kernel offers; ask cart to add a contract for what you need

(one line each in practice; folded here).

Paths are relative to the workspace root. Codes are stable: each names one kind of
problem; ``nanobuild.codes`` lists them all, and so does the README.

A code's letter is its severity: an ``E`` code is an error, which fails ``check`` and
stops ``bundle`` and ``serve``; a ``W`` code is a warning, shown and never failing
anything (``errors`` picks out the diagnostics that count).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from nanobuild.codes import TITLES, Code

Severity = Literal["error", "warning"]


class Diagnostic(msgspec.Struct, frozen=True, omit_defaults=True):
    """One problem, at one place."""

    path: str
    code: Code
    message: str
    line: int | None = None
    hint: str | None = None
    # Set from the code, whatever is passed. An error's is left out of JSON (the
    # default), so that errors read as they did before there were warnings.
    severity: Severity = "error"

    def __post_init__(self) -> None:
        # a code that is not in the registry would be one the README cannot explain
        if self.code not in TITLES:
            raise ValueError(f"{self.code!r} is not a diagnostic code of nanobuild.codes")
        severity: Severity = "warning" if self.code.startswith("W") else "error"
        if self.severity != severity:
            msgspec.structs.force_setattr(self, "severity", severity)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.path, self.line or 0, self.code, self.message)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the candidate closest to ``name``, if one is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The diagnostics that fail a check: every one but the warnings."""
    return [d for d in diagnostics if d.is_error]


def sorted_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in a stable order: by file, line, then code; duplicates dropped."""
    return sorted(set(diagnostics), key=Diagnostic.sort_key)


def render_text(diagnostics: Sequence[Diagnostic], root: Path | None = None) -> str:
    """Compiler-style text, one problem a line (plus an indented hint line)."""
    prefix = _display_prefix(root)
    lines: list[str] = []
    for d in diagnostics:
        where = prefix + d.path + (f":{d.line}" if d.line else "")
        kind = "" if d.is_error else "warning: "
        lines.append(f"{where}: {d.code} {kind}{d.message}")
        if d.hint:
            lines.append(f"    hint: {d.hint}")
    return "\n".join(lines)


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """A JSON document for CI: ``{"ok": bool, "diagnostics": [...]}``; ``ok`` unless
    there is an error (warnings carry ``"severity": "warning"``)."""
    doc = {"ok": not errors(diagnostics), "diagnostics": list(diagnostics)}
    return msgspec.json.format(msgspec.json.encode(doc)).decode()


def _display_prefix(root: Path | None) -> str:
    """How to reach the workspace root from the current folder, for clickable paths."""
    if root is None:
        return ""
    try:
        rel = os.path.relpath(root, Path.cwd())
    except ValueError:  # another drive, on Windows
        return f"{root}{os.sep}"
    return "" if rel == "." else rel + os.sep
