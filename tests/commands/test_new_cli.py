"""`botrunner new`: a commented starter bot, valid as written, never overwriting a file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def botrunner(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botrunner", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.parametrize("kind", ["tutor", "support", "tool"])
def test_a_new_bot_of_each_kind_is_valid_with_strict(tmp_path, kind):
    made = botrunner("new", "hello", "--kind", kind, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    checked = botrunner("validate", "--strict", "bots/hello.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    text = (tmp_path / "bots" / "hello.yaml").read_text(encoding="utf-8")
    assert "name: hello\n" in text
    assert text.count("\n# ") >= 3, "the starter explains its keys in comments"
    # Its first test file is valid too, and says it is not recorded yet (no cassette).
    tests = tmp_path / "bots" / "hello.tests.yaml"
    assert botrunner("validate", "--strict", str(tests), cwd=tmp_path).returncode == 0
    ran = botrunner("test", "--format", "json", str(tests), cwd=tmp_path)
    assert [t["status"] for t in json.loads(ran.stdout)["tests"]] == ["not_recorded"]


def test_new_prints_the_next_three_commands_and_links_the_schema(tmp_path):
    made = botrunner("new", "hello", cwd=tmp_path)
    assert made.stdout.splitlines()[-3:] == [
        "  botrunner validate bots/hello.yaml   # check it",
        "  botrunner chat bots/hello.yaml       # talk to it in this terminal",
        "  botrunner serve bots/hello.yaml      # serve it on http://127.0.0.1:8000",
    ]
    first = (tmp_path / "bots" / "hello.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/bot.schema.json"
    # The modeline points at a real copy of the schema, for editor completion.
    assert (tmp_path / "schemas" / "bot.schema.json").read_text(encoding="utf-8") == (
        ROOT / "schemas" / "bot.schema.json"
    ).read_text(encoding="utf-8")


def test_new_uses_an_existing_schema_above_the_bots_folder(tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "bot.schema.json").write_text("{}", encoding="utf-8")
    assert botrunner("new", "deep", "--dir", "team/bots", cwd=tmp_path).returncode == 0
    first = (tmp_path / "team" / "bots" / "deep.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../schemas/bot.schema.json"
    assert (tmp_path / "schemas" / "bot.schema.json").read_text(encoding="utf-8") == "{}"


def test_new_refuses_to_overwrite(tmp_path):
    (tmp_path / "bots").mkdir()
    mine = tmp_path / "bots" / "hello.tests.yaml"
    mine.write_text("my own work\n", encoding="utf-8")
    made = botrunner("new", "hello", cwd=tmp_path)
    assert made.returncode == 1
    assert "bots/hello.tests.yaml already exists; nothing was written" in made.stderr
    assert mine.read_text(encoding="utf-8") == "my own work\n"
    assert not (tmp_path / "bots" / "hello.yaml").exists()


def test_new_refuses_a_name_the_schema_would_refuse(tmp_path):
    made = botrunner("new", "Hello Bot", cwd=tmp_path)
    assert made.returncode == 2
    assert 'error: "Hello Bot" cannot be a bot name' in made.stderr
    assert not (tmp_path / "bots").exists()
