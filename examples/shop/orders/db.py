"""The orders table, in SQLite through aiosqlite: one connection, opened in the lifespan."""

from pathlib import Path
from typing import Annotated

import aiosqlite
from fastapi import Depends, Request

from models import Order

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    item TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
)
"""


class NotFound(Exception):
    """No row with this key; the app answers it with a 404."""


async def connect(path: str) -> aiosqlite.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path)
    conn.row_factory = aiosqlite.Row
    await conn.execute(SCHEMA)
    await conn.execute("CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id)")
    await conn.commit()
    return conn


def get_db(request: Request) -> aiosqlite.Connection:
    return request.app.state.db


Connection = Annotated[aiosqlite.Connection, Depends(get_db)]


def to_order(row: aiosqlite.Row) -> Order:
    return Order(**dict(row), total_cents=row["quantity"] * row["price_cents"])


async def insert_order(
    conn: aiosqlite.Connection, user_id: int, item: str, quantity: int, price_cents: int
) -> Order:
    cursor = await conn.execute(
        "INSERT INTO orders (user_id, item, quantity, price_cents) VALUES (?, ?, ?, ?)",
        (user_id, item, quantity, price_cents),
    )
    await conn.commit()
    assert cursor.lastrowid is not None
    return await get_order(conn, cursor.lastrowid)


async def get_order(conn: aiosqlite.Connection, order_id: int) -> Order:
    async with conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"order {order_id} not found")
    return to_order(row)


async def list_orders(conn: aiosqlite.Connection, user_id: int, limit: int) -> list[Order]:
    query = "SELECT * FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?"
    async with conn.execute(query, (user_id, limit)) as cursor:
        return [to_order(row) for row in await cursor.fetchall()]


async def delete_order(conn: aiosqlite.Connection, order_id: int) -> None:
    cursor = await conn.execute("DELETE FROM orders WHERE id = ?", (order_id,))
    await conn.commit()
    if cursor.rowcount == 0:
        raise NotFound(f"order {order_id} not found")
