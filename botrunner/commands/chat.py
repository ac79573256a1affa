"""`botrunner chat BOT.yaml`: the bot in a terminal, or line by line over a pipe.

Interactive when stdin is a terminal (streamed replies, slash commands, Ctrl-C cancels the
reply in progress, Ctrl-D exits); otherwise each input line is one message and each reply one
block of stdout, with errors on stderr and a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from botrunner.bot import Bot
from botrunner.botfile.livebot import Change, LiveBots
from botrunner.botfile.problems import format_text
from botrunner.events import Done, Error, TextDelta, ToolCall, ToolResult

HELP = """Commands:
  /reset    forget this conversation and start again
  /history  show the stored conversation
  /help     show this help
  /exit     leave (Ctrl-D works too)
Ctrl-C stops the reply in progress; the conversation is kept."""


def run(
    path: Path,
    *,
    session: str | None,
    variables: Mapping[str, str],
    db: str | Path,
    reload: bool,
    user: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    chat = Chat(path, session, variables, db, reload, stdin or sys.stdin, stdout or sys.stdout)
    chat.user = dict(user or {})
    return asyncio.run(chat.main())


class Chat:
    def __init__(
        self,
        path: Path,
        session: str | None,
        variables: Mapping[str, str],
        db: str | Path,
        reload: bool,
        stdin: TextIO,
        stdout: TextIO,
    ) -> None:
        self.live = LiveBots(path)
        self.session = session or uuid.uuid4().hex[:8]
        self.resumed = session is not None
        self.variables = dict(variables)
        self.user: dict[str, str] = {}  # attributes for the template, as a client sends them
        self.db, self.reload = db, reload
        self.stdin, self.out = stdin, stdout
        self.interactive = stdin.isatty()
        self.failed = False
        self.reply: asyncio.Task[None] | None = None

    def err(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    async def main(self) -> int:
        from botrunner.engine.engine import Engine
        from botrunner.providers.base import ProviderError
        from botrunner.store import start_store

        problems = self.live.load_all()
        if problems:
            self.err(format_text(problems))
        if self.live.errors or not self.live.bots:
            return 1
        bot = self.live.only()
        unknown = set(self.variables) - set(bot.variables)
        if unknown:
            self.err(
                f"error: --var {sorted(unknown)[0]}: {bot.path} declares no such variable; "
                f"add it under `variables:` with a default (known: {', '.join(bot.variables) or 'none'})"
            )
            return 2
        problem = self.check_user(bot)
        if problem:
            self.err(problem)
            return 2
        store = await start_store(self.db)  # StoreError: reported by the CLI, exit 2
        self.engine = Engine(store)
        try:
            self.engine.check(bot)
        except ProviderError as exc:
            self.err(f"error: {exc.message}")
            await store.close()
            return 1
        try:  # the turns a chat or server that was killed left pending end as failed
            await self.engine.fail_abandoned_turns([bot])
        except Exception:  # noqa: BLE001 - tried again next start; the chat works without
            logging.getLogger("botrunner.chat").debug("sweep failed", exc_info=True)
        watcher = asyncio.create_task(self.live.watch(self.on_change)) if self.reload else None
        try:
            await self.loop()
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await self.engine.aclose()
            await store.close()
        return 1 if self.failed else 0

    def check_user(self, bot: Bot) -> str | None:
        """The same rule as for an HTTP client without a trusted key: only the attributes
        the bot accepts, each within its length."""
        from botrunner.engine.engine import InputError, clean_user

        if "id" in self.user:
            return "error: --user id: user.id is you on this computer; it can't be set here"
        try:
            clean_user(bot, self.user)
        except InputError as exc:
            return f"error: --user {exc.details.get('attribute')}: {exc.message}"
        return None

    def on_change(self, change: Change) -> None:
        if change.problems:
            self.err(format_text(list(change.problems)))
            self.err("The previous version of the bot keeps running; fix the file and save again.")
        elif change.bot is not None:
            self.err(f"[reloaded {change.path.name}: version {change.bot.version}]")

    def key(self):
        from botrunner.store.base import ConversationKey

        return ConversationKey(self.live.only().name, "local:" + getpass.getuser(), self.session)

    async def loop(self) -> None:
        lines = _LineReader(self.stdin, "you> " if self.interactive else "")
        bot = self.live.only()
        if self.interactive:
            print(f"{bot.name}: {bot.description}".rstrip(": "), file=self.out)
            print("Type /help for commands. Ctrl-D to exit.", file=self.out)
            if bot.greeting and not self.resumed:
                print(f"\n{bot.greeting}\n", file=self.out, flush=True)
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.interrupt)
        while True:
            line = await lines.next()
            if line is None:
                return
            text = line.rstrip("\n")
            if self.interactive and text.startswith("/"):
                if await self.command(text.strip()):
                    return
                continue
            if self.interactive and not text.strip():
                continue
            self.reply = asyncio.create_task(self.answer(text))
            try:
                await self.reply
            except asyncio.CancelledError:
                print("\n[stopped]", file=self.out, flush=True)
            finally:
                self.reply = None

    def interrupt(self) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()
        else:
            print("\n(Type /exit or press Ctrl-D to leave.)", file=self.out, flush=True)

    async def answer(self, text: str) -> None:
        bot = self.live.only()
        if self.interactive:
            print("bot> ", end="", file=self.out, flush=True)
        wrote = False
        turn = self.engine.turn(bot, self.key(), text, variables=self.variables, user=self.user)
        async for event in turn:
            if isinstance(event, TextDelta):
                self.out.write(event.text)
                self.out.flush()
                wrote = True
            elif isinstance(event, ToolCall) and self.interactive:
                print(f"\n  [tool {event.name}]", file=self.out, flush=True)
            elif isinstance(event, ToolResult) and self.interactive and event.is_error:
                print(f"  [tool {event.name} failed]", file=self.out, flush=True)
            elif isinstance(event, Error):
                self.failed = not self.interactive
                if wrote:
                    print(file=self.out, flush=True)
                detail = f" ({event.detail})" if event.detail else ""
                self.err(f"error: {event.message}{detail}")
                return
            elif isinstance(event, Done):
                print("\n" if self.interactive else "", file=self.out, flush=True)

    async def command(self, text: str) -> bool:
        name = text.split()[0].lower()
        if name in ("/exit", "/quit"):
            return True
        if name == "/help":
            print(HELP, file=self.out)
        elif name == "/reset":
            await self.engine.store.delete(self.key())
            print("[conversation forgotten: starting again]", file=self.out)
        elif name == "/history":
            for message in await self.engine.store.history(self.key()):
                print(_describe(message), file=self.out)
        else:
            print(f"Unknown command {name}. Type /help to see the commands.", file=self.out)
        self.out.flush()
        return False


def _describe(message) -> str:
    parts = []
    for block in message.content:
        kind = block.get("type")
        if kind == "text":
            parts.append(block["text"])
        elif kind == "tool_use":
            parts.append(f"[calls {block['name']}]")
        elif kind == "tool_result":
            parts.append("[tool result]")
    note = "" if message.status == "ok" else f" ({message.status})"
    who = "you" if message.role == "user" else "bot"
    return f"{who}{note}> " + " ".join(parts)


class _LineReader:
    """Reads lines on a daemon thread so the event loop (and hot reload) keeps running, and so
    a pending read never blocks interpreter exit."""

    def __init__(self, stream: TextIO, prompt: str) -> None:
        self.stream, self.prompt = stream, prompt
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.wanted = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    async def next(self) -> str | None:
        self.wanted.set()
        return await self.queue.get()

    def _read(self) -> None:
        while True:
            self.wanted.wait()
            self.wanted.clear()
            try:
                if self.prompt:
                    # Written by us rather than by input(): readline on a non-main thread
                    # leaves its prompt unflushed until the line is entered.
                    sys.stdout.write(self.prompt)
                    sys.stdout.flush()
                    line = input() + "\n"
                else:
                    line = self.stream.readline() or None
            except EOFError:
                line = None
            if line is None and self.prompt:
                print(file=sys.stdout)
            self.loop.call_soon_threadsafe(self.queue.put_nowait, line)
            if line is None:
                return
