"""The users service: sign-up, profiles and logins. Run it with ``uvicorn main:app``."""

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse

import auth
import db
import settings
from models import Login, Token, User, UserCreate


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.db = await db.connect(settings.DATABASE)
    yield
    await app.state.db.close()


app = FastAPI(title="users", lifespan=lifespan)


@app.exception_handler(db.NotFound)
async def not_found(request: Request, exc: db.NotFound) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_404_NOT_FOUND, content={"detail": str(exc)})


@app.exception_handler(sqlite3.IntegrityError)
async def conflict(request: Request, exc: sqlite3.IntegrityError) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_409_CONFLICT, content={"detail": "already exists"})


@app.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, conn: db.Connection) -> User:
    password_hash = auth.hash_password(body.password)
    user_id = await db.insert_user(conn, body.name, body.email, password_hash)
    return User(id=user_id, name=body.name, email=body.email)


@app.get("/users/{user_id}")
async def get_user(user_id: int, conn: db.Connection) -> User:
    row = await db.get_user(conn, user_id)
    return User(id=row["id"], name=row["name"], email=row["email"])


@app.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: int, me: auth.CurrentUser, conn: db.Connection) -> None:
    if user_id != me:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you can only delete your own account")
    await db.delete_user(conn, user_id)


@app.post("/login")
async def login(body: Login, conn: db.Connection) -> Token:
    try:
        row = await db.get_user_by_email(conn, body.email)
    except db.NotFound:
        row = None
    if row is None or not auth.verify_password(body.password, row["password_hash"]):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong email or password", {"WWW-Authenticate": "Bearer"}
        )
    return Token(access_token=auth.issue_token(row["id"]))


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
