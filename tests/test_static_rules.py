"""One rule for the static folder: what ``bundle`` packs is what ``serve`` serves.

A workspace with a static folder full of awkward entries (links in, dotfiles,
``.well-known``) is bundled and served both ways, and the same raw requests (``..``,
encoded dots and slashes, a NUL) must get the same status and body from the binary
as from ``serve``. Links out of the folder or to nothing are refused by ``bundle``
(E409) and never answered with their target by ``serve``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.servers import Server, start

FILES = {
    "index.html": "INDEX",
    "app.js": "APP",
    "sub/page.html": "PAGE",
    ".env": "SECRET=1",
    ".git/config": "GIT",
    "sub/.hidden.html": "HIDDEN",
    ".well-known/security.txt": "CONTACT",
}
LINKS = {"alias.js": "app.js", "mirror": "sub"}  # links that stay inside the folder
# request -> what both must answer: a file's text, or INDEX (the app routes it)
EXPECTED = {
    "/": "INDEX",
    "/index.html": "INDEX",
    "/app.js": "APP",
    "/sub/page.html": "PAGE",
    "/alias.js": "APP",
    "/mirror/page.html": "PAGE",
    "/.env": "INDEX",
    "/.git/config": "INDEX",
    "/sub/.hidden.html": "INDEX",
    "/%2eenv": "INDEX",
    "/.well-known/security.txt": "CONTACT",
    "/../nano.toml": "INDEX",
    "/%2e%2e/nano.toml": "INDEX",
    "/sub/..%2f..%2fnano.toml": "INDEX",
    "/sub%2fpage.html": "PAGE",
    "/sub/../app.js": "APP",
    "/missing.js": "INDEX",
    "/sub/": "INDEX",
    "/a%00b": "INDEX",
    "/%c0%ae%c0%ae/nano.toml": "INDEX",
}


def nanobuild(
    root: Path, *args: str, cache: Path, wheelhouse: Path
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild", *args, "--workspace", str(root), *offline(wheelhouse)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NANO_CACHE_DIR": str(cache)},
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def offline(wheelhouse: Path) -> list[str]:
    return ["--offline", "--find-links", str(wheelhouse)]


def with_static(root: Path) -> None:
    """The static folder ``web`` of FILES and LINKS, named in nano.toml."""
    toml = root / "nano.toml"
    toml.write_text(
        toml.read_text().replace('name = "mini"\n', 'name = "mini"\n\n[ingress]\nstatic = "web"\n')
    )
    for rel, text in FILES.items():
        path = root / "web" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel, target in LINKS.items():
        (root / "web" / rel).symlink_to(target)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Path]:
    """A copy of mini with the static folder, locked and bundled offline."""
    tmp = tmp_path_factory.mktemp("static")
    root = tmp / "ws"
    shutil.copytree(SAMPLES / "mini", root)
    (root / "nano.lock").unlink()  # it pins the index's files; the wheelhouse has others
    with_static(root)
    cache = tmp / "cache"
    locked = nanobuild(root, "lock", cache=cache, wheelhouse=wheelhouse)
    assert locked.returncode == 0, locked.stderr
    done = nanobuild(root, "bundle", cache=cache, wheelhouse=wheelhouse)
    assert done.returncode == 0, done.stderr
    yield root


@pytest.fixture(scope="module")
def both(
    built: Path, wheelhouse: Path, python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """The binary (on a bare Python) and ``serve``, both running the workspace."""
    tmp = tmp_path_factory.mktemp("servers")
    home = tmp / "home"
    home.mkdir()
    binary = start(
        [str(python), str(built / "dist" / "mini.pyz"), "serve", "--port", "0"],
        tmp / "binary.log",
        {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
    )
    command = [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(built)]
    command += ["--port", "0", *offline(wheelhouse)]
    source = start(command, tmp / "serve.log", NANO_CACHE_DIR=str(built.parent / "cache"))
    try:
        yield binary, source
    finally:
        binary.stop()
        source.stop()


@pytest.mark.parametrize("target", list(EXPECTED))
def test_the_binary_answers_as_serve_does(both: tuple[Server, Server], target: str) -> None:
    binary, source = both
    answered = binary.raw_get(target)
    assert answered == source.raw_get(target)
    status, body = answered
    assert (status, body.decode(errors="replace")) == (200, EXPECTED[target])


def test_what_is_packed_is_what_is_served(built: Path) -> None:
    with zipfile.ZipFile(built / "dist" / "mini.pyz") as archive:
        packed = sorted(
            name.removeprefix("site-packages/nano_static/")
            for name in archive.namelist()
            if name.startswith("site-packages/nano_static/")
        )
    assert packed == [
        ".well-known/security.txt",
        "alias.js",
        "app.js",
        "index.html",
        "mirror/page.html",
        "sub/page.html",
    ]


@pytest.fixture
def linked(built: Path, tmp_path: Path) -> Path:
    """A copy of the built workspace whose static folder links out and to nothing."""
    root = tmp_path / "ws"
    shutil.copytree(built, root, symlinks=True, ignore=shutil.ignore_patterns("dist"))
    (root / "web" / "config.toml").symlink_to("../nano.toml")
    (root / "web" / "gone.js").symlink_to("nowhere.js")
    return root


def test_links_out_or_to_nothing_are_refused_by_bundle(
    linked: Path, built: Path, wheelhouse: Path
) -> None:
    done = nanobuild(linked, "bundle", cache=built.parent / "cache", wheelhouse=wheelhouse)
    assert done.returncode == 1
    said = done.stdout + done.stderr
    assert (
        "web/config.toml: E409 web/config.toml links to nano.toml, outside the static folder web"
        in said
    )
    assert "web/gone.js: E409 web/gone.js links to nothing" in said
    assert not (linked / "dist").exists()


def test_serve_never_answers_with_what_a_link_out_leads_to(
    linked: Path, built: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(linked)]
    command += ["--port", "0", *offline(wheelhouse)]
    server = start(command, tmp_path / "serve.log", NANO_CACHE_DIR=str(built.parent / "cache"))
    try:
        assert server.raw_get("/config.toml") == (200, b"INDEX")
        assert server.raw_get("/gone.js") == (200, b"INDEX")
    finally:
        server.stop()
    # and it says so as it starts, as bundle would refuse them
    log = server.log()
    assert "web/config.toml links to nano.toml, outside the static folder web" in log
    assert "web/gone.js links to nothing" in log


def test_the_runtime_serves_no_link_out_of_its_folder(tmp_path: Path) -> None:
    """The binary's own server, given a folder with a link out (as an extraction
    tampered with would be), a link loop and a FIFO: none is served, none hangs."""
    import asyncio

    import httpx

    from nanobuild.runtime.static import Frontend

    (tmp_path / "secret.txt").write_text("SECRET")
    folder = tmp_path / "web"
    folder.mkdir()
    (folder / "index.html").write_text("INDEX")
    (folder / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "loop").symlink_to("loop")
    os.mkfifo(folder / "pipe.txt")

    async def answers() -> list[tuple[int, str]]:
        transport = httpx.ASGITransport(app=Frontend(folder))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            got = [await client.get(path) for path in ("/leak.txt", "/loop", "/pipe.txt", "/.env")]
        return [(answer.status_code, answer.text) for answer in got]

    assert asyncio.run(asyncio.wait_for(answers(), 10)) == [(200, "INDEX")] * 4
