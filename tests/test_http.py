"""The HTTP face, end to end: a real server in a subprocess, real sockets on 127.0.0.1.

Two servers live for the whole module: the example workspace (boutique), and a copy
of the mini sample with a ``faulty`` service whose handlers misbehave on purpose.
Each takes every bad input thrown at it and must still serve afterwards (checked
again when the module is done with it). Start-up failure and signals get their own
short-lived servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import REPO, SAMPLES
from tests.servers import PLACEMENTS, Binary, Server, order, serve, start, start_placement

SECRET = "test-secret-value-1Rz9Fg8hfyF7uPmfwy7NSw"


def still_serves(server: Server) -> None:
    assert server.proc.poll() is None, server.log()
    assert server.http.get("/healthz").status_code == 200


# -- a workspace with misbehaving handlers

FAULTY_KERNEL = '''
import msgspec

from nanobuild.runtime import Contract


class Reply(msgspec.Struct, frozen=True):
    text: str


class Explode(Contract[Reply], frozen=True):
    """Raises an exception no contract declares."""


class WrongType(Contract[Reply], frozen=True):
    """Returns a dict where a Reply is due."""


class WrongList(Contract[list[Reply]], frozen=True):
    """Returns a list of ints where a list of Replies is due."""


class Echo(Contract[Reply], frozen=True):
    text: str
'''

FAULTY_HANDLERS = """
import os
from pathlib import Path

from nanobuild.runtime import handler, on_shutdown, on_startup

from .kernel import Echo, Explode, Reply, WrongList, WrongType


@on_startup
def maybe_fail() -> None:
    if os.environ.get("FAULTY_FAIL_STARTUP"):
        raise RuntimeError("the database is not there")


@on_shutdown
def record_shutdown() -> None:
    if os.environ.get("FAULTY_SHUTDOWN_FILE"):
        with Path(os.environ["FAULTY_SHUTDOWN_FILE"]).open("a") as file:
            file.write("faulty stopped\\n")


@handler
async def explode(req: Explode) -> Reply:
    raise RuntimeError("kaboom")


@handler
async def wrong_type(req: WrongType) -> Reply:
    return {"text": "not a Reply"}  # type: ignore[return-value]


@handler
def wrong_list(req: WrongList) -> list[Reply]:
    return [1, 2]  # type: ignore[list-item]


@handler
def echo(req: Echo) -> Reply:
    return Reply(text=req.text)
"""

# a service that starts before faulty (a dependency) and says when it stops
KEEPER_KERNEL = """
from nanobuild.runtime import Contract


class Ping(Contract[str], frozen=True):
    pass
"""

KEEPER_HANDLERS = """
import os
from pathlib import Path

from nanobuild.runtime import handler, on_shutdown

from .kernel import Ping


@on_shutdown
def record_shutdown() -> None:
    if os.environ.get("FAULTY_SHUTDOWN_FILE"):
        with Path(os.environ["FAULTY_SHUTDOWN_FILE"]).open("a") as file:
            file.write("keeper stopped\\n")


@handler
def ping(req: Ping) -> str:
    return "pong"
"""

FAULTY_TOML = """
[services.keeper]
path = "services/keeper"

[services.faulty]
path = "services/faulty"
depends = ["keeper"]
public = ["Explode", "WrongType", "WrongList", "Echo"]
"""


def faulty_workspace(root: Path, *, static: bool) -> Path:
    """The mini sample plus ``faulty`` and its dependency ``keeper``, maybe a static folder."""
    shutil.copytree(SAMPLES / "mini", root)
    for name, kernel, handlers in [
        ("faulty", FAULTY_KERNEL, FAULTY_HANDLERS),
        ("keeper", KEEPER_KERNEL, KEEPER_HANDLERS),
    ]:
        package = root / "services" / name / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "kernel.py").write_text(kernel)
        (package / "handlers.py").write_text(handlers)
    toml = (root / "nano.toml").read_text() + FAULTY_TOML
    if static:
        web = root / "web"
        web.mkdir()
        (web / "index.html").write_text("<!doctype html><title>mini</title>")
        (web / "site.css").write_text("body { color: teal }")
        (root / "secret.txt").write_text("TOP SECRET")
        (web / "leak.txt").symlink_to(root / "secret.txt")
        (web / "outside").symlink_to(root)
        toml = toml.replace("[workspace]", '[ingress]\nstatic = "web"\n\n[workspace]')
    (root / "nano.toml").write_text(toml)
    return root


# -- the module's two servers


@pytest.fixture(scope="module", params=["serve", "fused", "split", "mixed"])
def boutique(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The example, served by ``nanobuild serve`` from source, and by its bundled binary
    in three placements: fused, one process per service, and two groups. The tests
    talk to the process that reaches every service; the others serve it over TCP."""
    logs = tmp_path_factory.mktemp("boutique")
    if request.param == "serve":
        server = start(serve(REPO), logs / "server.log", NANO_SECRET=SECRET)
        yield server
        still_serves(server)
        assert server.stop() == 0, server.log()
        return
    binary: Binary = request.getfixturevalue("boutique_binary")
    cluster = start_placement(binary, PLACEMENTS[request.param], logs, NANO_SECRET=SECRET)
    yield cluster.front
    for server in cluster.servers:
        still_serves(server)
    assert cluster.stop() == [0] * len(cluster.servers), [s.log() for s in cluster.servers]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("faulty")
    root = faulty_workspace(tmp / "ws", static=True)
    server = start(serve(root), tmp / "server.log", NANO_MAX_BODY="2000")
    yield server
    still_serves(server)
    assert server.stop() == 0, server.log()


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, str] = response.json()["error"]
    return error


# -- the boutique's flows, JSON and MessagePack


def test_list_products_json(boutique: Server) -> None:
    response = boutique.call("catalog", "ListProducts")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    products = response.json()
    assert len(products) == 9
    assert {"id", "name", "price_usd"} <= products[0].keys()


def test_list_products_msgpack(boutique: Server) -> None:
    response = boutique.call_msgpack("catalog", "ListProducts", {})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/msgpack"
    products = msgspec.msgpack.decode(response.content)
    assert products == boutique.call("catalog", "ListProducts").json()


def test_x_msgpack_and_charset_parameters_are_understood(boutique: Server) -> None:
    response = boutique.http.post(
        "/api/catalog/ListProducts",
        content=msgspec.msgpack.encode({}),
        headers={"content-type": "application/x-msgpack"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/msgpack"
    response = boutique.http.post(
        "/api/catalog/ListProducts",
        content=b"{}",
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200
    assert len(response.json()) == 9


def test_convert_currency(boutique: Server) -> None:
    body = {"from_": {"currency_code": "USD", "units": 10, "nanos": 0}, "to_code": "USD"}
    assert boutique.call("currency", "Convert", body).json() == body["from_"]
    body["to_code"] = "EUR"
    response = boutique.call_msgpack("currency", "Convert", body)
    assert response.status_code == 200
    converted = msgspec.msgpack.decode(response.content)
    assert converted["currency_code"] == "EUR"
    assert 0 < converted["units"] < 20


def test_add_to_cart_and_get_cart(boutique: Server) -> None:
    user = f"u-{uuid.uuid4()}"
    item = {"product_id": "OLJCESPC7Z", "quantity": 2}
    added = boutique.call("cart", "AddItem", {"user_id": user, "item": item})
    assert added.status_code == 200
    assert added.json() is None
    added = boutique.call_msgpack("cart", "AddItem", {"user_id": user, "item": item})
    assert msgspec.msgpack.decode(added.content) is None
    cart = boutique.call_msgpack("cart", "GetCart", {"user_id": user})
    expected = {"user_id": user, "items": [{"product_id": "OLJCESPC7Z", "quantity": 4}]}
    assert msgspec.msgpack.decode(cart.content) == expected
    assert boutique.call("cart", "GetCart", {"user_id": user}).json() == expected


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_place_an_order(boutique: Server, fmt: str) -> None:
    user = f"u-{uuid.uuid4()}"
    item = {"product_id": "66VCHSJNUP", "quantity": 3}
    assert boutique.call("cart", "AddItem", {"user_id": user, "item": item}).status_code == 200
    if fmt == "json":
        response = boutique.call("checkout", "PlaceOrder", order(user))
        result = response.json()
    else:
        response = boutique.call_msgpack("checkout", "PlaceOrder", order(user))
        result = msgspec.msgpack.decode(response.content)
    assert response.status_code == 200, response.text
    assert result["items"][0]["product_id"] == "66VCHSJNUP"
    assert result["items"][0]["cost"]["currency_code"] == "EUR"
    assert result["shipping_tracking_id"]
    # the order emptied the cart
    assert boutique.call("cart", "GetCart", {"user_id": user}).json()["items"] == []


def test_a_handler_error_travels_with_its_kind(boutique: Server) -> None:
    response = boutique.call("checkout", "PlaceOrder", order(f"nobody-{uuid.uuid4()}"))
    assert response.status_code == 400
    assert error_of(response)["kind"] == "bad_request"
    assert "is empty" in error_of(response)["message"]


# -- bad requests: 400 with a message, in the request's format


def test_malformed_json(boutique: Server) -> None:
    response = boutique.http.post(
        "/api/cart/GetCart", content=b'{"user_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error == {
        "kind": "bad_request",
        "message": error["message"],
        "service": "cart",
        "contract": "GetCart",
    }
    assert error["message"]
    still_serves(boutique)


def test_malformed_msgpack(boutique: Server) -> None:
    response = boutique.http.post(
        "/api/cart/GetCart",
        content=b"\xc1\xff\x00",
        headers={"content-type": "application/msgpack"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/msgpack"
    error = msgspec.msgpack.decode(response.content)["error"]
    assert (error["kind"], error["service"], error["contract"]) == (
        "bad_request",
        "cart",
        "GetCart",
    )
    still_serves(boutique)


def test_wrong_field_type(boutique: Server) -> None:
    response = boutique.call("cart", "GetCart", {"user_id": 42})
    assert response.status_code == 400
    assert error_of(response)["message"] == "Expected `str`, got `int` - at `$.user_id`"


def test_wrong_nested_field_type_in_msgpack(boutique: Server) -> None:
    item = {"product_id": "X", "quantity": "two"}
    response = boutique.call_msgpack("cart", "AddItem", {"user_id": "u", "item": item})
    assert response.status_code == 400
    error = msgspec.msgpack.decode(response.content)["error"]
    assert error["message"] == "Expected `int`, got `str` - at `$.item.quantity`"


def test_missing_field(boutique: Server) -> None:
    response = boutique.call("cart", "AddItem", {"user_id": "u"})
    assert response.status_code == 400
    assert error_of(response)["message"] == "Object missing required field `item`"


def test_extra_field(boutique: Server) -> None:
    response = boutique.call("cart", "GetCart", {"user_id": "u", "admin": True})
    assert response.status_code == 400
    assert error_of(response)["message"] == "Object contains unknown field `admin`"


def test_extra_field_in_a_nested_struct(boutique: Server) -> None:
    item = {"product_id": "X", "quantity": 1, "discount": 100}
    response = boutique.call_msgpack("cart", "AddItem", {"user_id": "u", "item": item})
    assert response.status_code == 400
    error = msgspec.msgpack.decode(response.content)["error"]
    assert error["message"] == "Object contains unknown field `discount` - at `$.item`"


def test_an_empty_contract_takes_an_empty_object_only(boutique: Server) -> None:
    assert boutique.call("catalog", "ListProducts", {"page": 2}).status_code == 400
    assert boutique.call("catalog", "ListProducts", []).status_code == 400


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", None]
)
def test_wrong_content_type_is_415(boutique: Server, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = boutique.http.post("/api/catalog/ListProducts", content=b"{}", headers=headers)
    assert response.status_code == 415
    error = error_of(response)
    assert error["kind"] == "unsupported_media_type"
    assert (error["service"], error["contract"]) == ("catalog", "ListProducts")
    assert "application/json or application/msgpack" in error["message"]
    still_serves(boutique)


# -- body limits: 1 MiB by default, NANO_MAX_BODY to change it

ONE_MIB = 1024 * 1024


def big_cart_request(size: int) -> bytes:
    return b'{"user_id": "' + b"x" * size + b'"}'


def test_oversized_body_with_content_length_is_413(boutique: Server) -> None:
    response = boutique.http.post(
        "/api/cart/GetCart",
        content=big_cart_request(ONE_MIB),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert error_of(response)["kind"] == "too_large"
    still_serves(boutique)


def test_oversized_chunked_body_is_413(boutique: Server) -> None:
    body = big_cart_request(ONE_MIB)

    def chunks() -> Iterator[bytes]:  # no length up front: Transfer-Encoding: chunked
        for offset in range(0, len(body), 64 * 1024):
            yield body[offset : offset + 64 * 1024]

    response = boutique.http.post(
        "/api/cart/GetCart", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert error_of(response)["kind"] == "too_large"
    still_serves(boutique)


def test_a_body_just_under_the_limit_is_fine(boutique: Server) -> None:
    body = big_cart_request(ONE_MIB - 100)
    response = boutique.http.post(
        "/api/cart/GetCart", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200


def test_the_limit_comes_from_nano_max_body(faulty: Server) -> None:
    assert faulty.call("faulty", "Echo", {"text": "x" * 1900}).status_code == 200
    assert faulty.call("faulty", "Echo", {"text": "x" * 2000}).status_code == 413


def test_a_chunked_body_under_the_limit_is_read_whole(faulty: Server) -> None:
    body = json.dumps({"text": "y" * 1500}).encode()
    response = faulty.http.post(
        "/api/faulty/Echo",
        content=iter([body[:10], body[10:700], body[700:]]),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"text": "y" * 1500}


# -- what is not there, and what is not for everyone


@pytest.mark.parametrize(
    "path", ["/api/ghost/ListProducts", "/api/catalog/Nope", "/api/catalog", "/api/a/b/c"]
)
def test_unknown_service_or_contract_is_404(boutique: Server, path: str) -> None:
    response = boutique.http.post(path, json={})
    assert response.status_code == 404
    error = error_of(response)
    assert error["kind"] == "unknown_contract"
    still_serves(boutique)


def test_unknown_contract_names_what_was_asked(boutique: Server) -> None:
    error = error_of(boutique.call("ghost", "Haunt"))
    assert error == {
        "kind": "unknown_contract",
        "message": "no contract ghost.Haunt is served here",
        "service": "ghost",
        "contract": "Haunt",
    }


def charge() -> dict[str, Any]:
    return {
        "amount": {"currency_code": "USD", "units": 5, "nanos": 0},
        "credit_card": order("u")["credit_card"],
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"nano-secret": "wrong-secret"},
        {"nano-secret": f"{SECRET}x"},
        {"nano-secret": f"Bearer {SECRET}"},
        {"authorization": f"Bearer {SECRET}"},  # the app's header now: it opens nothing
        {"nano-secret": ""},
    ],
    ids=["no-secret", "wrong-secret", "longer-secret", "bearer", "authorization", "empty"],
)
def test_a_non_public_contract_without_the_secret_looks_absent(
    boutique: Server, headers: dict[str, str]
) -> None:
    response = boutique.call("payment", "Charge", charge(), headers=headers)
    assert response.status_code == 404
    assert error_of(response) == {
        "kind": "unknown_contract",
        "message": "no contract payment.Charge is served here",
        "service": "payment",
        "contract": "Charge",
    }
    # even a body it could not read gets the same answer: nothing leaks before auth
    response = boutique.http.post("/api/payment/Charge", content=b"?", headers=headers)
    assert response.status_code == 404


@pytest.mark.parametrize("name", ["nano-secret", "Nano-Secret"])
def test_a_non_public_contract_with_the_secret_answers(boutique: Server, name: str) -> None:
    response = boutique.call("payment", "Charge", charge(), headers={name: SECRET})
    assert response.status_code == 200, response.text
    assert response.json()["transaction_id"]


def test_the_secret_also_opens_msgpack_calls(boutique: Server) -> None:
    response = boutique.call_msgpack("payment", "Charge", charge(), headers={"nano-secret": SECRET})
    assert response.status_code == 200
    assert msgspec.msgpack.decode(response.content)["transaction_id"]


def test_without_nano_secret_non_public_contracts_are_unreachable(faulty: Server) -> None:
    # the faulty server runs without NANO_SECRET: then no credential opens anything
    response = faulty.http.post("/api/faulty/Echo", json={"text": "x"}, headers={"nano-secret": ""})
    assert response.status_code == 200  # public: no secret needed
    # users.ListUsers is not public in the mini sample
    for headers in ({}, {"nano-secret": ""}, {"nano-secret": "None"}):
        response = faulty.call("users", "ListUsers", headers=headers)
        assert response.status_code == 404
        assert error_of(response)["kind"] == "unknown_contract"


def test_contracts_answer_post_only(boutique: Server) -> None:
    response = boutique.http.get("/api/catalog/ListProducts")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert error_of(response)["kind"] == "bad_request"
    # a contract kept from the caller is absent whatever the method
    assert boutique.http.get("/api/payment/Charge").status_code == 404


# -- handlers that fail


def test_an_arbitrary_exception_is_500_with_a_traceback_in_the_log(faulty: Server) -> None:
    response = faulty.call("faulty", "Explode")
    assert response.status_code == 500
    error = error_of(response)
    assert (error["kind"], error["service"], error["contract"]) == ("internal", "faulty", "Explode")
    assert "kaboom" not in error["message"]  # details stay in the log
    log = faulty.log()
    assert "Traceback (most recent call last)" in log
    assert "RuntimeError: kaboom" in log
    still_serves(faulty)


def test_a_handler_returning_the_wrong_type_is_500(faulty: Server) -> None:
    response = faulty.call("faulty", "WrongType")
    assert response.status_code == 500
    error = error_of(response)
    assert error["kind"] == "internal"
    assert error["message"] == "the handler returned a dict, not the contract's response type Reply"


def test_a_handler_returning_a_list_of_the_wrong_items_is_500(faulty: Server) -> None:
    response = faulty.call_msgpack("faulty", "WrongList", {})
    assert response.status_code == 500
    error = msgspec.msgpack.decode(response.content)["error"]
    assert error["message"] == (
        "the handler returned a list, not the contract's response type list[Reply]"
    )


def test_not_found_from_a_handler_is_404_not_found(faulty: Server) -> None:
    response = faulty.call("users", "GetUser", {"id": "nobody"})
    assert response.status_code == 404
    assert error_of(response) == {
        "kind": "not_found",
        "message": "no user nobody",
        "service": "users",
        "contract": "GetUser",
    }


def test_an_error_raised_deeper_keeps_where_it_came_from(faulty: Server) -> None:
    response = faulty.call("orders", "PlaceOrder", {"user_id": "nobody", "quantity": {"amount": 1}})
    assert response.status_code == 404
    error = error_of(response)
    assert (error["kind"], error["service"], error["contract"]) == (
        "not_found",
        "users",
        "GetUser",
    )


def test_4xx_answers_are_not_logged(faulty: Server) -> None:
    before = faulty.log()
    faulty.call("faulty", "Echo", {"text": 1})
    faulty.call("faulty", "Echo", {"text": "x", "extra": 1})
    faulty.call("users", "GetUser", {"id": "nobody"})
    faulty.call("nobody", "Nothing")
    assert faulty.http.post("/api/faulty/Echo", content=b"{").status_code == 415
    time.sleep(0.2)
    assert faulty.log() == before


# -- health, OpenAPI, the frontend


def test_healthz(boutique: Server) -> None:
    response = boutique.http.get("/healthz")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert set(health["services"]) == {
        "ad",
        "cart",
        "catalog",
        "checkout",
        "currency",
        "email",
        "payment",
        "recommendation",
        "shipping",
    }


def test_openapi_lists_public_contracts_only(boutique: Server) -> None:
    response = boutique.http.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] == "boutique"
    paths = doc["paths"]
    assert "/api/catalog/ListProducts" in paths
    assert "/api/checkout/PlaceOrder" in paths
    assert not [p for p in paths if p.startswith(("/api/payment/", "/api/email/"))]
    assert "/api/shipping/ShipOrder" not in paths  # shipping is public for GetQuote only
    schemas = doc["components"]["schemas"]
    for path, item in paths.items():
        operation = item["post"]
        assert set(operation["requestBody"]["content"]) == {
            "application/json",
            "application/msgpack",
        }
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{path.rsplit('/', 1)[1]}"
        assert ref.rsplit("/", 1)[1] in schemas
        assert "200" in operation["responses"]
        for status in ("400", "404", "500"):
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}
    assert schemas["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    place_order = paths["/api/checkout/PlaceOrder"]["post"]
    assert place_order["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderResult"
    }
    assert schemas["GetCart"]["required"] == ["user_id"]
    # every $ref points at a schema that is there
    refs = {r.rsplit("/", 1)[1] for r in _refs(doc)}
    assert refs <= schemas.keys()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_static_index(boutique: Server) -> None:
    response = boutique.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == (REPO / "frontend" / "index.html").read_text()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/app.js", "javascript"),
        ("/style.css", "text/css"),
        ("/img/mug.svg", "image/svg+xml"),
    ],
)
def test_static_files_with_their_content_types(
    boutique: Server, path: str, content_type: str
) -> None:
    response = boutique.http.get(path)
    assert response.status_code == 200
    assert content_type in response.headers["content-type"]
    assert response.content == (REPO / "frontend" / path.lstrip("/")).read_bytes()


@pytest.mark.parametrize("path", ["/cart", "/product/OLJCESPC7Z", "/img/nothing.png", "/api"])
def test_other_get_paths_fall_back_to_index(boutique: Server, path: str) -> None:
    response = boutique.http.get(path)
    assert response.status_code == 200
    assert response.text == (REPO / "frontend" / "index.html").read_text()


TRAVERSALS = [
    "/../nano.toml",
    "/%2e%2e/nano.toml",
    "/%2E%2E/nano.toml",
    "/..%2fnano.toml",
    "/..%2Fnano.toml",
    "/%2e%2e%2fnano.toml",
    "/img/../../nano.toml",
    "/img/..%2f..%2fnano.toml",
    "/img/%2e%2e/%2e%2e/nano.toml",
    "/..%5cnano.toml",
    "/../services/cart/cart/store.py",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%2fetc%2fpasswd",
    "//etc/passwd",
    "/.%2e/nano.toml",
    "/nano.toml%00.html",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_escapes_the_frontend(boutique: Server, target: str) -> None:
    status, body = boutique.raw_get(target)
    assert status in (200, 400, 404)
    assert b"[workspace]" not in body
    assert b"root:" not in body
    assert b"def add" not in body
    if status == 200:
        assert body == (REPO / "frontend" / "index.html").read_bytes()


@pytest.mark.parametrize("target", ["/leak.txt", "/outside/secret.txt", "/outside/nano.toml"])
def test_symlinks_out_of_the_frontend_are_not_followed(faulty: Server, target: str) -> None:
    status, body = faulty.raw_get(target)
    assert b"TOP SECRET" not in body
    assert b"[workspace]" not in body
    assert (status, body) == (200, b"<!doctype html><title>mini</title>")


def test_a_static_file_of_the_sample(faulty: Server) -> None:
    response = faulty.http.get("/site.css")
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.text == "body { color: teal }"


def test_posting_to_the_frontend_is_not_allowed(boutique: Server) -> None:
    assert boutique.http.post("/index.html", json={}).status_code == 405


# -- start-up and shutdown


def test_a_failing_startup_hook_exits_non_zero_naming_the_service(tmp_path: Path) -> None:
    root = faulty_workspace(tmp_path / "ws", static=False)
    stopped = tmp_path / "stopped"
    done = subprocess.run(
        serve(root),
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "NANO_STRICT": "1",
            "FAULTY_FAIL_STARTUP": "1",
            "FAULTY_SHUTDOWN_FILE": str(stopped),
        },
    )
    assert done.returncode != 0
    assert "service faulty failed to start: RuntimeError: the database is not there" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "serving" not in done.stdout
    # keeper had started before faulty failed: it was stopped again
    assert stopped.read_text() == "keeper stopped\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_shuts_down_cleanly(tmp_path: Path, sig: int) -> None:
    root = faulty_workspace(tmp_path / "ws", static=False)
    stopped = tmp_path / "stopped"
    server = start(serve(root), tmp_path / "server.log", FAULTY_SHUTDOWN_FILE=str(stopped))
    assert server.call("users", "GetUser", {"id": "u1"}).json() == {"id": "u1", "name": "Ada"}
    assert server.http.get("/").status_code == 404  # no static folder: nothing at /
    assert server.stop(sig) == 0, server.log()
    assert stopped.read_text() == "faulty stopped\nkeeper stopped\n"  # reverse start order
    assert "Traceback" not in server.log()
    assert "Application shutdown complete" in server.log()


# -- settings


def test_the_server_refuses_an_unusable_body_limit_in_one_line(tmp_path: Path) -> None:
    root = faulty_workspace(tmp_path / "ws", static=False)
    done = subprocess.run(
        serve(root),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NANO_MAX_BODY": "lots"},
    )
    assert done.returncode == 2
    assert done.stderr == (
        "nanobuild: NANO_MAX_BODY must be a positive number of bytes, not 'lots'\n"
    )


def test_the_http_face_needs_nothing_from_the_build_side() -> None:
    probe = "import sys, nanobuild.runtime.server\nprint('\\n'.join(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    modules = done.stdout.split()
    build_side = [
        m for m in modules if m.startswith("nanobuild.") and not m.startswith("nanobuild.runtime")
    ]
    assert build_side == []
    assert not {"typer", "jinja2", "shiv", "packaging", "rich"} & set(modules)
