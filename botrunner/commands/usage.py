"""`botrunner usage --db STORE`: tokens and estimated cost per bot, user or day, from the usage
ledger every turn adds to (see `botrunner.store.base.UsageStore`).

Costs come from the model catalogue (`botrunner.providers.catalogue`), overridable with
`--prices FILE`. A model with no price shows its tokens and no cost: never a made-up number.
Exit codes: 0 printed, 2 usage error (no such store or one that cannot be opened, a bad
--since or price file).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from botrunner.providers.catalogue import (
    Catalogue,
    CatalogueError,
    TokenCounts,
    catalogue,
    cost_at,
)
from botrunner.store import parse_store_url, start_store
from botrunner.store.base import StoreError, UsageGroup, UsageTotal

_SPAN = re.compile(r"(\d+)\s*([mhdw])")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
COLUMNS = ("turns", "input", "cache_write", "cache_read", "output")


class UsageError(Exception):
    """A bad argument (exit code 2); the message says what to write instead."""


def parse_since(text: str | None, now: float) -> float | None:
    """`7d`, `24h`, `30m`, `2w` (back from now) or a UTC date `2026-11-01`; None: all time."""
    if text is None or text == "all":
        return None
    span = _SPAN.fullmatch(text.strip().lower())
    if span:
        return now - int(span[1]) * _SECONDS[span[2]]
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since {text!r}: write a span back from now (30m, 24h, 7d, 2w), a date "
            "(2026-11-01, UTC) or all"
        ) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


@dataclass
class Row:
    group: str
    model: str
    turns: int = 0
    input: int = 0
    cache_write: int = 0
    cache_read: int = 0
    output: int = 0
    cost: float | None = 0.0  # None: the model has no price

    def add(self, total: UsageTotal, cost: float | None) -> None:
        u = total.usage
        self.turns += total.turns
        self.input += u.input_tokens
        self.cache_write += u.cache_write_tokens
        self.cache_read += u.cache_read_tokens
        self.output += u.output_tokens
        self.cost = None if cost is None or self.cost is None else self.cost + cost


def price(models: Catalogue, total: UsageTotal) -> float | None:
    """The estimated cost of one ledger sum, or None when its model has no price."""
    model = models.find(total.model)
    if model is None or model.prices is None:
        return None
    prices = model.prices
    if total.long_prompt and model.long_prompt is not None:
        prices = model.long_prompt.prices
    u = total.usage
    tokens = TokenCounts(
        input=u.input_tokens,
        cache_write=u.cache_write_tokens,
        cache_write_1h=u.cache_write_1h_tokens,
        cache_read=u.cache_read_tokens,
        output=u.output_tokens,
    )
    return cost_at(prices, tokens)


async def report(db: str, by: UsageGroup, since: float | None, models: Catalogue) -> list[Row]:
    """One row per group and model, in the store's order."""
    thresholds = {m.long_prompt.above_tokens for m in models.models if m.long_prompt}
    # One threshold today (Haiku 5.5's 100,000): the store splits turns at one length.
    above = min(thresholds) if thresholds else None
    store = await start_store(db)
    try:
        totals = await store.usage_totals(by=by, since=since, long_prompt_above=above)
    finally:
        await store.close()
    rows: dict[tuple[str, str], Row] = {}
    for total in totals:
        row = rows.setdefault((total.group, total.model), Row(total.group, total.model))
        row.add(total, price(models, total))
    return list(rows.values())


def total_row(rows: list[Row]) -> Row:
    total = Row("total", "")
    for row in rows:
        for name in COLUMNS:
            setattr(total, name, getattr(total, name) + getattr(row, name))
    total.cost = sum(row.cost or 0.0 for row in rows)
    return total


def _money(cost: float | None) -> str:
    return "no price" if cost is None else f"{cost:.4f}"


def write_text(rows: list[Row], by: str, since: str | None, out: TextIO) -> None:
    span = f"since {since}" if since else "all time"
    if not rows:
        print(f"No usage recorded ({span}).", file=out)
        return
    total = total_row(rows)
    headers = [by, "model", "turns", "input", "cache write", "cache read", "output", "cost USD"]
    table = [
        [r.group, r.model, *(f"{getattr(r, c):,}" for c in COLUMNS), _money(r.cost)]
        for r in [*rows, total]
    ]
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(headers)]
    print(f"Tokens and estimated cost by {by}, {span}:", file=out)
    print(file=out)
    for i, line in enumerate([headers, *table]):
        if i == len(table):
            print("  ".join("-" * w for w in widths), file=out)
        cells = [
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
    unpriced = sorted({r.model for r in rows if r.cost is None})
    if unpriced:
        print(
            f"\nNo price for {', '.join(unpriced)}: the total leaves those tokens out. "
            "Give prices with --prices FILE.",
            file=out,
        )
    print(
        "\nInput is uncached input; cache writes cost 1.25x the input price (2x for 1-hour "
        "writes) and cache reads 0.1x or less. Prices: list prices from the model catalogue.",
        file=out,
    )


def _record(row: Row) -> dict[str, Any]:
    data: dict[str, Any] = {"group": row.group, "model": row.model}
    data.update({f"{c}_tokens" if c != "turns" else c: getattr(row, c) for c in COLUMNS})
    data["cost_usd"] = None if row.cost is None else round(row.cost, 6)
    return data


def run(
    db: str,
    *,
    by: UsageGroup = "bot",
    since: str | None = None,
    output_format: str = "text",
    prices: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        start = parse_since(since, time.time())
        scheme, location = parse_store_url(db)
        if scheme == "sqlite" and location != ":memory:" and not Path(location).exists():
            raise UsageError(f"no store at {db}: give the --db that chat or serve used")
        models = catalogue() if prices is None else catalogue().with_prices(prices)
    except (UsageError, CatalogueError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    try:
        rows = asyncio.run(report(db, by, start, models))
    except StoreError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if output_format == "json":
        body = {
            "by": by,
            "since": None
            if start is None
            else dt.datetime.fromtimestamp(start, dt.UTC).isoformat(),
            "rows": [_record(r) for r in rows],
            "total": _record(total_row(rows)),
            "unpriced_models": sorted({r.model for r in rows if r.cost is None}),
        }
        json.dump(body, out, indent=2)
        out.write("\n")
    elif output_format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([by, "model", *list(_record(Row("", "")))[2:]])
        for row in rows:
            writer.writerow(["" if v is None else v for v in _record(row).values()])
    else:
        write_text(rows, by, since, out)
    return 0
