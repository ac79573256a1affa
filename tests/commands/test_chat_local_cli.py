"""`botrunner chat bots/local.yaml` through the installed executable on a terminal, against the
fake Chat Completions server standing in for Ollama and a real local HTTP server for its tool:
no API key anywhere."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, slow, text, tool_use
from test_chat_cli import BOTRUNNER, REPO, Terminal

WEATHER = "Lisbon: sunny +21°C"


class WeatherServer:
    """Answers every GET like wttr.in's `?format=3`, and remembers the paths asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                owner.paths.append(self.path)
                body = WEATHER.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def weather() -> Iterator[WeatherServer]:
    server = WeatherServer()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def local_bot(tmp_path: Path, model_url: str, tool_url: str) -> Path:
    """bots/local.yaml with Ollama's address and wttr.in's swapped for the test servers."""
    source = (REPO / "bots" / "local.yaml").read_text(encoding="utf-8")
    for real, test in (("http://localhost:11434/v1", model_url), ("https://wttr.in", tool_url)):
        assert source.count(real) == 1, real
        source = source.replace(real, test)
    path = tmp_path / "local.yaml"
    path.write_text(source, encoding="utf-8")
    return path


def test_local_bot_streams_remembers_and_calls_its_tool(
    fake_openai: FakeOpenAI, weather: WeatherServer, tmp_path: Path
) -> None:
    bot = local_bot(tmp_path, fake_openai.url, weather.url)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "OLLAMA_"))
    }
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [BOTRUNNER, "chat", str(bot), "--db", str(tmp_path / "c.db")],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    term = Terminal(master)
    try:
        assert "Hi! I run on your own machine." in term.expect("you> ")

        # Streaming: the first words are on the screen while the model is still writing.
        fake_openai.enqueue(slow(text("Hello there, I am a local model."), token_delay=0.4))
        term.write(b"hi\n")
        term.expect("Hello there,")
        assert "model." not in term.buffer.decode(errors="replace")
        assert "local model." in term.expect("you> ")

        # A tool round trip: the call reaches the tool server, its answer goes back.
        fake_openai.enqueue(
            tool_use([("get_weather", {"place": "Lisbon"}, "call_w1")]),
            text("It is sunny in Lisbon, 21 degrees."),
        )
        term.write(b"What is the weather in Lisbon?\n")
        shown = term.expect("you> ")
        assert "[tool get_weather]" in shown and "It is sunny in Lisbon" in shown
        assert weather.paths == ["/Lisbon?format=3"]

        # Memory: the next request carries the whole earlier conversation.
        fake_openai.enqueue(text("You asked about Lisbon."))
        term.write(b"What did I ask?\n")
        assert "You asked about Lisbon." in term.expect("you> ")
        term.write(b"/exit\n")
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        os.close(master)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in stderr

    tool_turn = fake_openai.requests[2]
    assert tool_turn.wire_messages[-2:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"place": "Lisbon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": WEATHER},
    ]
    last = fake_openai.requests[-1]
    assert [(m["role"], m.get("content")) for m in last.wire_messages] == [
        ("system", last.system),
        ("user", "hi"),
        ("assistant", "Hello there, I am a local model."),
        ("user", "What is the weather in Lisbon?"),
        ("assistant", None),
        ("tool", WEATHER),
        ("assistant", "It is sunny in Lisbon, 21 degrees."),
        ("user", "What did I ask?"),
    ]
    assert "You are a helpful assistant." in last.system
    assert all("authorization" not in r.headers for r in fake_openai.requests)
