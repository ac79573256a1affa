"""What the conversation store costs per turn, without the server, the model or HTTP.

    .venv/bin/python -m bench.store_cost [--turns 3000] [--concurrency 32] [--stores sqlite,postgres]

Each turn is what the engine asks of the store for a plain streamed reply with window memory:
`start_turn` (rate limit and token budget checked and counted, conversation, user message, the
last 20 turns read) and `complete_turn` (the reply, the status, the tokens). 64 users, each
with a conversation that grows during the run; `--concurrency` turns in flight at once, on
uvloop as `serve` runs. Reported per turn: this process's CPU (the driver, or SQLite's writer
thread), the database server's CPU (PostgreSQL: its processes serving the run's database),
and the p50 / p99 wall time of `start_turn` (what the user's first token waits for).
PostgreSQL: a database of its own on BOTRUNNER_BENCH_POSTGRES, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.peers import POSTGRES_ADMIN, _pg_admin
from botrunner.events import Usage
from botrunner.store import ConversationKey, start_store
from botrunner.store.base import Admission, RecentTurns, StartedTurn, TokenCharge

USERS = 64
QUESTION = [{"type": "text", "text": "Explain gradient descent in two sentences, please."}]
ANSWER = [{"type": "text", "text": "Gradient descent walks downhill on the loss. " * 6}]


async def run_turns(store, turns: int, concurrency: int) -> list[float]:
    """Run `turns` turns, `concurrency` at a time; return each start_turn's seconds."""
    waits: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def turn(i: int) -> None:
        user = f"u{i % USERS}"
        now = time.time()
        admission = Admission("bench", user, now, "2026-01-01", 10**9, 10**6)
        async with sem:
            t0 = time.perf_counter()
            started = await store.start_turn(
                ConversationKey("bench", user, "s"), QUESTION, admission, RecentTurns(20)
            )
            assert isinstance(started, StartedTurn), started
            await started.durable
            waits.append(time.perf_counter() - t0)
            charge = TokenCharge("bench", user, "2026-01-01", 120)
            reply = [("assistant", ANSWER, Usage(100, 20))]
            await store.complete_turn(started.conv, started.turn, "ok", reply, charge)

    await asyncio.gather(*(turn(i) for i in range(turns)))
    return waits


async def measure(url: str, database: str | None, turns: int, concurrency: int) -> dict:
    store = await start_store(url)
    try:
        await run_turns(store, min(500, turns), concurrency)  # warm: plans, caches, pool
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        db0 = procs.backend_cpu_seconds(database) if database else 0.0
        t0 = time.perf_counter()
        waits = await run_turns(store, turns, concurrency)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        db1 = procs.backend_cpu_seconds(database) if database else 0.0
    finally:
        await store.close()
    own = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    waits.sort()
    return {
        "turns_per_s": turns / wall,
        "client_ms": 1000 * own / turns,
        "server_ms": 1000 * (db1 - db0) / turns if database else None,
        "start_p50_ms": 1000 * statistics.median(waits),
        "start_p99_ms": 1000 * waits[int(0.99 * (len(waits) - 1))],
    }


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--stores", default="sqlite,postgres")
    args = p.parse_args()
    print(f"{args.turns} turns, {args.concurrency} at a time; per turn:")
    for kind in args.stores.split(","):
        if kind == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                r = await measure(str(Path(tmp) / "cost.db"), None, args.turns, args.concurrency)
        else:
            name = f"botrunner_bench_cost_{secrets.token_hex(4)}"
            await _pg_admin(f"CREATE DATABASE {name}")
            procs.DATABASES.add(name)
            try:
                url = f"{POSTGRES_ADMIN.rpartition('/')[0]}/{name}"
                r = await measure(url, name, args.turns, args.concurrency)
            finally:
                procs.DATABASES.discard(name)
                await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        server = "in process" if r["server_ms"] is None else f"{r['server_ms']:.2f} ms"
        print(
            f"  {kind:9s} {r['turns_per_s']:7.0f} turns/s  botrunner CPU {r['client_ms']:.2f} ms  "
            f"database server CPU {server}  start_turn p50 {r['start_p50_ms']:.2f} ms, "
            f"p99 {r['start_p99_ms']:.2f} ms"
        )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
