from nanobuild.runtime import call, handler
from notes.kernel import Nap

from .kernel import Relay


@handler
async def relay(req: Relay) -> None:
    await call(Nap(seconds=req.seconds))
