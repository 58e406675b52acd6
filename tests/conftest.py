"""Shared fixtures: a copy of a small clean workspace that each test breaks its own way."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nanobuild import checks, workspace
from nanobuild.diagnostics import Diagnostic
from tests.servers import Binary, build_binary

# fixtures that build and run binaries: a wheelhouse, a bare Python, a HOME
pytest_plugins = ["tests.packing"]

SAMPLES = Path(__file__).parent / "samples"
REPO = Path(__file__).parent.parent


class Sample:
    """A workspace copied into a temporary folder, with small editing helpers."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1))

    def load(self) -> workspace.Workspace:
        return workspace.load(self.root)

    def check(self) -> list[Diagnostic]:
        return checks.run(self.load())

    def only(self, code: str) -> Diagnostic:
        """The single diagnostic of the check; it must have ``code``."""
        found = self.check()
        assert [d.code for d in found] == [code], found
        return found[0]


@pytest.fixture(scope="session")
def boutique_binary(tmp_path_factory: pytest.TempPathFactory) -> Binary:
    """``dist/boutique.pyz``, built once per test session from a copy of the example."""
    return build_binary(REPO, tmp_path_factory.mktemp("boutique-binary"))


@pytest.fixture
def mini(tmp_path: Path) -> Sample:
    shutil.copytree(SAMPLES / "mini", tmp_path / "mini")
    return Sample(tmp_path / "mini")
