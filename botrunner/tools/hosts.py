"""How many tool calls may be in flight to one tool server at once.

Every bot and user shares the tool runner's connection pool. A tool server that is slow or
hangs keeps each connection sent to it busy until the call times out; without a limit per
server, enough calls to it (from many conversations) would take the whole pool, and calls to
every other server would queue behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["HostSlots", "Origin"]

Origin = tuple[str, str, int | None]  # scheme, host, port


class HostSlots:
    """At most `limit` calls in flight per origin; a semaphore exists only while it is used."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[Origin, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, origin: Origin) -> AsyncIterator[None]:
        """Wait for a free slot for `origin` and keep it for the `async with` block."""
        entry = self._slots.get(origin)
        if entry is None:
            entry = self._slots[origin] = (asyncio.Semaphore(self.limit), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._slots[origin]

    def __len__(self) -> int:
        """How many origins have calls waiting or in flight."""
        return len(self._slots)
