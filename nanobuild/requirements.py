"""Third-party requirements: what the runtime needs, and whether several sets of
PEP 508 requirements can be satisfied together.

The check is offline: it knows no package index, so it asks only whether the
version ranges intersect. Each range is a union of intervals bounded by the
versions the specifiers name, so testing those versions, a point just above each,
and the two far ends finds a version in the intersection whenever there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# What every binary carries for the runtime itself (kept in step with pyproject.toml).
# uvloop and httptools make the server's default stack (see runtime/server.py): on
# the HTTP face ~3.7x the requests/s of asyncio + h11; uvloop has no Windows build.
RUNTIME_REQUIRES = (
    "msgspec>=0.18",
    "starlette>=0.37",
    "uvicorn>=0.29",
    "uvloop>=0.19; sys_platform != 'win32' and platform_python_implementation == 'CPython'",
    "httptools>=0.6",
)
RUNTIME_PARTY = "the nanobuild runtime"  # who needs RUNTIME_REQUIRES, in messages

_FAR_END = Version("99999")
_FLOOR = Version("0")


class Need(msgspec.Struct, frozen=True):
    """One party's requirement on one distribution."""

    who: str  # "service checkout", "library money", RUNTIME_PARTY
    text: str  # the requirement as written
    specifier: str


class Clash(msgspec.Struct, frozen=True):
    """Needs on one distribution that no single version satisfies."""

    distribution: str
    needs: tuple[Need, ...]


def distribution(requirement: str) -> str:
    """The canonical name of the distribution a PEP 508 requirement names (``pydantic``
    of ``Pydantic>=2``); the text itself when it is not one (E007 names that)."""
    try:
        return str(canonicalize_name(Requirement(requirement.strip()).name))
    except ValueError:
        return requirement.strip()


def needs_by_distribution(parties: Iterable[tuple[str, Iterable[str]]]) -> dict[str, list[Need]]:
    """Group each party's requirements by distribution; markers false here are dropped."""
    grouped: dict[str, list[Need]] = {}
    for who, requirements in parties:
        for text in requirements:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate():
                continue
            need = Need(who, text, str(req.specifier))
            grouped.setdefault(canonicalize_name(req.name), []).append(need)
    return grouped


def clashes(parties: Iterable[tuple[str, Iterable[str]]]) -> Iterator[Clash]:
    """Each distribution whose needs cannot be met together, with a smallest clashing set."""
    for distribution, needs in sorted(needs_by_distribution(parties).items()):
        if satisfiable(n.specifier for n in needs):
            continue
        pair = next(
            (
                (a, b)
                for i, a in enumerate(needs)
                for b in needs[i + 1 :]
                if not satisfiable([a.specifier, b.specifier])
            ),
            None,
        )
        yield Clash(distribution, pair or tuple(needs))


def satisfiable(specifiers: Iterable[str]) -> bool:
    """Whether some version satisfies every specifier set at once."""
    combined = SpecifierSet(",".join(s for s in specifiers if s))
    if not str(combined):
        return True
    return any(combined.contains(v, prereleases=True) for v in _candidates(combined))


def _candidates(specifiers: SpecifierSet) -> Iterator[Version]:
    yield _FLOOR
    yield _FAR_END
    for spec in specifiers:
        try:
            bound = Version(spec.version.removesuffix(".*"))
        except InvalidVersion:  # '===' takes arbitrary strings
            continue
        yield bound
        # just above the bound, below any other bound a requirement would name
        yield Version(".".join(map(str, (*bound.release, 0, 0, 0, 0, 1))))
