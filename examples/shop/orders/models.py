"""Request and response bodies of the orders service."""

from pydantic import BaseModel, Field


class OrderCreate(BaseModel):
    item: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1000)
    price_cents: int = Field(ge=0)


class Order(BaseModel):
    id: int
    user_id: int
    item: str
    quantity: int
    price_cents: int
    total_cents: int
