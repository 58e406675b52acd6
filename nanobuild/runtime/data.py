"""Each service's writable data folder, ``data_dir()``: where a service keeps its files.

A binary's code lives in its extraction, which is read-only and replaced by the next
build, so a service writes its files here instead::

    from nanobuild.runtime import data_dir

    DB = data_dir() / "users.sqlite3"

The folder is ``<NANO_DATA_DIR>/<service>``; without ``NANO_DATA_DIR``,
``<app cache>/<app>-data/<service>``, beside the binary's extractions (the app cache
is the bootstrap's: ``$NANO_APP_CACHE``, else ``$XDG_CACHE_HOME/nanobuild/apps``,
else ``~/.cache/nanobuild/apps``), so it outlives every build; ``nanobuild serve``
uses the same folders as the workspace's binary. It is made (only this user may
use it) on first use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import ClassVar

from nanobuild.runtime import bootstrap
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.spec import AppSpec


class _Wired:
    """What ``wire`` told this module: the app's name, its services, the setting."""

    app: ClassVar[str | None] = None
    packages: ClassVar[dict[str, str]] = {}  # top-level package -> its service
    services: ClassVar[frozenset[str]] = frozenset()
    setting: ClassVar[str | None] = None  # NANO_DATA_DIR
    made: ClassVar[dict[str, Path]] = {}  # service -> its folder, once made


def configure(spec: AppSpec, settings: Settings) -> None:
    """Take the services and ``NANO_DATA_DIR`` of the process ``wire`` is wiring."""
    _Wired.app = spec.name
    _Wired.packages = {s.package.partition(".")[0]: s.name for s in spec.services}
    _Wired.services = frozenset(s.name for s in spec.services)
    _Wired.setting = settings.data_dir
    _Wired.made = {}


def data_dir(service: str | None = None) -> Path:
    """The writable data folder of ``service`` (by default, the caller's), made if need be.

    The caller's service is the one whose package the calling module belongs to.
    ``RuntimeError`` when no service can be told, or no folder can be made.
    """
    name = service if service is not None else _caller_service(sys._getframe(1))
    folder = _Wired.made.get(name)
    if folder is None:
        if service is not None and _Wired.services and service not in _Wired.services:
            raise RuntimeError(f"data_dir({service!r}): there is no service {service} here")
        folder = _Wired.made[name] = _make(name)
    return folder


def _caller_service(frame: object) -> str:
    module = str(getattr(frame, "f_globals", {}).get("__name__", ""))
    parts = module.split(".")
    found = _Wired.packages.get(parts[0])
    # an adopted service's modules are loaded under a private package, then its name
    found = found or next((p for p in parts[1:2] if p in _Wired.services), None)
    if found is None and not _Wired.packages:
        found = parts[0] if parts[0] and parts[0] != "__main__" else None
    if found is None:
        raise RuntimeError(
            f'data_dir() cannot tell which service {module} belongs to; name it: data_dir("users")'
        )
    return found


def _make(service: str) -> Path:
    problems = []
    for root in _roots():
        folder = os.path.join(root, service)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
            continue
        return Path(folder)
    raise RuntimeError(f"cannot make the data folder of {service}: " + "; ".join(problems))


def _roots() -> list[str]:
    """Where the services' data folders may go, in order of preference."""
    wired = _Wired.app is not None
    setting = _Wired.setting if wired else Settings.from_env().data_dir
    if setting:
        return [os.path.expanduser(setting)]  # what the user asked for, and nothing else
    if not wired:
        raise RuntimeError(
            "data_dir() outside a wired process needs NANO_DATA_DIR (in a test, a temporary folder)"
        )
    roots = []
    for where in (bootstrap.app_cache, bootstrap.fallback_root):
        try:
            roots.append(os.path.join(where(), f"{_Wired.app}-data"))
        except (OSError, bootstrap.BootError):
            continue  # no home folder, or no private temporary folder: the next one
    return roots
