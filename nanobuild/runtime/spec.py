"""The contract between the build side and the binary: plain data, nothing else.

``nanobuild serve`` builds an ``AppSpec`` from the workspace's source; ``nanobuild
bundle`` writes the same ``AppSpec`` and a ``BuildInfo`` as literals into the
generated ingress module. The runtime wires whatever it is handed. This is the only
module of the runtime that the build side imports, so it imports nothing but msgspec.
"""

from __future__ import annotations

import sys

import msgspec

__version__ = "0.1.0"  # the one place the version lives; the build side reads it here


class ServiceSpec(msgspec.Struct, frozen=True):
    """One service as the runtime needs to know it. Functions are named ``module:function``."""

    name: str
    package: str
    handlers: dict[str, str]  # contract name -> its handler
    hooks: tuple[str, ...] = ()  # its @on_startup and @on_shutdown functions
    public: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()


class AppSpec(msgspec.Struct, frozen=True):
    """The whole workspace: services in start-up order (dependencies first)."""

    name: str
    services: tuple[ServiceSpec, ...]
    static: str | None = None  # folder of the static frontend, served at /
    packed: tuple[str, ...] | None = None  # the services whose code is here; None: all

    def service(self, name: str) -> ServiceSpec:
        return next(s for s in self.services if s.name == name)

    @property
    def carried(self) -> tuple[str, ...]:
        """The services whose code this binary (or source tree) carries."""
        return self.packed if self.packed is not None else tuple(s.name for s in self.services)


class BuildInfo(msgspec.Struct, frozen=True):
    """What ``nanobuild bundle`` records about a build, for ``info``."""

    workspace: str
    nanobuild: str
    inputs: str  # sha256 of nano.toml and every packed workspace file
    built_at: int | None = None  # SOURCE_DATE_EPOCH, when the build set one
    host: str = "127.0.0.1"
    port: int = 8000


def python_binding() -> str:
    """What a build's compiled packages are bound to: ``cpython-311 linux``.

    The builder records it; the binary's bootstrap, which runs before any package of
    the binary can be imported, computes the same text with its own copy of these
    two lines and refuses to start on another Python (a test keeps them equal).
    """
    return f"{sys.implementation.cache_tag} {sys.platform}"
