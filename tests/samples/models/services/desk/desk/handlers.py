from people.kernel import Badge, FindPeople, GetPerson, Rename

from nanobuild.runtime import call, handler

from .kernel import Greet, Greeting


@handler
async def greet(req: Greet) -> Greeting:
    person = await call(GetPerson(id=req.id))
    card = await call(Badge(id=req.id))
    renamed = await call(Rename(id=req.id, name="Ada"))
    found = await call(FindPeople(prefix="Ada"))
    return Greeting(text=f"{person.full_name} {card.text} {renamed.full_name} {len(found)}")
