"""Real containers for tests: podman on this machine, with no container registry.

What it takes (``.ci/run`` installs it): Debian's ``podman runc netavark aardvark-dns
debootstrap`` and podman-compose from PyPI (the ``test`` extra). Every podman command
runs with ``CONTAINERS_CONF`` naming ``tests/samples/containers/containers.conf`` and
podman's default storage (the base image stays there between runs).

- ``require_podman()`` skips the calling test module, naming why podman cannot run
  here (``podman_available()`` gives that reason); ``NANO_REQUIRE_PODMAN=1`` makes it a
  failure instead.
- ``base_image()`` is ``localhost/nanobuild-python:3.11``: a Debian root file system
  with python3 made by ``debootstrap`` and imported, rebuilt only when its recipe
  changes; the root file system's tarball is cached in ``cache_dir()``.
  ``slim_base_image()`` is that image with ``python`` too, which the Containerfile
  ``nanobuild deploy`` writes runs (as the official Python images have it).
- ``Lab`` is what one test made: ``build_image`` (or ``build_containerfile``, from a
  generated Containerfile), ``network``, ``run`` (a
  ``Container``), ``compose_up``/``compose_down``; ``close()`` removes all of it (saving
  each container's log first), whether the test passed or not. While a lab is open it
  runs the health checks of its containers itself, as systemd's timers would: podman
  needs systemd for that, and these machines run none.

A test on top of it (see tests/test_containers.py)::

    require_podman()
    with Lab(tmp_path, "boutique") as lab:
        image = lab.build_image(binary.pyz)          # on base_image()
        services = lab.compose_up(folder, NANO_TEST_IMAGE=image, NANO_SECRET=secret)
        [front] = services["front"]                  # a Container, by compose number
        wait_http(front.url() + "/healthz")          # its published port on 127.0.0.1
        services["catalog"][1].kill()                # one replica of two
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

SAMPLES = Path(__file__).parent / "samples" / "containers"
CONF = SAMPLES / "containers.conf"
CONTAINERFILE = SAMPLES / "Containerfile"

# The base image: what it is built from is its cache key (a change rebuilds it).
BASE_IMAGE = "localhost/nanobuild-python:3.11"
SUITE = "bookworm"  # its python3 is 3.11, the minor version the binaries are built for
INCLUDE = ("python3",)
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
        "var/cache/apt", "var/lib/apt/lists")  # fmt: skip
RECIPE = json.dumps(["debootstrap", "--variant=minbase", SUITE, INCLUDE, TRIM, 1])
RECIPE_KEY = hashlib.sha256(RECIPE.encode()).hexdigest()[:16]
RECIPE_LABEL = "nanobuild.test.recipe"
MIRROR = os.environ.get("NANO_DEBIAN_MIRROR", "http://deb.debian.org/debian")

LAB_LABEL = "nanobuild.test.lab"  # on every container, network and image a lab makes
PODMAN_TIMEOUT = 120.0
COMPOSE = [sys.executable, "-m", "podman_compose"]


class PodmanError(Exception):
    """A podman command failed; the message holds the command and what it printed."""


def environment() -> dict[str, str]:
    """This process's environment with podman pointed at the tests' containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONF)}


def podman(*args: str, timeout: float = PODMAN_TIMEOUT, stdin: Any = None) -> str:
    """Run ``podman args`` and return its stdout; raise PodmanError if it fails."""
    return _run(["podman", *args], timeout=timeout, stdin=stdin)


def _run(command: list[str], *, timeout: float, stdin: Any = None, **env: str) -> str:
    try:
        done = subprocess.run(
            command,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**environment(), **env},
        )
    except subprocess.TimeoutExpired as e:
        raise PodmanError(f"{' '.join(command)}: no answer in {timeout:.0f} s") from e
    if done.returncode != 0:
        raise PodmanError(f"{' '.join(command)}: exit {done.returncode}\n{done.stderr.strip()}")
    return done.stdout


def podman_available() -> str | None:
    """None if podman can run this module's containers here, else the precise reason."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc netavark aardvark-dns)"
    try:
        info = json.loads(podman("info", "--format", "json", timeout=60))
    except (PodmanError, ValueError) as e:
        return f"podman does not work here: {e}"
    backend = info["host"].get("networkBackend")
    if backend != "netavark":
        return (
            f"podman's network backend is {backend!r}, not netavark (no names between containers)"
        )
    if not any(
        Path(d, "aardvark-dns").exists() for d in ("/usr/lib/podman", "/usr/libexec/podman")
    ):
        return "aardvark-dns is not installed: containers would not find each other by name"
    try:
        import podman_compose  # noqa: F401
    except ImportError:
        return "podman-compose is not installed (pip install -e '.[test]')"
    if shutil.which("debootstrap") is None and not _image_has_recipe(BASE_IMAGE):
        return f"debootstrap is not installed and there is no {BASE_IMAGE} to reuse"
    return None


def require_podman() -> None:
    """Skip the calling module, naming why podman cannot run (fail under NANO_REQUIRE_PODMAN=1)."""
    reason = podman_available()
    if reason is None:
        return
    if os.environ.get("NANO_REQUIRE_PODMAN") == "1":
        raise RuntimeError(f"NANO_REQUIRE_PODMAN=1 but {reason}")
    pytest.skip(f"podman cannot run containers here: {reason}", allow_module_level=True)


# --- the base image -------------------------------------------------------------------


def cache_dir() -> Path:
    """``$NANO_CONTAINER_CACHE``, else ``$XDG_CACHE_HOME/nanobuild-tests/containers``."""
    if override := os.environ.get("NANO_CONTAINER_CACHE"):
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "nanobuild-tests" / "containers"


def base_image() -> str:
    """The local base image's tag, built (or imported from the cached tarball) if need be.

    Several test sessions may ask at once: a lock in the cache folder lets one build
    while the others wait for it.
    """
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{RECIPE_KEY}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _image_has_recipe(BASE_IMAGE):
            _import(_rootfs_tarball(cache), BASE_IMAGE)
    return BASE_IMAGE


def _image_has_recipe(tag: str) -> bool:
    try:
        labels = podman("image", "inspect", "--format", "{{json .Labels}}", tag, timeout=30)
    except PodmanError:
        return False
    return (json.loads(labels) or {}).get(RECIPE_LABEL) == RECIPE_KEY


def _rootfs_tarball(cache: Path) -> Path:
    """The cached root file system of the recipe, made with debootstrap if it is not there."""
    tarball = cache / f"rootfs-{SUITE}-{RECIPE_KEY}.tar"
    if tarball.exists():
        return tarball
    with tempfile.TemporaryDirectory(dir=cache, prefix="debootstrap-") as work:
        root = Path(work) / "root"
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}"]
        _run([*command, SUITE, str(root), MIRROR], timeout=1200)
        for rel in TRIM:  # what an image never reads: docs, locales, apt's package lists
            shutil.rmtree(root / rel, ignore_errors=True)
        partial = Path(work) / "rootfs.tar"
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], timeout=300)
        partial.replace(tarball)  # whole or absent: an interrupted build leaves no tarball
    return tarball


def _import(tarball: Path, tag: str) -> None:
    with tarball.open("rb") as data:
        podman(
            "import",
            "--change", f"LABEL {RECIPE_LABEL}={RECIPE_KEY}",
            "--change", 'CMD ["python3"]',
            "-", tag,
            stdin=data,
            timeout=600,
        )  # fmt: skip
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    got = podman(
        "run", "--rm", tag, "python3", "-c", "import sys; print(*sys.version_info[:2], sep='.')"
    )
    if got.strip() != want:
        podman("rmi", tag)  # never reused: its label would say it is right
        raise PodmanError(f"{tag} has Python {got.strip()}, the binaries need {want}")


# What `nanobuild deploy`'s Containerfile runs (`python`, as the official Python images
# have it): the base image plus that one name, made once beside it.
SLIM_IMAGE = "localhost/nanobuild-python:3.11-slim"
SLIM_LABEL = "nanobuild.test.slim"
SLIM_KEY = hashlib.sha256(f"{RECIPE}+python".encode()).hexdigest()[:16]


def slim_base_image() -> str:
    """``base_image()`` with ``python`` on its PATH too, as ``python:3.11-slim`` has it.

    Made from the base image once and kept (a change of the base's recipe remakes it).
    """
    base = base_image()
    with (cache_dir() / f"{SLIM_KEY}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _image_has_label(SLIM_IMAGE, SLIM_LABEL, SLIM_KEY):
            with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="slim-") as context:
                recipe = f"FROM {base}\nRUN ln -s python3 /usr/bin/python\n"
                Path(context, "Containerfile").write_text(recipe)
                podman("build", "--pull=never", "--label", f"{SLIM_LABEL}={SLIM_KEY}",
                       "-t", SLIM_IMAGE, context, timeout=600)  # fmt: skip
    return SLIM_IMAGE


def _image_has_label(tag: str, label: str, value: str) -> bool:
    try:
        labels = podman("image", "inspect", "--format", "{{json .Labels}}", tag, timeout=30)
    except PodmanError:
        return False
    return (json.loads(labels) or {}).get(label) == value


# --- what one test makes --------------------------------------------------------------


class Container:
    """A container a lab started: its name, the host ports it publishes, its log and exit."""

    def __init__(self, name: str) -> None:
        self.name = name

    def inspect(self) -> dict[str, Any]:
        [data] = json.loads(podman("container", "inspect", self.name))
        return dict(data)

    def port(self, inside: int = 8000) -> int:
        """The port on 127.0.0.1 that reaches the container's port ``inside``."""
        return int(podman("port", self.name, str(inside)).strip().rsplit(":", 1)[1])

    def url(self, inside: int = 8000) -> str:
        return f"http://127.0.0.1:{self.port(inside)}"

    def address(self) -> str:
        """The container's address on its (first) network."""
        networks = self.inspect()["NetworkSettings"]["Networks"]
        return str(next(iter(networks.values()))["IPAddress"])

    def logs(self) -> str:
        """What the container wrote, stdout and stderr interleaved."""
        done = subprocess.run(
            ["podman", "logs", self.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=30,
            env=environment(),
        )
        return done.stdout

    def exec(self, *command: str, timeout: float = 60) -> str:
        return podman("exec", self.name, *command, timeout=timeout)

    def stop(self, timeout: int = 10) -> int:
        """SIGTERM (SIGKILL after ``timeout`` s); the exit code."""
        podman("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        return int(self.inspect()["State"]["ExitCode"])

    def kill(self) -> None:
        podman("kill", self.name)

    def start(self) -> None:
        """Start it again (stopped or killed), with its name, network and settings."""
        podman("start", self.name)

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def health(self) -> str:
        """``healthy``, ``unhealthy``, ``starting`` or ``""`` (no health check)."""
        health = self.inspect()["State"].get("Health") or {}
        return str(health.get("Status", ""))


class Lab:
    """The containers, networks, images and compose projects of one test.

    ``close()`` saves each container's log to ``folder`` and removes everything it
    made; its names all start with ``id`` (random), so two sessions never meet.
    """

    def __init__(self, folder: Path, name: str = "t") -> None:
        self.folder = folder
        short = "".join(ch for ch in name.lower() if ch.isalnum())[-16:] or "t"
        self.id = f"nbt-{short}-{secrets.token_hex(3)}"
        self.containers: list[Container] = []
        self.projects: dict[str, Path] = {}  # compose project -> its compose file
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_health, daemon=True)
        self._ticker.start()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def name(self, what: str) -> str:
        return f"{self.id}-{what}"

    def build_image(self, pyz: Path, tag: str = "", base: str = "") -> str:
        """An image holding only ``pyz`` on ``base`` (the local base image by default)."""
        tag = tag or f"localhost/{self.id}:latest"
        context = Path(tempfile.mkdtemp(dir=self.folder, prefix="image-"))
        shutil.copy2(pyz, context / pyz.name)
        (context / "Containerfile").write_text(CONTAINERFILE.read_text().replace("@PYZ@", pyz.name))
        podman(
            "build", "--pull=never", "--build-arg", f"BASE={base or base_image()}",
            "--label", f"{LAB_LABEL}={self.id}", "-t", tag, str(context),
            timeout=600,
        )  # fmt: skip
        return tag

    def build_containerfile(
        self, containerfile: Path, context: Path, tag: str = "", base: str = ""
    ) -> str:
        """An image built from ``containerfile`` (one ``nanobuild deploy`` wrote) in
        ``context``, its ``BASE`` the local base image with ``python`` by default."""
        tag = tag or f"localhost/{self.id}:latest"
        podman(
            "build", "--pull=never", "--build-arg", f"BASE={base or slim_base_image()}",
            "--label", f"{LAB_LABEL}={self.id}", "-f", str(containerfile), "-t", tag,
            str(context),
            timeout=600,
        )  # fmt: skip
        return tag

    def network(self, what: str = "net") -> str:
        """A new network with name resolution: its containers find each other by name."""
        name = self.name(what)
        podman("network", "create", "--label", f"{LAB_LABEL}={self.id}", name)
        [info] = json.loads(podman("network", "inspect", name))
        if not info.get("dns_enabled"):
            raise PodmanError(f"network {name} has no DNS: {info}")
        return name

    def run(
        self,
        image: str,
        what: str,
        *command: str,
        network: str = "",
        env: Mapping[str, str] | None = None,
        publish: Sequence[int] = (),
        health: str = "",
    ) -> Container:
        """Start a container of ``image`` named ``<lab>-<what>`` (its name on ``network``).

        ``publish`` lists container ports reachable on 127.0.0.1 (``Container.port``);
        ``health`` is a health-check URL path inside the container (``/healthz``).
        """
        name = self.name(what)
        options = ["--name", name, "--label", f"{LAB_LABEL}={self.id}"]
        options += [f"--network={network}"] if network else []
        options += [f"--env={k}={v}" for k, v in (env or {}).items()]
        options += [f"--publish=127.0.0.1::{port}" for port in publish]
        if health:
            options += ["--health-cmd", health_command(health), "--health-interval", "1s"]
        podman("run", "--detach", *options, image, *command)
        container = Container(name)
        self.containers.append(container)
        return container

    def compose_up(self, folder: Path, **env: str) -> dict[str, list[Container]]:
        """``podman-compose up`` of ``folder/compose.yaml``; each service's containers.

        podman 4.3 cannot wait for health (podman-compose skips ``service_healthy``
        there, with a warning), so podman-compose creates the containers and this starts
        them in ``depends_on`` order, each once what it depends on is started, healthy or
        completed, as the conditions say. ``env`` fills the file's ``${VARIABLES}``.
        """
        project = self.name(f"c{len(self.projects)}")
        file = folder / "compose.yaml"
        self.projects[project] = file
        self._compose(project, file, env, "up", "--detach", "--no-start")
        services = self.project_containers(project)
        for service in _start_order(file):
            for dependency, condition in _depends(file, service).items():
                _wait_for(services[dependency], condition)
            podman("start", *(c.name for c in services[service]))
        return services

    def compose_down(self, project: str = "") -> None:
        """``podman-compose down`` of ``project`` (the last one brought up by default)."""
        project = project or list(self.projects)[-1]
        self._save_logs(self._containers_of(project))
        self._compose(project, self.projects.pop(project), {}, "down", "-t", "0")

    def project_containers(self, project: str = "") -> dict[str, list[Container]]:
        """Each service of ``project`` (the last one by default): its containers, by number."""
        project = project or list(self.projects)[-1]
        found = json.loads(podman("ps", "-a", "--format", "json", "--filter",
                                  f"label=io.podman.compose.project={project}"))  # fmt: skip
        services: dict[str, list[tuple[int, Container]]] = {}
        for c in found:
            labels = c["Labels"]
            number = int(labels["com.docker.compose.container-number"])
            services.setdefault(labels["com.docker.compose.service"], []).append(
                (number, Container(c["Names"][0]))
            )
        return {
            name: [c for _, c in sorted(cs, key=lambda nc: nc[0])] for name, cs in services.items()
        }

    def _compose(self, project: str, file: Path, env: Mapping[str, str], *args: str) -> None:
        _run([*COMPOSE, "-p", project, "-f", str(file), *args], timeout=600, **env)

    def _containers_of(self, project: str) -> list[Container]:
        return [c for cs in self.project_containers(project).values() for c in cs]

    def all_containers(self) -> list[Container]:
        return self.containers + [c for p in self.projects for c in self._containers_of(p)]

    def _tick_health(self) -> None:
        # systemd's timers run podman's health checks; with no systemd, this thread does:
        # each running container of the lab that has one, at the interval it gives
        due: dict[str, float] = {}
        while not self._stop.wait(1.0):  # podman's timers have a 1 s grain too
            with contextlib.suppress(PodmanError, ValueError, KeyError):
                for name, interval in self._running_with_health().items():
                    if due.setdefault(name, time.monotonic()) <= time.monotonic():
                        due[name] = time.monotonic() + interval
                        with contextlib.suppress(PodmanError):
                            podman("healthcheck", "run", name, timeout=30)

    def _running_with_health(self) -> dict[str, float]:
        """Each running container with a health check: its interval in seconds."""
        names = [c.name for c in self.containers] + [
            c.name for p in list(self.projects) for c in self._containers_of(p)
        ]
        if not names:
            return {}
        data = json.loads(podman("container", "inspect", *names))
        return {
            d["Name"]: d["Config"]["Healthcheck"]["Interval"] / 1e9
            for d in data
            if d["State"]["Running"] and d["Config"].get("Healthcheck")
        }

    def _save_logs(self, containers: Sequence[Container]) -> None:
        for container in containers:
            (self.folder / f"{container.name}.log").write_text(container.logs())

    def close(self) -> None:
        """Remove every container, network and image this lab made (logs saved first)."""
        self._stop.set()
        self._ticker.join(timeout=60)
        with contextlib.suppress(PodmanError):
            self._save_logs(self.all_containers())
        for project in list(self.projects):
            with contextlib.suppress(PodmanError):
                self.compose_down(project)
        label = f"label={LAB_LABEL}={self.id}"
        for kind, listing in (
            ("container", ["ps", "-a", "-q", "--filter", label]),
            ("network", ["network", "ls", "-q", "--filter", label]),
            ("image", ["images", "-q", "--filter", label]),
        ):
            with contextlib.suppress(PodmanError):
                if ids := podman(*listing).split():
                    force = ["-f", "-t", "0"] if kind == "container" else ["-f"]
                    podman(kind, "rm", *force, *ids)


def health_command(path: str, port: int = 8000) -> str:
    """A health check of ``path`` in a container with python3 and no curl.

    A shell line: podman 4.3 runs ``--health-cmd`` through the shell even when it is
    given as a JSON list, and takes ``["CMD", ...]`` for a command named ``["CMD",``.
    """
    code = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}{path}', timeout=2)"
    return shlex.join(["python3", "-c", code])


def _compose_services(file: Path) -> dict[str, Any]:
    import yaml  # podman-compose's own dependency

    return dict(yaml.safe_load(file.read_text())["services"])


def _depends(file: Path, service: str) -> dict[str, str]:
    """What ``service`` depends on in ``file``: each service and its condition."""
    depends = _compose_services(file)[service].get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: (how or {}).get("condition", "service_started") for name, how in depends.items()}


def _start_order(file: Path) -> list[str]:
    """The services of ``file``, each after every service it depends on."""
    order: list[str] = []

    def visit(service: str, path: tuple[str, ...]) -> None:
        if service in path:
            raise PodmanError(f"{file}: depends_on cycle {' -> '.join((*path, service))}")
        if service not in order:
            for dependency in _depends(file, service):
                visit(dependency, (*path, service))
            order.append(service)

    for service in _compose_services(file):
        visit(service, ())
    return order


def _wait_for(containers: Sequence[Container], condition: str, timeout: float = 120) -> None:
    """Wait until every container meets a depends_on ``condition``; raise if it never does."""
    deadline = time.monotonic() + timeout
    for container in containers:
        while not _meets(container, condition):
            if time.monotonic() > deadline:
                raise PodmanError(
                    f"{container.name} is not {condition} after {timeout:.0f} s:\n{container.logs()}"
                )
            time.sleep(0.5)


def _meets(container: Container, condition: str) -> bool:
    state = container.inspect()["State"]
    if condition == "service_completed_successfully":
        return bool(state["Status"] == "exited" and state["ExitCode"] == 0)
    if condition == "service_healthy":
        with contextlib.suppress(PodmanError):  # run it now rather than wait for the ticker
            podman("healthcheck", "run", container.name, timeout=30)
        return bool(container.health() == "healthy")
    return bool(state["Running"])


def wait_http(url: str, timeout: float = 60) -> httpx.Response:
    """GET ``url`` until it answers 200 (a container's server is up then)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise PodmanError(f"{url} did not answer 200 in {timeout:.0f} s")
        time.sleep(0.25)


@contextlib.contextmanager
def lab(folder: Path, name: str = "t") -> Iterator[Lab]:
    """A Lab that is closed however the block ends."""
    made = Lab(folder, name)
    try:
        yield made
    finally:
        made.close()
