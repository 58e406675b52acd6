import msgspec

from nanobuild.runtime import Contract


class User(msgspec.Struct, frozen=True):
    id: str
    name: str


class GetUser(Contract[User], frozen=True):
    id: str


class ListUsers(Contract[list[User]], frozen=True):
    pass
