"""The users service's contracts: its routes, their URLs, statuses and models as before.

Each FastAPI route is a contract now. ``Route`` keeps its method, path and status, so
clients see the same URLs; the models are the pydantic models the app had (a request
model is the contract itself: the route's path parameters and body are its fields).
"""

from typing import ClassVar

from nanobuild.runtime import ModelContract, Route
from pydantic import BaseModel, Field


class User(BaseModel):
    id: int
    name: str
    email: str


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class CreateUser(ModelContract[User]):
    """Sign up: the new user, 201; 409 if the email is taken."""

    http: ClassVar[Route] = Route("POST /users", status=201)
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8)


class GetUser(ModelContract[User]):
    """One user, or 404."""

    http: ClassVar[Route] = Route("GET /users/{user_id}")
    user_id: int


class DeleteUser(ModelContract[None]):
    """Delete the caller's own account (its JWT in ``Authorization``): 204; 403 for another's."""

    http: ClassVar[Route] = Route("DELETE /users/{user_id}", status=204)
    user_id: int


class LogIn(ModelContract[Token]):
    """A bearer token for this email and password, or 401."""

    http: ClassVar[Route] = Route("POST /login")
    email: str
    password: str


class Health(ModelContract[dict[str, str]]):
    """``{"status": "ok"}``."""

    http: ClassVar[Route] = Route("GET /health")
