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
from botrunner.templating.prompt import system_context


def render_system(
    bot: Bot, variables: Mapping[str, Any] | None, user: Mapping[str, Any], now: dt.datetime
) -> str:
    """`bot.system` rendered with the bot's variables (overridden by the request's), `today`
    and `now` (from `now`: the engine's clock), `bot` and `user`."""
    merged = {**bot.variables, **variables} if variables else bot.variables
    # The same context `botrunner validate` renders each template with once (templating.prompt).
    return bot.system.render(system_context(bot.name, bot.description, merged, user, now))
