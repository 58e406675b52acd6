"""The caller, from the JWT in ``Authorization``; the gateway passes the token on."""

from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import settings

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    user_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The header that carries the caller's token to the services behind the gateway."""
        return {"Authorization": f"Bearer {self.token}"}


def current_caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "not authenticated", {"WWW-Authenticate": "Bearer"}
        )
    try:
        claims = jwt.decode(credentials.credentials, settings.JWT_SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError as e:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid token", {"WWW-Authenticate": "Bearer"}
        ) from e
    return Caller(user_id=int(claims["sub"]), token=credentials.credentials)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
