"""The bots in bots/ have conversation tests with committed cassettes: `make test` runs
`botrunner test bots/` offline, and the cassettes are what recording against the fake upstream
gives (so they were never edited by hand and are re-recorded after every bot edit)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from record_bots import record

ROOT = Path(__file__).resolve().parents[2]
BOTS = ROOT / "bots"


def offline_env() -> dict[str, str]:
    """No key, and the model API at a port nothing listens on: any network use would fail."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"
    return env


def test_every_bot_has_tests_and_a_cassette():
    bots = [p for p in BOTS.glob("*.yaml") if not p.name.endswith(".tests.yaml")]
    assert bots
    for bot in bots:
        tests = bot.with_name(bot.stem + ".tests.yaml")
        assert tests.is_file(), f"{bot.name} has no tests"
        assert bot.with_name(bot.stem + ".tests.cassette.json").is_file(), f"{bot.name}: record"


def test_the_bots_tests_pass_offline_from_the_committed_cassettes():
    result = subprocess.run(
        [sys.executable, "-m", "botrunner", "test", "bots/", "--strict"],
        cwd=ROOT,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("passed")]
    assert len(lines) >= 8
    assert "failed" not in result.stdout.split("\n\n")[-1]


def test_the_committed_cassettes_are_what_recording_against_the_fake_upstream_gives(tmp_path):
    copy = tmp_path / "bots"
    shutil.copytree(BOTS, copy)
    for cassette in copy.glob("*.cassette.json"):
        cassette.unlink()
    result = record(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    for committed in sorted(BOTS.glob("*.tests.cassette.json")):
        fresh = json.loads((copy / committed.name).read_text(encoding="utf-8"))
        assert fresh == json.loads(committed.read_text(encoding="utf-8")), (
            f"{committed.name} is out of date: run .venv/bin/python tests/record_bots.py"
        )
