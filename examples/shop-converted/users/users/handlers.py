"""The users service's handlers: sign-up, profiles and logins (the FastAPI app's routes).

The database's own errors need no handler here: nano.toml's exception map turns
``db.NotFound`` into a 404 and ``sqlite3.IntegrityError`` into a 409 for every caller.
"""

import aiosqlite
from nanobuild.runtime import Forbidden, Unauthorized, data_dir, handler, on_shutdown, on_startup

from . import auth, db, settings
from .kernel import CreateUser, DeleteUser, GetUser, Health, LogIn, Token, User

_conn: list[aiosqlite.Connection] = []  # the one connection, while the service runs


@on_startup
async def open_database() -> None:
    _conn.append(await db.connect(settings.DATABASE or str(data_dir() / "users.db")))


@on_shutdown
async def close_database() -> None:
    await _conn.pop().close()


@handler
async def create_user(req: CreateUser) -> User:
    password_hash = auth.hash_password(req.password)
    user_id = await db.insert_user(_conn[0], req.name, req.email, password_hash)
    return User(id=user_id, name=req.name, email=req.email)


@handler
async def get_user(req: GetUser) -> User:
    row = await db.get_user(_conn[0], req.user_id)
    return User(id=row["id"], name=row["name"], email=row["email"])


@handler
async def delete_user(req: DeleteUser) -> None:
    if req.user_id != auth.current_user_id(req):
        raise Forbidden("you can only delete your own account")
    await db.delete_user(_conn[0], req.user_id)


@handler
async def login(req: LogIn) -> Token:
    try:
        row = await db.get_user_by_email(_conn[0], req.email)
    except db.NotFound:
        row = None
    if row is None or not auth.verify_password(req.password, row["password_hash"]):
        raise Unauthorized("wrong email or password")
    return Token(access_token=auth.issue_token(row["id"]))


@handler
async def health(req: Health) -> dict[str, str]:
    return {"status": "ok"}
