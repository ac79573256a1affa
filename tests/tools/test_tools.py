"""HTTP-backed tools against a real local HTTP server (issue 3, section 4).

`ToolServer` is a tiny threaded HTTP/1.1 server on 127.0.0.1 that records every raw request
it receives (the request target exactly as sent, headers, body), so the tests assert what
actually went over the wire. `tests/test_engine_tools.py` reuses it for whole turns.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import pytest

from botrunner.bot import Bot, Tool
from botrunner.botfile.loader import load_bot
from botrunner.tools.http import ToolOutcome, ToolRunner
from botrunner.tools.secrets import REDACTED, redact

# --------------------------------------------------------------------------------------------
# A real tool server
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Seen:
    """One request as the tool server received it."""

    method: str
    target: str  # the raw request target: path and query, percent-encoding untouched
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)


Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[Seen], Reply]


@dataclass
class Stream:
    """What /huge sent: bytes written and whether the client hung up before the end."""

    total: int
    sent: int = 0
    finished: bool = False
    aborted: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # parallel calls must not overflow the listen backlog

    def handle_error(self, request, client_address) -> None:
        # Clients hanging up early (the size cap, timeouts) are what several tests provoke.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ToolServer:
    """Routes by path prefix; `routes` may be extended per test. Built-in routes:

    /echo..., /weather/...  200 JSON describing the request received
    /slow                   answers after `slow_seconds` (released at shutdown)
    /trickle                sends headers, then one byte every 50 ms for 5 s
    /fail                   500 with a short body
    /huge                   200 with 64 MiB, unbounded (no content-length), streamed
    /redirect?to=URL&code=N  a redirect to URL
    /secret                 echoes the X-Api-Key header it received
    /cookie                 sets a cookie and echoes the Cookie header it received
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.routes: dict[str, Route] = {}
        self.slow_seconds = 5.0
        self.release = threading.Event()
        self.streams: list[Stream] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                owner._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def start(self) -> ToolServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def paths(self) -> list[str]:
        return [s.target for s in self.seen]

    # -- request handling -------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        seen = Seen(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
        self.seen.append(seen)
        path = seen.path
        for prefix, route in self.routes.items():
            if path.startswith(prefix):
                return self._reply(h, *route(seen))
        if path.startswith(("/echo", "/weather/")):
            return self._reply(h, *self.echo(seen))
        if path == "/slow":
            self.release.wait(self.slow_seconds)
            return self._reply(h, 200, {}, b"finally")
        if path == "/trickle":
            return self._trickle(h)
        if path == "/fail":
            return self._reply(h, 500, {"content-type": "text/plain"}, b"database exploded\n")
        if path == "/huge":
            return self._huge(h)
        if path == "/redirect":
            params = seen.params
            code = int(params.get("code", ["302"])[0])
            return self._reply(h, code, {"location": params["to"][0]}, b"")
        if path == "/secret":
            key = seen.headers.get("x-api-key", "")
            return self._reply(h, 200, {}, f'{{"echo": "your key is {key}"}}'.encode())
        if path == "/cookie":
            got = seen.headers.get("cookie", "")
            return self._reply(h, 200, {"set-cookie": "session=user-a; Path=/"}, got.encode())
        return self._reply(h, 404, {}, b"no such route")

    @staticmethod
    def echo(seen: Seen) -> Reply:
        payload = {
            "method": seen.method,
            "target": seen.target,
            "headers": seen.headers,
            "body": seen.body.decode("utf-8", "replace"),
        }
        return 200, {"content-type": "application/json"}, json.dumps(payload).encode()

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        h.send_response(status)
        headers = {"content-length": str(len(body)), **headers}
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()
        if body and h.command != "HEAD":
            h.wfile.write(body)

    def _huge(self, h: BaseHTTPRequestHandler) -> None:
        stream = Stream(total=64 * 1024 * 1024)
        self.streams.append(stream)
        h.close_connection = True
        h.send_response(200)
        h.send_header("content-type", "text/plain")
        h.send_header("connection", "close")
        h.end_headers()
        chunk = b"x" * 65536
        try:
            while stream.sent < stream.total:
                h.wfile.write(chunk)
                stream.sent += len(chunk)
            stream.finished = True
        except OSError:
            stream.aborted = True
        finally:
            stream.done.set()

    def _trickle(self, h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.send_response(200)
        h.send_header("connection", "close")
        h.end_headers()
        try:
            for _ in range(100):
                if self.release.wait(0.05):
                    return
                h.wfile.write(b".")
                h.wfile.flush()
        except OSError:
            pass


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer().start()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Bots with tools, written as YAML like an author would
# --------------------------------------------------------------------------------------------


def write_bot(
    tmp_path: Path,
    tools_yaml: str,
    *,
    extra: str = "",
    env: dict[str, str] | None = None,
    name: str = "toolbot",
) -> Bot:
    """Load a bot file whose `tools:` section is `tools_yaml` (a YAML list, unindented)."""
    text = (
        f"name: {name}\n"
        "model:\n"
        "  name: claude-test\n"
        "  max_tokens: 256\n"
        "system: You call tools.\n"
        f"{extra}"
        "tools:\n" + textwrap.indent(textwrap.dedent(tools_yaml).strip("\n"), "  ") + "\n"
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_bot(path, env=env or {})


def tool_yaml(
    url: str,
    *,
    name: str = "t",
    schema: str = "{type: object}",
    http_extra: str = "",
) -> str:
    """One tool entry; `http_extra` lines are added under `http:` (already indented 4)."""
    return (
        f"- name: {name}\n"
        f"  description: A test tool.\n"
        f"  input_schema: {schema}\n"
        f"  http:\n"
        f"    url: {json.dumps(url)}\n"
        f"{http_extra}"
    )


def one_tool(tmp_path: Path, url: str, **kwargs: Any) -> tuple[Tool, frozenset[str]]:
    env = kwargs.pop("env", None)
    bot = write_bot(tmp_path, tool_yaml(url, **kwargs), env=env)
    return bot.tools[0], bot.secrets


@pytest.fixture
async def runner() -> Any:
    tools = ToolRunner()
    try:
        yield tools
    finally:
        await tools.aclose()


# --------------------------------------------------------------------------------------------
# redact
# --------------------------------------------------------------------------------------------


def test_redact_replaces_every_secret_longest_first():
    secrets = frozenset({"abc", "abcdef", ""})
    assert redact("x abcdef y abc z", secrets) == f"x {REDACTED} y {REDACTED} z"
    assert redact("nothing here", secrets) == "nothing here"
    assert redact("anything", frozenset()) == "anything"


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------

CITY_SCHEMA = (
    "{type: object, properties: {city: {type: string, minLength: 1}, "
    "days: {type: integer, minimum: 1, maximum: 7}}, required: [city], "
    "additionalProperties: false}"
)


@pytest.mark.parametrize(
    ("bad_input", "why"),
    [
        ({}, "'city' is a required property"),
        ({"city": 7}, "7 is not of type 'string' (at 'city')"),
        ({"city": "Lisbon", "days": 30}, "30 is greater than the maximum of 7 (at 'days')"),
        ({"city": "Lisbon", "extra": 1}, "Additional properties are not allowed"),
        (None, "None is not of type 'object'"),
        ("Lisbon", "'Lisbon' is not of type 'object'"),
    ],
)
async def test_invalid_input_is_an_error_the_model_can_act_on_and_nothing_is_sent(
    tmp_path, tool_server, runner, bad_input, why
):
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/weather/{{ input.city }}", schema=CITY_SCHEMA
    )
    outcome = await runner.run(tool, bad_input, secrets)
    assert outcome.is_error
    assert outcome.content.startswith("Invalid input for tool t: ")
    assert why in outcome.content
    assert outcome.content.endswith("Fix the input and call it again.")
    assert tool_server.seen == []


async def test_a_huge_invalid_value_gives_a_short_explanation(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/weather/{{ input.city }}",
        schema="{type: object, properties: {city: {type: string, maxLength: 10}}}",
    )
    outcome = await runner.run(tool, {"city": "x" * 100_000}, secrets)
    assert outcome.is_error
    assert len(outcome.content) < 500
    assert re.search(r"'x+…x+' is too long \(at 'city'\)", outcome.content)
    assert "(at 'city')" in outcome.content


async def test_valid_input_runs(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/weather/{{ input.city }}", schema=CITY_SCHEMA
    )
    outcome = await runner.run(tool, {"city": "Lisbon", "days": 3}, secrets)
    assert outcome == ToolOutcome(outcome.content, False)
    assert json.loads(outcome.content)["target"] == "/weather/Lisbon"


# --------------------------------------------------------------------------------------------
# What the model controls: encoded for its place, never the scheme or host
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("city", "path"),
    [
        ("a?c=d#e", "/weather/a%3Fc%3Dd%23e"),
        ("São Paulo", "/weather/S%C3%A3o%20Paulo"),
        ("%41", "/weather/%2541"),
        ("@evil.example.com", "/weather/%40evil.example.com"),
    ],
)
async def test_path_values_stay_in_their_segment(tmp_path, tool_server, runner, city, path):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/weather/{{ input.city }}")
    outcome = await runner.run(tool, {"city": city}, secrets)
    assert not outcome.is_error, outcome.content
    assert tool_server.paths() == [path]


@pytest.mark.parametrize("value", ["..", ".", "%2e%2E", "../admin", "..%2F..%2Fadmin", "a\\b"])
async def test_a_path_value_that_could_leave_its_segment_is_refused(
    tmp_path, tool_server, runner, value
):
    # An URL parser resolves /weather/../x to /x, and servers that decode %2F or \ before
    # resolving dot segments route ..%2Fadmin elsewhere: such a value is refused, not sent, and
    # the model is told why.
    tool, secrets = one_tool(tmp_path, tool_server.url + "/weather/{{ input.a }}/x")
    outcome = await runner.run(tool, {"a": value}, secrets)
    assert outcome.is_error
    assert outcome.content.startswith(f"Invalid input for tool t: {value!r} cannot fill a path")
    assert outcome.content.endswith("Fix the input and call it again.")
    assert tool_server.seen == []


async def test_dots_inside_a_segment_are_fine(tmp_path, tool_server, runner):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/weather/{{ input.a }}")
    for value in ("...", "a..b", "..x", ".env"):
        assert not (await runner.run(tool, {"a": value}, secrets)).is_error
    assert tool_server.paths() == ["/weather/...", "/weather/a..b", "/weather/..x", "/weather/.env"]


async def test_query_values_in_the_url_are_encoded(tmp_path, tool_server, runner):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/echo?q={{ input.q }}&lang=en")
    await runner.run(tool, {"q": "fish & chips=yes?&admin=true#x"}, secrets)
    seen = tool_server.seen[0]
    assert seen.path == "/echo"
    assert seen.params == {"q": ["fish & chips=yes?&admin=true#x"], "lang": ["en"]}
    assert seen.query == "q=fish+%26+chips%3Dyes%3F%26admin%3Dtrue%23x&lang=en"


async def test_params_are_encoded_and_added_to_the_url_query(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/echo?fixed=1&q={{ input.q }}",
        http_extra='    params: {name: "{{ input.name }}", count: "1"}\n',
    )
    outcome = await runner.run(tool, {"q": "a/b", "name": "x&admin=1 ü"}, secrets)
    assert not outcome.is_error, outcome.content
    seen = tool_server.seen[0]
    # The URL's own query is kept (params are *added*, as the schema documents).
    assert seen.params == {
        "fixed": ["1"],
        "q": ["a/b"],
        "name": ["x&admin=1 ü"],
        "count": ["1"],
    }
    assert "admin" not in seen.params


async def test_a_declared_multi_segment_placeholder_is_sent_segment_by_segment(
    tmp_path, tool_server, runner
):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/echo/{{ input.a | segments }}")
    outcome = await runner.run(tool, {"a": "docs/read me.txt"}, secrets)
    assert not outcome.is_error, outcome.content
    assert tool_server.paths() == ["/echo/docs/read%20me.txt"]
    refused = await runner.run(tool, {"a": "docs/../../admin"}, secrets)
    assert refused.is_error and "has a .. segment" in refused.content
    assert len(tool_server.seen) == 1


@pytest.mark.parametrize(
    "evil",
    [
        "@evil.example.com",
        "//evil.example.com/x",
        "http://evil.example.com/",
        "evil.example.com:80",
        "\r\nHost: evil",
    ],
)
async def test_the_model_cannot_change_scheme_or_host(tmp_path, tool_server, runner, evil):
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/weather/{{ input.city }}",
        http_extra='    params: {q: "{{ input.city }}"}\n',
    )
    outcome = await runner.run(tool, {"city": evil}, secrets)
    if "/" in evil:  # refused outright: it could not fill one path segment
        assert outcome.is_error and tool_server.seen == []
        return
    assert not outcome.is_error, outcome.content
    # The request reached our server (no other), on one segment, and the Host is ours.
    [seen] = tool_server.seen
    assert seen.headers["host"] == f"127.0.0.1:{tool_server.port}"
    assert seen.path.count("/") == 2
    assert seen.params["q"] == [evil]


def test_a_templated_host_is_refused_at_load(tmp_path):
    from botrunner.botfile.loader import BotFileError

    with pytest.raises(BotFileError, match="host must be literal"):
        one_tool(tmp_path, "http://{{ input.host }}/x")


async def test_json_body_and_templated_headers(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/echo",
        http_extra=(
            "    method: POST\n"
            '    headers: {X-City: "{{ input.city }}"}\n'
            '    body: {city: "{{ input.city }}", days: "{{ input.days }}", fixed: [1, "two"]}\n'
        ),
    )
    outcome = await runner.run(tool, {"city": "Lisbon", "days": 3}, secrets)
    echoed = json.loads(outcome.content)
    assert echoed["method"] == "POST"
    assert echoed["headers"]["x-city"] == "Lisbon"
    assert echoed["headers"]["content-type"] == "application/json"
    assert json.loads(echoed["body"]) == {"city": "Lisbon", "days": 3, "fixed": [1, "two"]}


async def test_a_header_that_cannot_be_sent_is_an_error_not_a_crash(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/echo",
        http_extra='    headers: {X-City: "{{ input.city }}"}\n',
    )
    line_break = await runner.run(tool, {"city": "a\r\nX-Admin: 1"}, secrets)
    assert line_break.is_error
    assert "line break" in line_break.content
    non_ascii = await runner.run(tool, {"city": "Zürich"}, secrets)
    assert non_ascii.is_error
    assert "X-City" in non_ascii.content
    assert tool_server.seen == []


# --------------------------------------------------------------------------------------------
# Failures become short is_error results
# --------------------------------------------------------------------------------------------


async def test_timeout(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/slow", http_extra="    timeout_seconds: 0.2\n"
    )
    started = time.monotonic()
    outcome = await runner.run(tool, {}, secrets)
    assert time.monotonic() - started < 2
    assert outcome == ToolOutcome(
        "Tool t timed out: 127.0.0.1 did not answer within 0.2 s.", is_error=True
    )


async def test_timeout_covers_the_whole_response_not_each_read(tmp_path, tool_server, runner):
    # A server that keeps sending a byte now and then must not hold the turn past the timeout.
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/trickle", http_extra="    timeout_seconds: 0.3\n"
    )
    started = time.monotonic()
    outcome = await runner.run(tool, {}, secrets)
    assert time.monotonic() - started < 1.5
    assert outcome.is_error
    assert outcome.content == "Tool t timed out: 127.0.0.1 did not answer within 0.3 s."


async def test_http_500(tmp_path, tool_server, runner):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/fail")
    outcome = await runner.run(tool, {}, secrets)
    assert outcome == ToolOutcome("Tool t failed with HTTP 500: database exploded", True)


async def test_http_error_body_is_cut_short(tmp_path, tool_server, runner):
    tool_server.routes["/big-error"] = lambda seen: (503, {}, b"E" * 100_000)
    tool, secrets = one_tool(tmp_path, tool_server.url + "/big-error")
    outcome = await runner.run(tool, {}, secrets)
    assert outcome.is_error
    assert outcome.content == "Tool t failed with HTTP 503: " + "E" * 200


async def test_http_404_without_body(tmp_path, tool_server, runner):
    tool_server.routes["/gone"] = lambda seen: (404, {}, b"")
    tool, secrets = one_tool(tmp_path, tool_server.url + "/gone")
    outcome = await runner.run(tool, {}, secrets)
    assert outcome == ToolOutcome("Tool t failed with HTTP 404", True)


async def test_refused_connection(tmp_path, runner):
    port = closed_port()
    tool, secrets = one_tool(tmp_path, f"http://127.0.0.1:{port}/x")
    outcome = await runner.run(tool, {}, secrets)
    assert outcome.is_error
    assert outcome.content.startswith("Tool t could not reach 127.0.0.1: ")
    assert len(outcome.content) < 300
    assert "\n" not in outcome.content
    assert "Traceback" not in outcome.content


async def test_huge_body_is_capped_and_read_as_a_stream(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/huge", http_extra="    max_response_bytes: 1000\n"
    )
    started = time.monotonic()
    outcome = await runner.run(tool, {}, secrets)
    assert time.monotonic() - started < 5
    assert not outcome.is_error
    assert outcome.content == "x" * 1000 + "\n[response truncated at 1000 bytes]"
    # The client hung up long before the server could send its 64 MiB.
    [stream] = tool_server.streams
    assert stream.done.wait(5)
    assert stream.aborted and not stream.finished
    assert stream.sent < stream.total // 4


async def test_body_of_exactly_the_cap_is_not_truncated(tmp_path, tool_server, runner):
    tool_server.routes["/exact"] = lambda seen: (200, {}, b"y" * 1000)
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/exact", http_extra="    max_response_bytes: 1000\n"
    )
    outcome = await runner.run(tool, {}, secrets)
    assert outcome == ToolOutcome("y" * 1000)


async def test_non_utf8_and_charset_bodies_decode(tmp_path, tool_server, runner):
    tool_server.routes["/latin1"] = lambda seen: (
        200,
        {"content-type": "text/plain; charset=iso-8859-1"},
        "café".encode("latin-1"),
    )
    tool_server.routes["/binary"] = lambda seen: (200, {}, b"\xff\xfeok")
    tool, secrets = one_tool(tmp_path, tool_server.url + "/latin1")
    assert (await runner.run(tool, {}, secrets)).content == "café"
    tool, secrets = one_tool(tmp_path, tool_server.url + "/binary")
    assert (await runner.run(tool, {}, secrets)).content == "\ufffd\ufffdok"


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------

SECRET = "sk-live-0123456789abcdef"


async def test_secret_header_is_sent_but_an_echo_is_redacted(tmp_path, tool_server, runner):
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/secret",
        http_extra='    headers: {X-Api-Key: "${TOOL_KEY}"}\n',
        env={"TOOL_KEY": SECRET},
    )
    assert secrets == {SECRET}
    outcome = await runner.run(tool, {}, secrets)
    assert tool_server.seen[0].headers["x-api-key"] == SECRET
    assert outcome == ToolOutcome('{"echo": "your key is [redacted]"}')


async def test_secret_in_an_error_body_is_redacted(tmp_path, tool_server, runner):
    tool_server.routes["/deny"] = lambda seen: (
        401,
        {},
        f"bad key {seen.headers['authorization']}".encode(),
    )
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/deny",
        http_extra='    headers: {Authorization: "Bearer ${TOOL_KEY}"}\n',
        env={"TOOL_KEY": SECRET},
    )
    outcome = await runner.run(tool, {}, secrets)
    assert outcome == ToolOutcome(f"Tool t failed with HTTP 401: bad key Bearer {REDACTED}", True)


@pytest.mark.parametrize("offset", range(-12, 13, 3))
async def test_a_secret_cut_by_the_cap_leaks_no_part_of_it(tmp_path, tool_server, runner, offset):
    # The secret straddles (or sits near) the cap: neither it nor any piece of it survives.
    cap = 100
    start = cap + offset
    body = b"a" * start + SECRET.encode() + b"b" * 5000
    tool_server.routes["/leak"] = lambda seen: (200, {}, body)
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/leak",
        http_extra=f'    max_response_bytes: {cap}\n    headers: {{X-Api-Key: "${{TOOL_KEY}}"}}\n',
        env={"TOOL_KEY": SECRET},
    )
    outcome = await runner.run(tool, {}, secrets)
    assert not outcome.is_error
    kept = outcome.content.split("\n[response truncated")[0]
    for n in range(4, len(SECRET) + 1):
        assert SECRET[:n] not in kept, (offset, kept)


async def test_a_secret_cut_by_the_error_snippet_leaks_no_part_of_it(tmp_path, tool_server, runner):
    body = b"e" * 190 + SECRET.encode()
    tool_server.routes["/deny"] = lambda seen: (403, {}, body)
    tool, secrets = one_tool(
        tmp_path,
        tool_server.url + "/deny",
        http_extra='    headers: {X-Api-Key: "${TOOL_KEY}"}\n',
        env={"TOOL_KEY": SECRET},
    )
    outcome = await runner.run(tool, {}, secrets)
    assert outcome.is_error
    for n in range(4, len(SECRET) + 1):
        assert SECRET[:n] not in outcome.content


# --------------------------------------------------------------------------------------------
# Redirects
# --------------------------------------------------------------------------------------------


def redirect_url(server: ToolServer, to: str, code: int = 302) -> str:
    return f"{server.url}/redirect?code={code}&to={quote(to, safe='')}"


async def test_redirects_are_not_followed_by_default(tmp_path, tool_server, runner):
    tool, secrets = one_tool(tmp_path, redirect_url(tool_server, tool_server.url + "/echo"))
    outcome = await runner.run(tool, {}, secrets)
    assert outcome == ToolOutcome(
        "Tool t got a redirect (HTTP 302) and does not follow redirects.", True
    )
    assert [s.path for s in tool_server.seen] == ["/redirect"]


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirects_on_the_same_host_are_followed_when_allowed(
    tmp_path, tool_server, runner, code
):
    tool, secrets = one_tool(
        tmp_path,
        redirect_url(tool_server, "/echo/next?x=1", code),
        http_extra=(
            "    follow_redirects: true\n"
            '    headers: {X-Api-Key: "${TOOL_KEY}"}\n'
            "    timeout_seconds: 2\n"
        ),
        env={"TOOL_KEY": SECRET},
    )
    outcome = await runner.run(tool, {}, secrets)
    assert not outcome.is_error, outcome.content
    assert [s.path for s in tool_server.seen] == ["/redirect", "/echo/next"]
    second = tool_server.seen[1]
    assert second.target == "/echo/next?x=1"
    assert second.headers["x-api-key"] == SECRET  # same host: the author's headers still go
    assert json.loads(outcome.content)["target"] == "/echo/next?x=1"


@pytest.mark.parametrize(("code", "method", "resent"), [(303, "GET", False), (307, "POST", True)])
async def test_a_redirected_post_keeps_or_drops_its_body_correctly(
    tmp_path, tool_server, runner, code, method, resent
):
    tool, secrets = one_tool(
        tmp_path,
        redirect_url(tool_server, "/echo/done", code),
        http_extra=(
            "    method: POST\n"
            "    follow_redirects: true\n"
            "    timeout_seconds: 2\n"
            '    body: {city: "{{ input.city }}"}\n'
        ),
    )
    outcome = await runner.run(tool, {"city": "Lisbon"}, secrets)
    assert not outcome.is_error, outcome.content
    second = tool_server.seen[1]
    assert second.method == method
    if resent:
        assert json.loads(second.body) == {"city": "Lisbon"}
        assert second.headers["content-type"] == "application/json"
    else:
        assert second.body == b""
        assert "content-length" not in second.headers or second.headers["content-length"] == "0"
        assert "content-type" not in second.headers


async def test_redirects_to_another_host_are_refused(tmp_path, tool_server, runner):
    other = ToolServer().start()
    try:
        for to in (
            f"http://localhost:{other.port}/echo",  # another host name
            f"{other.url}/echo",  # same address, another port: another origin
            f"https://127.0.0.1:{tool_server.port}/echo",  # another scheme
        ):
            tool, secrets = one_tool(
                tmp_path,
                redirect_url(tool_server, to),
                http_extra="    follow_redirects: true\n",
            )
            outcome = await runner.run(tool, {}, secrets)
            assert outcome.is_error
            assert "redirected to another host" in outcome.content
        assert other.seen == []
    finally:
        other.stop()


async def test_redirect_loops_stop(tmp_path, tool_server, runner):
    tool_server.routes["/loop"] = lambda seen: (302, {"location": "/loop"}, b"")
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/loop", http_extra="    follow_redirects: true\n"
    )
    outcome = await runner.run(tool, {}, secrets)
    assert outcome == ToolOutcome("Tool t was redirected too many times.", True)
    assert len(tool_server.seen) == 6


async def test_a_broken_location_is_an_error_not_a_crash(tmp_path, tool_server, runner):
    tool_server.routes["/badloc"] = lambda seen: (302, {"location": "http://[::1"}, b"")
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/badloc", http_extra="    follow_redirects: true\n"
    )
    outcome = await runner.run(tool, {}, secrets)
    assert outcome.is_error
    assert outcome.content.startswith("Tool t ")


# --------------------------------------------------------------------------------------------
# One shared client: nothing carries over between calls
# --------------------------------------------------------------------------------------------


async def test_cookies_are_not_kept_between_calls(tmp_path, tool_server, runner):
    # The runner's client is shared by every user: a cookie set for one must never be sent
    # on another's call.
    tool, secrets = one_tool(tmp_path, tool_server.url + "/cookie")
    first = await runner.run(tool, {}, secrets)
    second = await runner.run(tool, {}, secrets)
    assert (first.content, second.content) == ("", "")
    assert "cookie" not in tool_server.seen[1].headers


async def test_plain_bodies_are_asked_for_unless_the_author_says_otherwise(
    tmp_path, tool_server, runner
):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/echo")
    await runner.run(tool, {}, secrets)
    tool, secrets = one_tool(
        tmp_path, tool_server.url + "/echo", http_extra="    headers: {Accept-Encoding: gzip}\n"
    )
    await runner.run(tool, {}, secrets)
    assert [s.headers["accept-encoding"] for s in tool_server.seen] == ["identity", "gzip"]


async def test_parallel_calls_on_one_runner(tmp_path, tool_server, runner):
    import asyncio

    tool, secrets = one_tool(tmp_path, tool_server.url + "/weather/{{ input.city }}")
    cities = [f"city{i}" for i in range(20)]
    outcomes = await asyncio.gather(*(runner.run(tool, {"city": c}, secrets) for c in cities))
    assert [json.loads(o.content)["target"] for o in outcomes] == [f"/weather/{c}" for c in cities]


async def test_reloaded_tool_gets_its_own_validator(tmp_path, tool_server, runner):
    loose, secrets = one_tool(tmp_path, tool_server.url + "/echo")
    assert not (await runner.run(loose, {"n": "x"}, secrets)).is_error
    strict, secrets = one_tool(
        tmp_path, tool_server.url + "/echo", schema="{type: object, required: [n]}"
    )
    assert (await runner.run(strict, {}, secrets)).is_error
    assert not (await runner.run(loose, {}, secrets)).is_error
