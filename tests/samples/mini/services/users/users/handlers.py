from nanobuild.runtime import NotFound, handler

from .kernel import GetUser, ListUsers, User

USERS = {"u1": User(id="u1", name="Ada")}


@handler
async def get_user(req: GetUser) -> User:
    if req.id not in USERS:
        raise NotFound(f"no user {req.id}")
    return USERS[req.id]


@handler
def list_users(req: ListUsers) -> list[User]:
    return list(USERS.values())
