"""Secrets in every form they come back in (issue 9, item 2), beyond the forms
`tests/tools/test_engine_tools.py` covers.

A tool key with `+ / =` goes out percent-encoded in a query and a URL's password goes out inside
the base64 of Basic auth; real tool servers send them back echoing the URL or the headers, with
slashes escaped in JSON (PHP), `=` as `\\u003d` (Gson), or as HTML character references. None
of it may reach the model, the stored history, the client or the log.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fake_anthropic import FakeAnthropic, error, text, tool_use
from test_tools import Seen, ToolServer, one_tool, tool_yaml

from botrunner.bot import Bot
from botrunner.botfile.loader import load_bot
from botrunner.engine.engine import Engine
from botrunner.engine.turnlog import JsonFormatter
from botrunner.events import Error, Event, ToolResult
from botrunner.providers import aclose_all
from botrunner.store import ConversationKey, open_store
from botrunner.tools import ToolRunner, redact

KEY = "qs+canary/7Hk2=Zx9/Lm4+Pq=="  # what a generated key often looks like: base64 with + / =
# Sent as a URL's user:password (Basic auth): "+" and "=" may stay as they are there, "/" may not.
PASSWORD = "pw+canary=Rt8+Vb3="
USER = "bot"


def _base64_cores(data: bytes) -> list[str]:
    """The part of base64(anything + data + anything) that only `data` decides, for each of
    the three ways `data` can line up with base64's 3-byte groups."""
    cores = []
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        cores.append(encoded[(8 * k + 5) // 6 : 8 * (k + len(data)) // 6])
    return cores


def leaked(text: str, secret: str) -> list[str]:
    """Every recognisable piece of `secret` found in `text`, in any form: its letter-and-digit
    runs survive percent-encoding and JSON or HTML escaping; base64 hides them, so its cores
    are looked for too (with and without JSON's escaped slash)."""
    pieces = [run for run in re.findall(r"[A-Za-z0-9]{4,}", secret)]
    cores = _base64_cores(secret.encode())
    pieces += cores + [c.replace("/", "\\/") for c in cores]
    return [p for p in pieces if p in text]


# --------------------------------------------------------------------------------------------
# redact(): the forms, one by one
# --------------------------------------------------------------------------------------------

# Forms no list of a secret's encodings foresees: servers escape some characters and not others.
FORMS = {
    "JSON with \\u escapes for + = / (lower-case hex)": "".join(
        f"\\u{ord(c):04x}" if c in "+=/" else c for c in KEY
    ),
    "only = as \\u003D (Gson, upper-case hex)": KEY.replace("=", "\\u003D"),
    "HTML character references": KEY.replace("/", "&#x2F;").replace("=", "&#61;"),
    "percent-encoding and JSON escapes mixed": "qs%2bcanary\\/7Hk2\\u003dZx9/Lm4%2BPq%3d=",
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_redact_finds_a_secret_however_a_server_mixes_escapes(form):
    text = f'{{"url": "https://x.test/?a=1&key={form}&b=2"}}'
    out = redact(text, frozenset({KEY}))
    assert leaked(out, KEY) == []
    assert out.startswith('{"url": "https://x.test/?a=1&key=') and out.endswith('&b=2"}')
    assert "[redacted]" in out


@pytest.mark.parametrize("user", ["", "a", "ab", "abc", "a-longer-user"])
def test_redact_finds_a_password_inside_basic_auth(user):
    header = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    out = redact(
        f"you sent {header} and {header.replace('/', chr(92) + '/')}", frozenset({PASSWORD})
    )
    assert leaked(out, PASSWORD) == []


def test_redact_leaves_other_text_alone():
    text = 'a%2Fb \\/ \\u0041 &amp; "quoted" %zz \\q &#99999999; YWJj'
    assert redact(text, frozenset({KEY})) == text


# --------------------------------------------------------------------------------------------
# Real tool servers that send the secret back encoded
# --------------------------------------------------------------------------------------------


def php_json(payload: Any) -> bytes:
    """json_encode as PHP writes it: slashes escaped."""
    return json.dumps(payload).replace("/", "\\/").encode()


def gson_json(payload: Any) -> bytes:
    """Gson's default: `=` (and < > & ') as \\u escapes."""
    out = json.dumps(payload)
    for ch in "=<>&'":
        out = out.replace(ch, f"\\u{ord(ch):04x}")
    return out.encode()


def echo_request(seen: Seen) -> dict[str, Any]:
    return {"url": "http://tools.test" + seen.target, "headers": seen.headers}


ECHOES = {
    "/plain": lambda seen: (
        200,
        {"content-type": "application/json"},
        json.dumps(echo_request(seen)).encode(),
    ),
    "/php": lambda seen: (200, {"content-type": "application/json"}, php_json(echo_request(seen))),
    "/gson": lambda seen: (
        200,
        {"content-type": "application/json"},
        gson_json(echo_request(seen)),
    ),
    "/denied": lambda seen: (
        401,
        {"content-type": "text/plain"},
        f"no access for {seen.target}".encode(),
    ),
}


@pytest.fixture
def echoes() -> Iterator[ToolServer]:
    server = ToolServer()
    server.routes.update(ECHOES)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def runner() -> AsyncIterator[ToolRunner]:
    tools = ToolRunner()
    try:
        yield tools
    finally:
        await tools.aclose()


@pytest.mark.parametrize("route", ["/plain", "/php", "/gson"])
async def test_a_password_sent_as_basic_auth_is_redacted_from_an_echo(
    tmp_path, echoes, runner, route
):
    url = echoes.url.replace("http://", f"http://{USER}:${{TOOL_PASSWORD}}@") + route
    tool, secrets = one_tool(tmp_path, url, env={"TOOL_PASSWORD": PASSWORD})
    outcome = await runner.run(tool, {}, secrets)
    sent = echoes.seen[0].headers["authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == f"{USER}:{PASSWORD}"
    assert not outcome.is_error
    assert "[redacted]" in outcome.content
    assert leaked(outcome.content, PASSWORD) == [], outcome.content


async def test_a_password_written_percent_encoded_in_the_url_is_redacted_decoded_too(
    tmp_path, echoes, runner
):
    # "/" cannot stand in user:password@host, so the author stored the password encoded;
    # httpx decodes it for Basic auth, and that is what the server echoes.
    password = "pw/canary+Rt8=Vb3/"
    url = echoes.url.replace("http://", f"http://{USER}:${{TOOL_PASSWORD}}@") + "/php"
    tool, secrets = one_tool(tmp_path, url, env={"TOOL_PASSWORD": quote(password, safe="")})
    outcome = await runner.run(tool, {}, secrets)
    sent = echoes.seen[0].headers["authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == f"{USER}:{password}"
    assert leaked(outcome.content, password) == [], outcome.content


@pytest.mark.parametrize("offset", range(-60, 12, 7))
async def test_an_escaped_secret_cut_by_the_cap_leaks_no_part_of_it(
    tmp_path, echoes, runner, offset
):
    cap = 200
    form = "".join(f"\\u{ord(c):04x}" for c in KEY)  # six times longer than the key
    body = b"a" * (cap + offset) + form.encode() + b"b" * 5000
    echoes.routes["/long"] = lambda seen: (200, {}, body)
    tool, secrets = one_tool(
        tmp_path,
        echoes.url + "/long",
        http_extra=f'    max_response_bytes: {cap}\n    headers: {{X-Key: "${{TOOL_KEY}}"}}\n',
        env={"TOOL_KEY": KEY},
    )
    outcome = await runner.run(tool, {}, secrets)
    kept = outcome.content.split("\n[response truncated")[0]
    assert "[response truncated at 200 bytes]" in outcome.content
    # Nothing of the escaped key survives: not even its first escape.
    assert "\\u" not in kept, (offset, kept)


# --------------------------------------------------------------------------------------------
# Whole turns: the model, the store, the client and the log see none of it
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    store = open_store(tmp_path / "db")
    engine = Engine(store)
    try:
        yield engine
    finally:
        await engine.aclose()
        await store.close()
        await aclose_all()


def bot_file(tmp_path: Path, fake: FakeAnthropic, tools: str, model_extra: str = "") -> Path:
    body = "\n".join("  " + line for line in tools.strip("\n").splitlines())
    path = tmp_path / "bot.yaml"
    path.write_text(
        "name: keybot\n"
        "model:\n"
        "  name: claude-test\n"
        "  max_tokens: 256\n"
        f"  base_url: {fake.url}\n"
        f"{model_extra}"
        "system: You call tools.\n"
        "retry: {max_retries: 0, timeout_seconds: 20}\n"
        f"tools:\n{body}\n"
    )
    return path


async def run_turn(engine: Engine, bot: Bot, message: str) -> list[Event]:
    key = ConversationKey(bot.name, "u1", "s1")
    return [event async for event in engine.turn(bot, key, message)]


async def test_encoded_secrets_never_reach_the_model_the_store_or_the_client(
    tmp_path, engine, fake_anthropic, echoes
):
    authed = echoes.url.replace("http://", f"http://{USER}:${{TOOL_PASSWORD}}@")
    tools = "".join(
        tool_yaml(
            url,
            name=name,
            http_extra='    params: {key: "${TOOL_KEY}"}\n',
        )
        for name, url in [
            ("plain", echoes.url + "/plain"),
            ("php", echoes.url + "/php"),
            ("gson", echoes.url + "/gson"),
            ("denied", echoes.url + "/denied"),
            ("authed", authed + "/php"),
        ]
    )
    path = bot_file(tmp_path, fake_anthropic, tools)
    bot = load_bot(path, env={"TOOL_KEY": KEY, "TOOL_PASSWORD": PASSWORD})
    names = ["plain", "php", "gson", "denied", "authed"]
    fake_anthropic.enqueue(tool_use([(name, {}, f"toolu_{name}") for name in names]), text("Done."))

    events = await run_turn(engine, bot, "Call them all.")

    assert len(echoes.seen) == 5
    assert all(s.params["key"] == [KEY] for s in echoes.seen)
    results = {e.name: e for e in events if isinstance(e, ToolResult)}
    assert sorted(results) == sorted(names) and results["denied"].is_error
    seen_by_client = json.dumps([repr(e) for e in events])
    seen_by_model = json.dumps([r.json for r in fake_anthropic.requests])
    history = await engine.store.history(ConversationKey(bot.name, "u1", "s1"))
    stored = json.dumps([m.content for m in history])
    assert "tool_result" in seen_by_model and "tool_result" in stored
    for where, text_ in [("client", seen_by_client), ("model", seen_by_model), ("store", stored)]:
        assert leaked(text_, KEY) == [], where
        assert leaked(text_, PASSWORD) == [], where


async def test_a_model_api_error_quoting_the_key_encoded_is_redacted_from_the_log(
    tmp_path, engine, fake_anthropic, caplog
):
    # A gateway in front of the model API that quotes the request's URL in its error.
    path = bot_file(
        tmp_path,
        fake_anthropic,
        tool_yaml("http://127.0.0.1:9/x"),
        model_extra="  api_key: ${MODEL_KEY}\n",
    )
    bot = load_bot(path, env={"MODEL_KEY": KEY})
    fake_anthropic.enqueue(error(400, f"bad request to /v1/messages?key={quote(KEY, safe='')}"))
    caplog.set_level(logging.INFO, logger="botrunner.engine.turn")

    events = await run_turn(engine, bot, "Hello.")

    failure = events[-1]
    assert isinstance(failure, Error)
    assert "bad request to /v1/messages?key=[redacted]" in failure.detail
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "bad request to /v1/messages" in logged
    assert leaked(logged, KEY) == [] and leaked(failure.detail, KEY) == []
