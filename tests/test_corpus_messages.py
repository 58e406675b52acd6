"""The corpus's "messages" cases: inputs a tired user writes, and ``check`` (or the
binary) names what is wrong and where, or reads them as meant (see tests/corpus.py)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.corpus import BinaryCase, Case, binary, check_unique, run_binary_case, run_case

MINI = SAMPLES / "mini"
TOML = (MINI / "nano.toml").read_text(encoding="utf-8")
LOCK = (MINI / "nano.lock").read_text(encoding="utf-8")
USERS = "services/users/users/handlers.py"
USERS_TEXT = (MINI / USERS).read_text(encoding="utf-8")
KERNEL = "services/users/users/kernel.py"
KERNEL_TEXT = (MINI / KERNEL).read_text(encoding="utf-8")
DEEP_ARRAY = "deep = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_TABLE = "deep = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"
NFD = unicodedata.normalize("NFD", "caf\u00e9")


def toml(old: str, new: str) -> str:
    """mini's nano.toml with ``old`` replaced by ``new``."""
    assert old in TOML, old
    return TOML.replace(old, new, 1)


def ingress(host: str) -> str:
    return toml('name = "mini"', f'name = "mini"\n\n[ingress]\nhost = "{host}"')


def handlers(extra: str) -> str:
    """users' handlers with ``extra`` after them."""
    return USERS_TEXT + "\n\n" + extra


def cached(decorators: str) -> str:
    text = USERS_TEXT.replace("@handler\ndef list_users", decorators + "def list_users")
    return "import functools\n" + text


def service(name: str, package: str | None = None) -> dict[str, str]:
    """A third service, ``name``, whose package is ``package`` (its name by default)."""
    folder = package or name
    key = f'"{name}"' if not name.isascii() else name
    table = f'\n[services.{key}]\npath = "services/{name}"\n'
    if package:
        table += f'package = "{package}"\n'
    return {
        "nano.toml": TOML + table,
        f"services/{name}/{folder}/__init__.py": "",
        f"services/{name}/{folder}/kernel.py": "from nanobuild.runtime import Contract\n",
    }


CASES = [
    # -- nano.toml as a file
    Case(
        "bom-in-nano-toml",
        files={"nano.toml": "\ufeff" + TOML},
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "bom-in-nano-lock",
        files={"nano.lock": "\ufeff" + LOCK},
        args=["graph"],
        exit=0,
        names=["orders"],
    ),
    Case(
        "bom-and-crlf-in-nano-toml",
        files={"nano.toml": "\ufeff" + TOML.replace("\n", "\r\n")},
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "crlf-nano-toml",
        files={"nano.toml": TOML.replace("\n", "\r\n")},
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "tabs-in-nano-toml",
        files={"nano.toml": TOML.replace("path = ", "path\t=\t")},
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "huge-nano-toml",
        files={"nano.toml": TOML + "".join(f"# {i:07d} {'x' * 50}\n" for i in range(17000))},
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "deep-array-in-nano-toml",
        files={"nano.toml": TOML + DEEP_ARRAY},
        exit=2,
        code="E001",
        names=["nano.toml", "too deeply"],
    ),
    Case(
        "deep-inline-table-in-nano-toml",
        files={"nano.toml": TOML + DEEP_TABLE},
        exit=2,
        code="E001",
        names=["nano.toml", "too deeply"],
    ),
    Case(
        "deep-array-in-nano-lock",
        files={"nano.lock": LOCK + DEEP_ARRAY},
        exit=1,
        code="E504",
        names=["nano.lock", "too deeply"],
    ),
    Case(
        "deep-array-in-nano-lock-bundle",
        files={"nano.lock": LOCK + DEEP_ARRAY},
        args=["bundle", "--offline"],
        exit=1,
        code="E504",
        names=["nano.lock", "too deeply"],
    ),
    Case(
        "nano-toml-latin1",
        files={"nano.toml": TOML.encode() + "# caf\u00e9\n".encode("latin-1")},
        exit=2,
        code="E001",
        names=["nano.toml:18", "not UTF-8"],
    ),
    Case(
        "nano-toml-utf16",
        files={"nano.toml": TOML.encode("utf-16")},
        exit=2,
        code="E001",
        names=["nano.toml", "UTF-16"],
    ),
    Case("empty-nano-toml", files={"nano.toml": ""}, exit=2, code="E003", names=["[workspace]"]),
    Case(
        "services-as-an-array",
        files={"nano.toml": 'services = ["users"]\n[workspace]\nname = "mini"\n'},
        exit=2,
        code="E003",
        names=["nano.toml:1", "`services`", "table"],
    ),
    Case(
        "duplicate-key",
        files={"nano.toml": toml('name = "mini"', 'name = "mini"\nname = "maxi"')},
        exit=2,
        code="E001",
        names=["nano.toml:4", "Cannot overwrite a value"],
    ),
    Case(
        "duplicate-table",
        files={"nano.toml": TOML + '\n[services.users]\npath = "services/users"\n'},
        exit=2,
        code="E001",
        names=["nano.toml:19"],
    ),
    Case(
        "depends-on-itself",
        files={"nano.toml": toml('depends = ["users"]', 'depends = ["users", "orders"]')},
        exit=1,
        code="E102",
        names=["nano.toml:11", "orders -> orders"],
    ),
    # -- names
    Case(
        "nfd-service-name",
        files=service(NFD),
        exit=2,
        code="E006",
        names=["nano.toml:19", "ASCII"],
    ),
    Case(
        "nfc-service-name",
        files=service("caf\u00e9"),
        exit=2,
        code="E006",
        names=["nano.toml:19", "ASCII"],
    ),
    Case(
        "non-ascii-package",
        files={
            "nano.toml": toml(
                'path = "services/users"', f'path = "services/users"\npackage = "{NFD}"'
            )
        },
        exit=2,
        code="E006",
        names=["nano.toml:7", "package name", "ASCII"],
    ),
    Case(
        "non-ascii-depends",
        files={"nano.toml": toml('depends = ["users"]', f'depends = ["{NFD}"]')},
        exit=2,
        code="E006",
        names=["nano.toml:11", "services.orders.depends", "ASCII"],
    ),
    Case(
        "service-name-with-a-hyphen",
        files={"nano.toml": TOML + '\n[services.user-db]\npath = "services/users"\n'},
        exit=2,
        code="E006",
        names=["nano.toml:19", "'user-db'"],
    ),
    Case(
        "service-name-with-a-dot",
        files={"nano.toml": TOML + '\n[services."user.db"]\npath = "services/users"\n'},
        exit=2,
        code="E006",
        names=["nano.toml:19", "'user.db'"],
    ),
    Case(
        "service-name-a-keyword",
        files={"nano.toml": TOML + '\n[services.import]\npath = "services/users"\n'},
        exit=2,
        code="E006",
        names=["nano.toml:19", "Python keyword"],
    ),
    Case(
        "service-named-like-stdlib-email",
        files=service("email"),
        code="E304",
        names=["nano.toml:19", "standard library", "email"],
    ),
    Case(
        "service-named-test",
        files=service("test"),
        code="E304",
        names=["nano.toml:19", "the standard library's test package"],
    ),
    Case(
        "service-package-h11",
        files=service("web", "h11"),
        code="E304",
        names=["nano.toml:21", "package h11", "the module h11 of h11"],
    ),
    Case(
        "service-package-anyio-without-a-lock",
        files=service("web", "anyio"),
        remove=["nano.lock"],
        code="E304",
        names=["nano.toml:21", "package anyio"],
    ),
    Case(
        "library-package-click",
        files={
            "nano.toml": toml('path = "libs/units"', 'path = "libs/units"\npackage = "click"'),
            "libs/units/click/__init__.py": "",
        },
        code="E304",
        names=["nano.toml:18", "library units's package click"],
    ),
    Case(
        "kernel-py-is-a-folder",
        remove=[KERNEL],
        prepare=lambda root: (root / KERNEL).mkdir(),
        code="E108",
        names=["nano.toml:5", "kernel.py is a folder"],
    ),
    Case(
        "contract-named-like-a-builtin",
        files={
            KERNEL: KERNEL_TEXT.replace("ListUsers", "list"),
            USERS: USERS_TEXT.replace("ListUsers", "list"),
        },
        code="E220",
        names=[f"{KERNEL}:15", "named like the builtin list"],
    ),
    Case(
        "contract-name-not-ascii",
        files={
            KERNEL: KERNEL_TEXT.replace("ListUsers", "ListUs\u00e9rs"),
            USERS: USERS_TEXT.replace("ListUsers", "ListUs\u00e9rs"),
        },
        code="E220",
        names=[f"{KERNEL}:15", "not an ASCII name"],
    ),
    # -- hosts and requirements
    Case(
        "ingress-host-with-port",
        files={"nano.toml": ingress("localhost:8000")},
        exit=2,
        code="E023",
        names=["nano.toml:6", "ingress.host", "ingress.port"],
    ),
    Case(
        "ingress-host-with-scheme",
        files={"nano.toml": ingress("http://0.0.0.0")},
        exit=2,
        code="E023",
        names=["nano.toml:6", "'http://0.0.0.0'"],
    ),
    Case(
        "ingress-host-empty",
        files={"nano.toml": ingress("")},
        exit=2,
        code="E023",
        names=["nano.toml:6", "is empty"],
    ),
    Case(
        "ingress-host-with-a-space",
        files={"nano.toml": ingress("my host")},
        exit=2,
        code="E023",
        names=["nano.toml:6", "neither an IP address nor a host name"],
    ),
    Case(
        "ingress-host-unresolvable-passes-check",
        files={"nano.toml": ingress("no-such-host.invalid")},
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "requirement-with-a-url",
        files={"nano.toml": toml('"msgspec>=0.18"', '"msgspec @ https://example.com/m.whl"')},
        exit=2,
        code="E024",
        names=["nano.toml:13", "services.orders.requires", "names a URL"],
    ),
    # -- handlers
    Case(
        "handler-redefined-in-one-module",
        files={
            USERS: handlers(
                "@handler\nasync def get_user(req: GetUser) -> User:\n    return USERS[req.id]\n"
            )
        },
        code="E218",
        names=[f"{USERS}:21", "at line 9", "keeps only the last"],
    ),
    Case(
        "handler-over-lru-cache",
        files={USERS: cached("@handler\n@functools.lru_cache\n")},
        code="E219",
        names=[f"{USERS}:18", "@functools.lru_cache makes list_users something else"],
    ),
    Case(
        "lru-cache-over-handler",
        files={USERS: cached("@functools.lru_cache(maxsize=None)\n@handler\n")},
        code="E219",
        names=[f"{USERS}:18", "functools.lru_cache"],
    ),
    Case(
        "handler-over-property",
        files={
            USERS: USERS_TEXT.replace(
                "@handler\ndef list_users(req: ListUsers) -> list[User]:\n    return",
                "class Lists:\n    @handler\n    @property\n"
                "    def list_users(self, req: ListUsers) -> list[User]:\n        return",
            )
        },
        code="E219",
        names=[f"{USERS}:18", "@property makes Lists.list_users something else"],
    ),
    Case(
        "handler-on-a-class",
        files={USERS: handlers("@handler\nclass Users:\n    pass\n")},
        code="E219",
        names=[f"{USERS}:21", "not the class Users"],
    ),
    Case(
        "handler-on-a-lambda",
        files={USERS: handlers("other = handler(lambda req: None)\n")},
        code="E219",
        names=[f"{USERS}:20", "not a lambda"],
    ),
    Case(
        "handler-called-at-the-top",
        files={USERS: handlers("again = handler(list_users)\n")},
        code="E219",
        names=[f"{USERS}:20", "handler(list_users) is called outside any function"],
    ),
    Case(
        "handler-with-parentheses",
        files={USERS: USERS_TEXT.replace("@handler\ndef list_users", "@handler()\ndef list_users")},
        code="E219",
        names=[f"{USERS}:15", "without parentheses"],
    ),
]
check_unique(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)


BINARY_CASES = [
    BinaryCase(
        "binary-host-unresolvable",
        ["serve", "--host", "no-such-host.invalid", "--port", "0"],
        names=["cannot listen on the host 'no-such-host.invalid'", "ingress.host, or --host"],
    ),
    BinaryCase(
        "binary-host-garbage",
        ["--host", "not a host!", "--port", "0"],
        names=["cannot listen on the host 'not a host!'"],
    ),
]
check_unique(BINARY_CASES)


@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: c.name)
def test_binary_case(
    case: BinaryCase, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run_binary_case(case, binary(tmp_path_factory), tmp_path)


def test_the_binary_names_an_unresolvable_host(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Resolved at start, before any service starts: one line, exit 2 (no E code: the
    binary carries no build side)."""
    result = run_binary_case(BINARY_CASES[0], binary(tmp_path_factory), tmp_path)
    assert result.exit == 2
    assert result.stderr.count("\n") == 1 and "Name or service not known" in result.stderr
