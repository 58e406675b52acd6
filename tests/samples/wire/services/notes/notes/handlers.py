import asyncio

from nanobuild.runtime import handler

from .kernel import Keep, Kept, Nap, Post


@handler
async def keep(req: Keep) -> Kept:
    return Kept(type(req.payload).__name__)


@handler
async def post(req: Post) -> Kept:
    return Kept(type(req.payload).__name__)


@handler
async def nap(req: Nap) -> None:
    await asyncio.sleep(req.seconds)
