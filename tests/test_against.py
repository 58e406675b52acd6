"""Two builds of one workspace: ``check --against`` an older one, and split processes of both.

``check --against`` runs on a git repository made from a copy of the mini sample
(one commit, then an edit of the working tree), and on a real older binary. The
split tests build the mini sample, change a contract, build again, and run
``users`` from one build and ``orders`` from the other, on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipapp
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Sample
from tests.servers import Binary, build_binary, start

SECRET = "against-secret-HvPmvRIv6CZ34cFwzuQx2g"

BASE_KERNEL = """\
import msgspec

from nanobuild.runtime import Contract


class User(msgspec.Struct, frozen=True):
    id: str
    name: str


class Card(msgspec.Struct, frozen=True, tag="card"):
    number: str


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str


class GetUser(Contract[User], frozen=True):
    id: str


class ListUsers(Contract[list[User]], frozen=True):
    pass


class Rename(Contract[User], frozen=True):
    id: str
    note: str = ""


class Invite(Contract[User], frozen=True):
    email: str


class Count(Contract[int], frozen=True):
    name: str


class Lookup(Contract[User], frozen=True):
    id: str


class Pay(Contract[Card], frozen=True):
    id: str


class Audit(Contract[Entry], frozen=True):
    id: str
"""

# every breaking rule at once, and one compatible change (User.email)
CHANGED_KERNEL = """\
import msgspec

from nanobuild.runtime import Contract


class User(msgspec.Struct, frozen=True):
    id: str
    name: str
    email: str = ""


class Short(msgspec.Struct, frozen=True):
    id: str


class Card(msgspec.Struct, frozen=True, tag="credit"):
    number: str


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    at: int = 0


class GetUser(Contract[User], frozen=True):
    id: str


class Rename(Contract[User], frozen=True):
    id: str


class Invite(Contract[User], frozen=True):
    email: str
    region: str


class Count(Contract[int], frozen=True):
    name: int


class Lookup(Contract[Short], frozen=True):
    id: str


class Pay(Contract[Card], frozen=True):
    id: str


class Audit(Contract[Entry], frozen=True):
    id: str
"""


def handlers(contracts: dict[str, tuple[str, str]], records: str) -> str:
    """A handlers module answering each contract: name -> (response type, returned value)."""
    lines = ["from nanobuild.runtime import handler", ""]
    lines += [f"from .kernel import {records}, {', '.join(contracts)}", ""]
    for contract, (response, value) in contracts.items():
        lines += ["", "@handler", f"def answer_{contract.lower()}(req: {contract}) -> {response}:"]
        lines += [f"    return {value}", ""]
    return "\n".join(lines)


BASE_HANDLERS = {
    "GetUser": ("User", 'User(id=req.id, name="Ada")'),
    "ListUsers": ("list[User]", "[]"),
    "Rename": ("User", 'User(id=req.id, name="Ada")'),
    "Invite": ("User", 'User(id="u2", name=req.email)'),
    "Count": ("int", "1"),
    "Lookup": ("User", 'User(id=req.id, name="Ada")'),
    "Pay": ("Card", 'Card(number="1")'),
    "Audit": ("Entry", "Entry(id=req.id)"),
}
CHANGED_HANDLERS = {
    **{k: v for k, v in BASE_HANDLERS.items() if k != "ListUsers"},
    "Lookup": ("Short", "Short(id=req.id)"),
}


def git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=env)


@pytest.fixture
def repo(tmp_path: Path) -> Sample:
    """The mini sample in a subfolder of a fresh git repository, committed once."""
    shutil.copytree(SAMPLES / "mini", tmp_path / "repo" / "shop")
    git(tmp_path / "repo", "init", "-q", "-b", "main")
    sample = Sample(tmp_path / "repo" / "shop")
    return sample


def commit(sample: Sample) -> None:
    git(sample.root.parent, "add", "-A")
    git(sample.root.parent, "commit", "-q", "-m", "a build")


def check_against(
    root: Path, ref: str, *extra: str, **env: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "nanobuild",
        "check",
        "--workspace",
        str(root),
        "--against",
        ref,
    ]
    return subprocess.run(
        [*command, *extra], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def test_a_compatible_change_is_listed_and_passes(repo: Sample) -> None:
    commit(repo)
    repo.edit(
        "services/users/users/kernel.py", "    name: str\n", '    name: str\n    email: str = ""\n'
    )
    repo.edit(
        "services/users/users/kernel.py",
        "class GetUser(Contract[User], frozen=True):\n    id: str\n",
        'class GetUser(Contract[User], frozen=True):\n    id: str\n    note: str = ""\n',
    )
    done = check_against(repo.root, "main")
    assert done.returncode == 0, done.stdout + done.stderr
    kernel = os.path.join(os.path.relpath(repo.root), "services/users/users/kernel.py")
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        f"{kernel}:12: compatible: users.GetUser: request field `note` (str) is new in this build "
        "and optional: not sent by callers built from main, it takes its default",
        f"{kernel}:12: compatible: users.GetUser: response field `email` (str) is new in this "
        "build and ignored by callers built from main",
        f"{kernel}:17: compatible: users.ListUsers: response field `[].email` (str) is new in "
        "this build and ignored by callers built from main",
    ]
    assert lines[-1] == "mini against main: 3 changes to 2 contracts, 0 breaking"


def test_every_breaking_rule_has_its_code(repo: Sample) -> None:
    repo.write("services/users/users/kernel.py", BASE_KERNEL)
    repo.write("services/users/users/handlers.py", handlers(BASE_HANDLERS, "Card, Entry, User"))
    commit(repo)
    repo.write("services/users/users/kernel.py", CHANGED_KERNEL)
    repo.write(
        "services/users/users/handlers.py", handlers(CHANGED_HANDLERS, "Card, Entry, Short, User")
    )
    done = check_against(repo.root, "HEAD", "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["against"] == "HEAD"
    codes = {d["message"].split(":")[0]: d["code"] for d in report["diagnostics"]}
    assert codes == {
        "users.ListUsers": "E601",
        "users.Rename": "E602",
        "users.Invite": "E603",
        "users.Count": "E604",
        "users.Lookup": "E605",
        "users.Pay": "E606",
        "users.Audit": "E608",
    }
    [count] = [d for d in report["diagnostics"] if d["code"] == "E604"]
    assert count == {
        "path": "services/users/users/kernel.py",
        "code": "E604",
        "message": "users.Count: `request.name` is str in callers built from HEAD but int in this build",
        "line": 38,
    }
    compatible = [c for c in report["changes"] if not c["breaking"]]
    assert [(c["contract"], c["rule"]) for c in compatible] == [
        ("users.GetUser", "response-field-added"),
        ("users.Invite", "response-field-added"),
        ("users.Rename", "response-field-added"),
    ]


def test_an_unusable_ref_is_named(repo: Sample, tmp_path: Path) -> None:
    commit(repo)
    done = check_against(repo.root, "v9")
    assert done.returncode == 2
    assert (
        f"nano.toml: E607 --against v9: no such commit, branch or tag in {repo.root.parent}"
        in done.stderr
    )
    plain = tmp_path / "plain"
    shutil.copytree(SAMPLES / "mini", plain)
    done = check_against(plain, "main")
    assert done.returncode == 2
    assert (
        f"E607 --against main: {plain} is not in a git repository, and main is not a .pyz file"
        in done.stderr
    )
    done = check_against(plain, "old.pyz")
    assert "E607 --against old.pyz: no such file" in done.stderr


def test_a_binary_too_old_to_describe_its_contracts_is_named(tmp_path: Path) -> None:
    # a stand-in for a binary of an older nanobuild: its command line has no `contracts`
    source = tmp_path / "old"
    source.mkdir()
    (source / "__main__.py").write_text(
        "import argparse\n"
        "parser = argparse.ArgumentParser(prog='python old.pyz')\n"
        "commands = parser.add_subparsers(dest='command')\n"
        "for name in ('serve', 'services', 'call', 'info'):\n"
        "    commands.add_parser(name)\n"
        "parser.parse_args()\n"
    )
    zipapp.create_archive(source, tmp_path / "old.pyz")
    shutil.copytree(SAMPLES / "mini", tmp_path / "mini")
    done = check_against(tmp_path / "mini", str(tmp_path / "old.pyz"))
    assert done.returncode == 2
    assert (
        f"E607 {tmp_path / 'old.pyz'} is too old to describe its contracts (it has no `contracts` command)"
        in done.stderr
    )


# -- two real builds


REGION = (
    "class GetUser(Contract[User], frozen=True):\n    id: str\n",
    "class GetUser(Contract[User], frozen=True):\n    id: str\n    region: str\n",
)
EMAIL = ("    name: str\n", '    name: str\n    email: str = ""\n')


def edited(tmp: Path, *edits: tuple[str, str, str]) -> Path:
    root = tmp / "src"
    shutil.copytree(SAMPLES / "mini", root)
    for rel, old, new in edits:
        Sample(root).edit(rel, old, new)
    return root


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Binary, Path]]:
    """The mini sample built three ways: as it is, with a breaking change, a compatible one."""
    kernel = "services/users/users/kernel.py"
    variants = {
        "base": (),
        "breaking": (
            (kernel, *REGION),
            (
                "services/orders/orders/handlers.py",
                "GetUser(id=req.user_id)",
                'GetUser(id=req.user_id, region="eu")',
            ),
        ),
        "compatible": ((kernel, *EMAIL),),
    }
    built = {}
    for name, edits in variants.items():
        tmp = tmp_path_factory.mktemp(name)
        source = edited(tmp, *edits)
        built[name] = (build_binary(source, tmp / "build"), tmp / "build" / "ws")
    return built


def test_check_against_an_older_binary(builds: dict[str, tuple[Binary, Path]]) -> None:
    base, _ = builds["base"]
    _, changed = builds["breaking"]
    done = check_against(changed, str(base.pyz), **base.env)
    assert done.returncode == 1, done.stderr
    assert (
        f"services/users/users/kernel.py:11: E603 users.GetUser: request field `region` (str) is "
        f"required by this build but not sent by callers built from {base.pyz}"
    ) in done.stdout.replace(os.path.relpath(changed) + os.sep, "")


def run_split(tmp: Path, users: Binary, orders: Binary) -> tuple[object, object]:
    env = {"NANO_SECRET": SECRET, **users.env}
    callee = start(
        users.command("serve", "--port", "0", "--only", "users", "--internal-port", "0"),
        tmp / "users.log",
        **env,
    )
    assert callee.internal
    caller = start(
        orders.command(
            "serve",
            "--port",
            "0",
            "--only",
            "orders",
            "--internal-port",
            "0",
            f"--remote=users={callee.internal}",
        ),
        tmp / "orders.log",
        **env,
    )
    return callee, caller


def info(binary: Binary) -> dict[str, str]:
    done = subprocess.run(
        binary.command("info", "--json"),
        capture_output=True,
        text=True,
        env={**os.environ, **binary.env},
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_breaking_change_fails_at_once_naming_both_builds(
    builds: dict[str, tuple[Binary, Path]], tmp_path: Path
) -> None:
    old, _ = builds["base"]
    new, _ = builds["breaking"]
    callee, caller = run_split(tmp_path, new, old)
    try:
        order = {"user_id": "u1", "quantity": {"amount": 2}}
        public = caller.call("orders", "PlaceOrder", order)
        assert public.status_code == 503, public.text
        assert callee.internal not in public.text  # the public is told no internal address
        assert public.json()["error"]["message"].startswith("users is unavailable (Incompatible)")
        answer = caller.call("orders", "PlaceOrder", order, headers={"nano-secret": SECRET})
        assert answer.status_code == 503, answer.text
        message = answer.json()["error"]["message"]  # a caller with the secret: all of it
        here, there = info(old)["inputs"][:19], info(new)["inputs"][:19]
        assert f"users.GetUser: this process (build mini {here} (nanobuild " in message
        assert f"and {callee.internal} (build mini {there} (nanobuild " in message
        assert (
            f"request field `region` (str) is required by {callee.internal} but not sent by this process"
            in message
        )
        assert not re.search(r"(?<![\d:])400\b", message)  # no HTTP 400 (a port may hold 400)
        assert "unknown field" not in message
        # the contract whose shapes agree still answers, on the same connection
        listed = caller.call("users", "ListUsers", headers={"nano-secret": SECRET})
        assert listed.status_code == 200 and listed.json() == [{"id": "u1", "name": "Ada"}]
        health = caller.http.get("/healthz").json()
        [disagree] = health["disagree"]
        assert disagree["contract"] == "users.GetUser" and disagree["breaking"] is True
        assert disagree["remote"] == callee.internal
        assert (
            caller.call(
                "orders", "PlaceOrder", {"user_id": "u1", "quantity": {"amount": 2}}
            ).status_code
            == 503
        )
        assert caller.log().count("runs build") == 1  # once per connection
        assert "their shapes of users.GetUser differ" in callee.log()
    finally:
        caller.stop()
        callee.stop()


def test_a_compatible_change_still_answers(
    builds: dict[str, tuple[Binary, Path]], tmp_path: Path
) -> None:
    old, _ = builds["base"]
    new, _ = builds["compatible"]
    callee, caller = run_split(tmp_path, new, old)
    try:
        answer = caller.call("orders", "PlaceOrder", {"user_id": "u1", "quantity": {"amount": 2}})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"user_name": "Ada", "quantity": {"amount": 2, "unit": "piece"}}
        disagree = caller.http.get("/healthz").json()["disagree"]
        assert {(d["contract"], d["breaking"]) for d in disagree} == {
            ("users.GetUser", False),
            ("users.ListUsers", False),
        }
    finally:
        caller.stop()
        callee.stop()
