"""Passwords and JWT access tokens: this service issues the tokens the others accept."""

import hashlib
import hmac
import os
from datetime import datetime, timedelta, timezone

import jwt
from nanobuild.runtime import Unauthorized, this_call

from . import settings


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)
    return f"{salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    salt, digest = stored.split("$")
    again = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), 100_000)
    return hmac.compare_digest(again.hex(), digest)


def issue_token(user_id: int) -> str:
    now = datetime.now(timezone.utc)
    expires = now + timedelta(minutes=settings.TOKEN_MINUTES)
    claims = {"sub": str(user_id), "iat": now, "exp": expires}
    return jwt.encode(claims, settings.JWT_SECRET, algorithm="HS256")


def current_user_id(request: object) -> int:
    """The caller's user id, from the bearer JWT of the request ``request`` came in by.

    A client sends it in ``Authorization``; a service that calls this one with
    ``call()`` hands its caller's header on in the call's context, under
    ``authorization`` (an HTTP request's headers do not cross a call).
    """
    exchange = this_call(request)
    header = exchange.headers.get("Authorization") or exchange.context.get("authorization")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("not authenticated")
    try:
        claims = jwt.decode(token, settings.JWT_SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError as e:
        raise Unauthorized("invalid token") from e
    return int(claims["sub"])
