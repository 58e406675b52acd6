"""The corpus's general cases: wrong command lines, to ``nanobuild`` and to a binary, and
hostile request bodies to a running binary (see tests/corpus.py for the harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus import (
    SECRET,
    BinaryCase,
    Case,
    HttpCase,
    binary,
    check_unique,
    run_binary_case,
    run_case,
    run_http_case,
    serving,
    workspace,
)
from tests.servers import Server

MIB = 1024 * 1024
JSON = {"Content-Type": "application/json"}

# -- the nanobuild command line

CLI_CASES = [
    Case(
        "check-workspace-nonexistent",
        args=["check", "--workspace", "/nonexistent/ws"],
        workspace=False,
        exit=2,
        code="E000",
        names=["/nonexistent/ws", "no such workspace folder"],
    ),
    Case(
        "check-workspace-folder-without-nano-toml",
        args=["check", "--workspace", "{root}/services"],
        workspace=False,
        exit=2,
        code="E000",
        names=["services", "no nano.toml"],
    ),
    Case(
        "check-workspace-is-another-file",
        args=["check", "--workspace", "{root}/services/users/users/kernel.py"],
        workspace=False,
        exit=2,
        code="E000",
        names=["kernel.py", "not a workspace folder or its nano.toml"],
        absent=["TOML syntax error"],
    ),
    Case(
        "graph-workspace-is-dev-null",
        args=["graph", "-w", "/dev/null"],
        workspace=False,
        exit=2,
        code="E000",
        names=["/dev/null"],
    ),
    Case("check-unknown-flag", args=["check", "--bogus"], exit=2, names=["--bogus"]),
    Case(
        "check-workspace-flag-without-value",
        args=["check", "-w"],
        workspace=False,
        exit=2,
        names=["'-w' requires an argument"],
    ),
    Case(
        "check-format-unknown",
        args=["check", "--format", "yaml"],
        exit=2,
        names=["--format", "'yaml' is not one of"],
    ),
    Case(
        "graph-format-unknown",
        args=["graph", "--format", "png"],
        exit=2,
        names=["--format", "'png'"],
    ),
    Case("command-unknown", args=["frobnicate"], workspace=False, exit=2, names=["frobnicate"]),
    Case(
        "check-against-unknown-ref",
        args=["check", "--against", "no-such-ref"],
        exit=2,
        code="E607",
        names=["--against no-such-ref", "not a .pyz file"],
    ),
    Case(
        "bundle-only-unknown-service",
        args=["bundle", "--only", "nope"],
        exit=2,
        code="E008",
        names=["--only", "nope"],
    ),
    Case(
        "bundle-find-links-missing",
        args=["bundle", "--offline", "--find-links", "/nonexistent/wheels"],
        exit=1,
        code="E406",
        names=["/nonexistent/wheels", "no such folder"],
    ),
    Case(
        "serve-find-links-missing",
        args=["serve", "--port", "0", "--offline", "--find-links", "/nonexistent/wheels"],
        exit=1,
        code="E406",
        names=["/nonexistent/wheels"],
    ),
    Case("serve-port-negative", args=["serve", "--port", "-1"], exit=2, names=["--port", "-1"]),
    Case(
        "serve-port-too-big",
        args=["serve", "--port", "70000"],
        exit=2,
        names=["--port", "70000", "0<=x<=65535"],
    ),
    Case(
        "serve-port-not-a-number",
        args=["serve", "--port", "notanumber"],
        exit=2,
        names=["--port", "'notanumber'"],
    ),
    Case(
        "new-name-starts-with-digit",
        args=["new", "9bad"],
        exit=2,
        code="E009",
        names=["'9bad' is not a Python identifier"],
    ),
    Case(
        "new-name-is-a-keyword",
        args=["new", "class"],
        exit=2,
        code="E009",
        names=["'class' is not a Python identifier"],
    ),
    Case(
        "new-name-with-dash",
        args=["new", "a-b"],
        exit=2,
        code="E009",
        names=["'a-b' is not a Python identifier"],
    ),
    Case(
        "new-name-empty",
        args=["new", ""],
        exit=2,
        code="E009",
        names=["'' is not a Python identifier"],
    ),
    Case(
        "new-name-taken",
        args=["new", "users"],
        exit=2,
        code="E009",
        names=["already has a service or library named users"],
    ),
    Case(
        "new-path-outside-workspace",
        args=["new", "x", "--path", "../out"],
        exit=2,
        code="E009",
        names=["../out is outside the workspace"],
    ),
    Case(
        "new-library-absolute-path",
        args=["new", "x", "--library", "--path", "/abs"],
        exit=2,
        code="E021",
        names=["/abs is outside the workspace"],
    ),
    Case(
        "new-package-not-identifier",
        args=["new", "x", "--package", "1x"],
        exit=2,
        code="E022",
        names=["--package '1x'"],
    ),
    Case(
        "lock-python-major-only",
        args=["lock", "--offline", "--python", "9"],
        exit=1,
        code="E507",
        names=["--python '9'", "expected a version like 3.11"],
    ),
    Case(
        "lock-python-word",
        args=["lock", "--offline", "--python", "abc"],
        exit=1,
        code="E507",
        names=["--python 'abc'"],
    ),
    Case(
        "init-in-unwritable-place",
        args=["init", "/proc/nanobuild-nope"],
        workspace=False,
        exit=1,
        names=["/proc/nanobuild-nope"],
    ),
]
check_unique(CLI_CASES)


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.name)
def test_cli_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)


@pytest.mark.parametrize("name", ["users", "9bad"])
def test_new_that_fails_writes_nothing(name: str, tmp_path: Path) -> None:
    root = workspace(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    toml = (root / "nano.toml").read_bytes()
    run_case(
        Case(f"new-{name}-twice", args=["new", name], exit=2, code="E009"), tmp_path, root=root
    )
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (root / "nano.toml").read_bytes() == toml


def test_a_file_named_nano_toml_is_still_a_workspace(tmp_path: Path) -> None:
    """The check of what --workspace names lets the documented form through."""
    case = Case(
        "check-workspace-is-its-nano-toml",
        args=["check", "--workspace", "{root}/nano.toml"],
        workspace=False,
        exit=0,
        names=["all checks passed"],
    )
    assert "mini: 2 services" in run_case(case, tmp_path).stdout


# -- the binary's own command line

ELSEWHERE = "users=tcp://127.0.0.1:1"
SPLIT = {"NANO_SECRET": SECRET}  # a split process must have one before its options are read
BINARY_CASES = [
    BinaryCase(
        "binary-port-negative", ["serve", "--port", "-1"], names=["--port -1 is not a TCP port"]
    ),
    BinaryCase(
        "binary-port-too-big", ["--port", "99999"], names=["--port 99999 is not a TCP port"]
    ),
    BinaryCase(
        "binary-port-not-a-number",
        ["serve", "--port", "notanumber"],
        names=["argument --port: invalid int value: 'notanumber'"],
    ),
    BinaryCase(
        "binary-internal-port-negative",
        ["serve", "--internal-port", "-5"],
        names=["--internal-port -5 is not a TCP port"],
    ),
    BinaryCase("binary-command-unknown", ["bogus"], names=["invalid choice: 'bogus'"]),
    BinaryCase(
        "binary-flag-unknown", ["info", "--bogus"], names=["unrecognized arguments: --bogus"]
    ),
    BinaryCase(
        "binary-call-unknown-contract",
        ["call", "users.GetUsr"],
        names=["no contract users.GetUsr runs in this binary", "did you mean users.GetUser?"],
    ),
    BinaryCase(
        "binary-call-no-service-part",
        ["call", "nope"],
        names=["no contract nope", "see the `services` command"],
    ),
    BinaryCase(
        "binary-call-wrong-field-type",
        ["call", "users.GetUser", '{"id": 5}'],
        names=["bad request for users.GetUser", "Expected `str`, got `int` - at `$.id`"],
    ),
    BinaryCase(
        "binary-call-not-json",
        ["call", "users.GetUser", "not json"],
        names=["bad request for users.GetUser", "JSON is malformed"],
    ),
    BinaryCase(
        "binary-call-array-body",
        ["call", "users.GetUser", "[1, 2]"],
        names=["Expected `object`, got `array`"],
    ),
    BinaryCase(
        "binary-call-stdin-not-utf8",
        ["call", "users.GetUser", "-"],
        stdin=b'{"id": "\xff\xfe"}',
        names=["bad request for users.GetUser"],
    ),
    BinaryCase(
        # the bytes 0xff 0xfe in the argument (Python's command line keeps them as surrogates)
        "binary-call-argument-not-utf8",
        ["call", "users.GetUser", '{"id": "\udcff\udcfe"}'],
        names=["bad request for users.GetUser", "UTF-8"],
    ),
    BinaryCase(
        "binary-call-handler-refuses",
        ["call", "users.GetUser", '{"id": "zz"}'],
        exit=1,
        names=["users.GetUser: not_found: no user zz"],
    ),
    BinaryCase(
        "binary-remote-without-equals",
        ["serve", "--port", "0", "--only", "orders", "--remote", "garbage"],
        names=["--remote 'garbage'", "NAME=tcp://HOST:PORT"],
    ),
    BinaryCase(
        "binary-remote-bad-scheme",
        ["serve", "--port", "0", "--only", "orders", "--remote", "users=ftp://x"],
        names=["the address of users", "'ftp://x'"],
    ),
    BinaryCase(
        "binary-remote-port-not-a-number",
        ["serve", "--port", "0", "--only", "orders", "--remote", "users=tcp://127.0.0.1:x"],
        names=["the address of users", "the port must be 1-65535"],
    ),
    BinaryCase(
        "binary-remote-unknown-service",
        ["serve", "--port", "0", "--remote", "nobody=tcp://127.0.0.1:1"],
        names=["--remote names nobody, which is not a service of this binary"],
    ),
    BinaryCase(
        "binary-only-unknown-service",
        ["serve", "--port", "0", "--only", "nope"],
        names=["--only names nope, which is not a service of this binary"],
    ),
    BinaryCase(
        "binary-timeout-not-a-number",
        [
            "serve",
            "--port",
            "0",
            "--only",
            "orders",
            "--remote",
            ELSEWHERE,
            "--timeout",
            "users=abc",
        ],
        names=["--timeout users must be a positive number of seconds, not 'abc'"],
        env=SPLIT,
    ),
    BinaryCase(
        "binary-timeout-negative",
        [
            "serve",
            "--port",
            "0",
            "--only",
            "orders",
            "--remote",
            ELSEWHERE,
            "--timeout",
            "users=-1",
        ],
        names=["--timeout users", "not '-1'"],
        env=SPLIT,
    ),
    BinaryCase(
        "binary-setting-not-a-number",
        ["serve", "--port", "0"],
        env={"NANO_MAX_BODY": "lots"},
        names=["NANO_MAX_BODY"],
    ),
]
check_unique(BINARY_CASES)


@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: c.name)
def test_binary_case(
    case: BinaryCase, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run_binary_case(case, binary(tmp_path_factory), tmp_path)


# -- hostile requests to a running binary


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory) as cluster:
        yield cluster.front


def _huge(size: int) -> bytes:
    """A JSON body of ``size`` bytes that would be a good request but for its size."""
    head = b'{"id": "'
    return head + b"u" * (size - len(head) - 2) + b'"}'


def _chunked(body: bytes, chunk: int = 64 * 1024) -> bytes:
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


HTTP_CASES = [
    HttpCase("http-field-wrong-type", body=b'{"id": 5}', names=["$.id", "Expected `str`"]),
    HttpCase("http-field-missing", body=b"{}", names=["missing required field `id`"]),
    HttpCase("http-field-unknown", body=b'{"id": "u1", "admin": true}', names=["admin"]),
    HttpCase("http-body-not-an-object", body=b"[1, 2, 3]", names=["Expected `object`"]),
    HttpCase("http-body-null", body=b"null", names=["Expected `object`, got `null`"]),
    HttpCase("http-body-not-json", body=b"{nope", names=["JSON is malformed"]),
    HttpCase("http-body-not-utf8", body=b'{"id": "\xff\xfe"}', names=["users"]),
    HttpCase("http-body-empty", body=b"", names=["users"]),
    HttpCase(
        "http-msgpack-garbage",
        headers={"Content-Type": "application/msgpack"},
        body=b"\xc1\xc1\xc1",
        names=["MessagePack"],
    ),
    HttpCase(
        "http-contract-unknown",
        target="/api/users/GetUsr",
        body=b"{}",
        status=404,
        names=["no contract users.GetUsr"],
    ),
    HttpCase(
        "http-service-unknown",
        target="/api/nobody/GetUser",
        body=b"{}",
        status=404,
        names=["nobody"],
    ),
    HttpCase("http-contract-by-get", method="GET", headers={}, body=b"", status=405),
    HttpCase(
        "http-content-type-text",
        headers={"Content-Type": "text/plain"},
        body=b'{"id": "u1"}',
        status=415,
        names=["text/plain"],
    ),
    HttpCase(
        "http-content-type-form",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"id=u1",
        status=415,
    ),
    HttpCase(
        # a length far over the limit, and no body at all: refused at once, not awaited
        "http-content-length-huge-body-never-comes",
        headers={**JSON, "Content-Length": str(10**12)},
        body=b"",
        status=413,
        names=["over the limit of 1048576 bytes"],
        deadline=5.0,
    ),
    HttpCase(
        "http-content-length-not-a-number",
        headers={**JSON, "Content-Length": "lots"},
        body=b'{"id": "u1"}',
        status=400,
    ),
    HttpCase(
        "http-content-length-negative",
        headers={**JSON, "Content-Length": "-5"},
        body=b'{"id": "u1"}',
        status=400,
    ),
    HttpCase(
        "http-body-10-mib",
        body=_huge(10 * MIB),
        status=413,
        names=["over the limit"],
    ),
    HttpCase(
        "http-body-10-mib-chunked",
        headers={**JSON, "Transfer-Encoding": "chunked"},
        body=_chunked(_huge(10 * MIB)),
        status=413,
        names=["over the limit"],
    ),
    HttpCase("http-body-just-under-limit", body=_huge(MIB), status=404, names=["no user"]),
    HttpCase("http-body-just-over-limit", body=_huge(MIB + 1), status=413),
    HttpCase(
        "http-request-line-garbage",
        raw=b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        status=None,
    ),
]
check_unique(HTTP_CASES)


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_http_case(case: HttpCase, server: Server) -> None:
    run_http_case(case, server)
