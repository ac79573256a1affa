"""`botrunner chat` end to end through the installed executable, over a pipe and a pty."""

from __future__ import annotations

import codecs
import fcntl
import os
import pty
import select
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from fake_anthropic import slow, text

BOTRUNNER = shutil.which("botrunner", path=str(Path(sys.executable).parent)) or "botrunner"
REPO = Path(__file__).resolve().parents[2]

BOT = """\
name: pipe
model:
  name: claude-test
  max_tokens: 100
system: {system}
greeting: Hello from the greeting.
"""


def env_for(fake, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY="test", **extra)
    return env


def write_bot(path: Path, system: str) -> None:
    # Write then rename, like editors do, so the watcher never sees a half-written file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(BOT.format(system=system))
    tmp.replace(path)


def test_piped_lines_get_replies_in_order(fake_anthropic, tmp_path):
    fake_anthropic.enqueue(text("A neural network is a function."), text("Second reply."))
    result = subprocess.run(
        [BOTRUNNER, "chat", str(REPO / "bots" / "tutor.yaml"), "--db", str(tmp_path / "c.db")],
        input="What is a neural network?\nAnd then?\n",
        capture_output=True,
        text=True,
        env=env_for(fake_anthropic),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "A neural network is a function.\nSecond reply.\n"
    assert [r.messages[-1]["content"] for r in fake_anthropic.requests] == [
        "What is a neural network?",
        "And then?",
    ]
    # The tutor's window memory: the second request carries the first exchange.
    assert len(fake_anthropic.requests[1].messages) == 3


def test_without_an_api_key_it_fails_fast_naming_the_variable(fake_anthropic, tmp_path):
    env = env_for(fake_anthropic)
    del env["ANTHROPIC_API_KEY"]
    result = subprocess.run(
        [BOTRUNNER, "chat", str(REPO / "bots" / "tutor.yaml"), "--db", str(tmp_path / "c.db")],
        input="hi\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "ANTHROPIC_API_KEY" in result.stderr
    assert result.stdout == ""
    assert fake_anthropic.requests == []


def test_upstream_error_goes_to_stderr_with_nonzero_exit(fake_anthropic, tmp_path):
    path = tmp_path / "bot.yaml"
    write_bot(path, "Be brief.")
    # Nothing enqueued: the fake answers 400, which is not retried.
    result = subprocess.run(
        [BOTRUNNER, "chat", str(path), "--db", str(tmp_path / "c.db")],
        input="hi\n",
        capture_output=True,
        text=True,
        env=env_for(fake_anthropic),
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


class Session:
    """A running `botrunner chat` fed line by line through a pipe."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            bufsize=1,
        )
        os.set_blocking(self.proc.stderr.fileno(), False)
        self.stderr = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def say(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def wait_stderr(self, needle: str, timeout: float = 10) -> str:
        end = time.monotonic() + timeout
        while needle not in self.stderr:
            assert time.monotonic() < end, f"no {needle!r} on stderr: {self.stderr!r}"
            select.select([self.proc.stderr], [], [], 0.05)
            # os.read, not the text wrapper's read(): on a non-blocking pipe with nothing
            # buffered that raises TypeError inside the decoder.
            try:
                chunk = os.read(self.proc.stderr.fileno(), 65536)
            except BlockingIOError:
                continue
            self.stderr += self._decoder.decode(chunk)
        return self.stderr

    def close(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(timeout=20)


def test_editing_the_bot_file_takes_effect_from_the_next_message(fake_anthropic, tmp_path):
    path = tmp_path / "bot.yaml"
    write_bot(path, "Version one.")
    fake_anthropic.enqueue(text("one"), text("two"), text("three"))
    chat = Session(
        [BOTRUNNER, "chat", str(path), "--db", str(tmp_path / "c.db")], env_for(fake_anthropic)
    )
    try:
        assert chat.say("first") == "one\n"
        write_bot(path, "Version two.")
        chat.wait_stderr("[reloaded bot.yaml")
        assert chat.say("second") == "two\n"

        path.write_text(BOT.format(system="Version three.") + "sytem: oops\n")
        err = chat.wait_stderr("keeps running")
        assert f'{path}:7:1: error: unknown key "sytem"\n    hint: Did you mean "system"?' in err
        assert chat.say("third") == "three\n"
    finally:
        assert chat.close() == 0
    systems = [r.system for r in fake_anthropic.requests]
    assert systems == ["Version one.", "Version two.", "Version two."]


class Terminal:
    """The master side of a pty, read up to an expected text (the rest stays buffered)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, needle: str, timeout: float = 15) -> str:
        end = time.monotonic() + timeout
        while needle.encode() not in self.buffer:
            remaining = end - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {needle!r} on the terminal: {self.buffer.decode()!r}")
            if select.select([self.fd], [], [], remaining)[0]:
                self.buffer += os.read(self.fd, 4096)
        cut = self.buffer.index(needle.encode()) + len(needle)
        seen, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return seen.decode(errors="replace")


def test_interactive_terminal_greeting_commands_and_ctrl_d(fake_anthropic, tmp_path):
    path = tmp_path / "bot.yaml"
    write_bot(path, "Be brief.")
    fake_anthropic.enqueue(text("Hi, human."))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [BOTRUNNER, "chat", str(path), "--db", str(tmp_path / "c.db"), "--session", "s"],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env_for(fake_anthropic),
    )
    os.close(slave)
    term = Terminal(master)
    try:
        assert "Type /help for commands" in term.expect("you> ")
        term.write(b"/frobnicate\n")
        assert "Unknown command /frobnicate. Type /help" in term.expect("you> ")
        assert fake_anthropic.requests == []
        term.write(b"hello\n")
        assert "bot> Hi, human." in term.expect("you> ")
        term.write(b"/history\n")
        assert term.expect("bot> Hi, human.").endswith("you> hello\r\nbot> Hi, human.")
        term.expect("you> ")
        term.write(b"/reset\n")
        assert "conversation forgotten" in term.expect("you> ")
        term.write(b"\x04")  # Ctrl-D
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        os.close(master)


def _controlling_tty() -> None:
    # Make the pty the child's controlling terminal so Ctrl-C there becomes SIGINT.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_ctrl_c_stops_the_reply_and_keeps_the_conversation(fake_anthropic, tmp_path):
    path = tmp_path / "bot.yaml"
    write_bot(path, "Be brief.")
    words = " ".join(f"word{i}" for i in range(200))
    fake_anthropic.enqueue(slow(text(words), token_delay=0.05), text("Still here."))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [BOTRUNNER, "chat", str(path), "--db", str(tmp_path / "c.db")],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env_for(fake_anthropic),
        preexec_fn=_controlling_tty,
    )
    os.close(slave)
    term = Terminal(master)
    try:
        term.expect("you> ")
        term.write(b"talk a lot\n")
        term.expect("word3")
        term.write(b"\x03")  # Ctrl-C
        term.expect("[stopped]")
        term.expect("you> ")
        term.write(b"are you there?\n")
        assert "Still here." in term.expect("you> ")
        term.write(b"/exit\n")
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        os.close(master)
    # The cut-off turn is not sent again; the conversation goes on.
    assert len(fake_anthropic.requests[-1].messages) == 1


def test_a_template_that_fails_when_filled_in_is_an_error_line(fake_anthropic, tmp_path):
    path = tmp_path / "bot.yaml"
    # Passes validate (its trial render sets user.name); the terminal user has no name.
    write_bot(path, '"Lessons last {{ 60 // user.name|length }} minutes."')
    result = subprocess.run(
        [BOTRUNNER, "chat", str(path), "--db", str(tmp_path / "c.db")],
        input="hi\n",
        capture_output=True,
        text=True,
        env=env_for(fake_anthropic),
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: The bot's system prompt could not be filled in (bot.yaml:5: integer division "
        "or modulo by zero), so the message was not answered. The bot's author needs to fix "
        "the template; `botrunner validate` shows the problem.\n"
    )
    assert fake_anthropic.requests == []


def test_user_attributes_from_the_command_line_follow_the_bot_file(fake_anthropic, tmp_path):
    path = tmp_path / "bot.yaml"
    write_bot(path, '"Student {{ user.name }}."')  # no user_attributes: user.name, 200 chars

    def chat(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BOTRUNNER, "chat", str(path), "--db", str(tmp_path / "c.db"), *options],
            input="hi\n",
            capture_output=True,
            text=True,
            env=env_for(fake_anthropic),
            timeout=60,
        )

    fake_anthropic.enqueue(text("Hi Ada"))
    ok = chat("--user", "name=Ada")
    assert (ok.returncode, ok.stdout) == (0, "Hi Ada\n"), ok.stderr
    assert fake_anthropic.requests[-1].system == "Student Ada."
    too_long = chat("--user", "name=" + "A" * 201)
    assert (too_long.returncode, too_long.stdout) == (2, "")
    assert too_long.stderr == (
        'error: --user name: The user attribute "name" is 201 characters long; this bot '
        "accepts at most 200. Shorten it.\n"
    )
    unknown = chat("--user", "role=admin")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(
        'error: --user role: This bot does not accept the user attribute "role" (it accepts: name).'
    )
    assert len(fake_anthropic.requests) == 1
