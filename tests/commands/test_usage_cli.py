"""`botrunner usage`: tokens and estimated cost per bot, user and day from the usage ledger, as
the engine writes it (real SDK, fake upstream, SQLite store), and after a real chat session."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic, text
from test_chat_cli import BOTRUNNER, env_for

from botrunner.botfile.loader import load_bot
from botrunner.commands import usage
from botrunner.engine import Engine
from botrunner.store import ConversationKey, open_store


def bot_file(tmp_path: Path, fake: FakeAnthropic, name: str, model: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            model: {{name: {model}, max_tokens: 100, base_url: "{fake.url}"}}
            system: You help.
            retry: {{max_retries: 0, timeout_seconds: 10}}
            """
        )
    )
    return path


@pytest.fixture
async def db(tmp_path: Path, fake_anthropic: FakeAnthropic, monkeypatch) -> str:
    """A store with four turns: tutor (Sonnet 5.5) for alice and bob, helper (a model the
    catalogue does not know) for alice, and one long-prompt Haiku 5.5 turn."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    path = str(tmp_path / "usage.db")
    engine = Engine(open_store(path))
    tutor = load_bot(bot_file(tmp_path, fake_anthropic, "tutor", "claude-sonnet-5-5"))
    helper = load_bot(bot_file(tmp_path, fake_anthropic, "helper", "claude-mystery-1"))
    reader = load_bot(bot_file(tmp_path, fake_anthropic, "reader", "claude-haiku-5-5"))
    fake_anthropic.enqueue(
        text(
            "a",
            input_tokens=1000,
            output_tokens=200,
            cache_read_tokens=10000,
            cache_write_tokens=2000,
        ),
        text("b", input_tokens=500, output_tokens=100),
        text("c", input_tokens=300, output_tokens=30),
        text("d", input_tokens=150_000, output_tokens=1000),
    )
    try:
        for bot, user in ((tutor, "alice"), (tutor, "bob"), (helper, "alice"), (reader, "carol")):
            events = [e async for e in engine.turn(bot, ConversationKey(bot.name, user, "s"), "hi")]
            assert type(events[-1]).__name__ == "Done"
    finally:
        await engine.aclose()
        await engine.store.close()
    return path


def run(*args: str, **options) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = usage.run(*args, out=out, err=err, **options)
    return code, out.getvalue(), err.getvalue()


# Sonnet 5.5: $2 input, $2.50 5-minute writes, $0.10 reads, $10 output per million tokens.
TUTOR_COST = (1500 * 2 + 2000 * 2.5 + 10000 * 0.10 + 300 * 10) / 1e6
# Haiku 5.5 over 100,000 prompt tokens: $0.50 input and $2.50 output on every token.
READER_COST = (150_000 * 0.50 + 1000 * 2.50) / 1e6


def test_by_bot_as_json(db):
    code, out, _ = run(db, output_format="json")
    assert code == 0
    report = json.loads(out)
    rows = {r["group"]: r for r in report["rows"]}
    assert rows["tutor"] == {
        "group": "tutor",
        "model": "claude-sonnet-5-5",
        "turns": 2,
        "input_tokens": 1500,
        "cache_write_tokens": 2000,
        "cache_read_tokens": 10000,
        "output_tokens": 300,
        "cost_usd": pytest.approx(TUTOR_COST),
    }
    assert rows["helper"]["cost_usd"] is None and rows["helper"]["input_tokens"] == 300
    assert rows["reader"]["cost_usd"] == pytest.approx(READER_COST)
    assert report["unpriced_models"] == ["claude-mystery-1"]
    assert report["total"]["turns"] == 4
    assert report["total"]["cost_usd"] == pytest.approx(TUTOR_COST + READER_COST)


def test_by_user_as_text(db):
    code, out, _ = run(db, by="user")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Tokens and estimated cost by user, all time:"
    alice = [line.split() for line in lines if line.startswith("alice")]
    assert alice == [
        ["alice", "claude-mystery-1", "1", "300", "0", "0", "30", "no", "price"],
        ["alice", "claude-sonnet-5-5", "1", "1,000", "2,000", "10,000", "200", "0.0100"],
    ]
    assert any(line.split()[:2] == ["bob", "claude-sonnet-5-5"] for line in lines)
    assert "No price for claude-mystery-1" in out


def test_by_day_as_csv_and_since(db):
    code, out, _ = run(db, by="day", output_format="csv", since="1d")
    assert code == 0
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == [
        "day",
        "model",
        "turns",
        "input_tokens",
        "cache_write_tokens",
        "cache_read_tokens",
        "output_tokens",
        "cost_usd",
    ]
    assert {row[1] for row in table[1:]} == {
        "claude-sonnet-5-5",
        "claude-mystery-1",
        "claude-haiku-5-5",
    }
    assert len({row[0] for row in table[1:]}) == 1  # all today (UTC)
    assert [row[7] for row in table[1:] if row[1] == "claude-mystery-1"] == [""]
    code, out, _ = run(db, since="2999-01-01")
    assert (code, out) == (0, "No usage recorded (since 2999-01-01).\n")


def test_a_price_file_prices_an_unknown_model(db, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "claude-mystery-1: {input: 1, cache_write_5m: 1.25, cache_write_1h: 2, "
        "cache_read: 0.1, output: 10}\n"
    )
    code, out, _ = run(db, output_format="json", prices=prices)
    rows = {r["group"]: r for r in json.loads(out)["rows"]}
    assert rows["helper"]["cost_usd"] == pytest.approx((300 * 1 + 30 * 10) / 1e6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": "last week"}, "--since 'last week': write a span back from now"),
        ({"db": "missing.db"}, "no store at missing.db"),
    ],
)
def test_usage_errors_exit_2_with_a_message(db, tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(options.pop("db", db), **options)
    assert code == 2 and out == "" and message in err
    assert not (tmp_path / "missing.db").exists()  # a report never creates a store


def test_usage_after_a_chat_session(fake_anthropic, tmp_path):
    """The real executables: two chat lines, then the report per user, with cache reads."""
    bot = tmp_path / "bot.yaml"
    bot.write_text(
        "name: pipe\nmodel: {name: claude-sonnet-5-5, max_tokens: 100}\n"
        f"system: {'Answer briefly and kindly. ' * 200}\n"
    )
    store = str(tmp_path / "c.db")
    fake_anthropic.enqueue(text("First."), text("Second."))
    env = env_for(fake_anthropic, USER="dana")
    chat = subprocess.run(
        [BOTRUNNER, "chat", str(bot), "--db", store],
        input="hello\nagain\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert chat.returncode == 0, chat.stderr
    result = subprocess.run(
        [BOTRUNNER, "usage", "--db", store, "--by", "user", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["rows"]
    assert row["model"] == "claude-sonnet-5-5" and row["turns"] == 2
    assert row["cache_write_tokens"] > 1000 and row["cache_read_tokens"] > 1000
    assert row["cost_usd"] > 0
    text_report = subprocess.run(
        [BOTRUNNER, "usage", "--db", store],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert text_report.stdout.splitlines()[3].split()[:3] == ["pipe", "claude-sonnet-5-5", "2"]
