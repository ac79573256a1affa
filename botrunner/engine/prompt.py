"""The request a turn starts with: its rendered system prompt, memory's context, the message.

It is the start of every request, so it must be byte-identical on every turn of a conversation
whose inputs did not change: then the provider reads it (and all that follows it) from the
prompt cache. `today` is the date, so it changes once a day; `bot`, `user` and the variables
change only with the bot file or the request. Only `now` (to the minute) changes by itself, and
`botrunner validate` warns where a system prompt uses it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botrunner.bot import Bot
from botrunner.events import Error
from botrunner.memory.base import Context
from botrunner.providers.base import ModelRequest
from botrunner.templating import RenderFailed
from botrunner.templating.prompt import system_context

log = logging.getLogger("botrunner.engine")


def render_system(
    bot: Bot, variables: Mapping[str, Any] | None, user: Mapping[str, Any], now: dt.datetime
) -> str:
    """`bot.system` rendered with the bot's variables (overridden by the request's), `today`
    and `now` (from `now`: the engine's clock), `bot` and `user`."""
    merged = {**bot.variables, **variables} if variables else bot.variables
    # The same context `botrunner validate` renders each template with once (templating.prompt).
    return bot.system.render(system_context(bot.name, bot.description, merged, user, now))


def template_error(bot: Bot, exc: RenderFailed, request_id: str) -> Error:
    """The error event for a system prompt that failed to render. The end user hears where the
    bot file is wrong (its name, not its path) and why; the log has the full path for the
    operator."""
    where = bot.system.location
    file, line = (where.file, where.line + exc.line - 1) if where else (str(bot.path), 0)
    log.warning(
        "template_error",
        extra={
            "fields": {
                "request_id": request_id,
                "bot": bot.name,
                "file": file,
                "line": line,
                "reason": exc.reason,
            }
        },
    )
    return Error(
        "template_error",
        f"The bot's system prompt could not be filled in ({Path(file).name}:{line}: "
        f"{exc.reason}), so the message was not answered. The bot's author needs to fix "
        "the template; `botrunner validate` shows the problem.",
    )


def first_request(bot: Bot, system: str, context: Context, text: str) -> ModelRequest:
    """The turn's first model request: the rendered `system` prompt, the past turns memory
    chose (`context`) and the user's new message `text`."""
    content = [{"type": "text", "text": text}]
    if context.preamble:  # after the stable prefix: it changes with every message
        content.insert(0, {"type": "text", "text": context.preamble})
    return ModelRequest(
        model=bot.model.name,
        max_tokens=bot.model.max_tokens,
        system=system,
        system_extra=context.system_suffix,
        messages=[*context.messages, {"role": "user", "content": content}],
        tools=[tool.to_api() for tool in bot.tools],
        temperature=bot.model.temperature,
        cache=bot.model.cache == "auto",
        cache_ttl=bot.model.cache_ttl,
        reasoning_effort=bot.model.reasoning_effort,
    )
