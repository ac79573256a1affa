"""What a bot's `system` template is rendered with: one definition for a turn and for
`botrunner validate`'s trial render, so a template that renders there renders in a turn."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

__all__ = ["system_context"]


def system_context(
    name: str,
    description: str,
    variables: Mapping[str, Any],
    user: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """`today`, `now`, `bot`, `user` and the bot's variables (which can't shadow the others:
    the loader refuses variables with those names)."""
    now = now or dt.datetime.now().astimezone()
    context: dict[str, Any] = dict(variables)
    context.update(
        today=now.date().isoformat(),
        now=now.isoformat(timespec="minutes"),
        bot={"name": name, "description": description},
        user=user,
    )
    return context
