"""Contracts' REST routes and the request context, end to end on 127.0.0.1.

One workspace — the mini sample plus ``people``, whose contracts declare REST routes
and whose handlers use ``this_call`` — is served by ``nanobuild serve``, by its binary
fused, and split (``people`` in a process of its own behind the front's HTTP face).
Every route answers the same in all three, and ``POST /api/...`` still does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.conftest import SAMPLES
from tests.servers import Server, build_binary, free_port, serve, start, start_placement

SECRET = "rest-secret-B2R1zwg8R2R3SyuHK6x5-w"

PEOPLE_KERNEL = '''
from typing import ClassVar

import msgspec

from nanobuild.runtime import Contract, Route


class Person(msgspec.Struct, frozen=True):
    id: int
    name: str
    tags: list[str] = []


class GetPerson(Contract[Person], frozen=True):
    http: ClassVar[Route] = Route("GET /people/{id}", headers={"Cache-Control": "max-age=60"})
    id: int


class Me(Contract[Person], frozen=True):
    """The caller, from its own Authorization header."""

    http: ClassVar[Route] = Route("GET /people/me")


class FindPeople(Contract[list[Person]], frozen=True):
    http: ClassVar[Route] = Route("GET /people")
    tag: list[str] = []
    limit: int = 10
    prefix: str | None = None


class CreatePerson(Contract[Person], frozen=True):
    http: ClassVar[Route] = Route("POST /people", status=201)
    name: str
    tags: list[str] = []


class RenamePerson(Contract[Person], frozen=True):
    http: ClassVar[Route] = Route("PUT /people/{id}")
    id: int
    name: str


class Tag(Contract[Person], frozen=True):
    http: ClassVar[Route] = Route("PATCH /people/{id}/tags", query="replace")
    id: int
    tags: list[str]
    replace: bool = False


class DeletePerson(Contract[None], frozen=True):
    http: ClassVar[Route] = Route("DELETE /people/{id}", status=204)
    id: int


class Salary(Contract[int], frozen=True):
    """Not public: its route answers only with the secret."""

    http: ClassVar[Route] = Route("GET /people/{id}/salary")
    id: int


class Echo(Contract[dict[str, str]], frozen=True):
    """What the handler saw of the request, and what a call in memory sees."""

    http: ClassVar[Route] = Route("POST /api/v1/echo/{word}")
    word: str


class Inner(Contract[dict[str, str]], frozen=True):
    pass
'''

PEOPLE_HANDLERS = """
from nanobuild.runtime import NotFound, Unauthorized, call, context, handler, this_call

from .kernel import (
    CreatePerson, DeletePerson, Echo, FindPeople, GetPerson, Inner, Me, Person,
    RenamePerson, Salary, Tag,
)

PEOPLE = {1: Person(1, "Ada", ["math"]), 2: Person(2, "Alan", ["math", "crypto"])}


def person(id: int) -> Person:
    if id not in PEOPLE:
        raise NotFound(f"no person {id}")
    return PEOPLE[id]


@handler
async def get_person(req: GetPerson) -> Person:
    return person(req.id)


@handler
def me(req: Me) -> Person:
    token = this_call(req).headers.get("authorization")
    if token != "Bearer ada-token":
        raise Unauthorized(f"who is {token!r}?")
    return PEOPLE[1]


@handler
async def find_people(req: FindPeople) -> list[Person]:
    found = [p for p in PEOPLE.values() if all(t in p.tags for t in req.tag)]
    found = [p for p in found if req.prefix is None or p.name.startswith(req.prefix)]
    return found[: req.limit]


@handler
async def create_person(req: CreatePerson) -> Person:
    new = Person(max(PEOPLE) + 1, req.name, req.tags)
    PEOPLE[new.id] = new
    this_call(req).set_header("Location", f"/people/{new.id}")
    return new


@handler
async def rename_person(req: RenamePerson) -> Person:
    renamed = PEOPLE[req.id] = Person(req.id, req.name, person(req.id).tags)
    return renamed


@handler
async def tag(req: Tag) -> Person:
    old = person(req.id)
    tags = req.tags if req.replace else [*old.tags, *req.tags]
    PEOPLE[req.id] = Person(old.id, old.name, tags)
    return PEOPLE[req.id]


@handler
async def delete_person(req: DeletePerson) -> None:
    PEOPLE.pop(person(req.id).id)


@handler
async def salary(req: Salary) -> int:
    return 1000 * person(req.id).id


@handler
async def echo(req: Echo) -> dict[str, str]:
    exchange = this_call(req)
    exchange.status = 202
    exchange.set_header("X-Word", req.word)
    inner = await call(Inner())
    seen = {k: exchange.headers[k] for k in ("x-trace", "nano-secret", "nano-context")
            if k in exchange.headers}
    return {
        **seen,
        "method": exchange.method,
        "path": exchange.path,
        "tenant": exchange.context.get("tenant", ""),
        "inner": inner["http"],
        "inner_tenant": inner["tenant"],
        "all_traces": "|".join(exchange.headers.get_all("X-TRACE")),
    }


@handler
async def inner(req: Inner) -> dict[str, str]:
    exchange = this_call(req)
    exchange.status = 299  # an exchange of no HTTP request: it goes nowhere
    return {"http": str(exchange.http) + str(dict(exchange.headers)),
            "tenant": context.current().get("tenant", "")}
"""

PEOPLE_TOML = """
[services.people]
path = "services/people"
public = ["GetPerson", "Me", "FindPeople", "CreatePerson", "RenamePerson", "Tag",
          "DeletePerson", "Echo"]
"""


def people_workspace(root: Path) -> Path:
    shutil.copytree(SAMPLES / "mini", root)
    package = root / "services" / "people" / "people"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "kernel.py").write_text(PEOPLE_KERNEL)
    (package / "handlers.py").write_text(PEOPLE_HANDLERS)
    (root / "nano.toml").write_text((root / "nano.toml").read_text() + PEOPLE_TOML)
    return root


@pytest.fixture(scope="module", params=["serve", "fused", "split"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"rest-{request.param}")
    root = people_workspace(tmp / "ws")
    if request.param == "serve":
        front = start(serve(root), tmp / "server.log", NANO_SECRET=SECRET)
        yield front
        assert front.stop() == 0, front.log()
        return
    binary = build_binary(root, tmp / "build")
    groups = [["users", "orders", "people"]]
    if request.param == "split":
        groups = [["people"], ["users", "orders"]]
    cluster = start_placement(binary, groups, tmp, NANO_SECRET=SECRET)
    yield cluster.front
    assert cluster.stop() == [0] * len(cluster.servers), [s.log() for s in cluster.servers]


@pytest.fixture
def split(request: pytest.FixtureRequest) -> bool:
    """Whether ``people`` runs behind the front, in a process of its own."""
    return bool(request.node.callspec.params["server"] == "split")


def error_of(response: httpx.Response) -> dict[str, str]:
    error: dict[str, str] = response.json()["error"]
    return error


def test_a_path_parameter_is_converted_to_its_fields_type(server: Server) -> None:
    response = server.http.get("/people/1")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": 1, "name": "Ada", "tags": ["math"]}
    assert response.headers["cache-control"] == "max-age=60"  # the route's static header
    assert response.headers["content-type"] == "application/json"


def test_a_bad_path_parameter_is_a_400_naming_it(server: Server) -> None:
    response = server.http.get("/people/one")
    assert response.status_code == 400
    assert error_of(response)["message"] == "path parameter 'id': 'one' is not a int"
    assert error_of(response)["contract"] == "GetPerson"


def test_a_static_path_wins_over_a_template(server: Server, split: bool) -> None:
    response = server.http.get("/people/me", headers={"Authorization": "Bearer ada-token"})
    if split:  # the request's headers stay at the face that took it
        assert response.status_code == 401
        assert "who is None?" in error_of(response)["message"]
    else:
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Ada"
    # Authorization belongs to the app: a wrong one is the handler's own 401
    response = server.http.get("/people/me", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert ("who is None?" if split else "who is 'Bearer nope'?") in error_of(response)["message"]


def test_query_parameters_fill_the_other_fields_of_a_get(server: Server) -> None:
    everyone = server.http.get("/people")
    assert [p["id"] for p in everyone.json()] == [1, 2]
    tagged = server.http.get("/people", params=[("tag", "math"), ("tag", "crypto")])
    assert [p["name"] for p in tagged.json()] == ["Alan"]
    limited = server.http.get("/people?limit=1&prefix=A&unknown=ignored")
    assert [p["name"] for p in limited.json()] == ["Ada"]
    bad = server.http.get("/people?limit=many")
    assert bad.status_code == 400
    assert error_of(bad)["message"] == "query parameter 'limit': 'many' is not a int"


def test_post_put_patch_delete_with_their_statuses(server: Server, split: bool) -> None:
    created = server.http.post("/people", json={"name": "Grace", "tags": ["navy"]})
    assert created.status_code == 201, created.text  # the route's status, wherever it ran
    new = created.json()
    # set by the handler: it comes back only from a handler of the face's own process
    assert created.headers.get("location") == (None if split else f"/people/{new['id']}")
    renamed = server.http.put(f"/people/{new['id']}", json={"name": "Grace Hopper"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Grace Hopper"
    tagged = server.http.patch(f"/people/{new['id']}/tags?replace=true", json={"tags": ["cobol"]})
    assert tagged.json()["tags"] == ["cobol"]
    deleted = server.http.delete(f"/people/{new['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b"" and "content-type" not in deleted.headers
    assert server.http.get(f"/people/{new['id']}").status_code == 404


def test_a_body_is_validated_as_strictly_as_at_api(server: Server) -> None:
    for body, message in [
        ({"name": 7}, "Expected `str`, got `int` - at `$.name`"),
        ({"name": "x", "age": 3}, "Object contains unknown field `age`"),
        ({}, "Object missing required field `name`"),
    ]:
        response = server.http.post("/people", json=body)
        assert response.status_code == 400
        assert error_of(response)["message"] == message
    # a field the path gives cannot also come in the body
    response = server.http.put("/people/1", json={"id": 2, "name": "x"})
    assert response.status_code == 400
    assert error_of(response)["message"] == "id comes from the path; the body may not give it"
    response = server.http.post(
        "/people", content=b"name=x", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415


def test_messagepack_in_and_out(server: Server) -> None:
    response = server.http.post(
        "/people",
        content=msgspec.msgpack.encode({"name": "Barbara"}),
        headers={"content-type": "application/msgpack"},
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/msgpack"
    assert msgspec.msgpack.decode(response.content)["name"] == "Barbara"
    asked = server.http.get("/people/1", headers={"accept": "application/msgpack"})
    assert msgspec.msgpack.decode(asked.content)["name"] == "Ada"


def test_another_method_on_a_route_is_405_with_allow(server: Server) -> None:
    response = server.http.post("/people/1", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT, DELETE"


def test_a_non_public_route_answers_only_with_the_secret(server: Server) -> None:
    assert server.http.get("/people/2/salary").status_code == 404
    assert server.http.get("/people/2/salary", headers={"nano-secret": "wrong"}).status_code == 404
    opened = server.http.get("/people/2/salary", headers={"nano-secret": SECRET})
    assert opened.status_code == 200 and opened.json() == 2000
    # the old credential is the app's now, and opens nothing
    bearer = server.http.get("/people/2/salary", headers={"authorization": f"Bearer {SECRET}"})
    assert bearer.status_code == 404


def test_api_still_answers_every_contract(server: Server) -> None:
    response = server.call("people", "GetPerson", {"id": 2})
    assert response.status_code == 200 and response.json()["name"] == "Alan"
    assert server.call("people", "Salary", {"id": 1}).status_code == 404
    opened = server.call("people", "Salary", {"id": 1}, headers={"nano-secret": SECRET})
    assert opened.json() == 1000


def test_the_request_context(server: Server, split: bool) -> None:
    headers = [("X-Trace", "t1"), ("x-trace", "t2"), ("nano-context", "tenant=acme")]
    untrusted = server.http.post("/api/v1/echo/hello", headers=headers)
    if split:  # forwarded as a call: the handler has no HTTP request, the route's status
        assert untrusted.status_code == 200 and "x-word" not in untrusted.headers
        assert untrusted.json()["method"] == "" and "x-trace" not in untrusted.json()
        trusted = server.http.post(
            "/api/v1/echo/x", headers={**dict(headers), "nano-secret": SECRET}
        )
        assert trusted.json()["tenant"] == "acme"  # the context crosses processes
        return
    assert untrusted.status_code == 202, untrusted.text  # the status the handler set
    assert untrusted.headers["x-word"] == "hello"
    seen = untrusted.json()
    assert seen["x-trace"] == "t1, t2" and seen["all_traces"] == "t1|t2"
    assert (seen["method"], seen["path"]) == ("POST", "/api/v1/echo/hello")
    assert "nano-context" not in seen and "nano-secret" not in seen  # never the app's
    assert seen["tenant"] == ""  # a context only a trusted caller may set
    # a call in memory has no HTTP request behind it
    assert seen["inner"] == "False{}"
    trusted = server.http.post("/api/v1/echo/x", headers={**dict(headers), "nano-secret": SECRET})
    assert trusted.json()["tenant"] == "acme"
    assert trusted.json()["inner_tenant"] == "acme"  # the context travels with call()


def test_at_api_the_handler_sees_the_headers_and_the_status_stays_200(
    server: Server, split: bool
) -> None:
    response = server.call("people", "Echo", {"word": "w"}, headers={"x-trace": "api"})
    assert response.status_code == 200
    if split:
        assert "x-word" not in response.headers and "x-trace" not in response.json()
        return
    assert response.headers["x-word"] == "w"
    assert response.json()["x-trace"] == "api"


def test_paths_no_route_takes_still_reach_the_rest_of_the_face(server: Server) -> None:
    assert server.http.get("/healthz").status_code == 200
    assert server.http.get("/people/1/unknown").status_code == 404
    assert server.http.get("/api/users/GetUser").status_code == 405  # /api/ as before


def test_openapi_shows_each_public_route_beside_its_api_path(server: Server) -> None:
    doc = server.http.get("/openapi.json").json()
    paths = doc["paths"]
    assert "/api/people/GetPerson" in paths  # as before
    get = paths["/people/{id}"]["get"]
    assert get["operationId"] == "people.GetPerson.route"
    assert get["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]
    assert "requestBody" not in get
    assert get["responses"]["200"]["headers"] == {
        "Cache-Control": {"schema": {"type": "string", "const": "max-age=60"}}
    }
    assert set(paths["/people/{id}"]) == {"get", "put", "delete"}
    deleted = paths["/people/{id}"]["delete"]["responses"]
    assert "content" not in deleted["204"] and "200" not in deleted
    query = {p["name"]: p for p in paths["/people"]["get"]["parameters"]}
    assert query["limit"] == {
        "name": "limit", "in": "query", "required": False,
        "schema": {"type": "integer", "default": 10},
    }  # fmt: skip
    assert query["tag"]["schema"]["type"] == "array"
    created = paths["/people"]["post"]
    assert "201" in created["responses"] and "parameters" not in created
    tag = paths["/people/{id}/tags"]["patch"]
    assert [(p["name"], p["in"]) for p in tag["parameters"]] == [
        ("id", "path"),
        ("replace", "query"),
    ]
    body = tag["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"tags"} and body["required"] == ["tags"]
    # a contract that is not public has no route in the document either
    assert "/people/{id}/salary" not in paths


def test_a_service_with_a_port_of_its_own_serves_its_routes_there_alone(
    tmp_path: Path,
) -> None:
    root = people_workspace(tmp_path / "ws")
    port = free_port()
    toml = root / "nano.toml"
    toml.write_text(
        toml.read_text().replace("[services.people]\n", f"[services.people]\nport = {port}\n")
    )
    front = start(serve(root), tmp_path / "server.log", NANO_SECRET=SECRET)
    try:
        own = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        assert own.get("/people/1").json()["name"] == "Ada"
        assert own.post("/api/people/GetPerson", json={"id": 1}).status_code == 200
        assert own.get("/healthz").status_code == 404  # its routes, nothing else
        assert front.http.get("/people/1").status_code == 404  # not on the front door
        assert front.call("people", "GetPerson", {"id": 1}).status_code == 200
        paths = front.http.get("/openapi.json").json()["paths"]
        assert "/api/people/GetPerson" in paths and "/people/{id}" not in paths
    finally:
        assert front.stop() == 0, front.log()


OWN_PORT_IN_MEMORY = """
import asyncio, sys
from pathlib import Path

from nanobuild.describe import describe
from nanobuild.runtime.app import port_faces
from nanobuild.runtime.asgi import ORIGINS
from nanobuild.runtime.httpclient import AsyncClient
from nanobuild.runtime.server import OwnPorts, Stack
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.wiring import wire
from nanobuild.workspace import load

port = int(sys.argv[2])
settings = Settings.from_env({})
node = wire(describe(load(Path(sys.argv[1]))), settings=settings)


async def main() -> None:
    node.install()
    stack = Stack("asyncio", "h11")
    faces = OwnPorts(port_faces(node), "127.0.0.1", stack, settings.limits, access_log=False)
    await faces.start()
    assert ("http", "127.0.0.1", port) in ORIGINS  # answered in memory, not on the socket
    async with AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        print((await client.get("/people/1")).json()["name"])
    await faces.close()
    assert ("http", "127.0.0.1", port) not in ORIGINS


asyncio.run(main())
"""


def test_nanobuilds_client_reaches_a_services_own_port_in_memory(tmp_path: Path) -> None:
    root = people_workspace(tmp_path / "ws")
    port = free_port()
    toml = root / "nano.toml"
    toml.write_text(
        toml.read_text().replace("[services.people]\n", f"[services.people]\nport = {port}\n")
    )
    folders = [str(root / "services" / name) for name in ("users", "orders", "people")]
    done = subprocess.run(
        [sys.executable, "-c", OWN_PORT_IN_MEMORY, str(root), str(port)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([*folders, str(root / "libs" / "units")])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Ada"]
