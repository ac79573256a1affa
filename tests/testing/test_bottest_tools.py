"""Tools in tests: canned responses are served without any network access, while the request
the tool rendered (exactly as `serve` would send it) is what `tool_calls` checks. The tool's
API here is a real local server that counts hits: it must never get one."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bottest_kit import SHOP_RULES, go_offline, go_online, run_test_command, scripted, write_shop
from fake_anthropic import text, tool_use


@pytest.fixture
def stock_api():
    """A real HTTP server where the shop's stock tool points; it records every hit."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"units": 999}')

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.hits = hits
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def upstream():
    server = scripted(SHOP_RULES)
    yield server
    server.stop()


def test_a_canned_response_is_served_without_network_and_the_exact_url_is_checked(
    tmp_path, stock_api, upstream, monkeypatch
):
    path = write_shop(tmp_path, stock_url=stock_api.url)
    go_online(monkeypatch, upstream.url, SHOP_TOKEN="tok-live-secret")
    recorded = run_test_command(str(path), "--record", "-k", "stock", "--format", "json")
    assert recorded.returncode == 0, recorded.stdout
    # The model got the canned 7 units, never the server's 999.
    exchanges = json.loads(path.with_name("shop.tests.cassette.json").read_text())["tests"]
    result_block = exchanges["checks the stock"]["exchanges"][1]["request"]["messages"][-1]
    assert result_block["content"][0]["content"] == '{"units": 7}'
    go_offline(monkeypatch)
    replayed = run_test_command(str(path), "-k", "stock")
    assert replayed.returncode == 0, replayed.stdout
    assert stock_api.hits == []

    # The URL check is exact: the rendered query string is part of it.
    expected = f"url: {stock_api.url}/v1/stock/red-mug?warehouse=main"
    path.write_text(path.read_text().replace(expected, expected + "&x=1"), encoding="utf-8")
    failed = run_test_command(str(path), "-k", "stock")
    assert failed.returncode == 1
    assert f"        expected: {stock_api.url}/v1/stock/red-mug?warehouse=main&x=1" in failed.stdout
    assert f"        got:      {stock_api.url}/v1/stock/red-mug?warehouse=main\n" in failed.stdout
    assert stock_api.hits == []


def test_a_tool_without_a_canned_response_fails_the_test_and_calls_nothing(
    tmp_path, stock_api, upstream, monkeypatch
):
    tests = """\
bot: shop.yaml
tests:
  - name: forgot the canned stock
    turns:
      - user: How many red mugs do you have?
"""
    rules = [(r"could not reach", text("Sorry, I cannot check the stock.")), *SHOP_RULES]
    upstream = scripted(rules)
    try:
        path = write_shop(tmp_path, stock_url=stock_api.url, tests=tests)
        go_online(monkeypatch, upstream.url)
        result = run_test_command(str(path), "--live", "--format", "json")
    finally:
        upstream.stop()
    (test,) = json.loads(result.stdout)["tests"]
    assert test["status"] == "failed"
    (failure,) = test["failures"]
    assert failure["assertion"] == "tools"
    assert failure["message"] == (
        "the model called stock, which has no canned response in this test "
        "(add one under tools: stock:)"
    )
    assert failure["got"] == (
        f'stock {{"sku": "red-mug"}} -> GET {stock_api.url}/v1/stock/red-mug?warehouse=main'
    )
    assert stock_api.hits == []


def test_secret_header_values_are_redacted_in_checks_and_reports(tmp_path, upstream, monkeypatch):
    tests = """\
bot: shop.yaml
tests:
  - name: stock with a token
    tools: {stock: {json: {units: 7}}}
    turns:
      - user: How many red mugs do you have?
        expect:
          tool_calls:
            - name: stock
              request: {headers: {Authorization: "Bearer [redacted]", Accept: application/json}}
  - name: wrong token
    tools: {stock: {json: {units: 7}}}
    turns:
      - user: How many red mugs do you have?
        expect:
          tool_calls:
            - name: stock
              request: {headers: {Authorization: Bearer nope}}
"""
    path = write_shop(tmp_path, tests=tests)
    go_online(monkeypatch, upstream.url, SHOP_TOKEN="tok-live-secret")
    result = run_test_command(str(path), "--record")
    assert "passed        " in result.stdout and "FAILED" in result.stdout
    assert "        got:      Bearer [redacted]" in result.stdout
    assert "tok-live-secret" not in result.stdout + result.stderr
    assert "tok-live-secret" not in path.with_name("shop.tests.cassette.json").read_text()


def test_a_post_body_is_checked_as_json_fields(tmp_path, monkeypatch):
    bot = """\
name: notes
model: {name: claude-test-1}
system: You keep notes.
tools:
  - name: save
    description: Save a note.
    input_schema: {type: object, properties: {text: {type: string}}, required: [text]}
    http:
      method: POST
      url: https://notes.example/v1/notes
      body: {text: "{{ input.text }}", tags: [chat]}
"""
    tests = """\
bot: notes.yaml
tests:
  - name: saves the note
    tools:
      save: {status: 201, json: {id: 12}}
    turns:
      - user: Remember to buy milk
        expect:
          tool_calls:
            - name: save
              request:
                method: POST
                headers: {Content-Type: application/json}
                body: {text: buy milk}
          contains: ["12"]
"""
    (tmp_path / "notes.yaml").write_text(bot, encoding="utf-8")
    path = tmp_path / "notes.tests.yaml"
    path.write_text(tests, encoding="utf-8")
    upstream = scripted(
        [
            (r"buy milk", tool_use([("save", {"text": "buy milk"}, "toolu_n1")])),
            (r'"id": 12', text("Saved as note 12.")),
        ]
    )
    try:
        go_online(monkeypatch, upstream.url)
        passed = run_test_command(str(path), "--live")
        path.write_text(tests.replace("body: {text: buy milk}", "body: {text: buy bread}"), "utf-8")
        failed = run_test_command(str(path), "--live")
    finally:
        upstream.stop()
    assert passed.returncode == 0, passed.stdout
    assert "save: the request's body differs" in failed.stdout
    assert '        expected: {"text": "buy bread"}' in failed.stdout
    assert '        got:      {"text":"buy milk","tags":["chat"]}' in failed.stdout  # as sent
