"""The rendered system prompt of a turn.

It is the start of every request, so it must be byte-identical on every turn of a conversation
whose inputs did not change: then the provider reads it (and all that follows it) from the
prompt cache. `today` is the date, so it changes once a day; `bot`, `user` and the variables
change only with the bot file or the request. Only `now` (to the minute) changes by itself, and
`botrunner validate` warns where a system prompt uses it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from botrunner.bot import Bot


def render_system(
    bot: Bot, variables: Mapping[str, Any] | None, user: Mapping[str, Any], now: dt.datetime
) -> str:
    """`bot.system` rendered with the bot's variables (overridden by the request's), `today`
    and `now` (from `now`: the engine's clock), `bot` and `user`."""
    context: dict[str, Any] = dict(bot.variables)
    if variables:
        context.update(variables)
    context.update(
        today=now.date().isoformat(),
        now=now.isoformat(timespec="minutes"),
        bot={"name": bot.name, "description": bot.description},
        user=user,
    )
    return bot.system.render(context)
