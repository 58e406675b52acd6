"""The built-in page at ``/_nano/`` and the API docs at ``/docs`` (the README's "The page").

Every process serves both on its front door, from files the runtime carries
(``assets/``): nothing comes from anywhere else, and their Content-Security-Policy
lets the browser fetch from this origin alone.

``/_nano/`` shows what the build knows — the services, where each runs, the call
graph laid out from their ``depends`` — and what this process saw (``telemetry``):
each contract's rate, errors and latency percentiles, and its newest traces, which
the page's script polls as JSON. It is guarded as the non-public contracts are, by
the workspace secret, in one of three ways:

- the ``nano-secret`` header (scripts, curl);
- a session cookie that a browser gets by signing in with the secret: an HMAC of
  the secret, so the cookie opens the page and nothing else (HttpOnly, SameSite=
  Strict, path ``/_nano``), and one sign-in holds for every process of the workspace
  on that host;
- a one-time link the process prints at start when its output is a terminal (a
  developer's ``nanobuild serve``), never into a log: the first browser to open it
  gets a cookie for this process alone, and the link is spent.

``/docs`` is Swagger UI on ``/openapi.json``, public as that document is.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qs

import msgspec
from starlette.types import Receive, Scope, Send

from nanobuild.runtime import telemetry
from nanobuild.runtime.exchange import SECRET_HEADER
from nanobuild.runtime.node import Node
from nanobuild.runtime.spec import AppSpec

ROOT = "/_nano"
DOCS = "/docs"
ASSETS = Path(__file__).parent / "assets"
COOKIE = "nano-page"  # the session of a browser signed in with the secret
# what the cookie is an HMAC of, so that it stands for the secret nowhere else
_LABEL = b"nanobuild page session 1"
MAX_FORM = 4096  # bytes a sign-in form may hold
TRACES = 200  # the newest traces the page shows
_MEDIA = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".html": b"text/html; charset=utf-8",
    ".json": b"application/json",
}
# the page's own files: this origin only, no inline script or style
_PAGE_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Swagger UI writes <style> elements of its own, and calls the contracts it shows
_DOCS_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    b"base-uri 'none'"
)
# the files each place serves: URL name -> file under ASSETS
_PAGE_FILES = {"page.js": "page.js", "page.css": "page.css"}
_DOCS_FILES = {
    "docs.js": "docs.js",
    "swagger-ui-bundle.js": "swagger-ui/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui/swagger-ui.css",
}

Headers = list[tuple[bytes, bytes]]


class Page:
    """The ASGI app of ``/_nano/`` and ``/docs`` for one wired ``node``.

    ``docs=False`` leaves ``/docs`` to what else answers there (an adopted app mounted
    at ``/`` keeps its own); the docs are at ``/_nano/docs`` either way.
    """

    def __init__(self, node: Node, *, docs: bool = True) -> None:
        self.node = node
        secret = node.settings.secret
        self._secret = secret.encode() if secret else None
        self._signed = session_cookie(secret) if secret else None
        self._link: bytes | None = None  # the one-time link's token, until it is used
        self._sessions: list[bytes] = []  # the cookies links gave, for this process only
        self._cookie = f"{COOKIE}-{secrets.token_hex(4)}"  # their name: no other process's
        self.docs = docs
        self._index: bytes | None = None  # made on first request: most never see the page
        self._files: dict[str, bytes] = {}

    def claims(self, path: str) -> bool:
        """Whether ``path`` is the page's or the docs'."""
        if path == ROOT or path.startswith("/_nano/"):
            return True
        return self.docs and (path == DOCS or path.startswith("/docs/"))

    def banner(self, url: str, *, terminal: bool) -> list[str]:
        """What the process prints at start, once it serves at ``url``.

        Only to a ``terminal`` does it print a one-time link: a log keeps what it is
        given, and a link in it would open the page to whoever reads the log first.
        """
        page = f"{url}{ROOT}/"
        if terminal:
            lines = [f"nanobuild: the page at {url}{self.one_time_link()} (one-time: then {page})"]
        elif self._secret is not None:
            lines = [f"nanobuild: the page at {page} (sign in with NANO_SECRET)"]
        else:
            lines = [f"nanobuild: the page at {page} opens with NANO_SECRET set"]
        return [*lines, f"nanobuild: the API docs at {url}{DOCS if self.docs else ROOT + DOCS}"]

    def one_time_link(self) -> str:
        """A path that signs in the first browser to open it, and then opens nothing;
        a new one replaces the one before."""
        token = secrets.token_urlsafe(32)
        self._link = token.encode()
        return f"{ROOT}/once/{token}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == ROOT:
            await _redirect(send, f"{ROOT}/")
        elif path == f"{ROOT}/login" and method == "POST":
            await self.login(scope, receive, send)
        elif method != "GET":
            await _plain(send, 405, b"the page answers GET", [(b"allow", b"GET")])
        elif path == DOCS or path == f"{ROOT}{DOCS}":
            await self._asset_page(send, "docs.html", _DOCS_POLICY)
        elif path.startswith("/docs/") or path.startswith(f"{ROOT}/docs/"):
            await self._file(send, _DOCS_FILES, path.rpartition("/")[2])
        elif path.startswith(f"{ROOT}/assets/"):
            await self._file(send, _PAGE_FILES, path[len(f"{ROOT}/assets/") :])
        elif path.startswith(f"{ROOT}/once/"):
            await self.once(scope, send, path[len(f"{ROOT}/once/") :])
        else:
            await self._guarded(scope, send, path)

    # -- who may see it

    def allowed(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether the request carries the secret, or a cookie of a signed-in browser."""
        for name, value in headers:
            if name == SECRET_HEADER and self._secret is not None:
                if hmac.compare_digest(value, self._secret):
                    return True
            elif name == b"cookie" and self._cookie_opens(value):
                return True
        return False

    def _cookie_opens(self, header: bytes) -> bool:
        for part in header.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode() and self._signed is not None:
                if hmac.compare_digest(value, self._signed.encode()):
                    return True
            elif name == self._cookie.encode() and self._known(value):
                return True
        return False

    def _known(self, value: bytes) -> bool:
        return any(hmac.compare_digest(value, known) for known in self._sessions)

    async def login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Sign a browser in with the secret from the form: a cookie, then the page."""
        body = await _form(receive)
        given = b"" if body is None else _field(body, "secret")
        if self._secret is None:
            await self._sign_in(send, 403, "this process has no NANO_SECRET: set it to sign in")
        elif given and hmac.compare_digest(given, self._secret):
            assert self._signed is not None
            cookie = _cookie(COOKIE, self._signed, secure=scope.get("scheme") == "https")
            await _redirect(send, f"{ROOT}/", [(b"set-cookie", cookie)])
        else:
            await self._sign_in(send, 403, "that is not this workspace's NANO_SECRET")

    async def once(self, scope: Scope, send: Send, token: str) -> None:
        """Spend the one-time link: a cookie for this process, then the page."""
        link, given = self._link, token.encode("utf-8", "replace")
        if link is None or not hmac.compare_digest(given, link):
            why = "this link was used already, or belongs to another start of the process"
            await self._sign_in(send, 403, why)
            return
        self._link = None
        session = secrets.token_urlsafe(32).encode()
        self._sessions.append(session)
        cookie = _cookie(self._cookie, session.decode(), secure=scope.get("scheme") == "https")
        await _redirect(send, f"{ROOT}/", [(b"set-cookie", cookie)])

    async def _guarded(self, scope: Scope, send: Send, path: str) -> None:
        """The page and its JSON, for a caller allowed to see them."""
        allowed = self.allowed(scope["headers"])
        if path == f"{ROOT}/":
            if allowed:
                await _respond(send, 200, self.index(), _MEDIA[".html"], _PAGE_POLICY)
            else:
                await self._sign_in(send, 401, "")
        elif path == f"{ROOT}/stats.json" or path == f"{ROOT}/traces.json":
            if not allowed:
                await _json(
                    send, 401, {"error": "sign in at /_nano/ or send the nano-secret header"}
                )
            elif path.endswith("stats.json"):
                await _json(send, 200, stats())
            else:
                await _json(send, 200, telemetry.RECORDER.traces(_limit(scope)))
        else:
            await _plain(send, 404, b"Not Found")

    # -- what it answers

    def index(self) -> bytes:
        """The page: the build's facts drawn here, the live figures left to its script."""
        if self._index is None:
            self._index = render(self.node, docs=DOCS if self.docs else ROOT + DOCS).encode()
        return self._index

    async def _sign_in(self, send: Send, status: int, message: str) -> None:
        text = _SIGN_IN.format(
            name=html.escape(self.node.spec.name),
            message=html.escape(message),
            root=ROOT,
            hint=_SIGN_IN_HINT if self._secret is not None else _NO_SECRET_HINT,
        )
        await _respond(send, status, text.encode(), _MEDIA[".html"], _PAGE_POLICY)

    async def _asset_page(self, send: Send, name: str, policy: bytes) -> None:
        await _respond(send, 200, self._read(name), _MEDIA[".html"], policy)

    async def _file(self, send: Send, files: dict[str, str], name: str) -> None:
        found = files.get(name)
        if found is None:
            await _plain(send, 404, b"Not Found")
            return
        media = _MEDIA[Path(found).suffix]
        # the files change only with the runtime: a browser may keep them a while
        await _respond(
            send, 200, self._read(found), media, None, [(b"cache-control", b"max-age=600")]
        )

    def _read(self, name: str) -> bytes:
        found = self._files.get(name)
        if found is None:
            found = self._files[name] = (ASSETS / name).read_bytes()
        return found


def session_cookie(secret: str) -> str:
    """The cookie a browser signed in with ``secret`` holds: the same in every process
    of the workspace, and of no use but to open the page."""
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).hexdigest()


def stats() -> dict[str, object]:
    """What ``/_nano/stats.json`` answers: telemetry's snapshot, or that it is off."""
    if not telemetry.enabled():
        return {"metrics": False}
    return {"metrics": True, **telemetry.RECORDER.snapshot()}


def _limit(scope: Scope) -> int:
    """``?limit=N`` of the traces asked for, within 1..TRACES."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), max_num_fields=4)
    try:
        return max(1, min(TRACES, int(query.get("limit", [str(TRACES)])[0])))
    except ValueError:
        return TRACES


async def _form(receive: Receive) -> bytes | None:
    """The request body, or None if it is over ``MAX_FORM`` or the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _field(body: bytes, name: str) -> bytes:
    """One field of a form body, stripped (a pasted secret often ends in a newline)."""
    try:
        values = parse_qs(body.decode("utf-8"), max_num_fields=4).get(name, [""])
    except (UnicodeDecodeError, ValueError):
        return b""
    return values[0].strip().encode()


def _cookie(name: str, value: str, *, secure: bool) -> bytes:
    flags = f"{name}={value}; Path={ROOT}; HttpOnly; SameSite=Strict"
    return (flags + ("; Secure" if secure else "")).encode()


async def _redirect(send: Send, location: str, extra: Headers | None = None) -> None:
    await _respond(
        send, 303, b"", b"text/plain", None, [(b"location", location.encode()), *(extra or [])]
    )


async def _plain(send: Send, status: int, body: bytes, extra: Headers | None = None) -> None:
    await _respond(send, status, body, b"text/plain; charset=utf-8", None, extra)


async def _json(send: Send, status: int, value: object) -> None:
    await _respond(send, status, msgspec.json.encode(value), _MEDIA[".json"], None)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    media: bytes,
    policy: bytes | None,
    extra: Headers | None = None,
) -> None:
    headers: Headers = [
        (b"content-type", media),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if policy is not None:
        headers.append((b"content-security-policy", policy))
    extra = extra or []
    if not any(name == b"cache-control" for name, _ in extra):
        headers.append((b"cache-control", b"no-store"))  # what the page shows is of now
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body})


# -- the page's HTML: the build's facts, drawn once


def render(node: Node, *, docs: str) -> str:
    """The page for ``node``: its services, where each runs, and the call graph."""
    spec = node.spec
    rows = placements(node)
    here = sum(1 for _, where, _ in rows if where == "here")
    mode = (
        f"fused: all {len(rows)} services in this process"
        if here == len(rows)
        else f"split: {here} of {len(rows)} services run in this process"
    )
    process = telemetry.RECORDER.process
    name = process.get("name") or spec.name
    return _INDEX.format(
        name=html.escape(spec.name),
        process=html.escape(str(name)),
        mode=html.escape(mode),
        docs=docs,
        services="\n".join(_service_row(spec, *row) for row in rows),
        graph=graph_svg(spec, {service: where for service, where, _ in rows}),
        traces=TRACES,
    )


def placements(node: Node) -> list[tuple[str, str, str]]:
    """Each service of the build: its name, ``here`` / ``remote`` / ``absent``, and
    where that is, in words."""
    spec = node.spec
    local = {e.service for e in node.endpoints.values()} | set(telemetry.RECORDER.services)
    via = {e.service: e.via for e in node.remote.values()}
    # a process that runs a placement group finds the others by theirs (serve --group);
    # one placed by --only and --remote knows addresses alone, which the page keeps back
    grouped = telemetry.RECORDER.process.get("group") is not None
    groups = {name: g.name for g in spec.groups for name in g.services} if grouped else {}
    found = []
    for service in spec.services:
        if service.name in local:
            found.append((service.name, "here", "this process"))
        elif service.name in via:
            where = f"group {groups[service.name]}" if service.name in groups else "another process"
            found.append((service.name, "remote", f"{where}, over {via[service.name]}"))
        else:
            found.append((service.name, "absent", "not reached from this process"))
    return found


def _service_row(spec: AppSpec, name: str, where: str, words: str) -> str:
    service = spec.service(name)
    contracts = f"{len(service.handlers)} ({len(service.public)} public)"
    if service.asgi is not None:
        contracts = "an adopted app"
    return (
        f'<tr data-service="{html.escape(name)}" data-where="{where}">'
        f"<td>{html.escape(name)}</td><td>{html.escape(words)}</td>"
        f'<td class="num">{contracts}</td></tr>'
    )


# -- the call graph, laid out in layers of dependency order

_BOX_W, _BOX_H = 150, 34  # a service's box
_GAP_X, _GAP_Y = 80, 18  # between layers, between boxes of one layer
_PAD = 12


def layers(spec: AppSpec) -> list[list[str]]:
    """The services in columns: callers left, what they call right (a service stands
    one column left of the furthest-left service it calls), each column ordered so
    that edges cross little (one sweep each way, by the mean row of the neighbours)."""
    depth: dict[str, int] = {}
    for service in spec.services:  # dependencies come first
        below = [depth[d] for d in service.depends if d in depth]
        depth[service.name] = 1 + max(below) if below else 0
    top = max(depth.values(), default=0)
    columns: list[list[str]] = [[] for _ in range(top + 1)]
    for service in spec.services:
        columns[top - depth[service.name]].append(service.name)
    calls = {s.name: [d for d in s.depends if d in depth] for s in spec.services}
    callers: dict[str, list[str]] = {name: [] for name in depth}
    for name, called in calls.items():
        for d in called:
            callers[d].append(name)
    for i in range(len(columns) - 2, -1, -1):  # right to left: by what each calls
        _order(columns[i], calls, _rows(columns[i + 1 :]))
    for i in range(1, len(columns)):  # left to right: by who calls each
        _order(columns[i], callers, _rows(columns[:i]))
    return columns


def _rows(columns: Sequence[list[str]]) -> dict[str, int]:
    return {name: row for column in columns for row, name in enumerate(column)}


def _order(column: list[str], neighbours: dict[str, list[str]], rows: dict[str, int]) -> None:
    def key(item: tuple[int, str]) -> tuple[float, int]:
        index, name = item
        placed = [rows[n] for n in neighbours[name] if n in rows]
        return (sum(placed) / len(placed) if placed else index, index)

    column[:] = [name for _, name in sorted(enumerate(column), key=key)]


def graph_svg(spec: AppSpec, where: dict[str, str]) -> str:
    """The call graph as an SVG: a box per service (its class says where it runs), an
    arrow from each service to each it calls."""
    columns = layers(spec)
    tallest = max((len(c) for c in columns), default=0)
    height = _PAD * 2 + tallest * (_BOX_H + _GAP_Y) - _GAP_Y
    width = _PAD * 2 + len(columns) * (_BOX_W + _GAP_X) - _GAP_X
    at: dict[str, tuple[int, int]] = {}
    for i, column in enumerate(columns):
        offset = (tallest - len(column)) * (_BOX_H + _GAP_Y) // 2
        for row, name in enumerate(column):
            at[name] = (_PAD + i * (_BOX_W + _GAP_X), _PAD + offset + row * (_BOX_H + _GAP_Y))
    parts = [
        f'<svg id="graph-svg" xmlns="http://www.w3.org/2000/svg" width="{max(width, 0)}" '
        f'height="{max(height, 0)}" viewBox="0 0 {max(width, 0)} {max(height, 0)}" role="img" '
        'aria-label="the call graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z"/></marker></defs>',
    ]
    parts += _edges(spec, at)
    parts += (_node(name, at[name], where.get(name, "absent")) for name in at)
    parts.append("</svg>")
    return "\n".join(parts)


def _edges(spec: AppSpec, at: dict[str, tuple[int, int]]) -> Iterator[str]:
    for service in spec.services:
        for called in service.depends:
            if called not in at:
                continue
            (x1, y1), (x2, y2) = at[service.name], at[called]
            sx, sy, ex, ey = x1 + _BOX_W, y1 + _BOX_H // 2, x2, y2 + _BOX_H // 2
            bend = (ex - sx) // 2
            yield (
                f'<path class="edge" data-from="{service.name}" data-to="{called}" '
                f'd="M{sx} {sy}C{sx + bend} {sy} {ex - bend} {ey} {ex} {ey}" '
                'marker-end="url(#arrow)"/>'
            )


def _node(name: str, xy: tuple[int, int], where: str) -> str:
    x, y = xy
    shown = name if len(name) <= 18 else name[:17] + "…"
    return (
        f'<g class="node {where}" data-service="{html.escape(name)}">'
        f"<title>{html.escape(name)}: {where}</title>"
        f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6"/>'
        f'<text x="{x + _BOX_W // 2}" y="{y + _BOX_H // 2 + 5}">{html.escape(shown)}</text></g>'
    )


_INDEX = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} · nanobuild</title>
<link rel="stylesheet" href="/_nano/assets/page.css">
</head>
<body data-traces="{traces}">
<header>
  <h1>{name}</h1>
  <p><span id="process">{process}</span> · <span id="mode">{mode}</span>
     · <a href="{docs}">API docs</a></p>
  <p id="status" class="status">connecting…</p>
</header>
<main>
<section id="services">
  <h2>Services</h2>
  <table><thead><tr><th>service</th><th>runs</th><th>contracts</th></tr></thead>
  <tbody>
{services}
  </tbody></table>
</section>
<section id="graph">
  <h2>Call graph</h2>
  <p class="legend"><span class="key here">this process</span>
     <span class="key remote">another process</span>
     <span class="key absent">not reached</span></p>
{graph}
</section>
<section id="contracts">
  <h2>Contracts</h2>
  <p id="metrics-note"></p>
  <table id="contract-table"><thead><tr><th>contract</th><th>calls</th><th>rate/s</th>
    <th>errors/s</th><th>errors</th><th>in flight</th><th>p50 ms</th><th>p90 ms</th>
    <th>p99 ms</th></tr></thead><tbody></tbody></table>
  <table id="remote-table"><thead><tr><th>remote</th><th>replicas</th><th>ready</th>
    <th>state</th></tr></thead><tbody></tbody></table>
</section>
<section id="traces">
  <h2>Traces</h2>
  <p class="note">the newest {traces} this process saw a span of, newest first</p>
  <div id="trace-list"></div>
</section>
</main>
<script src="/_nano/assets/page.js"></script>
</body>
</html>
"""

_SIGN_IN = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{name} · sign in · nanobuild</title>
<link rel="stylesheet" href="{root}/assets/page.css">
</head>
<body class="sign-in">
<main>
<h1>{name}</h1>
<p>This page shows the services and their calls: it opens to those who hold the
workspace secret.</p>
<p id="sign-in-error" class="error">{message}</p>
<form method="post" action="{root}/login">
  <label for="secret">NANO_SECRET</label>
  <input id="secret" name="secret" type="password" autocomplete="off" required>
  <button type="submit">Sign in</button>
</form>
<p class="note">{hint}</p>
</main>
</body>
</html>
"""
_SIGN_IN_HINT = (
    "The browser keeps an HMAC of the secret, not the secret, until it closes; "
    "scripts send the <code>nano-secret</code> header instead."
)
_NO_SECRET_HINT = (
    "This process has no NANO_SECRET: open the one-time link it printed to its "
    "terminal at start, or start it with NANO_SECRET set."
)
