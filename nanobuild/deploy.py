"""``nanobuild deploy compose|k8s``: nano.toml's placement -> files a cluster runs.

From the placement groups (``[placement.<group>]``, each service in no group alone)
it writes, into one folder (``deploy/`` by default):

- ``Containerfile``: the one image of every group, the binary alone on a Python base;
- ``compose.yaml`` (``compose``): a service per group, its replicas, its health check;
- ``k8s/`` (``k8s``): per group a Deployment, a headless Service and, with replicas,
  a PodDisruptionBudget; the front door's Service; a ``kustomization.yaml``.

The output is a function of the workspace and the options alone: sorted, without
times or paths of this machine, so that it can be committed and diffed. The folder is
written whole or not at all (into a temporary folder beside it, then renamed), and
never over a file this command did not write: ``.nanobuild-deploy.json`` in it lists
what it wrote, with each file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import msgspec

from nanobuild import __version__, codes
from nanobuild.checks.placement import all_groups, calls, front
from nanobuild.codegen import environment, templates_dir
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import BuildError
from nanobuild.runtime.spec import DEFAULT_DISCOVERY, DISCOVERY_VARIABLE, SECRET_FILE_VARIABLE
from nanobuild.workspace import Group, Workspace

TARGETS = ("compose", "k8s")
MANIFEST = ".nanobuild-deploy.json"
SECRET_FILE = "nano_secret"  # the user's: deploy names it, never writes it, keeps it
COMMON = "common"  # the target of the files both targets write (the Containerfile)
UID = 10001  # the image's user: not root, and no user of a usual host
# where each target mounts the secret (Kubernetes keeps /run/secrets for its own)
SECRET_PATHS = {"compose": f"/run/secrets/{SECRET_FILE}", "k8s": f"/etc/nano/{SECRET_FILE}"}
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")  # one word, no quotes or spaces


def default_base() -> str:
    """The base image: the slim image of the Python the binary is built for (``bundle``
    binds it to this Python's version, and the binary refuses another)."""
    return f"docker.io/library/python:{sys.version_info[0]}.{sys.version_info[1]}-slim"


def deploy(ws: Workspace, target: str, out: Path, *, base_image: str | None = None) -> list[str]:
    """Write ``target``'s files into ``out``; the paths written, relative to ``out``.

    ``BuildError`` (E045) for an unknown target, a base image that is not one word, or
    a folder holding files this command did not write (named), leaving it as it was.
    """
    if target not in TARGETS:
        raise _refused(str(out), f"unknown target {target!r}: use {' or '.join(TARGETS)}")
    base = default_base() if base_image is None else base_image
    if not _IMAGE.match(base):
        raise _refused(str(out), f"--base-image {base!r} is not an image reference")
    files = render(ws, target, out, base)
    write(out, files, target)
    return sorted(files)


def render(ws: Workspace, target: str, out: Path, base: str) -> dict[str, tuple[str, str]]:
    """Each file of ``target``: relative path -> (its target, its text)."""
    values = _values(ws, target, out, base)
    files = {
        "Containerfile": (COMMON, _render("Containerfile.j2", values)),
        ".gitignore": (COMMON, _render("gitignore.j2", values)),
    }
    if target == "compose":
        files["compose.yaml"] = (target, _render("compose.yaml.j2", values))
        return files
    for group in values["groups"]:
        text = _render("k8s/group.yaml.j2", {**values, "group": group})
        files[f"k8s/{group['name']}.yaml"] = (target, text)
    for name in ("kustomization.yaml", "secret.example.yaml"):
        files[f"k8s/{name}"] = (target, _render(f"k8s/{name}.j2", values))
    return files


def _values(ws: Workspace, target: str, out: Path, base: str) -> dict[str, Any]:
    """What the templates are rendered from: the same for both targets, but the secret's path."""
    app = label(ws.name)
    binary = f"{ws.name}.pyz"
    context = Path(os.path.relpath(ws.root, out.resolve())).as_posix()
    shown_out = Path(os.path.relpath(out.resolve(), ws.root)).as_posix()
    discovery = ws.deploy.discovery if "{group}" in ws.deploy.discovery else DEFAULT_DISCOVERY
    groups = sorted(all_groups(ws), key=lambda g: g.name)
    edges = calls(ws)
    entry = front(ws)
    return {
        "version": __version__,
        "name": ws.name,
        "app": app,
        "project": app,
        "image": f"localhost/{app}:latest" if target == "compose" else f"{app}:latest",
        "image_name": app,
        "image_tag": "latest",
        "base": base,
        "python": f"Python {sys.version_info[0]}.{sys.version_info[1]}",
        "uid": UID,
        "binary": f"dist/{binary}",
        "binary_name": binary,
        "containerfile": f"{shown_out}/Containerfile",
        "context": context,
        "out": shown_out,
        "http_port": ws.ingress.port,
        "internal_ports": sorted({g.internal_port for g in groups}),
        "front": entry,
        "groups": [_group(g, edges, entry, groups) for g in groups],
        "discovery": discovery,
        "discovery_variable": DISCOVERY_VARIABLE,
        "secret_file_variable": SECRET_FILE_VARIABLE,
        "secret_file": SECRET_FILE,
        "secret_path": SECRET_PATHS.get(target, SECRET_PATHS["compose"]),
        "secret_dir": SECRET_PATHS["k8s"].rpartition("/")[0],
        "secret_name": f"{app}-secret",
        "probe": _probe(ws.ingress.port),
        "published": _published(ws, entry),
    }


def _group(
    group: Group, edges: dict[str, set[str]], entry: str, groups: list[Group]
) -> dict[str, Any]:
    """One group as the templates read it: the front door depends on every other group."""
    depends = {g.name for g in groups} - {entry} if group.name == entry else edges[group.name]
    return {
        "name": group.name,
        "services": list(group.services),
        "replicas": group.replicas,
        "internal_port": group.internal_port,
        "cpu": group.cpu,
        "memory": group.memory,
        "cpus": _cores(group.cpu),
        "memory_bytes": _bytes(group.memory),
        "depends": sorted(depends),
    }


def _published(ws: Workspace, entry: str) -> str:
    """The host ports of the front door's replicas: one each (Compose takes a range)."""
    replicas = next(g.replicas for g in all_groups(ws) if g.name == entry)
    port = ws.ingress.port
    host = f"{port}-{port + replicas - 1}" if replicas > 1 else str(port)
    return f"{host}:{port}"


def _probe(port: int) -> str:
    """The health check a container runs: its Python, asking its own face for /readyz."""
    return (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}/readyz', timeout=2)"
    )


def label(name: str) -> str:
    """``name`` as a DNS label (Kubernetes names, Compose's project): ``My_Shop`` -> ``my-shop``."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    text = text if text[:1].isalpha() else f"app-{text}"
    return text[:50].rstrip("-")


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_SUFFIXES |= {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _cores(cpu: str | None) -> str | None:
    """A Kubernetes CPU quantity as Compose's ``cpus``: ``500m`` -> ``0.5``."""
    if cpu is None:
        return None
    if cpu.endswith("m"):
        return f"{int(cpu[:-1]) / 1000:g}"
    return f"{float(cpu):g}"


def _bytes(memory: str | None) -> int | None:
    """A Kubernetes memory quantity in bytes, for Compose: ``256Mi`` -> 268435456."""
    if memory is None:
        return None
    digits = memory.rstrip("KMGTik")
    return int(digits) * _SUFFIXES.get(memory[len(digits) :], 1)


@cache
def _environment() -> jinja2.Environment:
    env = environment(templates_dir() / "deploy")
    env.filters["q"] = json.dumps  # a JSON string is a YAML (and Containerfile) string
    return env


def _render(name: str, values: dict[str, Any]) -> str:
    return _environment().get_template(name).render(**values)


# -- writing: whole or not at all, and never over what this command did not write


class Written(msgspec.Struct):
    """``.nanobuild-deploy.json``: each file written, its target and sha256."""

    files: dict[str, tuple[str, str]] = {}  # path -> (target, sha256)


def write(out: Path, files: dict[str, tuple[str, str]], target: str) -> None:
    """Put ``files`` into ``out``, keeping the other target's files and the secret file.

    The new folder is made beside ``out`` and renamed into its place, so ``out`` holds
    either what it held or all that is new; ``BuildError`` (E045) naming the files
    that are not this command's (or changed since it wrote them), writing nothing.
    """
    if out.exists() and not out.is_dir():
        raise _refused(str(out), f"--out {out} is a file, not a folder: give a folder")
    before = _written(out)
    foreign = sorted(_foreign(out, before))
    if foreign:
        shown = ", ".join(foreign[:8]) + (
            f" and {len(foreign) - 8} more" if len(foreign) > 8 else ""
        )
        raise _refused(
            str(out),
            f"{out} holds files `nanobuild deploy` did not write, or changed since: {shown}",
            "move them out of it (an overlay goes beside it, not in it), or give --out "
            "another folder; nothing was written",
        )
    kept = {p: f for p, f in before.files.items() if f[0] not in (target, COMMON)}
    try:
        _replace(out, files, kept)
    except OSError as exc:
        raise _refused(str(out), f"cannot write {out}: {exc.strerror or exc}") from None


def _written(out: Path) -> Written:
    try:
        return msgspec.json.decode((out / MANIFEST).read_bytes(), type=Written)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError):
        return Written()  # no list: every file there is someone else's


def _foreign(out: Path, before: Written) -> Iterator[str]:
    """The files in ``out`` that are not as this command wrote them."""
    if not out.is_dir():
        return
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if rel in (MANIFEST, SECRET_FILE) or (path.is_dir() and not path.is_symlink()):
            continue
        listed = before.files.get(rel)
        if listed is None or path.is_symlink() or not path.is_file() or _sha(path) != listed[1]:
            yield rel


def _replace(
    out: Path, files: dict[str, tuple[str, str]], kept: dict[str, tuple[str, str]]
) -> None:
    fresh = out.parent / f".{out.name}.new-{os.getpid()}"
    stale = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(fresh, ignore_errors=True)
    try:
        fresh.mkdir(parents=True)
        manifest = Written()
        for rel, (target, text) in sorted(files.items()):
            data = text.encode()
            _put(fresh / rel, data)
            manifest.files[rel] = (target, hashlib.sha256(data).hexdigest())
        for rel, listed in kept.items():
            if (out / rel).is_file() and rel not in files:
                _put(fresh / rel, (out / rel).read_bytes())
                manifest.files[rel] = listed
        if (out / SECRET_FILE).is_file():
            shutil.copy2(out / SECRET_FILE, fresh / SECRET_FILE)
        ordered = Written(files=dict(sorted(manifest.files.items())))
        _put(fresh / MANIFEST, msgspec.json.format(msgspec.json.encode(ordered)) + b"\n")
        if out.exists():
            os.rename(out, stale)
        try:
            os.rename(fresh, out)
        except OSError:
            if stale.exists():
                os.rename(stale, out)  # put the old folder back
            raise
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(where: str, message: str, hint: str | None = None) -> BuildError:
    return BuildError([Diagnostic(where, codes.E045, message, hint=hint)])
