"""`botrunner db copy`: every conversation (its turns, messages and summary) and every token
usage record from one store to another, verified, and safe to run again.

Each store can export a conversation as a `Transcript` and import one in a single transaction
(`Portable`). Per conversation, by its key (bot, user, session):

* absent from the target: copied;
* in the target as in the source (turns, messages, summary): already copied, left alone, so a
  rerun copies nothing twice;
* in the target, different, with no more turns than the source (the source went on after an
  earlier copy): replaced by the source's;
* in the target with more turns (the target has been used since): a conflict, left alone and
  reported.

Usage records are merged keeping the larger count of each (bot, user, day), so a rerun never
adds them twice. Rate-limit state is not copied: it is about the last minute only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from botrunner.store.base import ConversationKey, Store

# (turn, status, created, finished)
TurnRow = tuple[int, str, float, float | None]
# (turn, seq, role, content as JSON text, searchable text, input tokens, output tokens, created)
MessageRow = tuple[int, int, str, str, str, int | None, int | None, float]
# (bot, user, day, tokens)
UsageRow = tuple[str, str, str, int]


@dataclass
class Transcript:
    """One conversation, whole, in a form both stores read and write."""

    key: ConversationKey
    turns: int
    summary: str
    summary_upto: int
    created: float
    updated: float
    turn_rows: list[TurnRow]
    messages: list[MessageRow]

    def counts(self) -> tuple[int, int, int, str]:
        """What verification compares: turns, turn rows, messages, summary."""
        return (self.turns, len(self.turn_rows), len(self.messages), self.summary)


class Portable(Protocol):
    async def conversation_keys(self) -> list[ConversationKey]: ...

    async def export(self, key: ConversationKey) -> Transcript | None: ...

    async def import_transcript(self, t: Transcript, *, replace: bool) -> None:
        """Store `t` in one transaction; with `replace`, instead of the conversation with the
        same key (which must exist)."""

    async def usage_rows(self) -> list[UsageRow]: ...

    async def merge_usage(self, rows: list[UsageRow]) -> None:
        """Upsert each row, keeping the larger of the stored and the given count."""


@dataclass
class CopyReport:
    copied: int = 0
    replaced: int = 0
    unchanged: int = 0
    messages: int = 0
    usage: int = 0
    conflicts: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.mismatches


def describe(key: ConversationKey) -> str:
    return f"bot {key.bot!r}, user {key.user!r}, session {key.session!r}"


async def copy_store(
    source: Store, target: Store, progress: Callable[[str], None] | None = None
) -> CopyReport:
    """Copy `source` into `target` as the module docstring says, then verify every
    conversation and usage record against the source."""
    src, dst = _portable(source), _portable(target)
    report = CopyReport()
    keys = await src.conversation_keys()
    for n, key in enumerate(keys, start=1):
        transcript = await src.export(key)
        if transcript is None:  # deleted meanwhile
            continue
        existing = await dst.export(key)
        if existing is None:
            await dst.import_transcript(transcript, replace=False)
            report.copied += 1
            report.messages += len(transcript.messages)
        elif existing.counts() == transcript.counts():
            report.unchanged += 1
        elif existing.turns <= transcript.turns:
            await dst.import_transcript(transcript, replace=True)
            report.replaced += 1
            report.messages += len(transcript.messages)
        else:
            report.conflicts.append(
                f"{describe(key)}: the target has {existing.turns} turns, the source "
                f"{transcript.turns}; it was used after the copy, so it was left as it is"
            )
        if progress is not None and n % 500 == 0:
            progress(f"{n} of {len(keys)} conversations")
    usage = await src.usage_rows()
    await dst.merge_usage(usage)
    report.usage = len(usage)
    await _verify(src, dst, keys, usage, report)
    return report


async def _verify(
    src: Portable, dst: Portable, keys: list[ConversationKey], usage: list[UsageRow], r: CopyReport
) -> None:
    conflicted = {c.split(":", 1)[0] for c in r.conflicts}
    for key in keys:
        if describe(key) in conflicted:
            continue
        a, b = await src.export(key), await dst.export(key)
        if a is None:
            continue
        if b is None or a.counts() != b.counts():
            got = "missing" if b is None else f"{b.counts()[:3]}"
            r.mismatches.append(
                f"{describe(key)}: source has (turns, turn rows, messages) "
                f"{a.counts()[:3]}, target {got}"
            )
    stored = {(bot, user, day): tokens for bot, user, day, tokens in await dst.usage_rows()}
    for bot, user, day, tokens in usage:
        if stored.get((bot, user, day), -1) < tokens:
            r.mismatches.append(f"usage of {bot!r}/{user!r} on {day}: {tokens} tokens not copied")


def _portable(store: Store) -> Portable:
    if not hasattr(store, "import_transcript"):
        raise TypeError(f"{type(store).__name__} cannot be copied from or to")
    return store  # type: ignore[return-value]
