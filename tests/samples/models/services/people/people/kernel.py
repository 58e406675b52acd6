import msgspec
from pydantic import BaseModel, Field

from nanobuild.runtime import Contract, ModelContract


class Person(BaseModel):
    id: int
    full_name: str = Field(alias="fullName")
    tags: list[str] = []


class GetPerson(ModelContract[Person]):
    """Find one person by id."""

    id: int = Field(gt=0)


class FindPeople(ModelContract[list[Person]]):
    prefix: str


class Card(msgspec.Struct, frozen=True):
    text: str


class Badge(ModelContract[Card]):  # a pydantic request answered by a msgspec Struct
    id: int


class Rename(Contract[Person], frozen=True):  # a msgspec request answered by a model
    id: int
    name: str


class Leak(ModelContract[Person]):  # its handler puts bytes in a str field
    id: int


class LeakCard(Contract[Card], frozen=True):  # the same, for a msgspec Struct
    id: int
