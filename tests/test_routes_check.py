"""``nanobuild check`` of contracts' REST routes (E230-E235), each problem made in a copy
of the mini sample, caught with its code at the line of its ``Route(...)``."""

from __future__ import annotations

import pytest

from nanobuild import probe
from tests.conftest import Sample

USERS_KERNEL = "services/users/users/kernel.py"
ORDERS_KERNEL = "services/orders/orders/kernel.py"

GET_USER = "class GetUser(Contract[User], frozen=True):\n"
PLACE_ORDER = "class PlaceOrder(Contract[Order], frozen=True):\n"


def route(
    mini: Sample, declaration: str, contract: str = GET_USER, kernel: str = USERS_KERNEL
) -> None:
    """Give ``kernel``'s ``contract`` the class variable ``http = declaration``."""
    mini.edit(kernel, "from nanobuild.runtime import Contract", ROUTE_IMPORTS)
    mini.edit(kernel, contract, f"{contract}    http: ClassVar[Route] = {declaration}\n")


ROUTE_IMPORTS = "from typing import ClassVar\n\nfrom nanobuild.runtime import Contract, Route"
ROUTE_LINE = 14  # the users kernel's line of GetUser's ``http``


def test_well_formed_routes_pass_and_the_probe_reports_them(mini: Sample) -> None:
    route(mini, 'Route("GET /users/{id}", headers={"Cache-Control": "no-store"})')
    assert mini.check() == []
    info = probe.probe({"users": mini.root / "services/users"}, {"users": "users.kernel"})
    reported = info["users"].routes["GetUser"]
    assert (reported.text, reported.line, reported.status) == ("GET /users/{id}", ROUTE_LINE, 200)
    assert reported.fields == {"id": probe.RouteField(type="str", kind="scalar")}
    assert "ListUsers" not in info["users"].routes


@pytest.mark.parametrize(
    ("declaration", "says"),
    [
        ('Route("FETCH /users/{id}")', "FETCH is not one of GET, POST, PUT, PATCH, DELETE"),
        ('Route("GET users/{id}")', "the path must start with '/'"),
        ('Route("GET /users/{id")', "unbalanced braces in '{id'"),
        ('Route("GET /users/x{id}")', "a parameter is a whole segment, not 'x{id}'"),
        ('Route("GET /users/{id}/{id}")', "parameter {id} appears twice"),
        ('Route("GET /users//{id}")', "an empty segment"),
        ('Route("GET")', "is not 'METHOD /path'"),
        ('Route("GET /healthz")', "/healthz is the HTTP face's own"),
        ('Route("GET /users?id=1")', "no query in the path"),
        ('"GET /users/{id}"', "its http is str 'GET /users/{id}', not a Route"),
        ('Route("GET /users/{id}", headers={"X-N": 1})', "are not a mapping of text to text"),
        ('Route("GET /users/{id}", status="201")', "its status '201' is not a number"),
    ],
)
def test_a_malformed_route(mini: Sample, declaration: str, says: str) -> None:
    route(mini, declaration)
    d = mini.only("E230")
    # a Route knows its line; anything else is placed at its class
    line = ROUTE_LINE if declaration.startswith("Route") else ROUTE_LINE - 1
    assert (d.path, d.line) == (USERS_KERNEL, line)
    assert d.message.startswith("the route of users.GetUser is malformed: ")
    assert says in d.message


def test_a_path_parameter_that_is_not_a_field(mini: Sample) -> None:
    route(mini, 'Route("GET /users/{ids}")')
    d = mini.only("E231")
    assert (d.path, d.line) == (USERS_KERNEL, ROUTE_LINE)
    assert (
        d.message
        == "the route GET /users/{ids} of users.GetUser binds ids, which is not a field of it"
    )
    assert d.hint == "did you mean `id`?"


def test_a_query_name_that_is_not_a_field(mini: Sample) -> None:
    route(mini, 'Route("POST /users/{id}", query=["verbose"])')
    d = mini.only("E231")
    assert "binds verbose, which is not a field of it" in d.message


def test_a_path_parameter_whose_field_cannot_come_from_text(mini: Sample) -> None:
    route(mini, 'Route("POST /orders/{quantity}")', PLACE_ORDER, ORDERS_KERNEL)
    d = mini.only("E232")
    assert d.path == ORDERS_KERNEL
    assert d.message == (
        "the route POST /orders/{quantity} of orders.PlaceOrder reads field quantity (Quantity) "
        "from the path, which cannot carry a Quantity"
    )


def test_a_get_whose_other_fields_cannot_come_from_the_query(mini: Sample) -> None:
    # a GET has no body: quantity would have to come from the query string
    route(mini, 'Route("GET /orders/{user_id}")', PLACE_ORDER, ORDERS_KERNEL)
    d = mini.only("E232")
    assert "reads field quantity (Quantity) from the query string" in d.message
    assert d.hint is not None and "use POST, PUT or PATCH to send it in the body" in d.hint


def test_a_list_comes_from_the_query_but_not_from_the_path(mini: Sample) -> None:
    mini.edit(
        USERS_KERNEL, "class ListUsers(Contract[list[User]], frozen=True):\n    pass", LIST_BY_TAG
    )
    route(mini, 'Route("GET /users")', "class ListUsers(Contract[list[User]], frozen=True):\n")
    assert mini.check() == []  # ?tag=a&tag=b
    mini.edit(USERS_KERNEL, 'Route("GET /users")', 'Route("GET /users/{tag}")')
    assert "reads field tag (list[str]) from the path" in mini.only("E232").message


LIST_BY_TAG = "class ListUsers(Contract[list[User]], frozen=True):\n    tag: list[str] = []"


def test_two_contracts_on_one_route_across_services(mini: Sample) -> None:
    route(mini, 'Route("POST /users/{id}")')
    route(mini, 'Route("POST /users/{user_id}")', PLACE_ORDER, ORDERS_KERNEL)
    d = mini.only("E233")
    assert (d.path, d.line) == (ORDERS_KERNEL, 15)
    assert d.message == "orders.PlaceOrder and users.GetUser are both on the route POST /users/{}"
    assert d.hint == (
        f"users.GetUser is at {USERS_KERNEL}:{ROUTE_LINE}; give one of them another path or method"
    )
    # another method on the same path is another route
    mini.edit(ORDERS_KERNEL, 'Route("POST /users/{user_id}")', 'Route("PUT /users/{user_id}")')
    assert mini.check() == []


def test_one_route_on_two_faces_is_no_clash(mini: Sample) -> None:
    route(mini, 'Route("POST /users/{id}")')
    route(mini, 'Route("POST /users/{user_id}")', PLACE_ORDER, ORDERS_KERNEL)
    # orders serves its routes on a port of its own, users on the front door
    mini.edit("nano.toml", 'depends = ["users"]\n', 'depends = ["users"]\nport = 8101\n')
    assert mini.check() == []  # (two services on one port are E013 already)


@pytest.mark.parametrize("status", [302, 404, 100])
def test_a_route_status_that_is_not_a_success(mini: Sample, status: int) -> None:
    route(mini, f'Route("GET /users/{{id}}", status={status})')
    d = mini.only("E234")
    assert (d.path, d.line) == (USERS_KERNEL, ROUTE_LINE)
    assert f"answers {status}, which is not a success status (200-299)" in d.message


def test_a_204_route_with_a_response(mini: Sample) -> None:
    route(mini, 'Route("DELETE /users/{id}", status=204)')
    d = mini.only("E235")
    assert d.message == (
        "the route DELETE /users/{id} of users.GetUser answers 204, which has no body, "
        "but its response type is User"
    )
    assert d.hint == "declare Contract[None], or answer 200"
