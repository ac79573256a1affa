"""`botrunner db migrate` and `botrunner db copy`: the conversation store without a server.

`migrate` applies the schema migrations (what `serve` does at start-up) and says where the
schema stands. `copy` moves everything from one store to another (typically the embedded
SQLite file to PostgreSQL), verifies it, and can be run again (see botrunner.store.transfer).
A store that cannot be opened raises StoreError, which the CLI reports in one line (exit 2).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from botrunner.store import parse_store_url, start_store
from botrunner.store.postgres.connect import redact
from botrunner.store.transfer import CopyReport, copy_store


def _out(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def shown(url: str) -> str:
    return redact(url) if "://" in url else url


def migrate(db: str) -> int:
    return asyncio.run(_migrate(db))


async def _migrate(db: str) -> int:
    store = await start_store(db)
    try:
        version = await store.schema_version()  # type: ignore[attr-defined]
        applied = store.migrated  # type: ignore[attr-defined]
    finally:
        await store.close()
    done = f"applied {applied} migration(s)" if applied else "already up to date"
    _out(f"{shown(db)}: schema version {version} ({done})")
    return 0


def copy(source: str, target: str) -> int:
    if parse_store_url(source) == parse_store_url(target):
        _err("error: --from and --to name the same store; give two different ones")
        return 2
    scheme, location = parse_store_url(source)
    if scheme == "sqlite" and location != ":memory:" and not Path(location).exists():
        # Opening would create an empty file and copy nothing: say so instead.
        _err(f"error: --from {source}: no such file; give the SQLite file to copy from")
        return 2
    return asyncio.run(_copy(source, target))


async def _copy(source: str, target: str) -> int:
    src = await start_store(source)
    try:
        dst = await start_store(target)
        try:
            report = await copy_store(src, dst, progress=lambda text: _err(f"... {text}"))
        finally:
            await dst.close()
    finally:
        await src.close()
    _print(report, shown(source), shown(target))
    return 0 if report.ok else 1


def _print(r: CopyReport, source: str, target: str) -> None:
    total = r.copied + r.replaced + r.unchanged + len(r.conflicts)
    _out(
        f"{source} -> {target}: {total} conversation(s): {r.copied} copied, {r.replaced} "
        f"updated, {r.unchanged} already there; {r.messages} message(s) written; "
        f"{r.usage} usage record(s) merged"
    )
    for line in r.conflicts:
        _err(f"conflict: {line}")
    for line in r.mismatches:
        _err(f"mismatch: {line}")
    if r.ok:
        _out("verified: every conversation and usage record matches the source")
    else:
        _err(
            f"error: {len(r.conflicts)} conflict(s), {len(r.mismatches)} mismatch(es); "
            "nothing else was changed. Resolve them and run the copy again."
        )
