"""``nanobuild.runtime.testing.service``: a service run in process for its own tests.

Each test writes a test module into a copy of the mini workspace (orders calls
users) and runs pytest on it in a child Python from the workspace's root, as a user
would: the service's packages are then imported there, never into this process.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, Sample
from tests.test_scaffold import pytest_in


@pytest.fixture
def adopt(tmp_path: Path) -> Sample:
    """A copy of the sample of three adopted ASGI apps (users on a port, two mounted)."""
    shutil.copytree(SAMPLES / "adopt", tmp_path / "adopt")
    return Sample(tmp_path / "adopt")


CONFTEST = """\
import os

import pytest

from nanobuild.runtime.testing import make_importable

os.environ.setdefault("NANO_STRICT", "1")
make_importable(__file__)


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

HOOKS = """\
from nanobuild.runtime import on_shutdown, on_startup

EVENTS: list[str] = []


@on_startup
def opened() -> None:
    EVENTS.append("users started")


@on_shutdown
async def closed() -> None:
    EVENTS.append("users stopped")
"""

HEAD = """\
import pytest

from nanobuild.runtime import NotFound, UnknownContract, call, router
from nanobuild.runtime.errors import StartupFailed
from nanobuild.runtime.testing import TestSetupError, fake, service
from orders.kernel import PlaceOrder
from units import Quantity
from users.kernel import GetUser, ListUsers, User

pytestmark = pytest.mark.anyio
ORDER = PlaceOrder(user_id="u1", quantity=Quantity(2))
"""


def run_tests(mini: Sample, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``body`` (after HEAD) as orders' own test, from the workspace root."""
    mini.write("services/orders/conftest.py", CONFTEST)
    mini.write("services/orders/tests/test_orders.py", HEAD + body)
    return pytest_in(mini.root, *args, "services/orders")


def test_a_service_runs_with_its_dependencies_hooks_fakes_and_http(mini: Sample) -> None:
    mini.write("services/users/users/hooks.py", HOOKS)
    mini.edit(
        "services/users/users/kernel.py",
        "import msgspec\n",
        "from typing import ClassVar\n\nimport msgspec\n",
    )
    mini.edit("services/users/users/kernel.py", "import Contract\n", "import Contract, Route\n")
    mini.edit(
        "services/users/users/kernel.py",
        "class GetUser(Contract[User], frozen=True):\n",
        'class GetUser(Contract[User], frozen=True):\n    http: ClassVar[Route] = Route("GET /users/{id}")\n',
    )
    done = run_tests(
        mini,
        """
from users.hooks import EVENTS


async def test_dependencies_run_for_real_with_their_hooks():
    async with service("orders"):
        assert EVENTS == ["users started"]
        assert (await call(ORDER)).user_name == "Ada"
        with pytest.raises(NotFound, match="no user u9"):
            await call(PlaceOrder(user_id="u9", quantity=Quantity(1)))
    assert EVENTS == ["users started", "users stopped"]


async def test_a_fake_answers_instead_of_the_dependency():
    seen = []

    def get_user(req):
        seen.append(req.id)
        return User(id=req.id, name="Bob")

    async with service("orders", fakes={GetUser: get_user}):
        assert (await call(ORDER)).user_name == "Bob"
    assert seen == ["u1"]


async def test_an_isolated_service_names_the_fake_it_lacks():
    async with service("orders", isolated=True):
        with pytest.raises(UnknownContract, match=r"orders calls users.GetUser, which this isolated test does not fake: give service\\('orders', fakes=\\{GetUser: ...\\}\\)"):
            await call(ORDER)
    async with service("orders", isolated=True, fakes={GetUser: lambda req: User(id="u1", name="Eve")}):
        assert (await call(ORDER)).user_name == "Eve"


async def test_no_route_is_left_installed_however_the_block_ends():
    before = router.installed()
    with pytest.raises(ZeroDivisionError):
        async with service("orders"):
            assert (await call(GetUser(id="u1"))).name == "Ada"
            1 / 0
    assert router.installed() == before
    with pytest.raises(UnknownContract):
        await call(GetUser(id="u1"))
    with fake({GetUser: lambda req: User(id="f", name="Fay")}):
        async with service("orders"):
            assert (await call(GetUser(id="u1"))).name == "Ada"
        assert (await call(GetUser(id="u1"))).name == "Fay"


async def test_the_http_face_in_memory_public_and_trusted():
    async with service("orders") as svc:
        placed = await svc.http.post("/api/orders/PlaceOrder", json={"user_id": "u1", "quantity": {"amount": 3}})
        assert placed.status_code == 200, placed.text
        assert placed.json() == {"user_name": "Ada", "quantity": {"amount": 3, "unit": "piece"}}
        missing = await svc.http.post("/api/users/GetUser", json={"id": "u9"})
        assert missing.status_code == 404 and missing.json()["error"]["kind"] == "not_found"
        hidden = await svc.http.post("/api/users/ListUsers", json={})
        assert hidden.status_code == 404 and hidden.json()["error"]["kind"] == "unknown_contract"
        listed = await svc.trusted.post("/api/users/ListUsers", json={})
        assert listed.status_code == 200 and listed.json() == [{"id": "u1", "name": "Ada"}]
        rest = await svc.http.get("/users/u1")  # the contract's REST route
        assert rest.status_code == 200 and rest.json() == {"id": "u1", "name": "Ada"}
        assert (await svc.http.get("/users/u9")).status_code == 404
        health = await svc.http.get("/healthz")
        assert health.json()["services"] == ["users", "orders"]
        ready = await svc.http.get("/readyz")  # started, as a process once its hooks ran
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text


async def test_an_unknown_service_is_named_with_the_known_ones():
    with pytest.raises(TestSetupError, match=r"ghost is not a service of .*nano.toml \\(its services: orders, users\\)"):
        async with service("ghost"):
            pass
""",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout


def test_a_contract_service_on_its_own_port_is_tested_there(mini: Sample) -> None:
    mini.edit(
        "services/users/users/kernel.py",
        "import msgspec\n",
        "from typing import ClassVar\n\nimport msgspec\n",
    )
    mini.edit("services/users/users/kernel.py", "import Contract\n", "import Contract, Route\n")
    mini.edit(
        "services/users/users/kernel.py",
        "class GetUser(Contract[User], frozen=True):\n",
        'class GetUser(Contract[User], frozen=True):\n    http: ClassVar[Route] = Route("GET /users/{id}")\n',
    )
    mini.edit("nano.toml", 'public = ["GetUser"]\n', 'public = ["GetUser"]\nport = 8101\n')
    done = run_tests(
        mini,
        """

async def test_its_routes_answer_at_its_port():
    async with service("users") as svc:
        assert svc.url == "http://127.0.0.1:8101"
        found = await svc.http.get("/users/u1")
        assert found.status_code == 200 and found.json() == {"id": "u1", "name": "Ada"}
        assert (await svc.http.get("/healthz")).status_code == 404  # its routes alone
""",
    )
    assert done.returncode == 0, done.stdout


def test_a_failing_start_up_hook_fails_the_block_and_stops_what_started(mini: Sample) -> None:
    mini.write("services/users/users/hooks.py", HOOKS)
    mini.write(
        "services/orders/orders/hooks.py",
        "from nanobuild.runtime import on_startup\n\n\n"
        "@on_startup\ndef broken() -> None:\n    raise RuntimeError('no database')\n",
    )
    done = run_tests(
        mini,
        """
from users.hooks import EVENTS


async def test_start_up_fails():
    before = router.installed()
    with pytest.raises(StartupFailed, match="service orders failed to start: RuntimeError: no database"):
        async with service("orders"):
            raise AssertionError("the block must not run")
    assert EVENTS == ["users started", "users stopped"]
    assert router.installed() == before
""",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_a_service_that_cannot_be_imported_is_named(mini: Sample) -> None:
    mini.write("services/users/users/broken.py", "import no_such_module_here\n")
    done = run_tests(
        mini,
        """
async def test_import_fails():
    with pytest.raises(TestSetupError, match="service users: cannot import users.broken: ModuleNotFoundError"):
        async with service("orders"):
            pass
""",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_tests_run_from_the_services_own_folder(mini: Sample) -> None:
    mini.write("services/orders/conftest.py", CONFTEST)
    mini.write(
        "services/orders/tests/test_orders.py",
        HEAD + "\n\nasync def test_it():\n    async with service('orders'):\n"
        "        assert (await call(ORDER)).user_name == 'Ada'\n",
    )
    done = pytest_in(mini.root / "services/orders")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


ADOPTED = """\
import os

import pytest

from nanobuild.runtime.testing import service

pytestmark = pytest.mark.anyio


async def test_an_app_on_its_own_port_with_its_lifespan_state():
    async with service("users") as svc:
        assert svc.url == "http://127.0.0.1:18401"
        answer = await svc.http.get("/users/u1")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"id": "u1", "name": "Ada", "models": "users", "state": "hello"}
        assert (await svc.http.get("/users/u9")).status_code == 404


async def test_a_mounted_app_calls_the_others_in_memory(tmp_path):
    log = tmp_path / "log"
    os.environ["ADOPT_LOG"] = str(log)
    async with service("gateway") as svc:
        assert svc.url == "http://127.0.0.1:8000"
        urls = (await svc.http.get("/urls")).json()
        assert urls == {"USERS_URL": "http://127.0.0.1:18401", "ORDERS_URL": "http://127.0.0.1:8000/orders"}
        profile = await svc.http.get("/profile/u1")
        assert profile.status_code == 200, profile.text
        assert profile.json()["orders"] == {"models": "orders", "user": "u1", "root": "/orders"}
        assert profile.json()["user"]["state"] == "hello"
        assert log.read_text() == "start users\\nstart gateway\\n"
    assert log.read_text() == "start users\\nstart gateway\\nstop gateway\\nstop users\\n"
    assert "USERS_URL" not in os.environ and "ORDERS_URL" not in os.environ
"""


def test_adopted_apps_run_in_memory_with_their_lifespans(adopt: Sample) -> None:
    # the one-line change: the gateway's clients are nanobuild's, which reach the apps
    # of this process in memory (a plain httpx client would need their sockets)
    adopt.edit("gateway/clients.py", "import httpx\n", "from nanobuild.runtime import httpclient\n")
    adopt.edit("gateway/clients.py", "httpx.AsyncClient(base_url=os.environ['USERS_URL'])".replace("'", '"'), 'httpclient.AsyncClient(base_url=os.environ["USERS_URL"])')  # fmt: skip
    adopt.edit("gateway/clients.py", 'httpx.AsyncClient(base_url=os.environ["ORDERS_URL"])', 'httpclient.AsyncClient(base_url=os.environ["ORDERS_URL"])')  # fmt: skip
    adopt.write("conftest.py", CONFTEST.replace("make_importable(__file__)", ""))
    adopt.write("tests/test_adopted.py", ADOPTED)
    done = pytest_in(adopt.root, "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_handlers_of_a_class_and_of_a_decorator_factory(mini: Sample) -> None:
    handlers = "services/users/users/handlers.py"
    mini.edit(handlers, "@handler\ndef list_users", "def list_users")  # now a method's
    mini.write(
        "services/users/users/directory.py",
        "from nanobuild.runtime import handler, on_startup\n\n"
        "from .kernel import ListUsers, User\n\n\n"
        "def endpoint(fn):\n    return handler(fn)\n\n\n"
        "class Directory:\n"
        "    def __init__(self) -> None:\n        self.people: list[User] = []\n\n"
        "    @on_startup\n    def load(self) -> None:\n"
        "        self.people = [User(id='c1', name='Cy')]\n\n"
        "    @endpoint\n    async def list_users(self, req: ListUsers) -> list[User]:\n"
        "        return self.people\n",
    )
    done = run_tests(
        mini,
        """
async def test_the_class_answers_with_what_its_hook_loaded():
    async with service("users"):
        assert await call(ListUsers()) == [User(id="c1", name="Cy")]
        assert (await call(GetUser(id="u1"))).name == "Ada"
""",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_services_exception_map_applies(mini: Sample) -> None:
    mini.edit(
        "nano.toml",
        'public = ["GetUser"]\n',
        'public = ["GetUser"]\n\n[services.users.errors]\n"users.handlers.Missing" = "NotFound"\n',
    )
    handlers = "services/users/users/handlers.py"
    mini.edit(handlers, "USERS = {", "class Missing(Exception):\n    pass\n\n\nUSERS = {")
    mini.edit(
        handlers,
        '        raise NotFound(f"no user {req.id}")',
        '        raise Missing(f"nobody is {req.id}")',
    )
    done = run_tests(
        mini,
        """
async def test_a_mapped_exception_reaches_the_caller_as_its_kind():
    async with service("orders") as svc:
        with pytest.raises(NotFound, match="nobody is u9"):
            await call(GetUser(id="u9"))
        answer = await svc.http.post("/api/users/GetUser", json={"id": "u9"})
        assert answer.status_code == 404 and answer.json()["error"]["kind"] == "not_found"
""",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
