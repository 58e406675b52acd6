from typing import Any

from nanobuild.runtime import NotFound, handler

from .kernel import Badge, Card, FindPeople, GetPerson, Leak, LeakCard, Person, Rename

RAW: Any = b"raw"  # bytes where text belongs: a wrong response strict mode refuses
PEOPLE = {1: Person(id=1, fullName="Ada Lovelace", tags=["math"])}


@handler
async def get_person(req: GetPerson) -> Person:
    if req.id not in PEOPLE:
        raise NotFound(f"no person {req.id}")
    return PEOPLE[req.id]


@handler
def find_people(req: FindPeople) -> list[Person]:
    return [p for p in PEOPLE.values() if p.full_name.startswith(req.prefix)]


@handler
async def badge(req: Badge) -> Card:
    return Card(text=f"#{req.id}")


@handler
async def rename(req: Rename) -> Person:
    return Person(id=req.id, fullName=req.name)


@handler
async def leak(req: Leak) -> Person:
    return Person.model_construct(id=req.id, full_name=b"raw")


@handler
async def leak_card(req: LeakCard) -> Card:
    return Card(text=RAW)
