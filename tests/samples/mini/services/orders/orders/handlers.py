from nanobuild.runtime import call, handler
from users.kernel import GetUser

from . import kernel


@handler
async def place_order(req: kernel.PlaceOrder) -> "kernel.Order":
    user = await call(GetUser(id=req.user_id))
    return kernel.Order(user_name=user.name, quantity=req.quantity)
