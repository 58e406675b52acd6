"""Placing, listing and cancelling orders, through the gateway."""

import httpx

from conftest import Account

TEA = {"item": "tea", "quantity": 3, "price_cents": 250}


def test_placing_an_order_answers_201_with_its_location(
    shop: httpx.Client, account: Account
) -> None:
    answer = shop.post("/orders", json=TEA, headers=account.headers)
    assert answer.status_code == 201
    order = answer.json()
    assert order == {**TEA, "id": order["id"], "user_id": account.id, "total_cents": 750}
    assert answer.headers["location"] == f"/orders/{order['id']}"


def test_an_order_needs_a_token(shop: httpx.Client) -> None:
    answer = shop.post("/orders", json=TEA)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "not authenticated"}


def test_a_quantity_must_be_positive(shop: httpx.Client, account: Account) -> None:
    answer = shop.post("/orders", json={**TEA, "quantity": 0}, headers=account.headers)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "quantity"]


def test_an_order_by_id(shop: httpx.Client, account: Account) -> None:
    placed = shop.post("/orders", json=TEA, headers=account.headers).json()
    answer = shop.get(f"/orders/{placed['id']}", headers=account.headers)
    assert answer.status_code == 200
    assert answer.json() == placed


def test_someone_elses_order_is_not_found(
    shop: httpx.Client, account: Account, other: Account
) -> None:
    placed = shop.post("/orders", json=TEA, headers=account.headers).json()
    answer = shop.get(f"/orders/{placed['id']}", headers=other.headers)
    assert answer.status_code == 404
    assert answer.json() == {"detail": f"order {placed['id']} not found"}


def test_listing_is_newest_first_and_limited(shop: httpx.Client, account: Account) -> None:
    for item in ["a", "b", "c"]:
        shop.post("/orders", json={**TEA, "item": item}, headers=account.headers)
    answer = shop.get("/orders", params={"limit": 2}, headers=account.headers)
    assert answer.status_code == 200
    assert [o["item"] for o in answer.json()] == ["c", "b"]
    everything = shop.get("/orders", headers=account.headers).json()
    assert [o["item"] for o in everything] == ["c", "b", "a"]


def test_a_limit_out_of_range_is_422(shop: httpx.Client, account: Account) -> None:
    answer = shop.get("/orders", params={"limit": 0}, headers=account.headers)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "limit"]


def test_cancelling_answers_204_and_the_order_is_gone(shop: httpx.Client, account: Account) -> None:
    placed = shop.post("/orders", json=TEA, headers=account.headers).json()
    answer = shop.delete(f"/orders/{placed['id']}", headers=account.headers)
    assert answer.status_code == 204
    assert answer.content == b""
    assert shop.get(f"/orders/{placed['id']}", headers=account.headers).status_code == 404
    again = shop.delete(f"/orders/{placed['id']}", headers=account.headers)
    assert again.status_code == 404


def test_the_gateway_is_healthy(shop: httpx.Client) -> None:
    answer = shop.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}
