"""One turn of a conversation: admission, the model's reply, tools, limits and the turn log.

The engine sees only a frozen `Bot` and the protocols of the layers below it (providers,
memory, tools, store); it never imports a transport.
"""

from botrunner.engine.engine import Engine, InputError
from botrunner.engine.limits import RateLimited
from botrunner.engine.turn import NotStored, PreparedTurn

__all__ = ["Engine", "InputError", "NotStored", "PreparedTurn", "RateLimited"]
