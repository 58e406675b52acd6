"""Whether several requirement sets can be met by one installed version."""

from __future__ import annotations

import pytest

from nanobuild.requirements import RUNTIME_REQUIRES, clashes, satisfiable
from nanobuild.workspace import tomllib
from tests.conftest import REPO


@pytest.mark.parametrize(
    "specifiers",
    [
        [">=2.5", "<3"],
        ["~=2.5", "!=2.6.0"],
        ["==2.5.*", ">2.5"],
        [">1.0", "<1.0.1"],
        ["", ">=1"],
        ["==1.2.3", ">=1.2,<1.3"],
    ],
)
def test_satisfiable(specifiers: list[str]) -> None:
    assert satisfiable(specifiers)


@pytest.mark.parametrize(
    "specifiers",
    [["<2", ">=2.5"], ["==1.0", "==1.1"], ["~=2.5", ">=3"], [">1", "<1"], ["==2.*", "<2"]],
)
def test_unsatisfiable(specifiers: list[str]) -> None:
    assert not satisfiable(specifiers)


def test_clash_names_the_smallest_pair() -> None:
    parties = [
        ("service a", ["pydantic<2"]),
        ("service b", ["pydantic>=1.5"]),
        ("service c", ["Pydantic>=2.5", "httpx"]),
    ]
    [clash] = clashes(parties)
    assert clash.distribution == "pydantic"
    assert [n.who for n in clash.needs] == ["service a", "service c"]


def test_markers_false_here_do_not_count() -> None:
    parties = [("a", ["x<2; python_version < '3'"]), ("b", ["x>=3"])]
    assert list(clashes(parties)) == []


def test_runtime_requirements_match_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert set(RUNTIME_REQUIRES) <= set(project["dependencies"])
