"""pydantic models as contracts: ``ModelContract[R]``, served and called like msgspec
contracts (in memory, strict, over TCP and HTTP), and proven like them by ``check``;
and strict mode refusing a response whose fields have the wrong types."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel, Field

from nanobuild import describe, pack, workspace
from nanobuild.runtime import Contract, ModelContract, NotFound, WrongResponse, call, router
from nanobuild.runtime.codecs import JSON, MSGPACK, Codec
from nanobuild.runtime.contracts import MissingResponseType, is_contract, response_type
from nanobuild.runtime.errors import BadRequest
from nanobuild.runtime.openapi import schema_components
from nanobuild.runtime.shapes import describe_kernels, shape_of
from nanobuild.runtime.spec import BuildInfo, __version__, compare
from tests.conftest import SAMPLES, Sample
from tests.servers import Server, start

PEOPLE_KERNEL = "services/people/people/kernel.py"
DESK_HANDLERS = "services/desk/desk/handlers.py"
SECRET = "models-secret-vlSWaRu2kLbPEHystoSckw"


class User(BaseModel):
    id: int
    full_name: str = Field(alias="fullName")


class GetUser(ModelContract[User]):
    id: int


class ListUsers(ModelContract[list[User]]):
    pass


class Tag(msgspec.Struct, frozen=True):
    text: str


class TagUser(ModelContract[Tag]):  # a model asks, a Struct answers
    id: int


class Rename(Contract[User], frozen=True):  # a Struct asks, a model answers
    id: int


class Bare(ModelContract):  # type: ignore[type-arg]
    pass


@pytest.fixture
def models(tmp_path: Path) -> Sample:
    shutil.copytree(SAMPLES / "models", tmp_path / "models")
    return Sample(tmp_path / "models")


# -- the contract API


def test_a_model_contract_is_a_contract_with_its_response_type() -> None:
    assert is_contract(GetUser) and is_contract(TagUser)
    assert response_type(GetUser) is User
    assert response_type(ListUsers) == list[User]
    assert response_type(TagUser) is Tag
    assert not is_contract(ModelContract) and not is_contract(GetUser.__mro__[1])
    assert not is_contract(User)
    with pytest.raises(MissingResponseType, match="subclass ModelContract\\[Response\\]"):
        response_type(Bare)


def test_a_model_contract_is_frozen_and_refuses_unknown_fields() -> None:
    request = GetUser(id=1)
    with pytest.raises(ValueError, match="frozen"):
        request.id = 2
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        GetUser(id=1, other=2)  # type: ignore[call-arg]


def test_call_routes_a_model_contract_in_memory() -> None:
    async def get_user(req: GetUser) -> User:
        if req.id != 1:
            raise NotFound(f"no user {req.id}")
        return User(id=1, fullName="Ada")

    router.install({GetUser: get_user})
    try:
        assert asyncio.run(call(GetUser(id=1))) == User(id=1, fullName="Ada")  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            asyncio.run(call(GetUser(id=2)))  # type: ignore[arg-type]
    finally:
        router.install({})
    with pytest.raises(Exception, match="no service in this process answers GetUser"):
        asyncio.run(call(GetUser(id=1)))  # type: ignore[arg-type]


# -- the codecs


def test_a_bad_body_is_a_bad_request_naming_the_field() -> None:
    codec = Codec(JSON, GetUser, User, thorough=False)
    assert codec.decode(b'{"id": 7}') == GetUser(id=7)
    with pytest.raises(BadRequest, match=r"Input should be a valid integer.* - at `\$.id`"):
        codec.decode(b'{"id": "seven"}')
    with pytest.raises(BadRequest, match=r"Extra inputs are not permitted - at `\$.name`"):
        codec.decode(b'{"id": 7, "name": "x"}')
    with pytest.raises(BadRequest, match=r"Field required - at `\$.id`"):
        codec.decode(b"{}")
    with pytest.raises(BadRequest, match="Invalid JSON"):
        codec.decode(b"{")


@pytest.mark.parametrize("fmt", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_models_cross_by_alias_in_both_formats(fmt: Any) -> None:
    decode = msgspec.json.decode if fmt is JSON else msgspec.msgpack.decode
    codec = Codec(fmt, GetUser, list[User], thorough=True)
    assert codec.decode(fmt.encode({"id": 3})) == GetUser(id=3)
    body = codec.encode([User(id=3, fullName="Ada")])
    assert decode(body) == [{"id": 3, "fullName": "Ada"}]
    assert fmt.decoder(list[User]).decode(body) == [User(id=3, fullName="Ada")]


def test_a_struct_answers_a_model_and_a_model_answers_a_struct() -> None:
    assert Codec(JSON, TagUser, Tag, thorough=True).encode(Tag("x")) == b'{"text":"x"}'
    codec = Codec(MSGPACK, Rename, User, thorough=True)
    assert codec.decode(MSGPACK.encode(Rename(id=1))) == Rename(id=1)
    assert MSGPACK.decoder(User).decode(codec.encode(User(id=1, fullName="A"))).full_name == "A"


def test_a_response_of_the_wrong_model_is_a_wrong_response() -> None:
    codec = Codec(JSON, GetUser, User, thorough=False)
    with pytest.raises(
        WrongResponse, match="returned a Tag, not the contract's response type User"
    ):
        codec.encode(Tag("x"))


# -- strict mode: a field of the wrong type is an error, not a conversion


@pytest.mark.parametrize("fmt", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_strict_refuses_bytes_in_a_str_field_of_a_struct(fmt: Any) -> None:
    codec = Codec(fmt, TagUser, Tag, thorough=True)
    with pytest.raises(
        WrongResponse, match="returned a Tag whose fields are wrong: Expected `str`, got `bytes`"
    ):
        codec.encode(Tag(b"raw"))  # type: ignore[arg-type]


def test_strict_refuses_bytes_in_a_str_field_of_a_list_of_structs() -> None:
    with pytest.raises(WrongResponse, match="not the contract's response type list\\[Tag\\]"):
        Codec(JSON, TagUser, list[Tag], thorough=True).encode([Tag(b"raw")])  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_strict_refuses_bytes_in_a_str_field_of_a_model(fmt: Any) -> None:
    codec = Codec(fmt, GetUser, User, thorough=True)
    leaky = User.model_construct(id=1, full_name=b"raw")
    with pytest.raises(
        WrongResponse, match="returned a User whose fields are wrong: Expected `str`, got `bytes`"
    ):
        codec.encode(leaky)


def test_without_strict_the_wrong_field_is_not_looked_at() -> None:
    # the check costs an encoding more, so it runs only under NANO_STRICT
    assert Codec(JSON, TagUser, Tag, thorough=False).encode(Tag(b"ab")) == b'{"text":"YWI="}'  # type: ignore[arg-type]


def test_the_runtime_imports_pydantic_only_for_a_kernel_that_does() -> None:
    code = (
        "import sys\n"
        "import nanobuild.runtime, nanobuild.runtime.wiring, nanobuild.runtime.app\n"
        "import nanobuild.runtime.transports.tcp, nanobuild.runtime.transports.http\n"
        "from nanobuild.runtime.codecs import JSON, Codec\n"
        "from nanobuild.runtime import Contract\n"
        "class Ask(Contract[int], frozen=True):\n    n: int\n"
        "Codec(JSON, Ask, int, thorough=True).encode(1)\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
        "from nanobuild.runtime import ModelContract\n"
        "assert 'pydantic' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- shapes and JSON Schema


def test_shapes_describe_models_by_their_wire_names() -> None:
    shape = shape_of(GetUser, User)
    record = shape.records[f"{__name__}.User"]
    assert record.kind == "pydantic"
    assert [(f.name, f.wire, f.type.kind, f.required) for f in record.fields] == [
        ("id", "id", "int", True),
        ("full_name", "fullName", "str", True),
    ]
    assert shape.records[f"{__name__}.GetUser"].forbid_unknown_fields


def test_shapes_tell_a_renamed_model_field() -> None:
    before = shape_of(GetUser, User)

    class Renamed(BaseModel):
        id: int
        name: str

    after = shape_of(GetUser, Renamed)
    rules = {change.rule for change in compare(before, after)}
    assert "response-field-removed" in rules  # fullName, which callers require


def test_json_schema_of_models_is_pydantics_own() -> None:
    schemas, components = schema_components([GetUser, list[User]])
    assert schemas[0] == {"$ref": "#/components/schemas/GetUser"}
    assert schemas[1] == {"type": "array", "items": {"$ref": "#/components/schemas/User"}}
    assert set(components["User"]["properties"]) == {"id", "fullName"}
    assert components["GetUser"]["additionalProperties"] is False


def test_the_against_child_reads_a_pydantic_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SAMPLES / "models" / "services" / "people"))
    table = describe_kernels({"people": "people.kernel"})
    assert table.errors == {}
    shape = table.contracts["people.GetPerson"]
    assert shape.records["people.kernel.Person"].fields[1].wire == "fullName"


# -- check


def test_the_models_sample_is_clean(models: Sample) -> None:
    assert models.check() == []


def test_an_unknown_field_of_a_model_contract_at_a_call_site(models: Sample) -> None:
    models.edit(DESK_HANDLERS, "call(GetPerson(id=req.id))", "call(GetPerson(ident=req.id))")
    d = models.only("E212")
    assert (d.path, d.line) == (DESK_HANDLERS, 10)
    assert d.message == "contract GetPerson of people has no field ident"


def test_a_missing_required_field_of_a_model_contract(models: Sample) -> None:
    models.edit(DESK_HANDLERS, 'FindPeople(prefix="Ada")', "FindPeople()")
    d = models.only("E213")
    assert d.message == (
        "contract FindPeople of people needs field prefix (str), which this call does not give"
    )


def test_a_model_field_is_given_by_its_alias(models: Sample) -> None:
    models.write(
        "services/people/people/extra.py",
        "from .kernel import Person\n\nP = Person(id=1, full_name='x')\n",
    )
    d = models.only("E212")
    assert d.message == "struct Person of people has no field full_name"
    assert d.hint == "did you mean `fullName`?"


def test_an_attribute_a_model_response_lacks(models: Sample) -> None:
    models.edit(DESK_HANDLERS, "{person.full_name}", "{person.fulname}")
    d = models.only("E216")
    assert (
        d.message == "contract GetPerson of people answers Person, which has no attribute fulname"
    )


def _off_wire(models: Sample, field: str, extra: str = "") -> None:
    models.edit(
        PEOPLE_KERNEL,
        "class Person(BaseModel):\n",
        f"class Handle:\n    pass\n\n\n{extra}class Person(BaseModel):\n",
    )
    models.edit(PEOPLE_KERNEL, "    tags: list[str] = []\n", f"    tags: list[str] = []\n{field}")


def test_a_model_field_of_an_arbitrary_class_cannot_cross(models: Sample) -> None:
    _off_wire(
        models,
        "    handle: Handle | None = None\n    model_config = ConfigDict(arbitrary_types_allowed=True)\n",
    )
    models.edit(
        PEOPLE_KERNEL,
        "from pydantic import BaseModel, Field",
        "from pydantic import BaseModel, ConfigDict, Field",
    )
    found = models.check()
    assert {d.code for d in found} == {"E240"}
    d = next(d for d in found if "GetPerson" in d.message)
    assert d.path == PEOPLE_KERNEL and d.line == 11  # the class Person
    assert d.message == (
        "contract GetPerson cannot cross the network: Person.handle: Handle | None has no JSON form"
    )


def test_a_callable_model_field_cannot_cross(models: Sample) -> None:
    _off_wire(models, "    hook: Callable[[], int] | None = None\n", "")
    models.edit(
        PEOPLE_KERNEL,
        "import msgspec\n",
        "from collections.abc import Callable\n\nimport msgspec\n",
    )
    found = [d for d in models.check() if "contract FindPeople " in d.message]
    assert [d.code for d in found] == ["E240"]
    assert "Person.hook: Callable[[], int] | None" in found[0].message


def test_a_model_inside_a_struct_cannot_cross(models: Sample) -> None:
    models.edit(
        PEOPLE_KERNEL,
        "class Card(msgspec.Struct, frozen=True):\n    text: str\n",
        "class Card(msgspec.Struct, frozen=True):\n    text: str\n    owner: list[Person] = []\n",
    )
    found = [d for d in models.check() if d.code == "E240"]
    assert found, "a Struct holding a model passed check"
    d = next(d for d in found if "contract Badge " in d.message)
    assert d.path == PEOPLE_KERNEL and d.line == 23  # the class Card
    assert d.message == (
        "contract Badge cannot cross the network: Card.owner is the pydantic model Person, "
        "which a msgspec Struct cannot carry; make Card a pydantic model too, or Person a Struct"
    )


def test_a_kernel_of_models_must_require_pydantic(models: Sample) -> None:
    models.edit("nano.toml", 'requires = ["pydantic>=2"]\n', "")
    found = models.check()
    assert {d.code for d in found} == {"E207"}
    assert found[0].path == PEOPLE_KERNEL
    assert found[0].message == (
        "the kernel of people imports pydantic, but services.people.requires does not declare pydantic"
    )


# -- served: the real runtime command line, fused and split


def _launch(root: Path, tmp: Path) -> tuple[Path, dict[str, str]]:
    """The launch ``nanobuild serve`` writes for ``root``, and the child's PYTHONPATH."""
    ws = workspace.load(root)
    build = BuildInfo(
        workspace=ws.name, nanobuild=__version__, inputs="source", host="127.0.0.1", port=0
    )
    launch = tmp / "launch.json"
    launch.write_bytes(msgspec.json.encode({"spec": describe.describe(ws), "build": build}))
    paths = [str(folder) for folder in ws.import_paths()]
    return launch, {"PYTHONPATH": os.pathsep.join(paths)}


def _serve(launch: Path, log: Path, *args: str, **env: str) -> Server:
    command = f'exec "{sys.executable}" -m nanobuild.runtime serve --port 0 {" ".join(args)}'
    environment: dict[str, Any] = env  # NANO_* and PYTHONPATH, nothing named like start's options
    return start(["sh", "-c", f'{command} < "{launch}"'], log, **environment)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    tmp = tmp_path_factory.mktemp("models")
    launch, env = _launch(SAMPLES / "models", tmp)
    servers: list[Server] = []

    def serve(*args: str, **more: str) -> Server:
        server = _serve(launch, tmp / f"server{len(servers)}.log", *args, **env, **more)
        servers.append(server)
        return server

    yield serve
    for server in reversed(servers):
        server.stop()


@pytest.fixture(scope="module")
def fused(served: Callable[..., Server]) -> Server:
    return served()  # strict mode: in-memory calls make the round trip through the wire


@pytest.fixture(scope="module", params=["tcp", "http"])
def split(request: pytest.FixtureRequest, served: Callable[..., Server]) -> Server:
    people = served("--only", "people", NANO_SECRET=SECRET)
    assert people.internal is not None
    there = people.internal if request.param == "tcp" else people.url
    return served("--only", "desk", "--remote", f"people={there}", NANO_SECRET=SECRET)


def test_fused_the_caller_gets_models(fused: Server) -> None:
    answer = fused.call("desk", "Greet", {"id": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"text": "Ada Lovelace #1 Ada 1"}


def test_split_the_caller_gets_models(split: Server) -> None:
    answer = split.call("desk", "Greet", {"id": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"text": "Ada Lovelace #1 Ada 1"}


def test_a_model_contract_over_http_in_json_and_msgpack(fused: Server) -> None:
    assert fused.call("people", "FindPeople", {"prefix": "Ada"}).json() == [
        {"id": 1, "fullName": "Ada Lovelace", "tags": ["math"]}
    ]
    answer = fused.call_msgpack("people", "GetPerson", {"id": 1})
    assert msgspec.msgpack.decode(answer.content)["fullName"] == "Ada Lovelace"


def test_a_bad_model_body_is_400_naming_the_field(fused: Server) -> None:
    answer = fused.call("people", "GetPerson", {"id": 0})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Input should be greater than 0 - at `$.id`"


@pytest.mark.parametrize("contract", ["Leak", "LeakCard"])
def test_strict_serving_refuses_bytes_in_a_str_field(fused: Server, contract: str) -> None:
    answer = fused.call("people", contract, {"id": 1})
    assert answer.status_code == 500
    assert (
        "whose fields are wrong: Expected `str`, got `bytes` - at `$."
        in (answer.json()["error"]["message"])
    )


def test_openapi_shows_the_models_json_schema(fused: Server) -> None:
    document = fused.http.get("/openapi.json").json()
    person = document["components"]["schemas"]["Person"]
    assert set(person["properties"]) == {"id", "fullName", "tags"}
    assert person["required"] == ["id", "fullName"]
    operation = document["paths"]["/api/people/GetPerson"]["post"]
    assert operation["summary"] == "Find one person by id."
    assert (
        document["components"]["schemas"]["GetPerson"]["properties"]["id"]["exclusiveMinimum"] == 0
    )


def test_a_binary_that_calls_a_pydantic_kernel_carries_pydantic(models: Sample) -> None:
    ws = models.load()
    assert pack.plan(ws, ["desk"]).requirements["pydantic>=2"] == [
        ("service people", "services.people.requires")
    ]
    assert "pydantic>=2" in pack.plan(ws, ["people"]).requirements


def test_the_tcp_handshake_compares_model_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    from nanobuild.runtime import Incompatible
    from nanobuild.runtime.transports.base import remote_route
    from nanobuild.runtime.transports.tcp import TcpServer, TcpTransport
    from nanobuild.runtime.wiring import wire

    root = SAMPLES / "models"
    monkeypatch.syspath_prepend(str(root / "services" / "people"))
    ws = workspace.load(root)
    people = next(s for s in describe.describe(ws).services if s.name == "people")
    from people.kernel import GetPerson, Person  # type: ignore[import-not-found]

    class Newer(GetPerson):  # type: ignore[misc]  # a caller built from a newer kernel
        loud: bool

    Newer.__name__ = "GetPerson"

    async def scenario() -> None:
        spec = describe.describe(ws)
        node = wire(msgspec.structs.replace(spec, services=(people,)))
        server = TcpServer(node, secret=SECRET, port=0)
        await server.start()
        transport = TcpTransport(str(server.address), secret=SECRET)
        try:
            transport.expect("people", Newer, Person)
            with pytest.raises(Incompatible, match="request field `loud` \\(bool\\) is sent by"):
                await remote_route(transport, "people", Newer)(Newer(id=1, loud=True))
        finally:
            await transport.aclose()
            await server.close()

    try:
        asyncio.run(scenario())
    finally:
        router.install({})
