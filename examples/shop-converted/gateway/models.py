"""The bodies the gateway accepts and answers (the services' own, as the gateway sees them)."""

from pydantic import BaseModel, Field

from users.kernel import User  # users' own model, from its contracts


class SignUp(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    email: str
    password: str = Field(min_length=8)


class Login(BaseModel):
    email: str
    password: str


class NewOrder(BaseModel):
    item: str
    quantity: int = Field(gt=0)
    price_cents: int = Field(ge=0)


class Order(BaseModel):
    id: int
    user_id: int
    item: str
    quantity: int
    price_cents: int
    total_cents: int


class Profile(BaseModel):
    user: User
    recent_orders: list[Order]
