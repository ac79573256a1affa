"""The usage ledger over PostgreSQL, summed for `botrunner usage` (rows are appended by the
statement that ends a turn, see `turns.END_TURN`)."""

from __future__ import annotations

from botrunner.events import Usage
from botrunner.store.base import UsageGroup, UsageTotal
from botrunner.store.postgres.limits import PGPool

# Group expressions by name: fixed text, never built from user input.
_GROUPS: dict[str, str] = {
    "bot": "bot",
    "user": "user_id",
    "day": "to_char(to_timestamp(created) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}

_TOTALS = (
    "SELECT {group} AS grp, model, "
    "($1::bigint IS NOT NULL AND input_tokens + cache_read_tokens + cache_write_tokens "
    "> $1::bigint * greatest(requests, 1)) AS long_prompt, "
    "count(*), sum(requests), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), "
    "sum(cache_write_tokens), sum(cache_write_1h_tokens) "
    "FROM usage_ledger WHERE created >= $2 "
    "GROUP BY grp, model, long_prompt ORDER BY grp, model, long_prompt"
)


class PGUsage(PGPool):
    """The UsageStore half of `PostgresStore`."""

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
        start = since if since is not None else float("-inf")
        rows = await self.db.fetch(sql, long_prompt_above, start)
        return [
            UsageTotal(
                group=str(r[0]),
                model=r[1],
                turns=int(r[3]),
                requests=int(r[4]),
                usage=Usage(*(int(v) for v in r[5:10])),
                long_prompt=bool(r[2]),
            )
            for r in rows
        ]
