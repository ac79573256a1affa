"""The usage ledger over SQLite: one row per closed turn (its model and tokens), appended in the
turn's last write and summed for `botrunner usage`."""

from __future__ import annotations

import sqlite3
from typing import Any

from botrunner.events import Usage
from botrunner.store.base import Conversation, UsageGroup, UsageRecord, UsageTotal
from botrunner.store.writer import SQLiteWriter

# (created, bot, user, session, model, requests, input, output, cache read, cache write, 1h)
UsageRow = tuple[float, str, str, str, str, int, int, int, int, int, int]

_INSERT = (
    "INSERT INTO usage_ledger (created, bot, user, session, model, requests, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# Group expressions by name: fixed text, never built from user input.
_GROUPS: dict[str, str] = {
    "bot": "bot",
    "user": "user",
    "day": "date(created, 'unixepoch')",
}

_TOTALS = (
    "SELECT {group} AS grp, model, "
    "CASE WHEN ?1 IS NOT NULL AND input_tokens + cache_read_tokens + cache_write_tokens "
    "> ?1 * MAX(requests, 1) THEN 1 ELSE 0 END AS long_prompt, "
    "COUNT(*), SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
    "SUM(cache_write_tokens), SUM(cache_write_1h_tokens) "
    "FROM usage_ledger WHERE created >= ?2 "
    "GROUP BY grp, model, long_prompt ORDER BY grp, model, long_prompt"
)


def usage_row(conv: Conversation, record: UsageRecord, now: float) -> UsageRow:
    key = conv.key
    return (now, key.bot, key.user, key.session, record.model, record.requests, *record.counts())


def add_usage(c: sqlite3.Connection, row: UsageRow) -> None:
    c.execute(_INSERT, row)


class SQLiteUsage(SQLiteWriter):
    """The UsageStore half of `SQLiteStore`."""

    async def usage_totals(
        self,
        *,
        by: UsageGroup,
        since: float | None = None,
        long_prompt_above: int | None = None,
    ) -> list[UsageTotal]:
        if by not in _GROUPS:
            raise ValueError(f"cannot group usage by {by!r}; use one of {', '.join(_GROUPS)}")
        sql = _TOTALS.format(group=_GROUPS[by])
        args = (long_prompt_above, since if since is not None else float("-inf"))

        def job(c: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return c.execute(sql, args).fetchall()

        return [
            UsageTotal(
                group=str(group),
                model=model,
                turns=turns,
                requests=requests,
                usage=Usage(tin, tout, cread, cwrite, cwrite_1h),
                long_prompt=bool(long_prompt),
            )
            for group, model, long_prompt, turns, requests, tin, tout, cread, cwrite, cwrite_1h in (
                await self.call(job)
            )
        ]
