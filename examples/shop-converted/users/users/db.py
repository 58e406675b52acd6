"""The users table, in SQLite through aiosqlite: one connection, opened at start-up.

Its errors are the service's exception map's (nano.toml): ``NotFound`` reaches callers
as a 404, ``sqlite3.IntegrityError`` as a 409.
"""

import sqlite3
from pathlib import Path

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL
)
"""


class NotFound(Exception):
    """No row with this key."""


async def connect(path: str) -> aiosqlite.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path)
    conn.row_factory = aiosqlite.Row
    await conn.execute(SCHEMA)
    await conn.commit()
    return conn


async def insert_user(conn: aiosqlite.Connection, name: str, email: str, password_hash: str) -> int:
    try:
        cursor = await conn.execute(
            "INSERT INTO users (name, email, password_hash) VALUES (?, ?, ?)",
            (name, email, password_hash),
        )
    except sqlite3.IntegrityError as exc:  # the email is taken: said as the API says it
        raise sqlite3.IntegrityError("already exists") from exc
    await conn.commit()
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def get_user(conn: aiosqlite.Connection, user_id: int) -> aiosqlite.Row:
    async with conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return row


async def get_user_by_email(conn: aiosqlite.Connection, email: str) -> aiosqlite.Row:
    async with conn.execute("SELECT * FROM users WHERE email = ?", (email,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no user with email {email}")
    return row


async def delete_user(conn: aiosqlite.Connection, user_id: int) -> None:
    cursor = await conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
    await conn.commit()
    if cursor.rowcount == 0:
        raise NotFound(f"user {user_id} not found")
