"""Running tests: each test is one conversation through the real `Engine` (memory, limits,
templates and tool rendering exactly as in `serve`), in an in-memory store of its own, with
canned tool responses and the model side chosen by the mode:

- `replay`: the cassette's replies (the `replay` provider; no key, no network);
- `record`: the bot's own provider, every exchange kept for the cassette (`record`);
- `live`: the bot's own provider, nothing kept.

Tests run concurrently, at most `jobs` at a time; results come back in the files' order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from botrunner.engine import Engine
from botrunner.events import Done, Error, TextDelta
from botrunner.providers import get_provider, new_provider
from botrunner.providers.base import Provider
from botrunner.providers.replay import RERECORD, ReplayProvider
from botrunner.store import ConversationKey, SQLiteStore
from botrunner.testing.assertions import TurnOutcome, check_turn, uncanned
from botrunner.testing.judge import judge
from botrunner.testing.results import Failure, Judgement, TestResult
from botrunner.testing.testfile import BotTest, TestFile
from botrunner.testing.tools import CannedTools

Mode = Literal["replay", "record", "live"]
DEFAULT_USER = "tester"


@dataclass(slots=True)
class Planned:
    """One test to run, with its recording (replay) or where its recording goes (record)."""

    file: TestFile
    test: BotTest
    recorded: dict[str, Any] | None = None
    recording: dict[str, Any] = field(default_factory=dict)


async def run_tests(
    planned: Sequence[Planned], mode: Mode, *, jobs: int = 4
) -> AsyncIterator[TestResult]:
    """Run every planned test (at most `jobs` at once); yield results in the planned order.
    In record mode each `Planned.recording` is filled in as its test finishes."""
    gate = asyncio.Semaphore(max(1, jobs))

    async def one(item: Planned) -> TestResult:
        async with gate:
            try:
                return await run_test(item, mode)
            except Exception as exc:  # noqa: BLE001 - one broken test must not stop the run
                failure = Failure("crash", f"botrunner could not run this test: {exc!r}")
                return TestResult(str(item.file.path), item.test.name, "failed", mode, [failure])

    tasks = [asyncio.ensure_future(one(item)) for item in planned]
    try:
        for task in tasks:
            yield await task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_test(item: Planned, mode: Mode) -> TestResult:
    test, bot = item.test, item.file.bot
    started = time.monotonic()
    result = TestResult(str(item.file.path), test.name, "passed", mode)
    provider: Provider
    if mode == "replay":
        if item.recorded is None:
            result.status = "not_recorded"
            return result
        provider = new_provider(bot, "replay", exchanges=item.recorded["exchanges"])
        now = test.now or _parse_time(item.recorded.get("now"))
    elif mode == "record":
        exchanges: list[dict[str, Any]] = []
        provider = new_provider(bot, "record", upstream=get_provider(bot), exchanges=exchanges)
        now = test.now or _now()
        item.recording.update(now=now.isoformat(), exchanges=exchanges)
    else:
        provider, now = get_provider(bot), test.now or _now()
    conversation = _Conversation(item, provider, now)
    try:
        await conversation.play(result)
    finally:
        await conversation.close()
    if isinstance(provider, ReplayProvider):
        provider.finish()
        if provider.stale is not None:
            result.status = "stale"
            stale = provider.stale
            turn, reason = conversation.stale_turn, stale.reason
            said = test.turns[turn - 1].user if turn else None
            if conversation.judging:
                reason = f"the judge's grading request differs from the recording; {RERECORD}"
            result.failures.append(Failure("stale", reason, turn, said, detail=stale.diff))
    if result.status == "passed" and result.failures:
        result.status = "failed"
    result.seconds = time.monotonic() - started
    return result


class _Conversation:
    def __init__(self, item: Planned, provider: Provider, now: dt.datetime) -> None:
        self.test, self.bot, self.provider = item.test, item.file.bot, provider
        self.store = SQLiteStore(":memory:")
        self.tools = CannedTools(self.test.tools)
        self.engine = Engine(
            self.store, tools=self.tools, providers=lambda _bot: provider, clock=lambda: now
        )
        user = str(self.test.user.get("id", DEFAULT_USER))
        self.key = ConversationKey(self.bot.name, user, "test")
        self.stale_turn: int | None = None
        self.judging = False  # the request in flight is the judge's
        self.history: list[tuple[str, str]] = []

    def stale(self) -> bool:
        return isinstance(self.provider, ReplayProvider) and self.provider.stale is not None

    async def play(self, result: TestResult) -> None:
        for number, turn in enumerate(self.test.turns, 1):
            self.stale_turn = number
            outcome = await self.turn(turn.user)
            if self.stale():
                result.failures += uncanned(number, turn, outcome)
                return
            result.failures += check_turn(number, turn, outcome)
            if outcome.error is None:
                self.history.append((turn.user, outcome.text))
            rubric = turn.expect.judge
            if rubric is None or outcome.error is not None:
                continue
            self.judging = True
            verdict = await judge(self.provider, self.bot, self.history, rubric)
            if self.stale():
                return
            self.judging = False
            result.judgements.append(Judgement(number, rubric, verdict.passed, verdict.reason))
            if not verdict.passed:
                result.failures.append(
                    Failure(
                        "judge",
                        verdict.error or "the grader says the reply does not meet the rubric",
                        number,
                        turn.user,
                        expected=rubric,
                        got=outcome.text,
                        detail=verdict.reason,
                    )
                )
        self.stale_turn = None

    async def turn(self, message: str) -> TurnOutcome:
        outcome = TurnOutcome()
        parts: list[str] = []
        async for event in self.engine.turn(
            self.bot, self.key, message, user=dict(self.test.user), variables=self.test.vars
        ):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, Done):
                outcome.usage = event.usage
            elif isinstance(event, Error):
                outcome.error = event
        await self.engine.drain()  # a summary folds in now, so the next turn sees it
        outcome.text = "".join(parts)
        outcome.calls = self.tools.take()
        return outcome

    async def close(self) -> None:
        await self.engine.drain()
        await self.tools.aclose()
        await self.store.close()


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone().replace(microsecond=0)


def _parse_time(text: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return _now()  # an unreadable time: the replay shows the difference as stale
