"""What the `botrunner test` tests share: a bot with a tool, its test file, a fake upstream that
answers by rules (the real SDK talks to it over HTTP), and the CLI run as users run it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_anthropic import Auto, FakeAnthropic, Reply, text, tool_use

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-test-key-0123456789"

SHOP_BOT = """\
name: shop
model: {name: claude-test-1, max_tokens: 300}
system: |
  You are the shop assistant of {{ company }}. Today is {{ today }}.
  {% if user.name %}The customer is {{ user.name }}.{% endif %}
variables: {company: Acme}
memory: {strategy: window, max_turns: 4}
limits:
  max_message_chars: 60
  per_user: {requests_per_minute: 3}
tools:
  - name: stock
    description: Units in stock for a product.
    input_schema:
      type: object
      properties: {sku: {type: string}}
      required: [sku]
    http:
      method: GET
      url: STOCK_URL/v1/stock/{{ input.sku }}
      params: {warehouse: main}
      headers: {Authorization: "Bearer ${SHOP_TOKEN}", Accept: application/json}
"""

SHOP_TESTS = """\
bot: shop.yaml
now: "2025-06-02T09:30:00+00:00"
tests:
  - name: greets the customer
    user: {name: Ada}
    turns:
      - user: Hello there
        expect:
          contains: [Acme]
          judge: The reply is polite.
  - name: checks the stock
    tools:
      stock: {json: {units: 7}}
    turns:
      - user: How many red mugs do you have?
        expect:
          tool_calls:
            - name: stock
              input: {sku: red-mug}
              request:
                method: GET
                url: STOCK_URL/v1/stock/red-mug?warehouse=main
                query: {warehouse: main}
                headers: [Authorization]
          contains: ["7"]
      - user: Thanks!
        expect: {no_tool_calls: true}
"""

# What the fake upstream answers, by the last message's text (see fake_anthropic.load_script).
SHOP_RULES: list[tuple[str, Reply]] = [
    (r"Rubric: The reply is polite", text("PASS: It greets the customer warmly.")),
    (r"Rubric: The reply is in French", text("FAIL: The reply is in English.")),
    (r"Hello there", text("Hello from Acme! How can I help you today?")),
    (r"red mugs", tool_use([("stock", {"sku": "red-mug"}, "toolu_shop_1")])),
    (r'"units": 7', text("We have 7 red mugs in stock.")),
    (r"Thanks", text("You're welcome!")),
]


def scripted(rules: list[tuple[str, Reply]]) -> FakeAnthropic:
    """A started fake Messages API answering by `rules` (first regex found in the last message)."""
    script = [(re.compile(pattern), reply) for pattern, reply in rules]
    return FakeAnthropic(default=Auto(mode="script", script=script)).start()


def write_shop(folder: Path, *, stock_url: str = "https://stock.example", tests: str = SHOP_TESTS):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shop.yaml").write_text(SHOP_BOT.replace("STOCK_URL", stock_url), encoding="utf-8")
    path = folder / "shop.tests.yaml"
    path.write_text(tests.replace("STOCK_URL", stock_url), encoding="utf-8")
    return path


def online_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return {**env, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": KEY, **extra}


def offline_env() -> dict[str, str]:
    """No key, and the model API at a port nothing listens on: any network use would fail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SHOP_"))}
    return {**env, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_test_command(*args: str) -> Run:
    """`botrunner test ARGS` in this process (the same click command; fast), with the
    environment the caller set up (see `go_online`, `go_offline`)."""
    from botrunner.cli import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(args=["test", *args], prog_name="botrunner", standalone_mode=False)
    return Run(code, out.getvalue(), err.getvalue())


def go_online(monkeypatch: Any, url: str, **extra: str) -> None:
    for name, value in online_env(url, **extra).items():
        monkeypatch.setenv(name, value)


def go_offline(monkeypatch: Any) -> None:
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "SHOP_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")


def botrunner_test(*args: str, env: dict[str, str], cwd: Path | None = None):
    """`botrunner test ARGS` in a subprocess, as a user or CI runs it."""
    return subprocess.run(
        [sys.executable, "-m", "botrunner", "test", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cassette(test_file: Path) -> dict[str, Any]:
    return json.loads(test_file.with_name("shop.tests.cassette.json").read_text(encoding="utf-8"))
